/* notify.c: webhook events over libcurl, signed, retried, bounded in time; failures warn. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "http.h"
#include "notify.h"
#include "util.h"

#define NOTIFY_BACKOFF_BASE_MS 200
#define NOTIFY_BACKOFF_CAP_MS 2000

typedef struct notify_cfg {
    util_strv urls;
    const char *secret_file, *ca_file;
    int64_t timeout_s;
    long retries;
} notify_cfg;

/* The URL as a message may show it: scheme, host and path, without user:password or query. */
static char *url_for_message(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *scheme = NULL, *path = NULL, *out;

    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        out = xstrdup("(a URL that cannot be parsed)");
    else {
        char *port = NULL;
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        out = xasprintf("%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "", path ? path : "");
        curl_free(port);
    }
    curl_free(host);
    curl_free(scheme);
    curl_free(path);
    curl_url_cleanup(u);
    return out;
}

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* One URL: attempts until an answer 2xx, one that will not change (4xx), or the time is up. */
static void post_one(const snap_ctx *ctx, const notify_cfg *nc, const char *url, const char *body,
                     const char *signature)
{
    char errbuf[CURL_ERROR_SIZE], *shown = url_for_message(url);
    uint64_t deadline = util_now_ms() + (uint64_t)nc->timeout_s * 1000;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *h = curl_easy_init();
    long status = 0;
    CURLcode cc = CURLE_OK;

    if (signature != NULL)
        hdr = curl_slist_append(hdr, signature);
    for (int attempt = 0; h != NULL; attempt++) {
        uint64_t now = util_now_ms();
        if (now >= deadline)
            break;
        http_opts o = {.protocols = "http,https", .timeout_ms = (long)(deadline - now), .ca_file = nc->ca_file,
                       .connect_timeout_ms = (long)(deadline - now), .errbuf = errbuf};
        http_setup(h, &o);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
        cc = curl_easy_perform(h);
        status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_OK && status >= 200 && status < 300) {
            log_debug(ctx, "notified %s (%ld)", shown, status);
            goto out;
        }
        bool again = cc != CURLE_OK ? http_transport_retryable(cc) : http_status_retryable(status);
        if (!again || attempt >= nc->retries)
            break;
        uint64_t wait = http_backoff_ms(attempt, NOTIFY_BACKOFF_BASE_MS, NOTIFY_BACKOFF_CAP_MS);
        if (util_now_ms() + wait >= deadline || !http_wait(ctx, wait, true))
            break;
    }
    if (cc != CURLE_OK)
        log_warn(ctx, "could not notify %s: %s", shown, errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else if (status != 0)
        log_warn(ctx, "could not notify %s: it answered HTTP %ld", shown, status);
    else
        log_warn(ctx, "could not notify %s within %llds", shown, (long long)nc->timeout_s);
out:
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(shown);
}

static snap_rc read_cfg(const cfg *c, notify_cfg *nc, snap_err *err)
{
    snap_rc rc;

    memset(nc, 0, sizeof *nc);
    cfg_each(c, "notify", "url", util_strv_add_words, &nc->urls);
    if ((rc = cfg_str(c, "notify", "secret_file", &nc->secret_file, err)) != SNAP_OK ||
        (rc = cfg_str(c, "notify", "ca_file", &nc->ca_file, err)) != SNAP_OK ||
        (rc = cfg_duration(c, "notify", "timeout", &nc->timeout_s, err)) != SNAP_OK)
        return rc;
    return cfg_int(c, "notify", "retries", &nc->retries, err);
}

/* "X-Snap-Signature: sha256=<hex>" for body. */
static snap_rc sign(const char *secret_file, const char *body, char **header, snap_err *err)
{
    unsigned char *key = NULL;
    size_t len = 0;
    char hex[65];
    snap_rc rc = auth_key_file_read(secret_file, &key, &len, err);

    *header = NULL;
    if (rc != SNAP_OK)
        return rc;
    auth_hmac_hex(key, len, body, strlen(body), hex);
    OPENSSL_cleanse(key, len);
    free(key);
    *header = xasprintf("X-Snap-Signature: sha256=%s", hex);
    return SNAP_OK;
}

void notify_send(const snap_ctx *ctx, const json_t *event)
{
    notify_cfg nc;
    snap_err err;
    char *body = NULL, *signature = NULL;

    if (read_cfg(ctx->cfg, &nc, &err) != SNAP_OK) {
        log_warn(ctx, "no notification sent: %s", err.msg);
        goto out;
    }
    if (nc.urls.n == 0)
        goto out;
    if (http_global_init(&err) != SNAP_OK) {
        log_warn(ctx, "no notification sent: %s", err.msg);
        goto out;
    }
    body = json_dumps(event, JSON_COMPACT | JSON_SORT_KEYS);
    if (nc.secret_file != NULL && nc.secret_file[0] != '\0' && sign(nc.secret_file, body, &signature, &err) != SNAP_OK) {
        /* an unsigned event to a receiver that expects a signature would be refused anyway */
        log_warn(ctx, "no notification sent: [notify] secret_file: %s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < nc.urls.n; i++)
        post_one(ctx, &nc, nc.urls.v[i], body, signature);
out:
    free(body);
    free(signature);
    util_strv_free(&nc.urls);
}
