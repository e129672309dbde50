/* The registry client against a scripted HTTP server on loopback: what a real registry
 * rarely does (wrong bytes, no digest header, overload, huge manifests), and Docker's
 * config.json. The real registries are exercised by tests/e2e/images.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../engines/registry.h"
#include "../../../common/util.h"

static const char body[] = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}";
static char body_digest[80];

/* One scripted server: each request gets the answer of the current mode. */
typedef enum mode { M_OK, M_WRONG_BYTES, M_NO_DIGEST, M_BUSY_TWICE, M_HUGE } mode;

typedef struct server {
    int fd;
    int port;
    mode m;
    int busy_left;
    int requests;
    char last_accept[512];
    pthread_t th;
} server;

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void *serve(void *arg)
{
    server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        char req[8192];
        size_t n = 0;
        if (c < 0)
            return NULL;
        while (n < sizeof req - 1) {
            ssize_t r = recv(c, req + n, sizeof req - 1 - n, 0);
            if (r <= 0)
                break;
            n += (size_t)r;
            req[n] = '\0';
            if (req[0] == 0x16 || strstr(req, "\r\n\r\n") != NULL)
                break;
        }
        req[n] = '\0';
        if (n > 0 && req[0] == 0x16) {
            /* A TLS handshake: answer as Go's server does, so the client falls back. */
            send_all(c, "HTTP/1.0 400 Bad Request\r\n\r\n", 28);
            close(c);
            continue;
        }
        s->requests++;
        bool head = strncmp(req, "HEAD ", 5) == 0;
        const char *acc = strcasestr(req, "\r\naccept: ");
        if (acc != NULL)
            snprintf(s->last_accept, sizeof s->last_accept, "%.*s", (int)strcspn(acc + 10, "\r"), acc + 10);
        char hdr[1024];
        const char *b = body;
        size_t blen = strlen(body);
        char *big = NULL;
        int status = 200;
        bool digest = true;
        if (s->m == M_WRONG_BYTES && !head)
            b = "{\"schemaVersion\":2,\"mediaType\":\"tampered\"}", blen = strlen(b);
        if (s->m == M_NO_DIGEST)
            digest = false;
        if (s->m == M_BUSY_TWICE && s->busy_left > 0) {
            s->busy_left--;
            status = 503;
        }
        if (s->m == M_HUGE && !head) {
            blen = REG_MANIFEST_MAX + 10;
            big = malloc(blen);
            memset(big, ' ', blen);
            b = big;
        }
        int hl = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 %d X\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                          "%s%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          status, digest ? "Docker-Content-Digest: " : "", digest ? body_digest : "",
                          digest ? "\r\n" : "", status == 200 ? blen : 0);
        send_all(c, hdr, (size_t)hl);
        if (!head && status == 200)
            send_all(c, b, blen);
        free(big);
        close(c);
    }
}

static int setup(void **state)
{
    server *s = calloc(1, sizeof *s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    char hex[65];
    util_sha256 *h = util_sha256_new();

    util_sha256_update(h, body, strlen(body));
    util_sha256_final(h, hex);
    snprintf(body_digest, sizeof body_digest, "sha256:%s", hex);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, serve, s);
    setenv("DOCKER_CONFIG", "/nonexistent-docker-config", 1);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    server *s = *state;
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->th, NULL);
    free(s);
    return 0;
}

static void resolve(server *s, reg_job *j, img_ref **ref)
{
    reg_client *c = NULL;
    snap_err err = {0};
    snap_ctx ctx = {0};
    char *name = xasprintf("127.0.0.1:%d/team/app:v1", s->port);

    assert_int_equal(img_ref_parse(name, ref, &err), SNAP_OK);
    assert_int_equal(reg_client_new(NULL, &ctx, &c, &err), SNAP_OK);
    memset(j, 0, sizeof *j);
    j->ref = *ref;
    j->op = REG_RESOLVE;
    reg_run(c, j, 1, 1);
    if (j->rc != SNAP_OK)
        print_message("job: %s\n", j->err.msg);
    reg_client_free(c);
    free(name);
}

static void test_resolve_and_verify(void **state)
{
    server *s = *state;
    reg_job j;
    img_ref *ref;

    s->m = M_OK;
    s->requests = 0;
    resolve(s, &j, &ref);
    assert_int_equal(j.rc, SNAP_OK);
    assert_string_equal(j.resolved, body_digest);
    assert_string_equal(j.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_int_equal(j.manifest_len, strlen(body));
    assert_memory_equal(j.manifest, body, strlen(body));
    assert_string_equal(s->last_accept, REG_ACCEPT);
    /* https first (refused by a plain server), then plain HTTP for loopback: HEAD, GET */
    assert_true(s->requests >= 2);
    reg_job_clear(&j);
    img_ref_free(ref);
}

static void test_wrong_bytes_fail_verification(void **state)
{
    server *s = *state;
    reg_job j;
    img_ref *ref;

    s->m = M_WRONG_BYTES;
    resolve(s, &j, &ref);
    assert_int_equal(j.rc, SNAP_EVERIFY);
    assert_non_null(strstr(j.err.msg, "does not match digest"));
    assert_null(j.manifest);
    reg_job_clear(&j);
    img_ref_free(ref);
}

static void test_no_digest_header_hashes_the_bytes(void **state)
{
    server *s = *state;
    reg_job j;
    img_ref *ref;

    s->m = M_NO_DIGEST;
    resolve(s, &j, &ref);
    assert_int_equal(j.rc, SNAP_OK);
    assert_string_equal(j.resolved, body_digest);
    reg_job_clear(&j);
    img_ref_free(ref);
}

static void test_busy_registry_is_retried(void **state)
{
    server *s = *state;
    reg_job j;
    img_ref *ref;

    s->m = M_BUSY_TWICE;
    s->busy_left = 2;
    resolve(s, &j, &ref);
    assert_int_equal(j.rc, SNAP_OK);
    assert_int_equal(s->busy_left, 0);
    reg_job_clear(&j);
    img_ref_free(ref);
}

static void test_huge_manifest_refused(void **state)
{
    server *s = *state;
    reg_job j;
    img_ref *ref;

    s->m = M_HUGE;
    resolve(s, &j, &ref);
    assert_int_not_equal(j.rc, SNAP_OK);
    assert_non_null(strstr(j.err.msg, "larger than"));
    reg_job_clear(&j);
    img_ref_free(ref);
}

static void write_config(const char *dir, const char *text)
{
    char *p = xasprintf("%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    free(p);
}

static void test_docker_config(void **state)
{
    char dir[] = "/tmp/snap-regcfg.XXXXXX";
    reg_opts o = {0};
    reg_client *c = NULL;
    snap_err err = {0};

    (void)state;
    assert_non_null(mkdtemp(dir));
    o.docker_config = dir;
    /* No file: no credentials, no error. */
    assert_int_equal(reg_client_new(&o, NULL, &c, &err), SNAP_OK);
    reg_client_free(c);
    write_config(dir, "{\"auths\": {\"r.example\": {\"auth\": \"dXNlcjpzZWNyZXQ=\"}}}");
    assert_int_equal(reg_client_new(&o, NULL, &c, &err), SNAP_OK);
    reg_client_free(c);
    write_config(dir, "{\"auths\": {\n\"r.example\": {\"auth\": \"c2VjcmV0\"}}}"); /* no colon */
    assert_int_equal(reg_client_new(&o, NULL, &c, &err), SNAP_EUSAGE);
    assert_null(c);
    assert_non_null(strstr(err.msg, "the auth of \"r.example\" is not base64 of user:password"));
    assert_null(strstr(err.msg, "secret"));
    write_config(dir, "{\"auths\": {\n");
    assert_int_equal(reg_client_new(&o, NULL, &c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "config.json:2:"));
    char *p = xasprintf("%s/config.json", dir);
    unlink(p);
    free(p);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_and_verify),
        cmocka_unit_test(test_wrong_bytes_fail_verification),
        cmocka_unit_test(test_no_digest_header_hashes_the_bytes),
        cmocka_unit_test(test_busy_registry_is_retried),
        cmocka_unit_test(test_huge_manifest_refused),
        cmocka_unit_test(test_docker_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
