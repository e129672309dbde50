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
#include "s3_int.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/* libxml2 wants its global set-up done once, before any thread uses it (libcurl's is
 * http_global_init's). */
static void global_init(void)
{
    xmlInitParser();
}

/* ---------------------------------------------------------------- simple object calls */

snap_rc s3_head_object(s3_drv *d, const char *okey, uint64_t *size, char *etag, size_t cap,
                       snap_err *err)
{
    s3_req q = {.method = "HEAD", .okey = okey};
    snap_rc rc = s3_request(d, &q, 0, err);

    if (rc == SNAP_OK) {
        if (size != NULL)
            *size = q.content_length;
        if (etag != NULL)
            snprintf(etag, cap, "%s", q.etag);
    }
    s3_req_done(&q);
    return rc;
}

snap_rc s3_put_object(s3_drv *d, const char *okey, const void *buf, size_t len, bool if_none_match,
                      const char *if_match, int *attempts, long *status, snap_err *err)
{
    char md5[25];
    s3_req q = {.method = "PUT", .okey = okey, .body = buf, .body_len = len, .content_md5 = md5,
                .if_none_match = if_none_match, .if_match = if_match, .object_headers = true};
    snap_rc rc;

    s3_md5(buf ? buf : "", len, md5, NULL);
    rc = s3_request(d, &q, 0, err);
    if (attempts != NULL)
        *attempts = q.attempts;
    if (status != NULL)
        *status = q.status;
    s3_req_done(&q);
    return rc;
}

static snap_rc s3_delete_object(s3_drv *d, const char *okey, snap_err *err)
{
    s3_req q = {.method = "DELETE", .okey = okey};
    snap_rc rc = s3_request(d, &q, 404, err);

    if (rc == SNAP_OK && q.status == 404 && !strcmp(q.err_code, "NoSuchBucket"))
        rc = s3_fail(d, &q, err);
    s3_req_done(&q);
    return rc;
}

/* GET of a whole object into memory, at most max bytes; its ETag into etag when not NULL. */
static snap_rc s3_get_small(s3_drv *d, const char *okey, size_t max, util_buf *out, char etag[128],
                            snap_err *err)
{
    s3_req q = {.method = "GET", .okey = okey};
    snap_rc rc = s3_request(d, &q, 0, err);

    if (rc == SNAP_OK && q.resp.len > max)
        rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: larger than %zu bytes", d->bucket,
                     okey, max);
    if (rc == SNAP_OK) {
        *out = q.resp;
        memset(&q.resp, 0, sizeof q.resp);
        if (etag != NULL)
            snprintf(etag, 128, "%s", q.etag);
    }
    s3_req_done(&q);
    return rc;
}

/* ---------------------------------------------------------------- create-only check */

/* A plain PUT with If-None-Match: *, without the object options (storage class, SSE). */
static snap_rc probe_put(s3_drv *d, const char *okey, const char *body, long *status,
                         snap_err *err)
{
    s3_req q = {.method = "PUT", .okey = okey, .body = body, .body_len = strlen(body),
                .if_none_match = true};
    snap_rc rc = s3_request(d, &q, 0, err);

    *status = q.curl_rc == CURLE_OK ? q.status : 0;
    s3_req_done(&q);
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
        s3_delete_object(d, okey, NULL);
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

static s3_check s3_get_check(s3_drv *d)
{
    s3_check c;

    pthread_mutex_lock(&d->lock);
    c = d->check;
    pthread_mutex_unlock(&d->lock);
    return c;
}

snap_rc s3_conflict(s3_drv *d, const char *okey, snap_err *err)
{
    err_set(err, SNAP_ECONFLICT, 0, "s3://%s/%s already exists", d->bucket, okey);
    return SNAP_ECONFLICT;
}

/* The weaker check after a write: our bytes are there, or SNAP_ECONFLICT. */
static snap_rc s3_check_ours(s3_drv *d, const char *okey, const void *buf, size_t len, snap_err *err)
{
    util_buf back = {0};
    snap_rc rc = s3_get_small(d, okey, 2 * len + 65536, &back, NULL, err);

    if (rc == SNAP_OK && (back.len != len || (len > 0 && memcmp(back.p, buf, len) != 0)))
        rc = err_set(err, SNAP_ECONFLICT, 0,
                     "s3://%s/%s was written by another writer at the same time", d->bucket, okey);
    util_buf_free(&back);
    return rc;
}

/* A create-only PUT of a whole object. */
snap_rc s3_put_create_only(s3_drv *d, const char *okey, const void *buf, size_t len,
                           snap_err *err)
{
    snap_rc rc;
    int attempts = 0;
    char md5hex[33], etag[128];

    if ((rc = probe_create_only(d, err)) != SNAP_OK)
        return rc;
    s3_md5(buf ? buf : "", len, NULL, md5hex);

    if (s3_get_check(d) == S3_CHECK_IF_NONE_MATCH) {
        rc = s3_put_object(d, okey, buf, len, true, NULL, &attempts, NULL, err);
        if (rc == SNAP_ECONFLICT && attempts > 1) {
            /* An earlier attempt may have landed and lost its answer: is it ours? */
            snap_err e2;
            if (s3_head_object(d, okey, NULL, etag, sizeof etag, &e2) == SNAP_OK &&
                strlen(etag) == 34 && strncmp(etag + 1, md5hex, 32) == 0)
                return SNAP_OK;
        }
        if (rc == SNAP_ECONFLICT)
            return s3_conflict(d, okey, err);
        return rc;
    }

    /* The weaker check: nothing there before, our bytes there after. */
    rc = s3_head_object(d, okey, NULL, NULL, 0, err);
    if (rc == SNAP_OK)
        return s3_conflict(d, okey, err);
    if (rc != SNAP_ENOTFOUND)
        return rc;
    if ((rc = s3_put_object(d, okey, buf, len, false, NULL, NULL, NULL, err)) != SNAP_OK)
        return rc;
    return s3_check_ours(d, okey, buf, len, err);
}


/* The forms of If-Match a server honours on PUT (s3_drv.if_match). */
enum { IFM_UNKNOWN = 0, IFM_BARE = 1, IFM_QUOTED = 2, IFM_NONE = -1 };

/* An ETag without W/ and quotes ("bare", as Ceph RGW compares it) or without W/ only. */
static void etag_form(const char *etag, bool quoted, char out[128])
{
    const char *strong = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag, *in = strong + (strong[0] == '"');

    if (quoted)
        snprintf(out, 128, "\"%.*s\"", (int)strcspn(in, "\""), in);
    else
        snprintf(out, 128, "%.*s", (int)strcspn(in, "\""), in);
}

/*
 * Finds out once per store how the server takes If-Match on PUT, on a probe object: a
 * wrong ETag must meet 412, then the right one must land, bare (Ceph RGW compares the
 * bare ETag and refuses the quoted one) or quoted (AWS, RFC 9110). IFM_NONE, with a
 * warning, when the create-only check is head-then-put or no form works.
 */
static snap_rc if_match_form(s3_drv *d, int *form, snap_err *err)
{
    char rnd[17], etag[128] = "", tag[128], *okey;
    long status = 0;
    snap_rc rc = probe_create_only(d, err);

    *form = IFM_NONE;
    if (rc != SNAP_OK || s3_get_check(d) != S3_CHECK_IF_NONE_MATCH)
        return rc;
    pthread_mutex_lock(&d->lock);
    *form = d->if_match;
    pthread_mutex_unlock(&d->lock);
    if (*form != IFM_UNKNOWN)
        return SNAP_OK;
    *form = IFM_NONE;
    util_random_hex(rnd, 8);
    okey = xasprintf("%s.create-only-probe-%s", d->prefix, rnd); /* swept by gc like the other */
    rc = s3_put_object(d, okey, "1", 1, false, NULL, NULL, NULL, err);
    if (rc == SNAP_OK)
        rc = s3_head_object(d, okey, NULL, etag, sizeof etag, err);
    if (rc == SNAP_OK)
        rc = s3_put_object(d, okey, "2", 1, false, "00000000000000000000000000000000", NULL, &status, err);
    if (rc == SNAP_ECONFLICT && status == 412) {
        for (int quoted = 0; quoted < 2 && *form == IFM_NONE; quoted++) {
            etag_form(etag, quoted, tag);
            rc = s3_put_object(d, okey, "3", 1, false, tag, NULL, &status, err);
            if (rc == SNAP_OK)
                *form = quoted ? IFM_QUOTED : IFM_BARE;
        }
        rc = rc == SNAP_ECONFLICT ? SNAP_OK : rc;
    } else if (rc == SNAP_EFAIL && (status == 400 || status == 501)) {
        rc = SNAP_OK; /* refused outright: the fallback, as for If-None-Match */
    }
    if (okey != NULL)
        s3_delete_object(d, okey, NULL);
    if (rc == SNAP_OK) {
        if (*form == IFM_NONE)
            log_warn(d->ctx, "%s: the server does not honour If-Match on PUT; STORE.json is rewritten with a "
                             "read-back check",
                     d->url);
        pthread_mutex_lock(&d->lock);
        d->if_match = *form;
        pthread_mutex_unlock(&d->lock);
    }
    free(okey);
    return rc;
}

/*
 * The conditional PUT over the copy whose ETag is etag, in the form the server takes. A
 * 409 (AWS's ConditionalRequestConflict: a conditional write in flight, perhaps our own
 * first attempt) is waited out and the PUT sent again. A 412 after which the object holds
 * our bytes was a write that landed and lost its answer.
 */
static snap_rc put_over(s3_drv *d, const char *okey, const void *buf, size_t len, const char *etag, int form,
                        snap_err *err)
{
    char tag[128];
    long status = 0;
    snap_err e;
    snap_rc rc;

    etag_form(etag, form == IFM_QUOTED, tag);
    for (int attempt = 0;; attempt++) {
        rc = s3_put_object(d, okey, buf, len, false, tag, NULL, &status, err);
        if (rc != SNAP_ECONFLICT || status != 409 || attempt == 4)
            break;
        usleep((useconds_t)(100000u << attempt));
    }
    if (rc == SNAP_ECONFLICT && s3_check_ours(d, okey, buf, len, &e) == SNAP_OK)
        return SNAP_OK;
    return rc;
}

/*
 * Compare and swap: the object is written over with If-Match on the ETag of the copy just
 * read, and only when that copy holds old; a 412 is SNAP_ECONFLICT. A server that does not
 * honour If-Match on PUT gets the weaker check: a plain PUT, then our bytes there after.
 */
static snap_rc s3_replace(void *drv, const char *key, const void *old, size_t oldlen, const void *buf, size_t len,
                          snap_err *err)
{
    s3_drv *d = drv;
    char etag[128] = "", *okey;
    util_buf cur = {0};
    int form = IFM_NONE;
    snap_rc rc;

    if ((rc = s3_check_key(key, err)) != SNAP_OK || (rc = if_match_form(d, &form, err)) != SNAP_OK)
        return rc;
    okey = s3_okey(d, key);
    rc = s3_get_small(d, okey, 2 * oldlen + 65536, &cur, etag, err);
    if (rc == SNAP_OK && (cur.len != oldlen || (oldlen > 0 && memcmp(cur.p, old, oldlen) != 0)))
        rc = err_set(err, SNAP_ECONFLICT, 0, "s3://%s/%s was changed by another writer", d->bucket, okey);
    if (rc == SNAP_OK && form != IFM_NONE && etag[0] == '\0')
        rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: no ETag in the answer", d->bucket, okey);
    if (rc == SNAP_OK && form != IFM_NONE)
        rc = put_over(d, okey, buf, len, etag, form, err);
    if (rc == SNAP_OK && form == IFM_NONE)
        rc = s3_put_object(d, okey, buf, len, false, NULL, NULL, NULL, err);
    if (rc == SNAP_OK && form == IFM_NONE)
        rc = s3_check_ours(d, okey, buf, len, err);
    util_buf_free(&cur);
    free(okey);
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
    snap_rc rc = s3_request(d, &q, 0, err);

    s3_req_done(&q);
    free(query);
    return rc;
}

/* s3://bucket[/prefix] into bucket, prefix and the URL shown in messages. */
static snap_rc parse_url(s3_drv *d, const char *url, snap_err *err)
{
    const char *rest = url, *slash;

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
    if (!valid_bucket(d->bucket) || (d->prefix[0] && s3_check_key(d->prefix, NULL) != SNAP_OK) ||
        strstr(d->prefix, "//") != NULL) {
        snap_rc rc = err_set(err, SNAP_EUSAGE, 0, "invalid store URL %s", url);
        err_hint(err, "write it as s3://BUCKET or s3://BUCKET/PREFIX");
        return rc;
    }
    return SNAP_OK;
}

/* The endpoint, and from it the base URL, the Host header and the path of the bucket. */
static snap_rc parse_endpoint(s3_drv *d, const cfg *c, snap_err *err)
{
    const char *ep;
    char *scheme = NULL, *hostport = NULL;
    snap_rc rc = SNAP_OK;

    /* Endpoint: [store] endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. */
    ep = opt(c, "endpoint");
    if (ep == NULL)
        ep = s3_env("AWS_ENDPOINT_URL_S3");
    if (ep == NULL)
        ep = s3_env("AWS_ENDPOINT_URL");
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
        goto out;
    }

    /* Path-style by default for custom endpoints (MinIO, RGW), virtual-hosted on AWS. */
    d->path_style = ep != NULL; /* the table: "true with endpoint, else false" */
    if ((rc = cfg_bool(c, "store", "path_style", &d->path_style, err)) != SNAP_OK)
        goto out;
    if (d->path_style) {
        d->host = xstrdup(hostport);
        d->base = xasprintf("%s://%s", scheme, hostport);
        d->path_base = xasprintf("/%s", d->bucket);
    } else {
        d->host = xasprintf("%s.%s", d->bucket, hostport);
        d->base = xasprintf("%s://%s.%s", scheme, d->bucket, hostport);
        d->path_base = xstrdup("");
    }

out:
    free(scheme);
    free(hostport);
    return rc;
}

/* TLS and what every object is written with (storage class, encryption). */
static snap_rc parse_object_opts(s3_drv *d, const cfg *c, snap_err *err)
{
    snap_rc rc;

    if ((rc = cfg_bool(c, "store", "tls_verify", &d->tls_verify, err)) != SNAP_OK)
        return rc;
    if (opt(c, "ca_file") != NULL)
        d->ca_file = xstrdup(opt(c, "ca_file"));
    else if (s3_env("AWS_CA_BUNDLE") != NULL)
        d->ca_file = xstrdup(s3_env("AWS_CA_BUNDLE"));
    if (d->ca_file != NULL && access(d->ca_file, R_OK) != 0) {
        rc = err_sys(err, SNAP_EUSAGE, "CA file %s", d->ca_file);
        return rc;
    }
    if (opt(c, "storage_class") != NULL)
        d->storage_class = xstrdup(opt(c, "storage_class"));
    if (opt(c, "sse") != NULL) {
        d->sse = xstrdup(opt(c, "sse"));
        if (strcmp(d->sse, "AES256") != 0 && strcmp(d->sse, "aws:kms") != 0) {
            rc = err_set(err, SNAP_EUSAGE, 0, "[store] sse = %s: expected AES256 or aws:kms",
                         d->sse);
            return rc;
        }
    }
    if (opt(c, "sse_kms_key_id") != NULL) {
        if (d->sse == NULL || strcmp(d->sse, "aws:kms") != 0) {
            rc = err_set(err, SNAP_EUSAGE, 0, "[store] sse_kms_key_id needs sse = aws:kms");
            return rc;
        }
        d->sse_kms_key_id = xstrdup(opt(c, "sse_kms_key_id"));
    }

    return SNAP_OK;
}

/* Sizes, concurrency, retries, timeouts, listing bounds, the create-only check. */
static snap_rc parse_limits(s3_drv *d, const cfg *c, snap_err *err)
{
    snap_rc rc;
    uint64_t u;

    if ((rc = cfg_size(c, "store", "part_size", &d->part_size, err)) ||
        (rc = cfg_size(c, "store", "download_chunk", &u, err)) ||
        (rc = cfg_int(c, "store", "upload_concurrency", &d->upload_conc, err)) ||
        (rc = cfg_int(c, "store", "download_concurrency", &d->download_conc, err)) ||
        (rc = cfg_int(c, "store", "retries", &d->retries, err)) ||
        (rc = cfg_int(c, "store", "timeout", &d->timeout, err)) ||
        (rc = cfg_int(c, "store", "list_max_keys", &d->list_max_keys, err)) ||
        (rc = cfg_int(c, "store", "list_max_pages", &d->list_max_pages, err)))
        return rc;
    d->download_chunk = u;

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
            return rc;
        }
    }
    return SNAP_OK;
}

static snap_rc s3_open(const char *url, bool create, snap_ctx *ctx, void **out, snap_err *err)
{
    s3_drv *d;
    const cfg *c = ctx->cfg;
    snap_rc rc;

    (void)create; /* buckets are made by their owners; a missing one is SNAP_ENOTFOUND */
    rc = http_global_init(err);
    if (rc != SNAP_OK)
        return rc;
    pthread_once(&global_once, global_init);
    d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->curls = http_pool_new();
    d->ctx = ctx;
    if ((rc = parse_url(d, url, err)) != SNAP_OK || (rc = s3_load_credentials(d, c, err)) != SNAP_OK ||
        (rc = parse_endpoint(d, c, err)) != SNAP_OK || (rc = parse_object_opts(d, c, err)) != SNAP_OK ||
        (rc = parse_limits(d, c, err)) != SNAP_OK || (rc = check_bucket(d, err)) != SNAP_OK) {
        s3_free(d);
        return rc;
    }
    *out = d;
    return SNAP_OK;
}

static void s3_free(void *drv)
{
    s3_drv *d = drv;

    if (d == NULL)
        return;
    http_pool_free(d->curls);
    s3_chain_free(d->chain);
    free(d->url);
    free(d->bucket);
    free(d->prefix);
    free(d->endpoint);
    free(d->base);
    free(d->host);
    free(d->path_base);
    free(d->region);
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

static const char *s3_check_name(s3_check c)
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
    json_object_set_new(o, "create_only_check", json_string(s3_check_name(s3_get_check(d))));
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

/* ---------------------------------------------------------------- stat, list, delete */

static snap_rc s3_stat(void *drv, const char *key, uint64_t *size, snap_err *err)
{
    s3_drv *d = drv;
    char *okey;
    snap_rc rc;

    if ((rc = s3_check_key(key, err)) != SNAP_OK)
        return rc;
    okey = s3_okey(d, key);
    rc = s3_head_object(d, okey, size, NULL, 0, err);
    free(okey);
    return rc;
}

static snap_rc s3_remove(void *drv, const char *key, snap_err *err)
{
    s3_drv *d = drv;
    char *okey;
    snap_rc rc;

    if ((rc = s3_check_key(key, err)) != SNAP_OK)
        return rc;
    okey = s3_okey(d, key);
    rc = s3_delete_object(d, okey, err);
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
        char *okey = s3_okey(d, keys[i]);
        xmlNode *o = xmlNewChild(root, NULL, BAD_CAST "Object", NULL);
        xmlNewTextChild(o, NULL, BAD_CAST "Key", BAD_CAST okey);
        free(okey);
    }
    xmlDocDumpMemory(doc, &mem, &size);
    xmlFreeDoc(doc);
    s3_md5(mem, (size_t)size, md5, NULL);

    s3_req q = {.method = "POST", .query = query, .body = mem, .body_len = (size_t)size,
                .content_md5 = md5};
    rc = s3_request(d, &q, 0, err);
    if (rc == SNAP_OK) {
        xmlDoc *ans = s3_xml_parse(q.resp.p, q.resp.len);
        xmlNode *r = ans ? xmlDocGetRootElement(ans) : NULL;
        xmlNode *e = r ? s3_xml_child(r, "Error") : NULL;
        if (e != NULL) {
            char key[1100], code[64], msg[256];
            s3_xml_text(e, "Key", key, sizeof key);
            s3_xml_text(e, "Code", code, sizeof code);
            s3_xml_text(e, "Message", msg, sizeof msg);
            rc = err_set(err, strcmp(code, "AccessDenied") ? SNAP_EFAIL : SNAP_EUNREACH, 0,
                         "s3 DELETE s3://%s/%s: %s%s%s", d->bucket, key, code, msg[0] ? ": " : "",
                         msg);
            if (rc == SNAP_EUNREACH)
                err_kind(err, "denied");
        }
        xmlFreeDoc(ans);
    }
    s3_req_done(&q);
    xmlFree(mem);
    free(query);
    return rc;
}

static snap_rc s3_remove_many(void *drv, const char *const *keys, size_t n, snap_err *err)
{
    snap_rc rc;

    for (size_t i = 0; i < n; i++)
        if ((rc = s3_check_key(keys[i], err)) != SNAP_OK)
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
        okey = s3_okey(ps->d, e->key);
        s3_delete_object(ps->d, okey, NULL);
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

        rc = s3_request(d, &q, 0, err);
        free(query);
        if (rc != SNAP_OK) {
            s3_req_done(&q);
            break;
        }
        doc = s3_xml_parse(q.resp.p, q.resp.len);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        s3_req_done(&q);
        if (root == NULL || !s3_xml_is(root, "ListMultipartUploadsResult")) {
            xmlFreeDoc(doc);
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?uploads: unreadable answer",
                         d->bucket);
            break;
        }
        for (xmlNode *c = root->children; c; c = c->next) {
            char key[1100], id[512], init[64];
            if (!s3_xml_is(c, "Upload"))
                continue;
            s3_xml_text(c, "Key", key, sizeof key);
            s3_xml_text(c, "UploadId", id, sizeof id);
            s3_xml_text(c, "Initiated", init, sizeof init);
            time_t t = util_parse_time(init, NULL);
            if (t == 0 || now - t < max_age)
                continue; /* young, or of unknown age: it may be a running snap's */
            (*n)++;
            if (!dry_run) {
                log_debug(d->ctx, "aborting the stale upload of s3://%s/%s", d->bucket, key);
                s3_abort_upload(d, key, id);
            }
        }
        char trunc[16];
        s3_xml_text(root, "IsTruncated", trunc, sizeof trunc);
        free(key_marker);
        free(id_marker);
        key_marker = s3_xml_text_dup(root, "NextKeyMarker");
        id_marker = s3_xml_text_dup(root, "NextUploadIdMarker");
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
    .replace = s3_replace,
};
