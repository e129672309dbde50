/*
 * s3.c: the S3-compatible store driver (AWS S3, Ceph RGW, MinIO, R2 ...).
 *
 * Requests go through libcurl, signed by sigv4.c; XML answers are read with libxml2.
 * Keys of the store interface are relative; an s3://bucket/prefix URL maps "catalog/x.json"
 * to the object "prefix/catalog/x.json".
 *
 * Writers stream: one part is filled in memory while up to upload_concurrency - 1 earlier
 * parts upload in their own threads, so a writer holds at most part_size x
 * upload_concurrency bytes. An object smaller than one part goes as one PUT at commit;
 * a larger one is a multipart upload completed at commit and aborted on abort.
 *
 * Readers fetch ranges of download_chunk bytes, up to download_concurrency at once, each
 * with If-Match on the ETag the first range saw; a connection that breaks resumes at the byte it
 * reached.
 *
 * Every request is retried with exponential backoff and jitter on 5xx, SlowDown,
 * RequestTimeout, timeouts and broken connections. Every request is idempotent as sent:
 * a create-only PUT retried after a lost answer that then meets 412 checks whether the
 * object is its own (same MD5) before calling it a conflict.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ini.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../common/http.h"
#include "../common/util.h"
#include "sigv4.h"
#include "storage_int.h"

#define MIB (1024ULL * 1024ULL)
#define S3_MIN_PART (5 * MIB)      /* S3's smallest part but the last */
#define S3_MAX_PART (5 * 1024 * MIB)
#define S3_MAX_PARTS 10000
#define S3_DELETE_BATCH 1000
#define S3_RETRY_BASE_MS 100
#define S3_RETRY_CAP_MS 8000

typedef enum s3_check {
    S3_CHECK_UNKNOWN = 0,
    S3_CHECK_IF_NONE_MATCH, /* the server answers 412 to If-None-Match: * */
    S3_CHECK_HEAD_THEN_PUT  /* fallback: HEAD before PUT, read back after */
} s3_check;

typedef struct s3_drv {
    snap_ctx *ctx;
    char *url;         /* s3://bucket/prefix, for messages */
    char *bucket;
    char *prefix;      /* "" or "some/prefix/" */
    char *endpoint;    /* as configured: "https://s3.eu-west-1.amazonaws.com" */
    char *base;        /* scheme://host[:port], with the bucket in the host when virtual */
    char *host;        /* the Host header */
    char *path_base;   /* "/bucket" for path-style, "" for virtual-hosted */
    bool path_style;
    char *region;
    char *access_key, *secret_key, *session_token;
    const char *cred_source; /* "environment", "credentials file" ... (for describe) */
    char *ca_file;
    bool tls_verify;
    char *storage_class, *sse, *sse_kms_key_id;
    uint64_t part_size, download_chunk;
    long upload_conc, download_conc, retries, timeout, list_max_keys, list_max_pages;

    pthread_mutex_t lock; /* guards check */
    http_pool *curls;     /* easy handles kept for their live connections */
    s3_check check;
    s3_check check_forced; /* from [store] create_only_check, UNKNOWN for auto */
} s3_drv;

/* ---------------------------------------------------------------- small helpers */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_addn(sbuf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_free(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void md5_base64(const void *buf, size_t len, char out[25], char hexout[33])
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

static char *okey_of(const s3_drv *d, const char *key)
{
    return xasprintf("%s%s", d->prefix, key);
}

/* Keys come from the library, not users, but a bad one must not become a odd URL. */
static snap_rc check_key(const char *key, snap_err *err)
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

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/* libxml2 wants its global set-up done once, before any thread uses it (libcurl's is
 * http_global_init's). */
static void global_init(void)
{
    xmlInitParser();
}

static xmlDoc *xml_parse(const char *buf, size_t len)
{
    if (buf == NULL || len == 0 || len > INT32_MAX)
        return NULL;
    return xmlReadMemory(buf, (int)len, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static bool xml_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *xml_child(const xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (xml_is(c, name))
            return c;
    return NULL;
}

/* The text of n's child element name, copied into out (empty when absent). */
static const char *xml_text(const xmlNode *n, const char *name, char *out, size_t cap)
{
    xmlNode *c = xml_child(n, name);
    xmlChar *t = c ? xmlNodeGetContent(c) : NULL;

    snprintf(out, cap, "%s", t ? (const char *)t : "");
    xmlFree(t);
    return out;
}

static char *xml_text_dup(const xmlNode *n, const char *name)
{
    xmlNode *c = xml_child(n, name);
    xmlChar *t = c ? xmlNodeGetContent(c) : NULL;
    char *s = xstrdup(t ? (const char *)t : "");

    xmlFree(t);
    return s;
}

/* "2026-11-26T05:53:58.123Z" (S3 listings carry milliseconds). */
static time_t parse_s3_time(const char *s)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return 0;
    return timegm(&tm);
}

/* ---------------------------------------------------------------- one request */

typedef struct s3_req s3_req;

struct s3_req {
    /* what to send */
    const char *method;
    const char *okey;        /* object key with the prefix; NULL for the bucket itself */
    const char *query;       /* canonical query from sigv4_query(), or NULL */
    const void *body;        /* sent from memory; NULL for none */
    size_t body_len;
    const char *body_sha256; /* when the caller has it; else computed once */
    const char *content_md5; /* base64 */
    const char *range;       /* "bytes=0-9" */
    const char *if_match;
    bool if_none_match;
    bool object_headers;     /* storage class and encryption (PUT, CreateMultipartUpload) */
    bool error_in_200;       /* CompleteMultipartUpload may answer 200 with an <Error> */
    bool cleanup;            /* an abort that must run even after SIGINT */
    const s3_drv *drv;       /* set by request() */
    /* where a GET's body goes: to sink when set, else to resp */
    size_t (*sink)(const void *p, size_t n, void *arg);
    void *sink_arg;
    /* called before each attempt, e.g. to move a range past what arrived */
    void (*before_attempt)(s3_req *q, void *arg);

    /* what came back (of the last attempt) */
    long status;
    CURLcode curl_rc;
    char curl_msg[CURL_ERROR_SIZE];
    sbuf resp;
    char etag[128];
    char bucket_region[64];
    uint64_t content_length;
    bool have_length;
    uint64_t range_total;    /* the object's size, from Content-Range */
    bool have_total;
    char err_code[64];
    char err_msg[256];
    int attempts;
};

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
    sb_addn(&q->resp, src, n);
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

static bool interrupted(const s3_drv *d)
{
    return d->ctx != NULL && d->ctx->interrupted != NULL && *d->ctx->interrupted;
}

/* Ends a transfer on SIGINT/SIGTERM, except the clean-up that must still happen then. */
static int progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const s3_req *q = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return !q->cleanup && interrupted(q->drv);
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
    doc = xml_parse(q->resp.p, q->resp.len);
    root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (root != NULL && xml_is(root, "Error")) {
        xml_text(root, "Code", q->err_code, sizeof q->err_code);
        xml_text(root, "Message", q->err_msg, sizeof q->err_msg);
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
    sb_addn(&q.resp, buf, len);
    parse_error_body(&q);
    *status = q.status;
    snprintf(code, 64, "%s", q.err_code);
    sb_free(&q.resp);
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
                    const char *payload_hash)
{
    sigv4_header hs[16];
    size_t nh = 0;
    char amz_date[17];
    struct curl_slist *l = NULL;
    body_cursor cur = {q->body, q->body, q->body_len, q->body_len};
    char *auth, *line;

    sb_free(&q->resp);
    q->status = 0;
    q->etag[0] = q->bucket_region[0] = q->err_code[0] = q->err_msg[0] = q->curl_msg[0] = '\0';
    q->have_length = q->have_total = false;
    q->content_length = q->range_total = 0;

    sigv4_amz_date(time(NULL), amz_date);
    l = add_header(l, hs, &nh, "Host", d->host);
    l = add_header(l, hs, &nh, "x-amz-date", amz_date);
    l = add_header(l, hs, &nh, "x-amz-content-sha256", payload_hash);
    if (d->session_token != NULL)
        l = add_header(l, hs, &nh, "x-amz-security-token", d->session_token);
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
    auth = sigv4_authorization(&sr, d->access_key, d->secret_key);
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
static char *where(const s3_drv *d, const s3_req *q)
{
    return q->okey ? xasprintf("s3://%s/%s", d->bucket, q->okey) : xasprintf("s3://%s", d->bucket);
}

/* Turns a failed request into the error the user sees. */
static snap_rc fail(s3_drv *d, const s3_req *q, snap_err *err)
{
    char *w = where(d, q);
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
        if (code && !strcmp(code, "RequestTimeTooSkewed"))
            err_hint(err, "this machine's clock is off by more than 15 minutes: set it (NTP)");
        else if (code && (!strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "SignatureDoesNotMatch")))
            err_hint(err, "the server rejected the credentials (from the %s): check "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the profile in use",
                     d->cred_source);
        else if (code && (!strcmp(code, "InvalidToken") || !strcmp(code, "ExpiredToken")))
            err_hint(err, "renew the session token (AWS_SESSION_TOKEN)");
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
    } else if (q->status == 412) {
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

/*
 * Sends q, retrying what may be retried. Returns SNAP_OK for 2xx (and for the statuses
 * in ok_also, such as 404 for a DELETE); else the mapped error.
 */
static snap_rc request(s3_drv *d, s3_req *q, long ok_also, snap_err *err)
{
    char hash[65];
    char *enc = q->okey ? sigv4_uri_encode(q->okey, true) : NULL;
    char *cpath, *url;
    CURL *h = http_pool_get(d->curls);
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
        attempt(d, h, q, url, cpath, q->body_sha256);
        if (q->curl_rc == CURLE_OK &&
            ((q->status >= 200 && q->status < 300) || (ok_also && q->status == ok_also))) {
            rc = SNAP_OK;
            break;
        }
        if (!q->cleanup && interrupted(d)) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            break;
        }
        if (!retryable(q) || q->attempts > d->retries) {
            rc = fail(d, q, err);
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
    http_pool_put(d->curls, h);
    free(enc);
    free(cpath);
    free(url);
    return rc;
}

static void req_done(s3_req *q)
{
    sb_free(&q->resp);
}

/* ---------------------------------------------------------------- simple object calls */

static snap_rc head_object(s3_drv *d, const char *okey, uint64_t *size, char *etag, size_t cap,
                           snap_err *err)
{
    s3_req q = {.method = "HEAD", .okey = okey};
    snap_rc rc = request(d, &q, 0, err);

    if (rc == SNAP_OK) {
        if (size != NULL)
            *size = q.content_length;
        if (etag != NULL)
            snprintf(etag, cap, "%s", q.etag);
    }
    req_done(&q);
    return rc;
}

static snap_rc put_object(s3_drv *d, const char *okey, const void *buf, size_t len,
                          bool if_none_match, int *attempts, snap_err *err)
{
    char md5[25];
    s3_req q = {.method = "PUT", .okey = okey, .body = buf, .body_len = len,
                .content_md5 = md5, .if_none_match = if_none_match, .object_headers = true};
    snap_rc rc;

    md5_base64(buf ? buf : "", len, md5, NULL);
    rc = request(d, &q, 0, err);
    if (attempts != NULL)
        *attempts = q.attempts;
    req_done(&q);
    return rc;
}

static snap_rc delete_object(s3_drv *d, const char *okey, snap_err *err)
{
    s3_req q = {.method = "DELETE", .okey = okey};
    snap_rc rc = request(d, &q, 404, err);

    if (rc == SNAP_OK && q.status == 404 && !strcmp(q.err_code, "NoSuchBucket"))
        rc = fail(d, &q, err);
    req_done(&q);
    return rc;
}

/* GET of a whole object into memory, at most max bytes. */
static snap_rc get_small(s3_drv *d, const char *okey, size_t max, sbuf *out, snap_err *err)
{
    s3_req q = {.method = "GET", .okey = okey};
    snap_rc rc = request(d, &q, 0, err);

    if (rc == SNAP_OK && q.resp.len > max)
        rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: larger than %zu bytes", d->bucket,
                     okey, max);
    if (rc == SNAP_OK) {
        *out = q.resp;
        memset(&q.resp, 0, sizeof q.resp);
    }
    req_done(&q);
    return rc;
}

/* ---------------------------------------------------------------- create-only check */

/* A plain PUT with If-None-Match: *, without the object options (storage class, SSE). */
static snap_rc probe_put(s3_drv *d, const char *okey, const char *body, long *status,
                         snap_err *err)
{
    s3_req q = {.method = "PUT", .okey = okey, .body = body, .body_len = strlen(body),
                .if_none_match = true};
    snap_rc rc = request(d, &q, 0, err);

    *status = q.curl_rc == CURLE_OK ? q.status : 0;
    req_done(&q);
    return rc;
}

/*
 * Finds out once per store whether the server honours If-None-Match: * on PUT: writes a
 * probe object twice under the prefix; the second PUT must answer 412.
 */
static snap_rc probe_create_only(s3_drv *d, snap_err *err)
{
    char rnd[17];
    char *okey;
    long status = 0;
    snap_rc rc;

    pthread_mutex_lock(&d->lock);
    s3_check c = d->check;
    pthread_mutex_unlock(&d->lock);
    if (c != S3_CHECK_UNKNOWN)
        return SNAP_OK;

    util_random_hex(rnd, 8);
    okey = xasprintf("%s.create-only-probe-%s", d->prefix, rnd);
    rc = probe_put(d, okey, "1", &status, err);
    if (rc == SNAP_OK)
        rc = probe_put(d, okey, "2", &status, err);
    if (rc == SNAP_ECONFLICT) {
        /* 412 on the second PUT; or on a retried first one, whose first attempt landed. */
        c = S3_CHECK_IF_NONE_MATCH;
        rc = SNAP_OK;
    } else if (rc == SNAP_OK) {
        c = S3_CHECK_HEAD_THEN_PUT; /* the second PUT overwrote: the header was ignored */
    } else if (rc == SNAP_EFAIL && (status == 400 || status == 501)) {
        /* A server that refuses the header outright gets the fallback; a failing one does not. */
        c = S3_CHECK_HEAD_THEN_PUT;
        rc = SNAP_OK;
    }
    if (rc == SNAP_OK) {
        delete_object(d, okey, NULL);
        if (c == S3_CHECK_HEAD_THEN_PUT)
            log_warn(d->ctx, "%s: the server ignores If-None-Match; catalog commits use the "
                             "weaker head-then-put check",
                     d->url);
        else
            log_debug(d->ctx, "%s: the server honours If-None-Match: create-only commits use it",
                      d->url);
        pthread_mutex_lock(&d->lock);
        d->check = c;
        pthread_mutex_unlock(&d->lock);
    }
    free(okey);
    return rc;
}

static s3_check get_check(s3_drv *d)
{
    s3_check c;

    pthread_mutex_lock(&d->lock);
    c = d->check;
    pthread_mutex_unlock(&d->lock);
    return c;
}

static snap_rc conflict(s3_drv *d, const char *okey, snap_err *err)
{
    err_set(err, SNAP_ECONFLICT, 0, "s3://%s/%s already exists", d->bucket, okey);
    return SNAP_ECONFLICT;
}

/* A create-only PUT of a whole object. */
static snap_rc put_create_only(s3_drv *d, const char *okey, const void *buf, size_t len,
                               snap_err *err)
{
    snap_rc rc;
    int attempts = 0;
    char md5hex[33], etag[128];
    sbuf back = {0};

    if ((rc = probe_create_only(d, err)) != SNAP_OK)
        return rc;
    md5_base64(buf ? buf : "", len, NULL, md5hex);

    if (get_check(d) == S3_CHECK_IF_NONE_MATCH) {
        rc = put_object(d, okey, buf, len, true, &attempts, err);
        if (rc == SNAP_ECONFLICT && attempts > 1) {
            /* An earlier attempt may have landed and lost its answer: is it ours? */
            snap_err e2;
            if (head_object(d, okey, NULL, etag, sizeof etag, &e2) == SNAP_OK &&
                strlen(etag) == 34 && strncmp(etag + 1, md5hex, 32) == 0)
                return SNAP_OK;
        }
        if (rc == SNAP_ECONFLICT)
            return conflict(d, okey, err);
        return rc;
    }

    /* The weaker check: nothing there before, our bytes there after. */
    rc = head_object(d, okey, NULL, NULL, 0, err);
    if (rc == SNAP_OK)
        return conflict(d, okey, err);
    if (rc != SNAP_ENOTFOUND)
        return rc;
    if ((rc = put_object(d, okey, buf, len, false, NULL, err)) != SNAP_OK)
        return rc;
    if ((rc = get_small(d, okey, len + 1, &back, err)) != SNAP_OK)
        return rc;
    if (back.len != len || (len > 0 && memcmp(back.p, buf, len) != 0))
        rc = err_set(err, SNAP_ECONFLICT, 0,
                     "s3://%s/%s was written by another writer at the same time", d->bucket, okey);
    sb_free(&back);
    return rc;
}

/* ---------------------------------------------------------------- configuration */

typedef struct aws_profile {
    const char *want;  /* profile name */
    bool config_file;  /* sections are "profile NAME" (except "default") */
    char *access_key, *secret_key, *session_token, *region;
} aws_profile;

static int profile_cb(void *arg, const char *section, const char *name, const char *value)
{
    aws_profile *p = arg;
    const char *s = section;
    char **slot = NULL;

    if (name == NULL)
        return 1;
    if (p->config_file && strcmp(s, "default") != 0) {
        if (strncmp(s, "profile ", 8) != 0)
            return 1;
        s += 8;
        while (*s == ' ')
            s++;
    }
    if (strcmp(s, p->want) != 0)
        return 1;
    if (!strcmp(name, "aws_access_key_id"))
        slot = &p->access_key;
    else if (!strcmp(name, "aws_secret_access_key"))
        slot = &p->secret_key;
    else if (!strcmp(name, "aws_session_token"))
        slot = &p->session_token;
    else if (!strcmp(name, "region"))
        slot = &p->region;
    if (slot != NULL) {
        free(*slot);
        *slot = xstrdup(value);
    }
    return 1;
}

static void profile_free(aws_profile *p)
{
    if (p->secret_key)
        OPENSSL_cleanse(p->secret_key, strlen(p->secret_key));
    free(p->access_key);
    free(p->secret_key);
    free(p->session_token);
    free(p->region);
}

static char *home_file(const char *env, const char *rel)
{
    const char *v = getenv(env), *home = getenv("HOME");

    if (v != NULL && v[0] != '\0')
        return xstrdup(v);
    if (home == NULL || home[0] == '\0')
        return NULL;
    return xasprintf("%s/%s", home, rel);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static snap_rc load_credentials(s3_drv *d, const cfg *c, snap_err *err)
{
    const char *profile = cfg_get(c, "store", "profile");
    aws_profile cred = {0}, conf = {0};
    char *cred_path = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    char *conf_path = home_file("AWS_CONFIG_FILE", ".aws/config");
    snap_rc rc = SNAP_OK;

    if (profile == NULL)
        profile = env("AWS_PROFILE");
    if (profile == NULL)
        profile = "default";
    cred.want = conf.want = profile;
    conf.config_file = true;
    if (cred_path != NULL)
        ini_parse(cred_path, profile_cb, &cred); /* a missing file is no error */
    if (conf_path != NULL)
        ini_parse(conf_path, profile_cb, &conf);

    if (env("AWS_ACCESS_KEY_ID") != NULL || env("AWS_SECRET_ACCESS_KEY") != NULL) {
        if (env("AWS_ACCESS_KEY_ID") == NULL || env("AWS_SECRET_ACCESS_KEY") == NULL) {
            rc = err_set(err, SNAP_EUSAGE, 0, "%s: only one of AWS_ACCESS_KEY_ID and "
                                              "AWS_SECRET_ACCESS_KEY is set",
                         d->url);
            err_hint(err, "set both, or neither to use ~/.aws/credentials");
            goto out;
        }
        d->access_key = xstrdup(env("AWS_ACCESS_KEY_ID"));
        d->secret_key = xstrdup(env("AWS_SECRET_ACCESS_KEY"));
        if (env("AWS_SESSION_TOKEN") != NULL)
            d->session_token = xstrdup(env("AWS_SESSION_TOKEN"));
        d->cred_source = "environment";
    } else if (cred.access_key != NULL && cred.secret_key != NULL) {
        d->access_key = xstrdup(cred.access_key);
        d->secret_key = xstrdup(cred.secret_key);
        if (cred.session_token != NULL)
            d->session_token = xstrdup(cred.session_token);
        d->cred_source = "shared credentials file";
    } else if (conf.access_key != NULL && conf.secret_key != NULL) {
        d->access_key = xstrdup(conf.access_key);
        d->secret_key = xstrdup(conf.secret_key);
        if (conf.session_token != NULL)
            d->session_token = xstrdup(conf.session_token);
        d->cred_source = "config file";
    } else {
        rc = err_set(err, SNAP_EUNREACH, 0, "%s: no AWS credentials found (profile %s)", d->url,
                     profile);
        err_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the profile's "
                      "keys in ~/.aws/credentials (AWS_PROFILE picks the profile)");
        goto out;
    }

    /* Region: [store] region, then AWS_REGION, AWS_DEFAULT_REGION, the profile's. */
    if (cfg_get(c, "store", "region") != NULL)
        d->region = xstrdup(cfg_get(c, "store", "region"));
    else if (env("AWS_REGION") != NULL)
        d->region = xstrdup(env("AWS_REGION"));
    else if (env("AWS_DEFAULT_REGION") != NULL)
        d->region = xstrdup(env("AWS_DEFAULT_REGION"));
    else if (conf.region != NULL)
        d->region = xstrdup(conf.region);
    else
        d->region = xstrdup("us-east-1");
out:
    profile_free(&cred);
    profile_free(&conf);
    free(cred_path);
    free(conf_path);
    return rc;
}

static bool valid_bucket(const char *b)
{
    size_t n = strlen(b);

    if (n < 3 || n > 63)
        return false;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
              *p == '_' || (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

static const char *opt(const cfg *c, const char *key)
{
    return cfg_get(c, "store", key);
}

static void s3_free(void *drv);

/*
 * One cheap listing at open: a missing bucket, wrong keys or a wrong region show up
 * here with the server's own code and message (HEAD answers carry no body to say why).
 */
static snap_rc check_bucket(s3_drv *d, snap_err *err)
{
    sigv4_param p[] = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", d->prefix}};
    char *query = sigv4_query(p, 3);
    s3_req q = {.method = "GET", .query = query};
    snap_rc rc = request(d, &q, 0, err);

    req_done(&q);
    free(query);
    return rc;
}

static snap_rc s3_open(const char *url, bool create, snap_ctx *ctx, void **out, snap_err *err)
{
    s3_drv *d = xcalloc(1, sizeof *d);
    const cfg *c = ctx->cfg;
    const char *rest = url, *slash, *ep;
    char *scheme = NULL, *hostport = NULL;
    snap_rc rc;
    uint64_t u;

    (void)create; /* buckets are made by their owners; a missing one is SNAP_ENOTFOUND */
    rc = http_global_init(err);
    if (rc != SNAP_OK) {
        free(d);
        return rc;
    }
    pthread_once(&global_once, global_init);
    pthread_mutex_init(&d->lock, NULL);
    d->curls = http_pool_new();
    d->ctx = ctx;
    if (strncmp(rest, "s3://", 5) == 0)
        rest += 5;
    slash = strchr(rest, '/');
    d->bucket = slash ? strndup(rest, (size_t)(slash - rest)) : xstrdup(rest);
    if (d->bucket == NULL)
        abort();
    if (slash != NULL) {
        const char *p = slash;
        size_t n;
        while (*p == '/')
            p++;
        n = strlen(p);
        while (n > 0 && p[n - 1] == '/')
            n--;
        d->prefix = n ? xasprintf("%.*s/", (int)n, p) : xstrdup("");
    } else {
        d->prefix = xstrdup("");
    }
    d->url = d->prefix[0] ? xasprintf("s3://%s/%.*s", d->bucket, (int)strlen(d->prefix) - 1,
                                      d->prefix)
                          : xasprintf("s3://%s", d->bucket);
    if (!valid_bucket(d->bucket) || (d->prefix[0] && check_key(d->prefix, NULL) != SNAP_OK) ||
        strstr(d->prefix, "//") != NULL) {
        rc = err_set(err, SNAP_EUSAGE, 0, "invalid store URL %s", url);
        err_hint(err, "write it as s3://BUCKET or s3://BUCKET/PREFIX");
        goto fail;
    }

    if ((rc = load_credentials(d, c, err)) != SNAP_OK)
        goto fail;

    /* Endpoint: [store] endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. */
    ep = opt(c, "endpoint");
    if (ep == NULL)
        ep = env("AWS_ENDPOINT_URL_S3");
    if (ep == NULL)
        ep = env("AWS_ENDPOINT_URL");
    if (ep != NULL) {
        size_t n = strlen(ep);
        while (n > 0 && ep[n - 1] == '/')
            n--;
        d->endpoint = strndup(ep, n);
    } else {
        d->endpoint = xasprintf("https://s3.%s.amazonaws.com", d->region);
    }
    if (d->endpoint == NULL)
        abort();
    if (strncmp(d->endpoint, "http://", 7) == 0)
        scheme = xstrdup("http"), hostport = xstrdup(d->endpoint + 7);
    else if (strncmp(d->endpoint, "https://", 8) == 0)
        scheme = xstrdup("https"), hostport = xstrdup(d->endpoint + 8);
    if (hostport == NULL || hostport[0] == '\0' || strchr(hostport, '/') != NULL ||
        strchr(hostport, '?') != NULL || hostport[strlen(hostport) - 1] == ':') {
        rc = err_set(err, SNAP_EUSAGE, 0, "[store] endpoint = %s: expected http(s)://HOST[:PORT]",
                     d->endpoint);
        goto fail;
    }

    /* Path-style by default for custom endpoints (MinIO, RGW), virtual-hosted on AWS. */
    if ((rc = cfg_get_bool(c, "store", "path_style", ep != NULL, &d->path_style, err)) != SNAP_OK)
        goto fail;
    if (d->path_style) {
        d->host = xstrdup(hostport);
        d->base = xasprintf("%s://%s", scheme, hostport);
        d->path_base = xasprintf("/%s", d->bucket);
    } else {
        d->host = xasprintf("%s.%s", d->bucket, hostport);
        d->base = xasprintf("%s://%s.%s", scheme, d->bucket, hostport);
        d->path_base = xstrdup("");
    }

    if ((rc = cfg_get_bool(c, "store", "tls_verify", true, &d->tls_verify, err)) != SNAP_OK)
        goto fail;
    if (opt(c, "ca_file") != NULL)
        d->ca_file = xstrdup(opt(c, "ca_file"));
    else if (env("AWS_CA_BUNDLE") != NULL)
        d->ca_file = xstrdup(env("AWS_CA_BUNDLE"));
    if (d->ca_file != NULL && access(d->ca_file, R_OK) != 0) {
        rc = err_sys(err, SNAP_EUSAGE, "CA file %s", d->ca_file);
        goto fail;
    }
    if (opt(c, "storage_class") != NULL)
        d->storage_class = xstrdup(opt(c, "storage_class"));
    if (opt(c, "sse") != NULL) {
        d->sse = xstrdup(opt(c, "sse"));
        if (strcmp(d->sse, "AES256") != 0 && strcmp(d->sse, "aws:kms") != 0) {
            rc = err_set(err, SNAP_EUSAGE, 0, "[store] sse = %s: expected AES256 or aws:kms",
                         d->sse);
            goto fail;
        }
    }
    if (opt(c, "sse_kms_key_id") != NULL) {
        if (d->sse == NULL || strcmp(d->sse, "aws:kms") != 0) {
            rc = err_set(err, SNAP_EUSAGE, 0, "[store] sse_kms_key_id needs sse = aws:kms");
            goto fail;
        }
        d->sse_kms_key_id = xstrdup(opt(c, "sse_kms_key_id"));
    }

    if ((rc = cfg_get_size(c, "store", "part_size", 16 * MIB, &d->part_size, err)) != SNAP_OK)
        goto fail;
    if (d->part_size < S3_MIN_PART || d->part_size > S3_MAX_PART) {
        rc = err_set(err, SNAP_EUSAGE, 0, "[store] part_size: expected 5M to 5G");
        goto fail;
    }
    if ((rc = cfg_get_size(c, "store", "download_chunk", 8 * MIB, &u, err)) != SNAP_OK)
        goto fail;
    if (u < 64 * 1024 || u > 1024 * MIB) {
        rc = err_set(err, SNAP_EUSAGE, 0, "[store] download_chunk: expected 64K to 1G");
        goto fail;
    }
    d->download_chunk = u;
    if ((rc = cfg_get_int(c, "store", "upload_concurrency", 4, 1, 64, &d->upload_conc, err)) ||
        (rc = cfg_get_int(c, "store", "download_concurrency", 4, 1, 64, &d->download_conc, err)) ||
        (rc = cfg_get_int(c, "store", "retries", 5, 0, 50, &d->retries, err)) ||
        (rc = cfg_get_int(c, "store", "timeout", 60, 1, 3600, &d->timeout, err)) ||
        (rc = cfg_get_int(c, "store", "list_max_keys", 1000, 1, 1000, &d->list_max_keys, err)) ||
        (rc = cfg_get_int(c, "store", "list_max_pages", 100000, 1, 10000000, &d->list_max_pages, err)))
        goto fail;

    if (opt(c, "create_only_check") != NULL) {
        const char *v = opt(c, "create_only_check");
        if (!strcmp(v, "if-none-match"))
            d->check = d->check_forced = S3_CHECK_IF_NONE_MATCH;
        else if (!strcmp(v, "head-then-put"))
            d->check = d->check_forced = S3_CHECK_HEAD_THEN_PUT;
        else if (strcmp(v, "auto") != 0) {
            rc = err_set(err, SNAP_EUSAGE, 0, "[store] create_only_check = %s: expected auto, "
                                              "if-none-match or head-then-put",
                         v);
            goto fail;
        }
    }
    if ((rc = check_bucket(d, err)) != SNAP_OK)
        goto fail;
    free(scheme);
    free(hostport);
    *out = d;
    return SNAP_OK;
fail:
    free(scheme);
    free(hostport);
    s3_free(d);
    return rc;
}

static void s3_free(void *drv)
{
    s3_drv *d = drv;

    if (d == NULL)
        return;
    http_pool_free(d->curls);
    if (d->secret_key != NULL)
        OPENSSL_cleanse(d->secret_key, strlen(d->secret_key));
    if (d->session_token != NULL)
        OPENSSL_cleanse(d->session_token, strlen(d->session_token));
    free(d->url);
    free(d->bucket);
    free(d->prefix);
    free(d->endpoint);
    free(d->base);
    free(d->host);
    free(d->path_base);
    free(d->region);
    free(d->access_key);
    free(d->secret_key);
    free(d->session_token);
    free(d->ca_file);
    free(d->storage_class);
    free(d->sse);
    free(d->sse_kms_key_id);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const char *s3_url(void *drv)
{
    return ((s3_drv *)drv)->url;
}

static const char *check_name(s3_check c)
{
    switch (c) {
    case S3_CHECK_IF_NONE_MATCH: return "if-none-match";
    case S3_CHECK_HEAD_THEN_PUT: return "head-then-put";
    default: return "unknown";
    }
}

static void s3_describe(void *drv, void *json_object)
{
    s3_drv *d = drv;
    json_t *o = json_object;
    snap_err e;

    /* Say which create-only check is in force: find out now if nothing did yet. */
    if (probe_create_only(d, &e) != SNAP_OK)
        log_warn(d->ctx, "%s: cannot tell which create-only check the server honours: %s",
                 d->url, e.msg);
    json_object_set_new(o, "driver", json_string("s3"));
    json_object_set_new(o, "endpoint", json_string(d->endpoint));
    json_object_set_new(o, "bucket", json_string(d->bucket));
    json_object_set_new(o, "prefix", json_string(d->prefix));
    json_object_set_new(o, "region", json_string(d->region));
    json_object_set_new(o, "addressing", json_string(d->path_style ? "path" : "virtual-hosted"));
    json_object_set_new(o, "tls_verify", json_boolean(d->tls_verify));
    json_object_set_new(o, "credentials", json_string(d->cred_source));
    json_object_set_new(o, "create_only_check", json_string(check_name(get_check(d))));
    json_object_set_new(o, "create_only_check_from",
                        json_string(d->check_forced != S3_CHECK_UNKNOWN ? "config" : "probe"));
    json_object_set_new(o, "part_size", json_integer((json_int_t)d->part_size));
    json_object_set_new(o, "upload_concurrency", json_integer(d->upload_conc));
    json_object_set_new(o, "download_concurrency", json_integer(d->download_conc));
    if (d->storage_class)
        json_object_set_new(o, "storage_class", json_string(d->storage_class));
    if (d->sse)
        json_object_set_new(o, "sse", json_string(d->sse));
    if (d->sse_kms_key_id)
        json_object_set_new(o, "sse_kms_key_id", json_string(d->sse_kms_key_id));
}

/* ---------------------------------------------------------------- writer */

typedef struct s3_writer s3_writer;

typedef struct s3_part {
    s3_writer *w;
    int num;
    unsigned char *buf;
    size_t len;
    pthread_t th;
    bool threaded;
    snap_rc rc;
    snap_err err;
    char etag[128];
} s3_part;

struct s3_writer {
    s3_drv *d;
    char *okey;
    unsigned flags;
    unsigned char *buf; /* the part being filled */
    size_t len, cap;
    char *upload_id;
    char *upload_query_fmt;
    s3_part **inflight; /* oldest first */
    size_t ninflight;
    char **etags;       /* of finished parts, by number - 1 */
    size_t netags;
    int nparts;         /* parts started */
    uint64_t total;
    unsigned char *spare; /* a full-size buffer back from a finished part */
};

static snap_rc s3_writer_open(void *drv, const char *key, unsigned flags, void **out,
                              snap_err *err)
{
    s3_drv *d = drv;
    s3_writer *w;
    snap_rc rc;

    if ((rc = check_key(key, err)) != SNAP_OK)
        return rc;
    w = xcalloc(1, sizeof *w);
    w->d = d;
    w->okey = okey_of(d, key);
    w->flags = flags;
    w->inflight = xcalloc((size_t)d->upload_conc, sizeof *w->inflight);
    *out = w;
    return SNAP_OK;
}

static void abort_upload(s3_drv *d, const char *okey, const char *upload_id);

/*
 * CreateMultipartUpload is the one request that is not idempotent: when an attempt
 * reached the server but its answer was lost, the retry made a second upload. Abort
 * every other upload of this key (one writer owns a key, so none is anyone else's).
 */
static void abort_twins(s3_writer *w)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploads", NULL}, {"prefix", w->okey}};
    char *query = sigv4_query(p, 2);
    s3_req q = {.method = "GET", .query = query};
    snap_err e;
    xmlDoc *doc = NULL;

    if (request(d, &q, 0, &e) == SNAP_OK) {
        doc = xml_parse(q.resp.p, q.resp.len);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        for (xmlNode *c = root ? root->children : NULL; c; c = c->next) {
            char key[1100], id[512];
            if (!xml_is(c, "Upload"))
                continue;
            xml_text(c, "Key", key, sizeof key);
            xml_text(c, "UploadId", id, sizeof id);
            if (strcmp(key, w->okey) == 0 && strcmp(id, w->upload_id) != 0) {
                log_debug(d->ctx, "aborting a duplicate upload of s3://%s/%s", d->bucket, key);
                abort_upload(d, key, id);
            }
        }
    }
    xmlFreeDoc(doc);
    req_done(&q);
    free(query);
}

static snap_rc create_upload(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploads", NULL}};
    char *query = sigv4_query(p, 1);
    s3_req q = {.method = "POST", .okey = w->okey, .query = query, .object_headers = true};
    snap_rc rc = request(d, &q, 0, err);
    xmlDoc *doc = NULL;

    if (rc == SNAP_OK) {
        doc = xml_parse(q.resp.p, q.resp.len);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (root != NULL && xml_is(root, "InitiateMultipartUploadResult"))
            w->upload_id = xml_text_dup(root, "UploadId");
        if (w->upload_id == NULL || w->upload_id[0] == '\0')
            rc = err_set(err, SNAP_EFAIL, 0, "s3 POST s3://%s/%s?uploads: no UploadId in the "
                                             "answer",
                         d->bucket, w->okey);
    }
    if (rc == SNAP_OK && q.attempts > 1)
        abort_twins(w);
    xmlFreeDoc(doc);
    req_done(&q);
    free(query);
    return rc;
}

static void *part_thread(void *arg)
{
    s3_part *p = arg;
    s3_writer *w = p->w;
    char num[16];
    snprintf(num, sizeof num, "%d", p->num);
    sigv4_param qp[] = {{"partNumber", num}, {"uploadId", w->upload_id}};
    char *query = sigv4_query(qp, 2);
    s3_req q = {.method = "PUT", .okey = w->okey, .query = query, .body = p->buf,
                .body_len = p->len};

    p->rc = request(w->d, &q, 0, &p->err);
    if (p->rc == SNAP_OK && q.etag[0] == '\0')
        p->rc = err_set(&p->err, SNAP_EFAIL, 0, "s3 PUT s3://%s/%s part %d: no ETag in the answer",
                        w->d->bucket, w->okey, p->num);
    snprintf(p->etag, sizeof p->etag, "%s", q.etag);
    req_done(&q);
    free(query);
    return NULL;
}

/* Waits for the oldest part in flight; keeps its ETag and its buffer. */
static snap_rc join_oldest(s3_writer *w, snap_err *err)
{
    s3_part *p = w->inflight[0];
    snap_rc rc;

    if (p->threaded)
        pthread_join(p->th, NULL);
    memmove(w->inflight, w->inflight + 1, (w->ninflight - 1) * sizeof *w->inflight);
    w->ninflight--;
    rc = p->rc;
    if (rc == SNAP_OK) {
        if ((size_t)p->num > w->netags) {
            w->etags = xrealloc(w->etags, (size_t)p->num * sizeof *w->etags);
            for (size_t i = w->netags; i < (size_t)p->num; i++)
                w->etags[i] = NULL;
            w->netags = (size_t)p->num;
        }
        w->etags[p->num - 1] = xstrdup(p->etag);
    } else if (err != NULL) {
        *err = p->err;
    }
    if (w->spare == NULL && p->len == w->d->part_size)
        w->spare = p->buf;
    else
        free(p->buf);
    free(p);
    return rc;
}

/* Hands the filled buffer to an upload thread; waits while too many are in flight. */
static snap_rc start_part(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    s3_part *p;
    snap_rc rc;

    if (w->upload_id == NULL && (rc = create_upload(w, err)) != SNAP_OK)
        return rc;
    if (w->nparts == S3_MAX_PARTS)
        return err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: more than %d parts; raise [store] "
                                           "part_size",
                       d->bucket, w->okey, S3_MAX_PARTS);
    p = xcalloc(1, sizeof *p);
    p->w = w;
    p->num = ++w->nparts;
    p->buf = w->buf;
    p->len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    p->threaded = pthread_create(&p->th, NULL, part_thread, p) == 0;
    if (!p->threaded)
        part_thread(p); /* no thread to be had: upload in this one */
    w->inflight[w->ninflight++] = p;
    /* At most upload_concurrency buffers: those in flight, then the one to fill. */
    while (w->ninflight >= (size_t)d->upload_conc)
        if ((rc = join_oldest(w, err)) != SNAP_OK)
            return rc;
    return SNAP_OK;
}

static snap_rc s3_write(void *wp, const void *buf, size_t len, snap_err *err)
{
    s3_writer *w = wp;
    const unsigned char *src = buf;
    size_t ps = (size_t)w->d->part_size;
    snap_rc rc;

    while (len > 0) {
        if (w->len == ps && (rc = start_part(w, err)) != SNAP_OK)
            return rc;
        if (w->cap < ps && w->len + len > w->cap) {
            if (w->spare != NULL && w->len == 0) {
                free(w->buf);
                w->buf = w->spare;
                w->spare = NULL;
                w->cap = ps;
            } else {
                size_t cap = w->cap ? w->cap : 64 * 1024;
                while (cap < w->len + len && cap < ps)
                    cap *= 2;
                if (cap > ps)
                    cap = ps;
                w->buf = xrealloc(w->buf, cap);
                w->cap = cap;
            }
        }
        size_t n = ps - w->len < len ? ps - w->len : len;
        if (n > w->cap - w->len)
            n = w->cap - w->len;
        memcpy(w->buf + w->len, src, n);
        w->len += n;
        w->total += n;
        src += n;
        len -= n;
    }
    return SNAP_OK;
}

static void writer_free(s3_writer *w)
{
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    for (size_t i = 0; i < w->netags; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->inflight);
    free(w->buf);
    free(w->spare);
    free(w->upload_id);
    free(w->okey);
    free(w);
}

static void abort_upload(s3_drv *d, const char *okey, const char *upload_id)
{
    sigv4_param p[] = {{"uploadId", upload_id}};
    char *query = sigv4_query(p, 1);
    s3_req q = {.method = "DELETE", .okey = okey, .query = query, .cleanup = true};
    snap_err e;

    if (request(d, &q, 404, &e) != SNAP_OK)
        log_warn(d->ctx, "cannot abort the upload of s3://%s/%s: %s; `snap gc` removes it later",
                 d->bucket, okey, e.msg);
    req_done(&q);
    free(query);
}

static char *complete_body(s3_writer *w)
{
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = xmlNewNode(NULL, BAD_CAST "CompleteMultipartUpload");
    xmlChar *mem = NULL;
    int size = 0;
    char num[24], *out;

    xmlDocSetRootElement(doc, root);
    for (size_t i = 0; i < w->netags; i++) {
        xmlNode *part = xmlNewChild(root, NULL, BAD_CAST "Part", NULL);
        snprintf(num, sizeof num, "%zu", i + 1);
        xmlNewTextChild(part, NULL, BAD_CAST "PartNumber", BAD_CAST num);
        xmlNewTextChild(part, NULL, BAD_CAST "ETag", BAD_CAST w->etags[i]);
    }
    xmlDocDumpMemory(doc, &mem, &size);
    out = xstrdup((const char *)mem);
    xmlFree(mem);
    xmlFreeDoc(doc);
    return out;
}

static snap_rc complete_upload(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploadId", w->upload_id}};
    char *query = sigv4_query(p, 1);
    char *body = complete_body(w);
    s3_req q = {.method = "POST", .okey = w->okey, .query = query, .body = body,
                .body_len = strlen(body), .error_in_200 = true};
    snap_rc rc = request(d, &q, 0, err);

    if (rc == SNAP_ENOTFOUND && q.attempts > 1 && !strcmp(q.err_code, "NoSuchUpload")) {
        /* An earlier attempt completed it and its answer was lost: the object says so. */
        uint64_t size = 0;
        snap_err e2;
        if (head_object(d, w->okey, &size, NULL, 0, &e2) == SNAP_OK && size == w->total)
            rc = SNAP_OK;
    }
    req_done(&q);
    free(query);
    free(body);
    return rc;
}

static snap_rc s3_commit(void *wp, snap_err *err)
{
    s3_writer *w = wp;
    s3_drv *d = w->d;
    snap_rc rc = SNAP_OK;

    if (w->upload_id == NULL) {
        /* Smaller than a part: one PUT. */
        if (w->flags & STG_CREATE_ONLY)
            rc = put_create_only(d, w->okey, w->buf, w->len, err);
        else
            rc = put_object(d, w->okey, w->buf, w->len, false, NULL, err);
        writer_free(w);
        return rc;
    }
    if (w->len > 0 && (rc = start_part(w, err)) != SNAP_OK)
        goto fail;
    while (w->ninflight > 0)
        if ((rc = join_oldest(w, err)) != SNAP_OK)
            goto fail;
    for (size_t i = 0; i < w->netags; i++)
        if (w->etags[i] == NULL) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: part %zu went missing", d->bucket,
                         w->okey, i + 1);
            goto fail;
        }
    if (w->flags & STG_CREATE_ONLY) {
        /* Completing is not conditional on every server: check just before, the weak way. */
        rc = head_object(d, w->okey, NULL, NULL, 0, err);
        if (rc == SNAP_OK) {
            rc = conflict(d, w->okey, err);
            goto fail;
        }
        if (rc != SNAP_ENOTFOUND)
            goto fail;
    }
    if ((rc = complete_upload(w, err)) != SNAP_OK)
        goto fail;
    writer_free(w);
    return SNAP_OK;
fail:
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    abort_upload(d, w->okey, w->upload_id);
    writer_free(w);
    return rc;
}

static void s3_abort(void *wp)
{
    s3_writer *w = wp;

    if (w == NULL)
        return;
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    if (w->upload_id != NULL)
        abort_upload(w->d, w->okey, w->upload_id);
    writer_free(w);
}

/* ---------------------------------------------------------------- reader */

typedef struct s3_reader s3_reader;

typedef struct s3_chunk {
    s3_reader *r;
    uint64_t start;
    size_t len, got;
    unsigned char *buf;
    char range[64];
    pthread_t th;
    bool threaded;
    bool first;     /* the reader's first chunk, which learns the size and the ETag */
    uint64_t total; /* the object's size, known once the first chunk is in */
    long status;
    snap_rc rc;
    snap_err err;
} s3_chunk;

struct s3_reader {
    s3_drv *d;
    char *okey;
    char etag[128];
    uint64_t next, end; /* bytes [next, end) are still to be fetched */
    s3_chunk **q;       /* fetched or in flight, oldest first */
    size_t nq;
    s3_chunk *cur;      /* being consumed */
    size_t cur_off;
};

static size_t chunk_sink(const void *p, size_t n, void *arg)
{
    s3_chunk *c = arg;

    if (n > c->len - c->got)
        return 0; /* more than asked for: fail the transfer rather than guess */
    memcpy(c->buf + c->got, p, n);
    c->got += n;
    return n;
}

/* Before each attempt: ask only for what has not arrived (resume after a broken body). */
static void chunk_rearm(s3_req *q, void *arg)
{
    s3_chunk *c = arg;
    s3_reader *r = c->r;

    if (c->first && q->attempts > 1) {
        /* What the broken attempt told: the object's size, and the version to stick to. */
        if (q->have_total && c->start + c->len > q->range_total && q->range_total > c->start)
            c->len = (size_t)(q->range_total - c->start);
        if (r->etag[0] == '\0' && q->etag[0] != '\0') {
            snprintf(r->etag, sizeof r->etag, "%s", q->etag);
            q->if_match = r->etag;
        }
    }
    snprintf(c->range, sizeof c->range, "bytes=%llu-%llu",
             (unsigned long long)(c->start + c->got),
             (unsigned long long)(c->start + c->len - 1));
    q->range = c->range;
}

static void *chunk_thread(void *arg)
{
    s3_chunk *c = arg;
    s3_reader *r = c->r;
    s3_req q = {.method = "GET", .okey = r->okey, .if_match = r->etag[0] ? r->etag : NULL,
                .sink = chunk_sink, .sink_arg = c, .before_attempt = chunk_rearm};

    c->rc = request(r->d, &q, 0, &c->err);
    c->status = q.curl_rc == CURLE_OK ? q.status : 0;
    if (c->first && c->rc == SNAP_OK) {
        if (q.have_total)
            c->total = q.range_total;
        else if (q.status == 200 && q.have_length)
            c->total = q.content_length; /* the whole object, Range or not */
        else
            c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: no object size in the "
                                                    "answer",
                            r->d->bucket, r->okey);
        if (c->start + c->len > c->total)
            c->len = c->total > c->start ? (size_t)(c->total - c->start) : 0;
        if (r->etag[0] == '\0')
            snprintf(r->etag, sizeof r->etag, "%s", q.etag);
    }
    if (c->rc == SNAP_ECONFLICT)
        c->rc = err_set(&c->err, SNAP_EVERIFY, 0, "s3://%s/%s changed while it was read",
                        r->d->bucket, r->okey);
    else if (c->rc == SNAP_OK && (q.status != 206 && !(q.status == 200 && c->start == 0)))
        c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: answered %ld to a ranged "
                                                "request",
                        r->d->bucket, r->okey, q.status);
    else if (c->rc == SNAP_OK && c->got != c->len)
        c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: %zu bytes of %zu arrived",
                        r->d->bucket, r->okey, c->got, c->len);
    req_done(&q);
    return NULL;
}

static s3_chunk *new_chunk(s3_reader *r, uint64_t start, uint64_t len)
{
    s3_chunk *c = xcalloc(1, sizeof *c);

    c->r = r;
    c->start = start;
    c->len = (size_t)len;
    c->buf = xmalloc(c->len);
    return c;
}

/* Starts fetches until download_concurrency are queued or the range is exhausted. */
static void fill_queue(s3_reader *r)
{
    while (r->nq < (size_t)r->d->download_conc && r->next < r->end) {
        uint64_t n = r->end - r->next;
        s3_chunk *c;

        if (n > r->d->download_chunk)
            n = r->d->download_chunk;
        c = new_chunk(r, r->next, n);
        r->next += n;
        c->threaded = pthread_create(&c->th, NULL, chunk_thread, c) == 0;
        if (!c->threaded)
            chunk_thread(c);
        r->q[r->nq++] = c;
    }
}

static void chunk_free(s3_chunk *c)
{
    if (c == NULL)
        return;
    if (c->threaded)
        pthread_join(c->th, NULL);
    free(c->buf);
    free(c);
}

static void s3_reader_free(void *rp)
{
    s3_reader *r = rp;

    if (r == NULL)
        return;
    chunk_free(r->cur);
    for (size_t i = 0; i < r->nq; i++)
        chunk_free(r->q[i]);
    free(r->q);
    free(r->okey);
    free(r);
}

static snap_rc s3_reader_open(void *drv, const char *key, uint64_t off, uint64_t len, void **out,
                              snap_err *err)
{
    s3_drv *d = drv;
    s3_reader *r;
    s3_chunk *first;
    uint64_t size = 0;
    snap_rc rc;

    if ((rc = check_key(key, err)) != SNAP_OK)
        return rc;
    r = xcalloc(1, sizeof *r);
    r->d = d;
    r->okey = okey_of(d, key);
    r->q = xcalloc((size_t)d->download_conc, sizeof *r->q);

    /* The first range also tells the size and the ETag: no HEAD for small objects. */
    first = new_chunk(r, off, len != 0 && len < d->download_chunk ? len : d->download_chunk);
    first->first = true;
    chunk_thread(first);
    if (first->rc == SNAP_OK) {
        r->end = len == 0 || len > first->total - off ? first->total : off + len;
        r->next = off + first->len;
        if (first->len < d->download_chunk / 2) /* a small object: give back the rest */
            first->buf = xrealloc(first->buf, first->len);
        r->q[r->nq++] = first;
        fill_queue(r);
        *out = r;
        return SNAP_OK;
    }
    if (first->status != 416) { /* 416: empty, or off past the end: HEAD tells which */
        rc = first->rc;
        *err = first->err;
        chunk_free(first);
        goto fail;
    }
    chunk_free(first);
    r->etag[0] = '\0';
    if ((rc = head_object(d, r->okey, &size, r->etag, sizeof r->etag, err)) != SNAP_OK)
        goto fail;
    if (off > size) {
        rc = err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: offset %llu is past its end (%llu bytes)",
                     d->bucket, r->okey, (unsigned long long)off, (unsigned long long)size);
        goto fail;
    }
    r->next = off;
    r->end = len == 0 || len > size - off ? size : off + len;
    fill_queue(r);
    *out = r;
    return SNAP_OK;
fail:
    s3_reader_free(r);
    return rc;
}

static snap_rc s3_read(void *rp, void *buf, size_t cap, size_t *got, snap_err *err)
{
    s3_reader *r = rp;
    size_t n;

    *got = 0;
    if (r->cur != NULL && r->cur->rc != SNAP_OK) { /* a failed read stays failed */
        *err = r->cur->err;
        return r->cur->rc;
    }
    if (r->cur != NULL && r->cur_off == r->cur->len) {
        chunk_free(r->cur);
        r->cur = NULL;
    }
    if (r->cur == NULL) {
        if (r->nq == 0)
            return SNAP_OK; /* the end */
        r->cur = r->q[0];
        memmove(r->q, r->q + 1, (r->nq - 1) * sizeof *r->q);
        r->nq--;
        r->cur_off = 0;
        if (r->cur->threaded) {
            pthread_join(r->cur->th, NULL);
            r->cur->threaded = false;
        }
        if (r->cur->rc != SNAP_OK) {
            *err = r->cur->err;
            return r->cur->rc;
        }
        fill_queue(r); /* keep the window full while this chunk is consumed */
    }
    n = r->cur->len - r->cur_off;
    if (n > cap)
        n = cap;
    memcpy(buf, r->cur->buf + r->cur_off, n);
    r->cur_off += n;
    *got = n;
    return SNAP_OK;
}

/* ---------------------------------------------------------------- stat, list, delete */

static snap_rc s3_stat(void *drv, const char *key, uint64_t *size, snap_err *err)
{
    s3_drv *d = drv;
    char *okey;
    snap_rc rc;

    if ((rc = check_key(key, err)) != SNAP_OK)
        return rc;
    okey = okey_of(d, key);
    rc = head_object(d, okey, size, NULL, 0, err);
    free(okey);
    return rc;
}

/*
 * Listings are read as they arrive, with libxml2's SAX parser: one page's entries are
 * kept (at most max-keys of them, each field bounded) and handed out once the page is
 * complete, so memory does not grow with the listing, and a retried page is not handed
 * out twice.
 */
#define LIST_FIELD_MAX 1100         /* an S3 key is at most 1024 bytes, a token far less */
#define LIST_PAGE_BYTES (64 * MIB)  /* no page of at most 1000 keys is this large */

enum { LF_NONE, LF_KEY, LF_SIZE, LF_MTIME, LF_TRUNCATED, LF_TOKEN };

typedef struct list_entry {
    char *key;
    uint64_t size;
    time_t mtime;
} list_entry;

typedef struct list_page {
    xmlParserCtxtPtr xml;
    int depth, field;
    bool in_contents, root_ok, bad;
    const char *why; /* what was wrong with the page, when bad */
    char text[LIST_FIELD_MAX + 1];
    size_t tlen;
    char key[LIST_FIELD_MAX + 1], size[32], mtime[64];
    char truncated[16], token[LIST_FIELD_MAX + 1];
    list_entry *v;
    size_t n, max;
    size_t bytes;
} list_page;

static void page_bad(list_page *pg, const char *why)
{
    if (!pg->bad)
        pg->why = why;
    pg->bad = true;
}

static void list_start(void *ctx, const xmlChar *name, const xmlChar *prefix, const xmlChar *uri, int nns,
                       const xmlChar **ns, int nattr, int ndef, const xmlChar **attrs)
{
    list_page *pg = ctx;
    const char *n = (const char *)name;

    (void)prefix, (void)uri, (void)nns, (void)ns, (void)nattr, (void)ndef, (void)attrs;
    pg->depth++;
    pg->field = LF_NONE;
    pg->tlen = 0;
    if (pg->depth == 1) {
        pg->root_ok = strcmp(n, "ListBucketResult") == 0;
    } else if (pg->depth == 2 && strcmp(n, "Contents") == 0) {
        pg->in_contents = true;
        pg->key[0] = pg->size[0] = pg->mtime[0] = '\0';
    } else if (pg->depth == 2) {
        pg->field = strcmp(n, "IsTruncated") == 0             ? LF_TRUNCATED
                    : strcmp(n, "NextContinuationToken") == 0 ? LF_TOKEN
                                                              : LF_NONE;
    } else if (pg->depth == 3 && pg->in_contents) {
        pg->field = strcmp(n, "Key") == 0            ? LF_KEY
                    : strcmp(n, "Size") == 0         ? LF_SIZE
                    : strcmp(n, "LastModified") == 0 ? LF_MTIME
                                                     : LF_NONE;
    }
}

static void list_chars(void *ctx, const xmlChar *ch, int len)
{
    list_page *pg = ctx;

    if (pg->field == LF_NONE || len <= 0)
        return;
    if (pg->tlen + (size_t)len > LIST_FIELD_MAX) {
        page_bad(pg, "a key or token longer than S3 allows");
        return;
    }
    memcpy(pg->text + pg->tlen, ch, (size_t)len);
    pg->tlen += (size_t)len;
}

/* A short field, cut to fit: what is longer than these is not a size, date or boolean. */
static void copy_field(char *out, size_t cap, const char *text, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;

    memcpy(out, text, n);
    out[n] = '\0';
}

static void list_end(void *ctx, const xmlChar *name, const xmlChar *prefix, const xmlChar *uri)
{
    list_page *pg = ctx;

    (void)name, (void)prefix, (void)uri;
    pg->text[pg->tlen] = '\0';
    switch (pg->field) {
    case LF_KEY: memcpy(pg->key, pg->text, pg->tlen + 1); break;
    case LF_SIZE: copy_field(pg->size, sizeof pg->size, pg->text, pg->tlen); break;
    case LF_MTIME: copy_field(pg->mtime, sizeof pg->mtime, pg->text, pg->tlen); break;
    case LF_TRUNCATED: copy_field(pg->truncated, sizeof pg->truncated, pg->text, pg->tlen); break;
    case LF_TOKEN: memcpy(pg->token, pg->text, pg->tlen + 1); break;
    default: break;
    }
    pg->field = LF_NONE;
    pg->tlen = 0;
    if (pg->depth == 2 && pg->in_contents) {
        pg->in_contents = false;
        if (pg->n >= pg->max) {
            page_bad(pg, "more keys in one page than asked for");
        } else {
            list_entry *e = &pg->v[pg->n++];
            e->key = xstrdup(pg->key);
            e->size = strtoull(pg->size, NULL, 10);
            e->mtime = parse_s3_time(pg->mtime);
        }
    }
    pg->depth--;
}

static void page_clear(list_page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        free(pg->v[i].key);
    pg->n = 0;
    if (pg->xml != NULL) {
        xmlFreeParserCtxt(pg->xml);
        pg->xml = NULL;
    }
}

/* Before each attempt of a page: a fresh parser, no entries. */
static void page_rearm(s3_req *q, void *arg)
{
    xmlSAXHandler sax; /* the parser keeps its own copy */
    list_page *pg = arg;
    size_t max = pg->max;
    list_entry *v = pg->v;

    (void)q;
    page_clear(pg);
    memset(pg, 0, sizeof *pg);
    pg->max = max;
    pg->v = v;
    memset(&sax, 0, sizeof sax); /* no DTD, no entities: only elements and text */
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = list_start;
    sax.endElementNs = list_end;
    sax.characters = list_chars;
    pg->xml = xmlCreatePushParserCtxt(&sax, pg, NULL, 0, NULL);
    if (pg->xml == NULL)
        abort();
    xmlCtxtUseOptions(pg->xml, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static size_t page_sink(const void *p, size_t n, void *arg)
{
    list_page *pg = arg;

    pg->bytes += n;
    if (pg->bytes > LIST_PAGE_BYTES || n > INT32_MAX) {
        page_bad(pg, "a page larger than any listing");
        return 0;
    }
    if (!pg->bad && xmlParseChunk(pg->xml, p, (int)n, 0) != 0)
        page_bad(pg, "not XML");
    return n;
}

/* The continuation tokens seen in one listing, as 64-bit hashes (open addressing). */
typedef struct token_set {
    uint64_t *v;
    size_t cap, n;
} token_set;

/* Adds the token; false when it was there already. */
static bool token_set_add(token_set *t, const char *tok)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *c = (const unsigned char *)tok; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    h |= 1; /* 0 marks a free slot */
    if (2 * (t->n + 1) > t->cap) {
        token_set bigger = {xcalloc(t->cap ? t->cap * 2 : 64, sizeof(uint64_t)), t->cap ? t->cap * 2 : 64, 0};
        for (size_t i = 0; i < t->cap; i++)
            if (t->v[i] != 0) {
                size_t j = (size_t)(t->v[i] % bigger.cap);
                while (bigger.v[j] != 0)
                    j = (j + 1) % bigger.cap;
                bigger.v[j] = t->v[i];
                bigger.n++;
            }
        free(t->v);
        *t = bigger;
    }
    for (size_t j = (size_t)(h % t->cap);; j = (j + 1) % t->cap) {
        if (t->v[j] == h)
            return false;
        if (t->v[j] == 0) {
            t->v[j] = h;
            t->n++;
            return true;
        }
    }
}

/* Ends a page and hands its entries under prefix to fn; *more and *token say what follows. */
static snap_rc page_deliver(list_page *pg, const char *bucket, const char *prefix, stg_list_fn fn, void *arg,
                            bool *go_on, bool *more, char **token, snap_err *err)
{
    size_t plen = strlen(prefix);

    *more = false;
    if (!pg->bad && xmlParseChunk(pg->xml, NULL, 0, 1) != 0)
        page_bad(pg, "not XML");
    if (pg->bad || !pg->root_ok)
        return err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: unreadable answer (%s)", bucket,
                       pg->bad ? pg->why : "not a ListBucketResult");
    for (size_t i = 0; i < pg->n && *go_on; i++) {
        stg_entry e;
        if (strncmp(pg->v[i].key, prefix, plen) != 0)
            continue;
        e.key = pg->v[i].key + plen;
        e.size = pg->v[i].size;
        e.mtime = pg->v[i].mtime;
        *go_on = fn(&e, arg);
    }
    free(*token);
    *token = xstrdup(pg->token);
    *more = strcmp(pg->truncated, "true") == 0;
    if (*more && (*token)[0] == '\0') {
        *more = false;
        return err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: truncated listing without a "
                                           "continuation token", bucket);
    }
    return SNAP_OK;
}

snap_rc s3_parse_list_int(const char *bucket, const char *prefix, const char *body, size_t len,
                          stg_list_fn fn, void *arg, bool *go_on, bool *more, char **token, snap_err *err)
{
    list_page pg = {.max = 1000};
    snap_rc rc;

    pg.v = xcalloc(pg.max, sizeof *pg.v);
    page_rearm(NULL, &pg);
    page_sink(body, len, &pg);
    rc = page_deliver(&pg, bucket, prefix, fn, arg, go_on, more, token, err);
    page_clear(&pg);
    free(pg.v);
    return rc;
}

static snap_rc s3_list(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err)
{
    s3_drv *d = drv;
    char *full = xasprintf("%s%s", d->prefix, prefix ? prefix : "");
    char *token = NULL, max[16];
    list_page pg = {.max = (size_t)d->list_max_keys};
    token_set seen = {0};
    snap_rc rc = SNAP_OK;
    bool more = true, go_on = true;
    long pages = 0;

    pg.v = xcalloc(pg.max, sizeof *pg.v);
    snprintf(max, sizeof max, "%ld", d->list_max_keys);
    while (more && go_on) {
        sigv4_param p[4] = {{"list-type", "2"}, {"prefix", full}, {"max-keys", max}};
        size_t np = 3;
        if (interrupted(d)) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            break;
        }
        if (++pages > d->list_max_pages) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: the listing goes on past %ld pages",
                         d->bucket, d->list_max_pages);
            err_hint(err, "a store this large needs a larger [store] list_max_pages; otherwise the server "
                          "keeps saying there is more");
            break;
        }
        if (token != NULL)
            p[np++] = (sigv4_param){"continuation-token", token};
        char *query = sigv4_query(p, np);
        s3_req q = {.method = "GET", .query = query, .sink = page_sink, .sink_arg = &pg,
                    .before_attempt = page_rearm};

        rc = request(d, &q, 0, err);
        free(query);
        req_done(&q);
        if (rc != SNAP_OK)
            break;
        rc = page_deliver(&pg, d->bucket, d->prefix, fn, arg, &go_on, &more, &token, err);
        if (rc != SNAP_OK)
            break;
        if (more && !token_set_add(&seen, token)) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: the server sent the same "
                                             "continuation token twice",
                         d->bucket);
            err_hint(err, "the listing would never end: check the S3 endpoint or the proxy in front of it");
            more = false;
        }
    }
    page_clear(&pg);
    free(pg.v);
    free(seen.v);
    free(token);
    free(full);
    return rc;
}

static snap_rc s3_remove(void *drv, const char *key, snap_err *err)
{
    s3_drv *d = drv;
    char *okey;
    snap_rc rc;

    if ((rc = check_key(key, err)) != SNAP_OK)
        return rc;
    okey = okey_of(d, key);
    rc = delete_object(d, okey, err);
    free(okey);
    return rc;
}

/* DeleteObjects of up to 1000 keys, quiet: the answer lists only failures. */
static snap_rc delete_batch(s3_drv *d, const char *const *keys, size_t n, snap_err *err)
{
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = xmlNewNode(NULL, BAD_CAST "Delete");
    xmlChar *mem = NULL;
    int size = 0;
    char md5[25];
    sigv4_param p[] = {{"delete", NULL}};
    char *query = sigv4_query(p, 1);
    snap_rc rc;

    xmlDocSetRootElement(doc, root);
    xmlNewTextChild(root, NULL, BAD_CAST "Quiet", BAD_CAST "true");
    for (size_t i = 0; i < n; i++) {
        char *okey = okey_of(d, keys[i]);
        xmlNode *o = xmlNewChild(root, NULL, BAD_CAST "Object", NULL);
        xmlNewTextChild(o, NULL, BAD_CAST "Key", BAD_CAST okey);
        free(okey);
    }
    xmlDocDumpMemory(doc, &mem, &size);
    xmlFreeDoc(doc);
    md5_base64(mem, (size_t)size, md5, NULL);

    s3_req q = {.method = "POST", .query = query, .body = mem, .body_len = (size_t)size,
                .content_md5 = md5};
    rc = request(d, &q, 0, err);
    if (rc == SNAP_OK) {
        xmlDoc *ans = xml_parse(q.resp.p, q.resp.len);
        xmlNode *r = ans ? xmlDocGetRootElement(ans) : NULL;
        xmlNode *e = r ? xml_child(r, "Error") : NULL;
        if (e != NULL) {
            char key[1100], code[64], msg[256];
            xml_text(e, "Key", key, sizeof key);
            xml_text(e, "Code", code, sizeof code);
            xml_text(e, "Message", msg, sizeof msg);
            rc = err_set(err, strcmp(code, "AccessDenied") ? SNAP_EFAIL : SNAP_EUNREACH, 0,
                         "s3 DELETE s3://%s/%s: %s%s%s", d->bucket, key, code, msg[0] ? ": " : "",
                         msg);
        }
        xmlFreeDoc(ans);
    }
    req_done(&q);
    xmlFree(mem);
    free(query);
    return rc;
}

static snap_rc s3_remove_many(void *drv, const char *const *keys, size_t n, snap_err *err)
{
    snap_rc rc;

    for (size_t i = 0; i < n; i++)
        if ((rc = check_key(keys[i], err)) != SNAP_OK)
            return rc;
    for (size_t i = 0; i < n; i += S3_DELETE_BATCH) {
        size_t m = n - i < S3_DELETE_BATCH ? n - i : S3_DELETE_BATCH;
        if ((rc = delete_batch(drv, keys + i, m, err)) != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

typedef struct probe_sweep {
    s3_drv *d;
    time_t now;
    int64_t max_age;
    bool dry_run;
    unsigned *n;
} probe_sweep;

static bool sweep_probe(const stg_entry *e, void *arg)
{
    probe_sweep *ps = arg;
    char *okey;

    if (e->mtime == 0 || ps->now - e->mtime < ps->max_age)
        return true;
    (*ps->n)++;
    if (!ps->dry_run) {
        okey = okey_of(ps->d, e->key);
        delete_object(ps->d, okey, NULL);
        free(okey);
    }
    return true;
}

/*
 * Aborts multipart uploads under the prefix older than max_age (ListMultipartUploads),
 * and removes create-only probes a killed process left behind.
 */
static snap_rc s3_cleanup(void *drv, int64_t max_age, bool dry_run, unsigned *n, snap_err *err)
{
    s3_drv *d = drv;
    char *key_marker = NULL, *id_marker = NULL;
    time_t now = time(NULL);
    snap_rc rc = SNAP_OK;
    bool more = true;

    *n = 0;
    while (more) {
        sigv4_param p[4] = {{"uploads", NULL}, {"prefix", d->prefix}};
        size_t np = 2;
        if (key_marker != NULL && key_marker[0]) {
            p[np++] = (sigv4_param){"key-marker", key_marker};
            p[np++] = (sigv4_param){"upload-id-marker", id_marker};
        }
        char *query = sigv4_query(p, np);
        s3_req q = {.method = "GET", .query = query};
        xmlDoc *doc;
        xmlNode *root;

        rc = request(d, &q, 0, err);
        free(query);
        if (rc != SNAP_OK) {
            req_done(&q);
            break;
        }
        doc = xml_parse(q.resp.p, q.resp.len);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        req_done(&q);
        if (root == NULL || !xml_is(root, "ListMultipartUploadsResult")) {
            xmlFreeDoc(doc);
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?uploads: unreadable answer",
                         d->bucket);
            break;
        }
        for (xmlNode *c = root->children; c; c = c->next) {
            char key[1100], id[512], init[64];
            if (!xml_is(c, "Upload"))
                continue;
            xml_text(c, "Key", key, sizeof key);
            xml_text(c, "UploadId", id, sizeof id);
            xml_text(c, "Initiated", init, sizeof init);
            time_t t = parse_s3_time(init);
            if (t == 0 || now - t < max_age)
                continue; /* young, or of unknown age: it may be a running snap's */
            (*n)++;
            if (!dry_run) {
                log_debug(d->ctx, "aborting the stale upload of s3://%s/%s", d->bucket, key);
                abort_upload(d, key, id);
            }
        }
        char trunc[16];
        xml_text(root, "IsTruncated", trunc, sizeof trunc);
        free(key_marker);
        free(id_marker);
        key_marker = xml_text_dup(root, "NextKeyMarker");
        id_marker = xml_text_dup(root, "NextUploadIdMarker");
        more = strcmp(trunc, "true") == 0 && key_marker[0] != '\0';
        xmlFreeDoc(doc);
    }
    free(key_marker);
    free(id_marker);
    if (rc == SNAP_OK) {
        probe_sweep ps = {d, now, max_age, dry_run, n};
        rc = s3_list(d, ".create-only-probe-", sweep_probe, &ps, err);
    }
    return rc;
}

const stg_driver stg_s3_driver = {
    .scheme = "s3",
    .features = STG_FEAT_RANGE | STG_FEAT_CREATE_ONLY,
    .open = s3_open,
    .free = s3_free,
    .url = s3_url,
    .describe = s3_describe,
    .writer_open = s3_writer_open,
    .write = s3_write,
    .commit = s3_commit,
    .abort = s3_abort,
    .reader_open = s3_reader_open,
    .read = s3_read,
    .reader_free = s3_reader_free,
    .stat = s3_stat,
    .list = s3_list,
    .remove = s3_remove,
    .remove_many = s3_remove_many,
    .cleanup = s3_cleanup,
};
