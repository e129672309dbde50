/*
 * s3_request.c: the request path of the S3 driver: one signed attempt (sigv4.c), its answer
 * read (headers, error bodies), retries with backoff through common/http, and the
 * error the user sees. Small helpers the other files share (buffers, MD5, XML).
 */
#include "s3_int.h"

/* ---------------------------------------------------------------- small helpers */

void s3_md5(const void *buf, size_t len, char out[25], char hexout[33])
{
    unsigned char d[16];
    unsigned int n = 0;

    if (EVP_Digest(buf, len, d, &n, EVP_md5(), NULL) != 1)
        abort();
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, d, 16);
    if (hexout != NULL)
        for (int i = 0; i < 16; i++)
            snprintf(hexout + 2 * i, 3, "%02x", d[i]);
}

char *s3_okey(const s3_drv *d, const char *key)
{
    return xasprintf("%s%s", d->prefix, key);
}

/* Keys come from the library, not users, but a bad one must not become a odd URL. */
snap_rc s3_check_key(const char *key, snap_err *err)
{
    const char *p = key;

    if (key[0] == '\0' || key[0] == '/')
        goto bad;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            goto bad;
        p += n;
        if (*p == '/')
            p++;
    }
    return SNAP_OK;
bad:
    return err_set(err, SNAP_EUSAGE, 0, "invalid store key \"%s\"", key);
}

/* ---------------------------------------------------------------- XML */

xmlDoc *s3_xml_parse(const char *buf, size_t len)
{
    if (buf == NULL || len == 0 || len > INT32_MAX)
        return NULL;
    return xmlReadMemory(buf, (int)len, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

bool s3_xml_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

xmlNode *s3_xml_child(const xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (s3_xml_is(c, name))
            return c;
    return NULL;
}

/* The text of n's child element name, copied into out (empty when absent). */
const char *s3_xml_text(const xmlNode *n, const char *name, char *out, size_t cap)
{
    xmlNode *c = s3_xml_child(n, name);
    xmlChar *t = c ? xmlNodeGetContent(c) : NULL;

    snprintf(out, cap, "%s", t ? (const char *)t : "");
    xmlFree(t);
    return out;
}

char *s3_xml_text_dup(const xmlNode *n, const char *name)
{
    xmlNode *c = s3_xml_child(n, name);
    xmlChar *t = c ? xmlNodeGetContent(c) : NULL;
    char *s = xstrdup(t ? (const char *)t : "");

    xmlFree(t);
    return s;
}

/* ---------------------------------------------------------------- one request */

typedef struct body_cursor {
    const unsigned char *start, *p;
    size_t total, left;
} body_cursor;

static size_t read_body(char *dst, size_t size, size_t nmemb, void *arg)
{
    body_cursor *c = arg;
    size_t n = size * nmemb;

    if (n > c->left)
        n = c->left;
    if (n == 0)
        return 0;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return n;
}

/* curl rewinds when a reused connection turned out dead before the body went. */
static int seek_body(void *arg, curl_off_t off, int origin)
{
    body_cursor *c = arg;

    if (origin != SEEK_SET || off < 0 || (uint64_t)off > c->total)
        return CURL_SEEKFUNC_FAIL;
    c->p = c->start + off;
    c->left = c->total - (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t write_body(char *src, size_t size, size_t nmemb, void *arg)
{
    s3_req *q = arg;
    size_t n = size * nmemb;

    /* Error bodies always go to resp; only a successful body goes to the sink. */
    if (q->sink != NULL && q->status >= 200 && q->status < 300)
        return q->sink(src, n, q->sink_arg);
    if (q->resp.len + n > 64 * MIB) /* no listing or error is this large */
        return 0;
    util_buf_add(&q->resp, src, n);
    return n;
}

static size_t read_header(char *line, size_t size, size_t nmemb, void *arg)
{
    s3_req *q = arg;
    size_t n = size * nmemb, vl;
    const char *v;
    char tmp[128];

    if (http_status_line(line, n, &q->status)) {
        /* A new response (after 100 Continue, say): reset what the previous one said. */
        q->etag[0] = '\0';
        q->have_length = q->have_total = false;
    } else if (http_header(line, n, "ETag", &v, &vl)) {
        http_copy(v, vl, q->etag, sizeof q->etag);
    } else if (http_header(line, n, "Content-Length", &v, &vl)) {
        http_copy(v, vl, tmp, sizeof tmp);
        q->content_length = strtoull(tmp, NULL, 10);
        q->have_length = true;
    } else if (http_header(line, n, "Content-Range", &v, &vl)) {
        const char *slash;
        http_copy(v, vl, tmp, sizeof tmp);
        slash = strrchr(tmp, '/');
        if (slash != NULL && slash[1] >= '0' && slash[1] <= '9') {
            q->range_total = strtoull(slash + 1, NULL, 10);
            q->have_total = true;
        }
    } else if (http_header(line, n, "x-amz-bucket-region", &v, &vl)) {
        http_copy(v, vl, q->bucket_region, sizeof q->bucket_region);
    }
    return n;
}

bool s3_interrupted(const s3_drv *d)
{
    return d->ctx != NULL && d->ctx->interrupted != NULL && *d->ctx->interrupted;
}

/* Ends a transfer on SIGINT/SIGTERM, except the clean-up that must still happen then. */
static int progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const s3_req *q = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return !q->cleanup && s3_interrupted(q->drv);
}

static bool retryable(const s3_req *q)
{
    if (q->curl_rc != CURLE_OK)
        return http_transport_retryable(q->curl_rc);
    if (q->status >= 500 || http_status_retryable(q->status))
        return true;
    return strcmp(q->err_code, "SlowDown") == 0 || strcmp(q->err_code, "RequestTimeout") == 0 ||
           strcmp(q->err_code, "InternalError") == 0 ||
           strcmp(q->err_code, "ServiceUnavailable") == 0;
}

static void parse_error_body(s3_req *q)
{
    xmlDoc *doc;
    xmlNode *root;

    q->err_code[0] = q->err_msg[0] = '\0';
    doc = s3_xml_parse(q->resp.p, q->resp.len);
    root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (root != NULL && s3_xml_is(root, "Error")) {
        s3_xml_text(root, "Code", q->err_code, sizeof q->err_code);
        s3_xml_text(root, "Message", q->err_msg, sizeof q->err_msg);
        if (q->status >= 200 && q->status < 300) /* an <Error> inside a 200 */
            q->status = 500;
    }
    xmlFreeDoc(doc);
}

void s3_parse_response_int(const char *buf, size_t len, long *status, char code[64])
{
    s3_req q = {0};

    /* Header lines as curl hands them (not NUL-terminated) up to the blank line, then the body. */
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - buf) + 1 : len;
        bool blank = n <= 2 && (buf[0] == '\n' || buf[0] == '\r');
        char *line = xmalloc(n);
        memcpy(line, buf, n);
        read_header(line, 1, n, &q);
        free(line);
        buf += n;
        len -= n;
        if (blank)
            break;
    }
    util_buf_add(&q.resp, buf, len);
    parse_error_body(&q);
    *status = q.status;
    snprintf(code, 64, "%s", q.err_code);
    util_buf_free(&q.resp);
}

static struct curl_slist *add_header(struct curl_slist *l, sigv4_header *h, size_t *n,
                                     const char *name, const char *value)
{
    char *line = xasprintf("%s: %s", name, value);
    struct curl_slist *r = curl_slist_append(l, line);

    free(line);
    if (r == NULL)
        abort();
    h[*n].name = name;
    h[*n].value = value;
    (*n)++;
    return r;
}

/* One attempt: build, sign, send. Fills q's answer fields. */
static void attempt(s3_drv *d, CURL *h, s3_req *q, const char *url, const char *cpath,
                    const char *payload_hash, const s3_key *k)
{
    sigv4_header hs[16];
    size_t nh = 0;
    char amz_date[17];
    struct curl_slist *l = NULL;
    body_cursor cur = {q->body, q->body, q->body_len, q->body_len};
    char *auth, *line;

    util_buf_free(&q->resp);
    q->status = 0;
    q->etag[0] = q->bucket_region[0] = q->err_code[0] = q->err_msg[0] = q->curl_msg[0] = '\0';
    q->have_length = q->have_total = false;
    q->content_length = q->range_total = 0;

    sigv4_amz_date(time(NULL), amz_date);
    l = add_header(l, hs, &nh, "Host", d->host);
    l = add_header(l, hs, &nh, "x-amz-date", amz_date);
    l = add_header(l, hs, &nh, "x-amz-content-sha256", payload_hash);
    if (k->session_token != NULL)
        l = add_header(l, hs, &nh, "x-amz-security-token", k->session_token);
    if (q->content_md5 != NULL)
        l = add_header(l, hs, &nh, "Content-MD5", q->content_md5);
    if (q->range != NULL)
        l = add_header(l, hs, &nh, "Range", q->range);
    if (q->if_match != NULL)
        l = add_header(l, hs, &nh, "If-Match", q->if_match);
    if (q->if_none_match)
        l = add_header(l, hs, &nh, "If-None-Match", "*");
    if (q->object_headers && d->storage_class != NULL)
        l = add_header(l, hs, &nh, "x-amz-storage-class", d->storage_class);
    if (q->object_headers && d->sse != NULL)
        l = add_header(l, hs, &nh, "x-amz-server-side-encryption", d->sse);
    if (q->object_headers && d->sse_kms_key_id != NULL)
        l = add_header(l, hs, &nh, "x-amz-server-side-encryption-aws-kms-key-id",
                       d->sse_kms_key_id);

    sigv4_request sr = {q->method, cpath, q->query, hs, nh, payload_hash, amz_date, d->region, "s3"};
    auth = sigv4_authorization(&sr, k->access_key, k->secret_key);
    line = xasprintf("Authorization: %s", auth);
    l = curl_slist_append(l, line);
    l = curl_slist_append(l, "Expect:"); /* no 100-continue round trip */
    l = curl_slist_append(l, "Content-Type:");
    if (l == NULL)
        abort();

    http_opts ho = {.http_1_1 = true,
                    .connect_timeout_ms = (d->timeout < 10 ? d->timeout : 10L) * 1000L,
                    .low_speed_time = d->timeout,
                    .tls_no_verify = !d->tls_verify,
                    .ca_file = d->ca_file,
                    .errbuf = q->curl_msg,
                    .progress = progress_cb,
                    .progress_arg = q};
    http_setup(h, &ho);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "PUT") == 0 || strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(h, CURLOPT_READDATA, &cur);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &cur);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    } else if (strcmp(q->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    }

    q->curl_rc = curl_easy_perform(h);
    if (q->curl_rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
        if (q->status >= 300 || q->error_in_200)
            parse_error_body(q);
    }
    curl_slist_free_all(l);
    OPENSSL_cleanse(auth, strlen(auth)); /* not a secret, but a replayable credential */
    free(auth);
    free(line);
}

/* "s3://bucket/prefix/key" of a request, for messages. */
static char *s3_where(const s3_drv *d, const s3_req *q)
{
    return q->okey ? xasprintf("s3://%s/%s", d->bucket, q->okey) : xasprintf("s3://%s", d->bucket);
}

/* Turns a failed request into the error the user sees. */
snap_rc s3_fail(s3_drv *d, const s3_req *q, snap_err *err)
{
    char *w = s3_where(d, q);
    char tries[48] = "";
    snap_rc rc;

    if (q->attempts > 1)
        snprintf(tries, sizeof tries, " (gave up after %d attempts)", q->attempts);

    if (q->curl_rc != CURLE_OK) {
        if (q->curl_rc == CURLE_ABORTED_BY_CALLBACK) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            goto out;
        }
        switch (q->curl_rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
            rc = SNAP_EUNREACH;
            break;
        default:
            rc = SNAP_EFAIL;
        }
        err_set(err, rc, 0, "s3 %s %s: %s: %s%s", q->method, w, d->endpoint,
                q->curl_msg[0] ? q->curl_msg : curl_easy_strerror(q->curl_rc), tries);
        if (q->curl_rc == CURLE_PEER_FAILED_VERIFICATION || q->curl_rc == CURLE_SSL_CACERT_BADFILE)
            err_hint(err, "give the server's CA with [store] ca_file or AWS_CA_BUNDLE; "
                          "for a test setup only, tls_verify = false turns the check off");
        else if (rc == SNAP_EUNREACH)
            err_hint(err, "check [store] endpoint (or AWS_ENDPOINT_URL) and that the server "
                          "is running and reachable");
        goto out;
    }

    const char *code = q->err_code[0] ? q->err_code : NULL;
    char detail[400];
    snprintf(detail, sizeof detail, "%ld%s%s%s%s", q->status, code ? " " : "", code ? code : "",
             q->err_msg[0] ? ": " : "", q->err_msg);

    if (q->status == 403 || (code && (!strcmp(code, "AccessDenied") ||
                                      !strcmp(code, "InvalidAccessKeyId") ||
                                      !strcmp(code, "SignatureDoesNotMatch") ||
                                      !strcmp(code, "InvalidToken") ||
                                      !strcmp(code, "ExpiredToken")))) {
        rc = err_set(err, SNAP_EUNREACH, 0, "s3 %s %s: %s%s", q->method, w, detail, tries);
        err_kind(err, "denied");
        if (code && !strcmp(code, "RequestTimeTooSkewed"))
            err_hint(err, "this machine's clock is off by more than 15 minutes: set it (NTP)");
        else if (code && (!strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "SignatureDoesNotMatch")))
            err_hint(err, "the server rejected the credentials (from the %s): check "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the profile in use",
                     d->cred_source);
        else if (code && (!strcmp(code, "InvalidToken") || !strcmp(code, "ExpiredToken")))
            err_hint(err, "the session token (from the %s) has expired or is not valid: "
                          "renew it", d->cred_source);
        else
            err_hint(err, "the credentials (from the %s) lack permission on bucket %s, or "
                          "the keys are wrong",
                     d->cred_source, d->bucket);
    } else if (q->status == 301 || (code && (!strcmp(code, "PermanentRedirect") ||
                                             !strcmp(code, "AuthorizationHeaderMalformed") ||
                                             !strcmp(code, "IllegalLocationConstraintException")))) {
        rc = err_set(err, SNAP_EUNREACH, 0, "s3 %s %s: %s%s", q->method, w, detail,
                     code ? "" : ": the bucket is in another region or behind another endpoint");
        if (q->bucket_region[0] && strcmp(q->bucket_region, d->region) != 0)
            err_hint(err, "bucket %s is in region %s, not %s: set [store] region = %s",
                     d->bucket, q->bucket_region, d->region, q->bucket_region);
        else
            err_hint(err, "the bucket is in another region than %s: set [store] region "
                          "(or AWS_REGION) to the bucket's",
                     d->region);
    } else if (code && !strcmp(code, "NoSuchBucket")) {
        rc = err_set(err, SNAP_ENOTFOUND, 0, "s3 %s %s: bucket %s does not exist (%s)", q->method,
                     w, d->bucket, detail);
        err_hint(err, "create the bucket, or correct the store URL");
    } else if (q->status == 404) {
        rc = err_set(err, SNAP_ENOTFOUND, 0, "s3 %s %s: not found (%s)", q->method, w, detail);
    } else if (q->status == 412 || (q->status == 409 && q->if_match != NULL)) {
        /* 409: AWS's ConditionalRequestConflict, another conditional write in flight */
        rc = err_set(err, SNAP_ECONFLICT, 0, "s3 %s %s: %s", q->method, w, detail);
    } else {
        rc = err_set(err, SNAP_EFAIL, 0, "s3 %s %s: %s%s", q->method, w, detail, tries);
        if (q->status == 400 && q->object_headers &&
            (d->storage_class != NULL || d->sse != NULL))
            err_hint(err, "the server refused the object's options: check [store] "
                          "storage_class, sse and sse_kms_key_id");
        else if (q->status >= 500)
            err_hint(err, "the server kept failing; check its health and run the command again");
    }
out:
    free(w);
    return rc;
}

static bool key_refused(const s3_req *q)
{
    return strcmp(q->err_code, "ExpiredToken") == 0 || strcmp(q->err_code, "InvalidToken") == 0 ||
           strcmp(q->err_code, "InvalidAccessKeyId") == 0 ||
           strcmp(q->err_code, "TokenRefreshRequired") == 0;
}

/*
 * Sends q, retrying what may be retried. Returns SNAP_OK for 2xx (and for the statuses
 * in ok_also, such as 404 for a DELETE); else the mapped error.
 */
snap_rc s3_request(s3_drv *d, s3_req *q, long ok_also, snap_err *err)
{
    char hash[65];
    char *enc = q->okey ? sigv4_uri_encode(q->okey, true) : NULL;
    char *cpath, *url;
    CURL *h = http_pool_get(d->curls);
    s3_key k = {0};
    bool renewed = false;
    snap_rc rc;

    q->drv = d;
    if (q->body_sha256 == NULL) {
        sigv4_sha256_hex(q->body ? q->body : "", q->body_len, hash);
        q->body_sha256 = hash;
    }
    if (enc != NULL)
        cpath = xasprintf("%s/%s", d->path_base, enc);
    else
        cpath = xstrdup(d->path_base[0] ? d->path_base : "/");
    url = xasprintf("%s%s%s%s", d->base, cpath, q->query ? "?" : "", q->query ? q->query : "");

    for (q->attempts = 1;; q->attempts++) {
        if (q->before_attempt != NULL)
            q->before_attempt(q, q->sink_arg);
        s3_key_free(&k);
        if ((rc = s3_chain_get(d, &k, err)) != SNAP_OK)
            break;
        attempt(d, h, q, url, cpath, q->body_sha256, &k);
        if (q->curl_rc == CURLE_OK &&
            ((q->status >= 200 && q->status < 300) || (ok_also && q->status == ok_also))) {
            rc = SNAP_OK;
            break;
        }
        /* Temporary keys the server calls expired or unknown: renew them once and retry. */
        if (!renewed && q->curl_rc == CURLE_OK && key_refused(q) && s3_chain_expire(d, &k)) {
            renewed = true;
            log_verbose(d->ctx, "s3 %s %s: %s, renewing the credentials", q->method,
                      q->okey ? q->okey : d->bucket, q->err_code);
            continue;
        }
        if (!q->cleanup && s3_interrupted(d)) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            break;
        }
        if (!retryable(q) || q->attempts > d->retries) {
            rc = s3_fail(d, q, err);
            break;
        }
        uint64_t ms = http_backoff_ms(q->attempts - 1, S3_RETRY_BASE_MS, S3_RETRY_CAP_MS);
        log_debug(d->ctx, "s3 %s %s: %s, retrying in %llu ms", q->method,
                  q->okey ? q->okey : d->bucket,
                  q->curl_rc ? curl_easy_strerror(q->curl_rc) : (q->err_code[0] ? q->err_code : "error"),
                  (unsigned long long)ms);
        /* An interrupt ends the wait; the next turn of the loop reports it. */
        http_wait(d->ctx, ms, q->cleanup);
    }
    if (q->body_sha256 == hash)
        q->body_sha256 = NULL;
    s3_key_free(&k);
    http_pool_put(d->curls, h);
    free(enc);
    free(cpath);
    free(url);
    return rc;
}

void s3_req_done(s3_req *q)
{
    util_buf_free(&q->resp);
}
