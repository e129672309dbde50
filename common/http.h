/* http.h: the one HTTP layer over libcurl, under the S3 driver and the registry client.
 * It owns what every client needs the same way: libcurl's one global set-up, the common
 * options of a request (timeouts, TLS, proxy, protocols), a pool of easy handles kept for
 * their live connections, bounded parsing of response header lines, and the retry policy
 * (which failures warrant another attempt, exponential backoff with jitter, a wait that
 * an interrupt ends). What a request says and what its answer means stay with the client. */
#ifndef SNAP_HTTP_H
#define SNAP_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/* libcurl's global set-up, done once per process whatever thread asks first. */
snap_rc http_global_init(snap_err *err);

typedef struct http_opts {
    const char *protocols;   /* allowed schemes, also for redirects; NULL: "http,https" */
    bool follow_redirects;   /* up to 5 */
    bool http_1_1;           /* pin HTTP/1.1 */
    long timeout_ms;         /* whole transfer; 0: no limit */
    long connect_timeout_ms; /* 0: 10 s */
    long low_speed_time;     /* seconds under 1 byte/s before giving up; 0: no such check */
    bool tls_no_verify;      /* test setups only */
    const char *ca_file;     /* NULL: the system's CAs */
    const char *ca_pem;      /* PEM CAs trusted besides ca_file or the system's, or NULL */
    size_t ca_pem_len;
    const char *proxy;       /* NULL: libcurl's rule (http_proxy, https_proxy, no_proxy) */
    char *errbuf;            /* CURL_ERROR_SIZE bytes for libcurl's message, or NULL */
    curl_xferinfo_callback progress; /* non-zero return ends the transfer, or NULL */
    void *progress_arg;
} http_opts;

/* Resets h and sets the options every request shares. */
void http_setup(CURL *h, const http_opts *o);

/* Easy handles kept between requests for their connections; safe across threads. */
typedef struct http_pool http_pool;

http_pool *http_pool_new(void);
CURL *http_pool_get(http_pool *p); /* an idle handle, else a new one */
void http_pool_put(http_pool *p, CURL *h);
void http_pool_free(http_pool *p); /* NULL: nothing */

/*
 * Response header lines as libcurl hands them: n bytes, not NUL-terminated, with their
 * CR LF. http_status_line() is true for a status line ("HTTP/1.1 200 OK"), a new response
 * after a 100 or a redirect, and reads its status. http_header() is true when the line is
 * header name (case-insensitive) and points *v at its value, *vl bytes without the
 * surrounding blanks and line end. http_copy() copies such a value into out, cut to cap.
 */
bool http_status_line(const char *line, size_t n, long *status);
bool http_header(const char *line, size_t n, const char *name, const char **v, size_t *vl);
void http_copy(const char *v, size_t vl, char *out, size_t cap);

/* A transport failure that another attempt may cure (connect, timeout, a broken connection). */
bool http_transport_retryable(CURLcode cc);
/* A connection that broke under a request: safe to send once more on a fresh one. */
bool http_connection_broken(CURLcode cc);
/* A status that says "later": 429, 500, 502, 503, 504. */
bool http_status_retryable(long status);

/* The wait before attempt+1 (attempt from 0): base << attempt, capped, half of it random. */
uint64_t http_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms);

/* Sleeps ms in short slices; false as soon as ctx is interrupted (unless ignore_intr). */
bool http_wait(const snap_ctx *ctx, uint64_t ms, bool ignore_intr);

#endif
