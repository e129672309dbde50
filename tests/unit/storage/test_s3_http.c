/*
 * test_s3_http.c: the S3 driver's request path against a loopback HTTP server started
 * here, that answers as S3 does: requests are signed as SigV4 says, failures that warrant
 * it are retried (a 500, a 503 SlowDown, a reset connection) and others are not, and a
 * multipart upload sends its parts, completes with their ETags in order, and is aborted
 * when a part fails. These are unit tests of the client; tests/e2e/s3.sh runs a real RGW.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../storage/sigv4.h"
#include "../../../storage/storage_int.h"

#define SECRET "unit-test-secret-value-7c1d"
#define AKID "AKIDUNITTEST"
#define MIB (1024u * 1024u)
#define MAX_REC 64

/* ---------------------------------------------------------------- the server */

typedef struct rec {
    char method[16];
    char path[256];
    char query[256];
    char host[128];
    char amz_date[32];
    char content_sha[80];
    char content_md5[64];
    char if_match[128], if_none_match[16];
    char auth[512];
    size_t body_len;
    char body_sha[65];
    char body[4096]; /* the start of the body, NUL-terminated */
    bool secret_seen;
} rec;

typedef struct reply {
    bool reset; /* close the connection with a RST instead of answering */
    int status;
    char headers[256];
    char body[1024];
} reply;

/* Decides the answer to the nth request (0-based), under the server's lock. */
typedef void (*handler_fn)(const rec *r, int nth, reply *out);

static struct {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    rec log[MAX_REC];
    int n;
    handler_fn handler;
} srv;

static void hdr_copy(const char *line, const char *name, char *out, size_t cap)
{
    size_t kl = strlen(name);

    if (strncasecmp(line, name, kl) == 0 && line[kl] == ':') {
        const char *v = line + kl + 1;
        while (*v == ' ')
            v++;
        snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
    }
}

/* Reads one request head; false on EOF or garbage. */
static bool read_head(int fd, char *buf, size_t cap)
{
    size_t len = 0;

    while (len + 1 < cap) {
        ssize_t k = read(fd, buf + len, 1);
        if (k <= 0)
            return false;
        len++;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            return true;
    }
    return false;
}

static void parse_head(char *head, rec *r, size_t *clen)
{
    char *line = head, *nl, target[512] = "", cl[32] = "0";

    sscanf(head, "%15s %511s", r->method, target);
    snprintf(r->path, sizeof r->path, "%.*s", (int)strcspn(target, "?"), target);
    if (strchr(target, '?') != NULL)
        snprintf(r->query, sizeof r->query, "%s", strchr(target, '?') + 1);
    r->secret_seen = strstr(head, SECRET) != NULL;
    while ((nl = strstr(line, "\r\n")) != NULL && nl != line) {
        *nl = '\0';
        hdr_copy(line, "Host", r->host, sizeof r->host);
        hdr_copy(line, "x-amz-date", r->amz_date, sizeof r->amz_date);
        hdr_copy(line, "x-amz-content-sha256", r->content_sha, sizeof r->content_sha);
        hdr_copy(line, "Authorization", r->auth, sizeof r->auth);
        hdr_copy(line, "Content-MD5", r->content_md5, sizeof r->content_md5);
        hdr_copy(line, "If-Match", r->if_match, sizeof r->if_match);
        hdr_copy(line, "If-None-Match", r->if_none_match, sizeof r->if_none_match);
        hdr_copy(line, "Content-Length", cl, sizeof cl);
        line = nl + 2;
    }
    *clen = strtoull(cl, NULL, 10);
}

static bool read_body(int fd, rec *r, size_t clen)
{
    util_sha256 *h = util_sha256_new();
    char buf[65536];
    bool ok = true;

    while (r->body_len < clen) {
        size_t want = clen - r->body_len < sizeof buf ? clen - r->body_len : sizeof buf;
        ssize_t k = read(fd, buf, want);
        if (k <= 0) {
            ok = false;
            break;
        }
        if (r->body_len < sizeof r->body - 1) {
            size_t keep = sizeof r->body - 1 - r->body_len;
            memcpy(r->body + r->body_len, buf, (size_t)k < keep ? (size_t)k : keep);
        }
        util_sha256_update(h, buf, (size_t)k);
        r->body_len += (size_t)k;
    }
    util_sha256_final(h, r->body_sha);
    return ok;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char head[8192], out[2048];
    rec r;
    reply rp;
    size_t clen;

    memset(&r, 0, sizeof r);
    memset(&rp, 0, sizeof rp);
    if (!read_head(fd, head, sizeof head))
        goto out;
    parse_head(head, &r, &clen);
    if (!read_body(fd, &r, clen))
        goto out;
    pthread_mutex_lock(&srv.mu);
    int nth = srv.n;
    if (srv.n < MAX_REC)
        srv.log[srv.n++] = r;
    srv.handler(&r, nth, &rp);
    pthread_mutex_unlock(&srv.mu);
    if (rp.reset) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        goto out;
    }
    /* A HEAD's Content-Length, when the handler gives one, is the object's size. */
    char cl[48] = "";
    if (strcasestr(rp.headers, "Content-Length:") == NULL)
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(rp.body));
    int n = snprintf(out, sizeof out, "HTTP/1.1 %d X\r\nConnection: close\r\n%s%s\r\n%s",
                     rp.status, rp.headers, cl, strcmp(r.method, "HEAD") ? rp.body : "");
    if (write(fd, out, (size_t)n) != n)
        goto out;
out:
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv.fd, NULL, NULL);
        pthread_t t;
        if (fd < 0)
            return NULL;
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            pthread_detach(t);
    }
}

/* ---------------------------------------------------------------- answers */

static const char empty_list[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>bucket</Name>"
    "<KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>";

static void say(reply *o, int status, const char *headers, const char *body)
{
    o->status = status;
    snprintf(o->headers, sizeof o->headers, "%s", headers ? headers : "");
    snprintf(o->body, sizeof o->body, "%s", body ? body : "");
}

static void s3_error(reply *o, int status, const char *code)
{
    char b[256];

    snprintf(b, sizeof b, "<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>test</Message></Error>",
             code);
    say(o, status, "Content-Type: application/xml\r\n", b);
}

/* The bucket check of open: GET ?list-type=2. */
static bool is_check(const rec *r)
{
    return strcmp(r->method, "GET") == 0 && strstr(r->query, "list-type=2") != NULL;
}

/* Requests so far with this method and query part; handlers call it under the lock. */
static int seen(const char *method, const char *query_part)
{
    int k = 0;

    for (int i = 0; i < srv.n; i++)
        if (strcmp(srv.log[i].method, method) == 0 &&
            (query_part == NULL || strstr(srv.log[i].query, query_part) != NULL))
            k++;
    return k;
}

static int count(const char *method, const char *query_part)
{
    int k;

    pthread_mutex_lock(&srv.mu);
    k = seen(method, query_part);
    pthread_mutex_unlock(&srv.mu);
    return k;
}

/* ---------------------------------------------------------------- fixture */

static cfg *conf;
static snap_ctx ctx;

static int setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    char ep[64];

    (void)state;
    memset(&srv.log, 0, sizeof srv.log);
    srv.n = 0;
    pthread_mutex_init(&srv.mu, NULL);
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv.fd >= 0);
    assert_int_equal(bind(srv.fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(srv.fd, 64), 0);
    assert_int_equal(getsockname(srv.fd, (struct sockaddr *)&a, &al), 0);
    srv.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&srv.th, NULL, accept_main, NULL), 0);

    conf = cfg_new();
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", srv.port);
    cfg_set(conf, "store", "endpoint", ep);
    cfg_set(conf, "store", "region", "us-east-1");
    cfg_set(conf, "store", "retries", "3");
    cfg_set(conf, "store", "timeout", "10");
    memset(&ctx, 0, sizeof ctx);
    ctx.verbosity = -1;
    ctx.cfg = conf;
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_CA_BUNDLE");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    shutdown(srv.fd, SHUT_RDWR);
    close(srv.fd);
    pthread_join(srv.th, NULL);
    cfg_free(conf);
    return 0;
}

static void *open_drv(snap_err *err, snap_rc want)
{
    void *drv = NULL;

    err_clear(err);
    assert_int_equal(stg_s3_driver.open("s3://bucket/p", false, &ctx, &drv, err), want);
    assert_null(strstr(err->msg, SECRET));
    assert_null(strstr(err->hint, SECRET));
    return drv;
}

/* ---------------------------------------------------------------- signing */

static void h_sign(const rec *r, int nth, reply *o)
{
    (void)nth;
    if (is_check(r))
        say(o, 200, NULL, empty_list);
    else if (strcmp(r->method, "HEAD") == 0)
        say(o, 200, "ETag: \"abc\"\r\nContent-Length: 42\r\n", NULL);
    else
        say(o, 200, "ETag: \"def\"\r\n", NULL);
}

/* Recomputes the signature of a recorded request with the test's secret. */
static void assert_signed(const rec *r)
{
    sigv4_header hs[] = {{"Host", r->host}, {"x-amz-date", r->amz_date},
                         {"x-amz-content-sha256", r->content_sha}, {"Content-MD5", r->content_md5}};
    size_t nh = r->content_md5[0] ? 4 : 3;
    sigv4_request sr = {r->method, r->path, r->query[0] ? r->query : NULL, hs, nh, r->content_sha,
                        r->amz_date, "us-east-1", "s3"};
    char *want = sigv4_authorization(&sr, AKID, SECRET);

    assert_string_equal(r->auth, want);
    assert_false(r->secret_seen);
    free(want);
}

static void test_signing(void **state)
{
    snap_err err;
    void *drv, *w = NULL;
    uint64_t size = 0;
    char hex[65];

    (void)state;
    srv.handler = h_sign;
    drv = open_drv(&err, SNAP_OK);
    assert_int_equal(stg_s3_driver.stat(drv, "obj", &size, &err), SNAP_OK);
    assert_int_equal(size, 42);
    assert_int_equal(stg_s3_driver.writer_open(drv, "dir/small", 0, &w, &err), SNAP_OK);
    assert_int_equal(stg_s3_driver.write(w, "hello world", 11, &err), SNAP_OK);
    assert_int_equal(stg_s3_driver.commit(w, &err), SNAP_OK);
    stg_s3_driver.free(drv);

    assert_int_equal(srv.n, 3);
    assert_true(is_check(&srv.log[0]));
    assert_string_equal(srv.log[0].path, "/bucket");
    assert_string_equal(srv.log[1].method, "HEAD");
    assert_string_equal(srv.log[1].path, "/bucket/p/obj");
    assert_string_equal(srv.log[2].method, "PUT");
    assert_string_equal(srv.log[2].path, "/bucket/p/dir/small");
    /* The payload hash signed is the hash of the bytes that arrived. */
    sigv4_sha256_hex("hello world", 11, hex);
    assert_string_equal(srv.log[2].content_sha, hex);
    assert_string_equal(srv.log[2].body_sha, hex);
    assert_string_equal(srv.log[2].body, "hello world");
    for (int i = 0; i < srv.n; i++) {
        assert_non_null(strstr(srv.log[i].auth, "Credential=" AKID "/"));
        assert_non_null(strstr(srv.log[i].auth, srv.log[i].content_md5[0]
                                                    ? "SignedHeaders=content-md5;host;x-amz-content-sha256;x-amz-date,"
                                                    : "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"));
        assert_signed(&srv.log[i]);
    }
}

/* ---------------------------------------------------------------- retries */

static void h_500_then_200(const rec *r, int nth, reply *o)
{
    (void)nth;
    if (is_check(r))
        say(o, 200, NULL, empty_list);
    else if (seen("HEAD", NULL) == 1)
        say(o, 500, NULL, NULL);
    else
        say(o, 200, "Content-Length: 7\r\n", NULL);
}

static void test_retry_500_then_200(void **state)
{
    snap_err err;
    void *drv;
    uint64_t size = 0;

    (void)state;
    srv.handler = h_500_then_200;
    drv = open_drv(&err, SNAP_OK);
    err_clear(&err);
    assert_int_equal(stg_s3_driver.stat(drv, "obj", &size, &err), SNAP_OK);
    assert_int_equal(size, 7);
    assert_int_equal(count("HEAD", NULL), 2);
    stg_s3_driver.free(drv);
}

static void h_slowdown_once(const rec *r, int nth, reply *o)
{
    (void)r;
    if (nth == 0)
        s3_error(o, 503, "SlowDown");
    else
        say(o, 200, NULL, empty_list);
}

static void test_retry_slowdown(void **state)
{
    snap_err err;

    (void)state;
    srv.handler = h_slowdown_once;
    stg_s3_driver.free(open_drv(&err, SNAP_OK));
    assert_int_equal(count("GET", "list-type=2"), 2);
}

static void h_slowdown_always(const rec *r, int nth, reply *o)
{
    (void)r, (void)nth;
    s3_error(o, 503, "SlowDown");
}

/* Retries run out: the message names the status, the code and the attempts. */
static void test_retry_gives_up(void **state)
{
    snap_err err;

    (void)state;
    srv.handler = h_slowdown_always;
    cfg_set(conf, "store", "retries", "2");
    open_drv(&err, SNAP_EFAIL);
    assert_int_equal(count("GET", "list-type=2"), 3);
    assert_non_null(strstr(err.msg, "503 SlowDown"));
    assert_non_null(strstr(err.msg, "gave up after 3 attempts"));
    assert_non_null(strstr(err.hint, "kept failing"));
}

static void h_reset_once(const rec *r, int nth, reply *o)
{
    (void)nth;
    if (is_check(r))
        say(o, 200, NULL, empty_list);
    else if (seen("HEAD", NULL) == 1)
        o->reset = true;
    else
        say(o, 200, "Content-Length: 9\r\n", NULL);
}

static void test_retry_connection_reset(void **state)
{
    snap_err err;
    void *drv;
    uint64_t size = 0;

    (void)state;
    srv.handler = h_reset_once;
    drv = open_drv(&err, SNAP_OK);
    assert_int_equal(stg_s3_driver.stat(drv, "obj", &size, &err), SNAP_OK);
    assert_int_equal(size, 9);
    assert_int_equal(count("HEAD", NULL), 2);
    stg_s3_driver.free(drv);
}

static void h_denied(const rec *r, int nth, reply *o)
{
    (void)r, (void)nth;
    s3_error(o, 403, "AccessDenied");
}

/* What will not get better is not retried. */
static void test_no_retry_on_403(void **state)
{
    snap_err err;

    (void)state;
    srv.handler = h_denied;
    open_drv(&err, SNAP_EUNREACH);
    assert_int_equal(srv.n, 1);
    assert_non_null(strstr(err.msg, "403 AccessDenied"));
}

/* ---------------------------------------------------------------- multipart */

static bool fail_part2;
static bool complete_error_once;

static void h_multipart(const rec *r, int nth, reply *o)
{
    (void)nth;
    if (is_check(r)) {
        say(o, 200, NULL, empty_list);
    } else if (strcmp(r->method, "POST") == 0 && strstr(r->query, "uploads=") != NULL) {
        say(o, 200, NULL,
            "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>bucket</Bucket>"
            "<Key>p/big</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>");
    } else if (strcmp(r->method, "PUT") == 0 && strstr(r->query, "partNumber=") != NULL) {
        int num = atoi(strstr(r->query, "partNumber=") + 11);
        char h[64];
        if (fail_part2 && num == 2) {
            s3_error(o, 400, "InvalidArgument");
            return;
        }
        snprintf(h, sizeof h, "ETag: \"e%d\"\r\n", num);
        say(o, 200, h, NULL);
    } else if (strcmp(r->method, "POST") == 0 && strstr(r->query, "uploadId=U1") != NULL) {
        if (complete_error_once && seen("POST", "uploadId=U1") == 1)
            s3_error(o, 200, "InternalError"); /* S3's error inside a 200 */
        else
            say(o, 200, NULL,
                "<?xml version=\"1.0\"?><CompleteMultipartUploadResult><ETag>\"x-3\"</ETag>"
                "</CompleteMultipartUploadResult>");
    } else if (strcmp(r->method, "DELETE") == 0) {
        say(o, 204, NULL, NULL);
    } else if (strcmp(r->method, "GET") == 0 && strstr(r->query, "uploads=") != NULL) {
        say(o, 200, NULL, "<?xml version=\"1.0\"?><ListMultipartUploadsResult></ListMultipartUploadsResult>");
    } else {
        say(o, 404, NULL, NULL);
    }
}

/* Writes 11 MiB in 64 KiB writes; parts of 5 MiB. */
static snap_rc write_big(void *drv, snap_err *err)
{
    static unsigned char chunk[65536];
    void *w = NULL;
    snap_rc rc;

    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (unsigned char)(i * 7);
    if ((rc = stg_s3_driver.writer_open(drv, "big", 0, &w, err)) != SNAP_OK)
        return rc;
    for (size_t done = 0; done < 11 * MIB; done += sizeof chunk)
        if ((rc = stg_s3_driver.write(w, chunk, sizeof chunk, err)) != SNAP_OK) {
            stg_s3_driver.abort(w);
            return rc;
        }
    return stg_s3_driver.commit(w, err);
}

static const rec *find(const char *method, const char *query_part)
{
    for (int i = 0; i < srv.n; i++)
        if (strcmp(srv.log[i].method, method) == 0 && strstr(srv.log[i].query, query_part) != NULL)
            return &srv.log[i];
    return NULL;
}

static void test_multipart(void **state)
{
    snap_err err;
    void *drv;
    const rec *c;
    const char *p1, *p2, *p3;

    (void)state;
    srv.handler = h_multipart;
    fail_part2 = complete_error_once = false;
    cfg_set(conf, "store", "part_size", "5M");
    cfg_set(conf, "store", "upload_concurrency", "2");
    drv = open_drv(&err, SNAP_OK);
    assert_int_equal(write_big(drv, &err), SNAP_OK);
    stg_s3_driver.free(drv);

    assert_int_equal(count("POST", "uploads="), 1);
    assert_int_equal(count("PUT", "partNumber="), 3);
    assert_int_equal(find("PUT", "partNumber=1&")->body_len, 5 * MIB);
    assert_int_equal(find("PUT", "partNumber=2&")->body_len, 5 * MIB);
    assert_int_equal(find("PUT", "partNumber=3&")->body_len, 1 * MIB);
    for (int i = 0; i < srv.n; i++)
        if (strcmp(srv.log[i].method, "PUT") == 0) {
            assert_string_equal(srv.log[i].content_sha, srv.log[i].body_sha);
            assert_non_null(strstr(srv.log[i].query, "uploadId=U1"));
        }
    /* Completed once, with every part's ETag, in order. */
    assert_int_equal(count("POST", "uploadId=U1"), 1);
    c = find("POST", "uploadId=U1");
    p1 = strstr(c->body, "<PartNumber>1</PartNumber><ETag>\"e1\"</ETag>");
    p2 = strstr(c->body, "<PartNumber>2</PartNumber><ETag>\"e2\"</ETag>");
    p3 = strstr(c->body, "<PartNumber>3</PartNumber><ETag>\"e3\"</ETag>");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_non_null(p3);
    assert_true(p1 < p2 && p2 < p3);
    assert_int_equal(count("DELETE", NULL), 0);
}

/* CompleteMultipartUpload may fail inside a 200: that is an error, and retried. */
static void test_multipart_complete_error_in_200(void **state)
{
    snap_err err;
    void *drv;

    (void)state;
    srv.handler = h_multipart;
    fail_part2 = false;
    complete_error_once = true;
    cfg_set(conf, "store", "part_size", "5M");
    drv = open_drv(&err, SNAP_OK);
    assert_int_equal(write_big(drv, &err), SNAP_OK);
    stg_s3_driver.free(drv);
    assert_int_equal(count("POST", "uploadId=U1"), 2);
    assert_int_equal(count("DELETE", NULL), 0);
}

/* A part that fails for good fails the write, and the upload is aborted, not completed. */
static void test_multipart_abort_on_failure(void **state)
{
    snap_err err;
    void *drv;

    (void)state;
    srv.handler = h_multipart;
    fail_part2 = true;
    complete_error_once = false;
    cfg_set(conf, "store", "part_size", "5M");
    drv = open_drv(&err, SNAP_OK);
    err_clear(&err);
    assert_int_equal(write_big(drv, &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "400 InvalidArgument"));
    stg_s3_driver.free(drv);
    assert_int_equal(count("PUT", "partNumber=2&"), 1); /* a 400 is not retried */
    assert_int_equal(count("POST", "uploadId=U1"), 0);
    assert_int_equal(count("DELETE", "uploadId=U1"), 1);
}

/* ---------------------------------------------------------------- compare and swap */

/* One object, p/STORE.json, as a server keeps it, and how that server treats If-Match. */
static struct {
    char body[256];
    int version;       /* its ETag is "v<version>" */
    bool quoted_only;  /* AWS: If-Match must carry the quoted ETag; RGW: the bare one */
    bool ignore;       /* If-Match is ignored altogether */
    bool lose_answer;  /* the first conditional PUT lands, then the connection resets */
    int conflicts_409; /* this many conditional PUTs answered 409 first */
} obj;

static int puts_to(const char *path)
{
    int k = 0;

    for (int i = 0; i < srv.n; i++)
        k += strcmp(srv.log[i].method, "PUT") == 0 && strcmp(srv.log[i].path, path) == 0;
    return k;
}

static void h_cas(const rec *r, int nth, reply *o)
{
    char etag[64], bare[16], hdr[128];

    (void)nth;
    snprintf(bare, sizeof bare, "v%d", obj.version);
    snprintf(etag, sizeof etag, "\"%s\"", bare);
    snprintf(hdr, sizeof hdr, "ETag: %s\r\n", etag);
    if (is_check(r)) {
        say(o, 200, NULL, empty_list);
    } else if (strstr(r->path, ".create-only-probe-") != NULL) { /* its ETag is "p" */
        bool refused = (r->if_none_match[0] && puts_to(r->path) > 1) ||
                       (r->if_match[0] && !obj.ignore && strcmp(r->if_match, obj.quoted_only ? "\"p\"" : "p") != 0);
        if (strcmp(r->method, "PUT") == 0 && refused)
            s3_error(o, 412, "PreconditionFailed");
        else
            say(o, strcmp(r->method, "DELETE") ? 200 : 204, "ETag: \"p\"\r\n", NULL);
    } else if (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0) {
        say(o, 200, hdr, obj.body);
    } else if (r->if_match[0] && !obj.ignore && obj.conflicts_409 > 0) {
        obj.conflicts_409--;
        s3_error(o, 409, "ConditionalRequestConflict");
    } else if (r->if_match[0] && !obj.ignore && strcmp(r->if_match, obj.quoted_only ? etag : bare) != 0) {
        s3_error(o, 412, "PreconditionFailed");
    } else {
        snprintf(obj.body, sizeof obj.body, "%.200s", r->body);
        obj.version++;
        snprintf(hdr, sizeof hdr, "ETag: \"v%d\"\r\n", obj.version);
        say(o, 200, hdr, NULL);
        if (r->if_match[0] && obj.lose_answer) {
            obj.lose_answer = false;
            o->reset = true;
        }
    }
}

/* A replace over the copy read, on a server that treats If-Match as given; the PUTs of STORE.json. */
static snap_rc cas(const char *old, const char *with, snap_err *err)
{
    void *drv;
    snap_rc rc;

    srv.handler = h_cas;
    drv = open_drv(err, SNAP_OK);
    err_clear(err);
    rc = stg_s3_driver.replace(drv, "STORE.json", old, strlen(old), with, strlen(with), err);
    stg_s3_driver.free(drv);
    return rc;
}

static void cas_reset(void)
{
    memset(&obj, 0, sizeof obj);
    snprintf(obj.body, sizeof obj.body, "{\"format\": 1}");
}

/* Ceph RGW compares the bare ETag: one conditional PUT. */
static void test_replace_bare_etag(void **state)
{
    snap_err err;

    (void)state;
    cas_reset();
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 3}", &err), SNAP_OK);
    assert_string_equal(obj.body, "{\"format\": 3}");
    assert_int_equal(puts_to("/bucket/p/STORE.json"), 1);
    for (int i = 0; i < srv.n; i++)
        if (strcmp(srv.log[i].method, "PUT") == 0 && strcmp(srv.log[i].path, "/bucket/p/STORE.json") == 0)
            assert_string_equal(srv.log[i].if_match, "v0");
}

/* AWS wants it quoted: the probe finds that the bare ETag meets 412 and the quoted one lands. */
static void test_replace_quoted_etag(void **state)
{
    snap_err err;

    (void)state;
    cas_reset();
    obj.quoted_only = true;
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 3}", &err), SNAP_OK);
    assert_string_equal(obj.body, "{\"format\": 3}");
    assert_int_equal(puts_to("/bucket/p/STORE.json"), 1); /* the form was found on the probe */
    for (int i = 0; i < srv.n; i++)
        if (strcmp(srv.log[i].method, "PUT") == 0 && strcmp(srv.log[i].path, "/bucket/p/STORE.json") == 0)
            assert_string_equal(srv.log[i].if_match, "\"v0\"");
}

/* A copy that is no longer there: a conflict, and nothing is written. */
static void test_replace_stale_copy(void **state)
{
    snap_err err;

    (void)state;
    cas_reset();
    assert_int_equal(cas("{\"format\": 0}", "{\"format\": 3}", &err), SNAP_ECONFLICT);
    assert_non_null(strstr(err.msg, "changed by another writer"));
    assert_string_equal(obj.body, "{\"format\": 1}");
    assert_int_equal(puts_to("/bucket/p/STORE.json"), 0);
}

/* The write landed and its answer was lost: the retry's 412 is our own write, not a conflict. */
static void test_replace_lost_answer(void **state)
{
    snap_err err;

    (void)state;
    cas_reset();
    obj.lose_answer = true;
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 2}", &err), SNAP_OK);
    assert_string_equal(obj.body, "{\"format\": 2}");
    assert_int_equal(obj.version, 1);
}

/* AWS's 409 for a conditional write in flight is waited out; one that lasts is a conflict. */
static void test_replace_409(void **state)
{
    snap_err err;

    (void)state;
    cas_reset();
    obj.conflicts_409 = 2;
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 3}", &err), SNAP_OK);
    assert_string_equal(obj.body, "{\"format\": 3}");
    cas_reset();
    obj.conflicts_409 = 100;
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 3}", &err), SNAP_ECONFLICT);
    assert_string_equal(obj.body, "{\"format\": 1}");
}

/* A server that ignores If-Match (the probe's wrong ETag lands): a plain PUT, then a read-back. */
static void test_replace_if_match_ignored(void **state)
{
    snap_err err;
    int gets = 0;

    (void)state;
    cas_reset();
    obj.ignore = true;
    assert_int_equal(cas("{\"format\": 1}", "{\"format\": 3}", &err), SNAP_OK);
    assert_string_equal(obj.body, "{\"format\": 3}");
    for (int i = 0; i < srv.n; i++) {
        if (strcmp(srv.log[i].method, "PUT") == 0 && strcmp(srv.log[i].path, "/bucket/p/STORE.json") == 0)
            assert_string_equal(srv.log[i].if_match, "");
        gets += strcmp(srv.log[i].method, "GET") == 0 && strcmp(srv.log[i].path, "/bucket/p/STORE.json") == 0;
    }
    assert_int_equal(gets, 2); /* the copy compared, and the read-back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_500_then_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_slowdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_connection_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_retry_on_403, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_complete_error_in_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_abort_on_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_bare_etag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_quoted_etag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_stale_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_lost_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_409, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_if_match_ignored, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
