/* http.c: the one HTTP layer over libcurl (see http.h). */
#include "http.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "util.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc; /* written once under pthread_once, read-only after */

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

snap_rc http_global_init(snap_err *err)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return err_set(err, SNAP_EFAIL, 0, "cannot initialise libcurl: %s",
                       curl_easy_strerror(global_rc));
    return SNAP_OK;
}

void http_setup(CURL *h, const http_opts *o)
{
    const char *protocols = o->protocols != NULL ? o->protocols : "http,https";

    curl_easy_reset(h);
    if (o->errbuf != NULL) {
        o->errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "snap/" SNAP_VERSION);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    if (o->follow_redirects) {
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    }
    if (o->http_1_1)
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (o->timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    if (o->low_speed_time > 0) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->low_speed_time);
    }
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o->tls_no_verify ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o->tls_no_verify ? 0L : 2L);
    if (o->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
    if (o->ca_pem != NULL && o->ca_pem_len > 0) {
        struct curl_blob b = {(void *)(uintptr_t)o->ca_pem, o->ca_pem_len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (o->proxy != NULL)
        curl_easy_setopt(h, CURLOPT_PROXY, o->proxy);
    if (o->progress != NULL) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, o->progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, o->progress_arg);
    }
}

/* ---------------------------------------------------------------- handle pool */

struct http_pool {
    pthread_mutex_t mu;
    CURL **idle;
    size_t n, cap;
};

http_pool *http_pool_new(void)
{
    http_pool *p = xcalloc(1, sizeof *p);

    pthread_mutex_init(&p->mu, NULL);
    return p;
}

CURL *http_pool_get(http_pool *p)
{
    CURL *h = NULL;

    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        h = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    if (h == NULL && (h = curl_easy_init()) == NULL)
        abort(); /* out of memory, as xmalloc */
    return h;
}

void http_pool_put(http_pool *p, CURL *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->idle = xrealloc(p->idle, p->cap * sizeof *p->idle);
    }
    p->idle[p->n++] = h;
    pthread_mutex_unlock(&p->mu);
}

void http_pool_free(http_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---------------------------------------------------------------- header lines */

static void trim(const char **v, size_t *vl)
{
    while (*vl > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*vl)--;
    }
    while (*vl > 0 && ((*v)[*vl - 1] == '\r' || (*v)[*vl - 1] == '\n' || (*v)[*vl - 1] == ' ' ||
                       (*v)[*vl - 1] == '\t'))
        (*vl)--;
}

bool http_status_line(const char *line, size_t n, long *status)
{
    const char *sp;
    char tmp[16];

    if (n < 5 || strncmp(line, "HTTP/", 5) != 0)
        return false;
    sp = memchr(line, ' ', n);
    *status = 0;
    if (sp != NULL) {
        const char *v = sp + 1;
        size_t vl = n - (size_t)(v - line);
        trim(&v, &vl);
        http_copy(v, vl, tmp, sizeof tmp);
        *status = strtol(tmp, NULL, 10);
    }
    return true;
}

bool http_header(const char *line, size_t n, const char *name, const char **v, size_t *vl)
{
    size_t kl = strlen(name);

    if (n <= kl || line[kl] != ':' || strncasecmp(line, name, kl) != 0)
        return false;
    *v = line + kl + 1;
    *vl = n - kl - 1;
    trim(v, vl);
    return true;
}

void http_copy(const char *v, size_t vl, char *out, size_t cap)
{
    if (cap == 0)
        return;
    if (vl >= cap)
        vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
}

/* ---------------------------------------------------------------- retries */

bool http_connection_broken(CURLcode cc)
{
    return cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING;
}

bool http_transport_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SEND_FAIL_REWIND:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return http_connection_broken(cc);
    }
}

bool http_status_retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

uint64_t http_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms)
{
    uint64_t win = base_ms << (attempt < 10 ? (attempt > 0 ? attempt : 0) : 10);
    uint32_t r = 0;

    if (win > cap_ms)
        win = cap_ms;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)util_now_ns();
    return win / 2 + r % (win / 2 + 1);
}

static bool intr(const snap_ctx *ctx)
{
    return ctx != NULL && ctx->interrupted != NULL && *ctx->interrupted;
}

bool http_wait(const snap_ctx *ctx, uint64_t ms, bool ignore_intr)
{
    for (uint64_t slept = 0; slept < ms; slept += 50) {
        uint64_t step = ms - slept < 50 ? ms - slept : 50;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};

        if (!ignore_intr && intr(ctx))
            return false;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return ignore_intr || !intr(ctx);
}
