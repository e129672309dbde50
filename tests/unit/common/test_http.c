/*
 * test_http.c: the shared HTTP layer's parts that need no server: header lines read
 * within their length (curl's are not NUL-terminated), the retry classification, and
 * backoff that grows, stays capped and keeps its jitter within the window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/http.h"

/* A line as curl hands it: exactly n bytes, followed here by bytes that must not be read. */
static char *line_of(const char *s, size_t *n)
{
    size_t len = strlen(s);
    char *b = malloc(len + 8);

    memcpy(b, s, len);
    memcpy(b + len, "GARBAGE", 8); /* no NUL where the line ends */
    *n = len;
    return b;
}

static void test_headers(void **state)
{
    size_t n, vl;
    const char *v;
    char out[16];
    long status = 0;
    char *b;

    (void)state;
    b = line_of("HTTP/1.1 206 Partial Content\r\n", &n);
    assert_true(http_status_line(b, n, &status));
    assert_int_equal(status, 206);
    free(b);

    b = line_of("ETag:   \"abc\" \r\n", &n);
    assert_true(http_header(b, n, "etag", &v, &vl));
    assert_int_equal(vl, 5);
    assert_memory_equal(v, "\"abc\"", 5);
    assert_false(http_header(b, n, "etags", &v, &vl));
    assert_false(http_header(b, n, "eta", &v, &vl)); /* a prefix of the name is not the name */
    assert_false(http_status_line(b, n, &status));
    free(b);

    /* An empty value stays within the line. */
    b = line_of("X-Empty:", &n);
    assert_true(http_header(b, n, "x-empty", &v, &vl));
    assert_int_equal(vl, 0);
    free(b);

    /* A value longer than the buffer is cut, NUL-terminated. */
    b = line_of("Docker-Content-Digest: sha256:0123456789abcdef0123\r\n", &n);
    assert_true(http_header(b, n, "Docker-Content-Digest", &v, &vl));
    http_copy(v, vl, out, sizeof out);
    assert_string_equal(out, "sha256:01234567");
    free(b);

    b = line_of("HTTP/1.1", &n); /* no status at all */
    assert_true(http_status_line(b, n, &status));
    assert_int_equal(status, 0);
    free(b);
}

static void test_retry_rules(void **state)
{
    (void)state;
    assert_true(http_status_retryable(500));
    assert_true(http_status_retryable(503));
    assert_true(http_status_retryable(429));
    assert_false(http_status_retryable(404));
    assert_false(http_status_retryable(403));
    assert_true(http_transport_retryable(CURLE_RECV_ERROR));
    assert_true(http_transport_retryable(CURLE_COULDNT_CONNECT));
    assert_true(http_connection_broken(CURLE_GOT_NOTHING));
    assert_false(http_connection_broken(CURLE_COULDNT_CONNECT));
    assert_false(http_transport_retryable(CURLE_PEER_FAILED_VERIFICATION));
    assert_false(http_transport_retryable(CURLE_ABORTED_BY_CALLBACK));
}

static void test_backoff(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        uint64_t a0 = http_backoff_ms(0, 100, 8000), a3 = http_backoff_ms(3, 100, 8000);
        uint64_t a20 = http_backoff_ms(20, 100, 8000);
        assert_in_range(a0, 50, 100);
        assert_in_range(a3, 400, 800);
        assert_in_range(a20, 4000, 8000);
    }
}

static void test_wait_ends_on_interrupt(void **state)
{
    volatile sig_atomic_t flag = 1;
    snap_ctx ctx;

    (void)state;
    memset(&ctx, 0, sizeof ctx);
    ctx.interrupted = &flag;
    assert_false(http_wait(&ctx, 60000, false)); /* returns at once, not in a minute */
    assert_true(http_wait(&ctx, 1, true));       /* a clean-up waits anyway */
    flag = 0;
    assert_true(http_wait(&ctx, 1, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_retry_rules),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_wait_ends_on_interrupt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
