/* registry.c: the OCI distribution client: HEAD and GET of manifests, with the
 * authentication flows of `docker pull` (RFC 7235 challenges, the token protocol). */
#include "registry.h"
#include "registry_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/http.h"
#include "../common/pool.h"
#include "../common/util.h"

#define TOKEN_MAX ((size_t)1 << 20)
#define ATTEMPTS 6
#define BACKOFF_BASE_MS 400 /* 200 ms to 400 ms before the second attempt, and so on */
#define BACKOFF_CAP_MS 8000
#define TOKEN_SLACK 10 /* seconds: a token that expires this soon is fetched anew */

typedef struct cred {
    char *host;   /* normalised: docker.io, ghcr.io, 127.0.0.1:5000 */
    char *user;   /* NULL: none to be had (a helper had none), remembered */
    char *pass;
    char *source; /* for messages: the config file or the helper's program */
} cred;

#define HELPER_OUT_MAX ((size_t)64 << 10)

enum { SCHEME_UNKNOWN, SCHEME_HTTPS, SCHEME_HTTP };
enum { CH_UNKNOWN, CH_NONE, CH_BASIC, CH_BEARER };

typedef struct host {
    char *name;     /* the API host */
    bool may_plain; /* loopback or named insecure */
    int scheme;
    bool probing; /* one worker is finding out the scheme; the others wait for it */
    int challenge;
    char *realm, *service;
} host;

enum { TOK_FETCHING, TOK_READY };

typedef struct token {
    char *host, *scope;
    char *value;
    time_t expires;
    int state;
} token;

struct reg_client {
    reg_opts opts;
    const snap_ctx *ctx;
    char *config_path;
    cred **creds; /* stable: entries are added while workers hold pointers to others */
    size_t ncreds;
    json_t *helpers;    /* credHelpers: host -> helper name */
    char *store_helper; /* credsStore */
    char **insecure;
    size_t ninsecure;
    char **token_hosts;
    size_t ntoken_hosts;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    host **hosts;
    size_t nhosts;
    token **tokens;
    size_t ntokens;
    json_t *host_cas; /* host[:port] -> the PEM of its certs.d directories ("" for none) */
};

typedef struct resp {
    long status;
    char digest[IMG_DIGEST_MAX + 1];
    char *ctype;
    char *challenge; /* the WWW-Authenticate we understand (Bearer or Basic) */
    util_buf body; /* with its limit: the largest answer this request takes */
    bool too_big;
} resp;

typedef struct worker {
    reg_client *c;
    CURL *h;
    char errbuf[CURL_ERROR_SIZE];
} worker;

static void resp_reset(resp *r)
{
    free(r->ctype);
    free(r->challenge);
    util_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

/* Credentials. */

/* "https://index.docker.io/v1/" -> "docker.io"; "https://host:5000/x" -> "host:5000". */
static char *norm_host(const char *key)
{
    const char *p = key;
    char *h;

    if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    h = strndup(p, strcspn(p, "/"));
    if (h == NULL)
        abort();
    if (strcmp(h, "index.docker.io") == 0 || strcmp(h, "registry-1.docker.io") == 0 ||
        strcmp(h, "registry.hub.docker.com") == 0) {
        free(h);
        h = xstrdup("docker.io");
    }
    return h;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static bool b64_decode(const char *in, char **out)
{
    size_t n = strlen(in), pad = 0;
    unsigned char *buf;
    int got;

    if (n == 0 || n % 4 != 0)
        return false;
    buf = xmalloc(n / 4 * 3 + 1);
    got = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n);
    if (got < 0) {
        free(buf);
        return false;
    }
    if (in[n - 1] == '=')
        pad++;
    if (in[n - 2] == '=')
        pad++;
    buf[(size_t)got - pad] = '\0';
    *out = (char *)buf;
    return true;
}

/* Takes ownership of every string. */
static void cred_add(reg_client *c, char *hostname, char *user, char *pass, char *source)
{
    cred *cr = xcalloc(1, sizeof *cr);

    cr->host = hostname;
    cr->user = user;
    cr->pass = pass;
    cr->source = source;
    c->creds = xrealloc(c->creds, (c->ncreds + 1) * sizeof *c->creds);
    c->creds[c->ncreds++] = cr;
}

/* Whether a registry already has an entry (an earlier file wins, as in skopeo). */
static bool cred_known(const reg_client *c, const char *hostname)
{
    for (size_t i = 0; i < c->ncreds; i++)
        if (strcmp(c->creds[i]->host, hostname) == 0)
            return true;
    return false;
}

/* One auth file (containers' auth.json or Docker's config.json: the same format). */
static snap_rc load_auth_file(reg_client *c, const char *path, snap_err *err)
{
    json_error_t jerr;
    json_t *root, *auths, *v;
    const char *key;
    snap_rc rc = SNAP_OK;

    if (access(path, F_OK) != 0)
        return SNAP_OK;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = err_set(err, SNAP_EUSAGE, 0, "cannot read %s:%d: %s", path, jerr.line, jerr.text);
        err_hint(err, "fix the file, or point REGISTRY_AUTH_FILE (or DOCKER_CONFIG) at a valid one");
        return rc;
    }
    auths = json_object_get(root, "auths");
    json_object_foreach(auths, key, v)
    {
        const char *auth = json_string_value(json_object_get(v, "auth"));
        const char *user = json_string_value(json_object_get(v, "username"));
        const char *pass = json_string_value(json_object_get(v, "password"));
        char *plain = NULL, *u = NULL, *p = NULL, *h;

        if (strchr(key + (strncasecmp(key, "https://", 8) == 0 ? 8 : 0), '/') != NULL &&
            strncasecmp(key, "http", 4) != 0)
            continue; /* "host/namespace" entries of auth.json: per-repository, not used */
        if (auth != NULL && auth[0] != '\0') {
            char *colon;
            if (!b64_decode(auth, &plain) || (colon = strchr(plain, ':')) == NULL) {
                free_secret(plain);
                rc = err_set(err, SNAP_EUSAGE, 0, "%s: the auth of \"%s\" is not base64 of user:password",
                             path, key);
                err_hint(err, "log in again with `podman login %s` or `docker login %s`, or fix the entry",
                         key, key);
                break;
            }
            *colon = '\0';
            u = xstrdup(plain);
            p = xstrdup(colon + 1);
            free_secret(plain);
        } else if (user != NULL && pass != NULL) {
            u = xstrdup(user);
            p = xstrdup(pass);
        } else {
            continue; /* identity tokens and helper-only entries carry no password */
        }
        h = norm_host(key);
        if (cred_known(c, h)) {
            free(h);
            free_secret(u);
            free_secret(p);
            continue;
        }
        cred_add(c, h, u, p, xstrdup(path));
    }
    if (rc == SNAP_OK) {
        json_t *hs = json_object_get(root, "credHelpers");
        const char *st = json_string_value(json_object_get(root, "credsStore"));
        json_object_foreach(hs, key, v)
            if (json_is_string(v) && json_object_get(c->helpers, key) == NULL)
                json_object_set_new(c->helpers, key, json_string(json_string_value(v)));
        if (st != NULL && st[0] != '\0' && c->store_helper == NULL)
            c->store_helper = xstrdup(st);
    }
    json_decref(root);
    return rc;
}

/*
 * The auth files in skopeo's (containers/image's) order: [source] docker_config alone when
 * set (local configuration first), else REGISTRY_AUTH_FILE alone when set, else
 * $XDG_RUNTIME_DIR/containers/auth.json (/run/containers/UID/auth.json without it),
 * ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, then Docker's config.json
 * ($DOCKER_CONFIG, else ~/.docker). The first file with an entry for a registry wins.
 */
static snap_rc load_config(reg_client *c, const char *dir, snap_err *err)
{
    const char *home = getenv("HOME"), *v;
    util_strv paths = {0};
    snap_rc rc = SNAP_OK;

    c->helpers = json_object();
    if (dir != NULL && dir[0] != '\0') {
        util_strv_push(&paths, xasprintf("%s/config.json", dir));
    } else if ((v = getenv("REGISTRY_AUTH_FILE")) != NULL && v[0] != '\0') {
        util_strv_push(&paths, xstrdup(v));
    } else {
        if ((v = getenv("XDG_RUNTIME_DIR")) != NULL && v[0] != '\0')
            util_strv_push(&paths, xasprintf("%s/containers/auth.json", v));
        else
            util_strv_push(&paths, xasprintf("/run/containers/%u/auth.json", (unsigned)getuid()));
        if ((v = getenv("XDG_CONFIG_HOME")) != NULL && v[0] != '\0')
            util_strv_push(&paths, xasprintf("%s/containers/auth.json", v));
        else if (home != NULL && home[0] != '\0')
            util_strv_push(&paths, xasprintf("%s/.config/containers/auth.json", home));
        if ((v = getenv("DOCKER_CONFIG")) != NULL && v[0] != '\0')
            util_strv_push(&paths, xasprintf("%s/config.json", v));
        else if (home != NULL && home[0] != '\0')
            util_strv_push(&paths, xasprintf("%s/.docker/config.json", home));
    }
    for (size_t i = 0; i < paths.n && rc == SNAP_OK; i++) {
        if (c->config_path == NULL && access(paths.v[i], F_OK) == 0)
            c->config_path = xstrdup(paths.v[i]);
        rc = load_auth_file(c, paths.v[i], err);
    }
    util_strv_free(&paths);
    return rc;
}

/* Runs `docker-credential-NAME get` with the server on stdin, as Docker does. */
static bool helper_valid(const char *name)
{
    if (name[0] == '\0')
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

static void run_helper(reg_client *c, const char *helper, const char *domain)
{
    char *prog = xasprintf("docker-credential-%s", helper);
    char *server = strcmp(domain, "docker.io") == 0 ? xstrdup("https://index.docker.io/v1/")
                                                    : xstrdup(domain);
    char *argv[] = {prog, (char *)(uintptr_t) "get", NULL};
    char *out = xmalloc(HELPER_OUT_MAX + 1), *u = NULL, *p = NULL;
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, status = 0;
    size_t n = 0;
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    json_t *doc = NULL;

    if (!helper_valid(helper) || pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0)
        goto out;
    /* The request fits in the pipe: written before the child starts, so no SIGPIPE. */
    if (write(in[1], server, strlen(server)) != (ssize_t)strlen(server))
        goto out;
    close(in[1]);
    in[1] = -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    int sp = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(outp[1]);
    outp[1] = -1;
    if (sp != 0) {
        log_warn(c->ctx, "cannot run credential helper %s for %s: %s", prog, domain, strerror(sp));
        pid = -1;
        goto out;
    }
    for (;;) {
        ssize_t r = read(outp[0], out + n, HELPER_OUT_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == HELPER_OUT_MAX)
            break;
    }
    out[n] = '\0';
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    /* A helper that has nothing for this server exits non-zero: no credentials. */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        goto out;
    doc = json_loadb(out, n, 0, NULL);
    const char *user = json_string_value(json_object_get(doc, "Username"));
    const char *secret = json_string_value(json_object_get(doc, "Secret"));
    if (user == NULL || secret == NULL || secret[0] == '\0')
        goto out;
    if (strcmp(user, "<token>") == 0) {
        log_warn(c->ctx, "%s gives an identity token for %s, which snap cannot use; "
                         "put a user and password for it in auths", prog, domain);
        goto out;
    }
    u = xstrdup(user);
    p = xstrdup(secret);
out:
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    OPENSSL_cleanse(out, n);
    free(out);
    json_decref(doc); /* the secret's copy in jansson's memory goes with it */
    cred_add(c, xstrdup(domain), u, p, prog);
    free(server);
}

/* The credentials for a registry: auths first, then its credential helper (once). */
static const cred *cred_find(reg_client *c, const char *domain)
{
    const cred *found = NULL;
    bool known = false;

    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->ncreds && !known; i++)
        if (strcmp(c->creds[i]->host, domain) == 0) {
            known = true;
            found = c->creds[i];
        }
    if (!known) {
        const char *helper = json_string_value(json_object_get(c->helpers, domain));
        if (helper == NULL && strcmp(domain, "docker.io") == 0)
            helper = json_string_value(json_object_get(c->helpers, "https://index.docker.io/v1/"));
        if (helper == NULL)
            helper = c->store_helper;
        if (helper != NULL) {
            run_helper(c, helper, domain); /* under the lock: once per registry */
            found = c->creds[c->ncreds - 1];
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found != NULL && found->user != NULL ? found : NULL;
}

/* Hosts. */

static bool is_loopback(const char *hostport)
{
    char h[256];
    const char *end;
    struct in_addr a4;
    struct in6_addr a6;

    if (hostport[0] == '[') {
        end = strchr(hostport, ']');
        if (end == NULL || (size_t)(end - hostport - 1) >= sizeof h)
            return false;
        memcpy(h, hostport + 1, (size_t)(end - hostport - 1));
        h[end - hostport - 1] = '\0';
        return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    size_t n = strcspn(hostport, ":");
    if (n >= sizeof h)
        return false;
    memcpy(h, hostport, n);
    h[n] = '\0';
    if (strcasecmp(h, "localhost") == 0)
        return true;
    return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static bool plain_allowed(const reg_client *c, const char *hostport)
{
    if (is_loopback(hostport))
        return true;
    for (size_t i = 0; i < c->ninsecure; i++)
        if (strcmp(c->insecure[i], hostport) == 0)
            return true;
    return false;
}

static host *host_get(reg_client *c, const char *name)
{
    host *h = NULL;

    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nhosts; i++)
        if (strcmp(c->hosts[i]->name, name) == 0)
            h = c->hosts[i];
    if (h == NULL) {
        h = xcalloc(1, sizeof *h);
        h->name = xstrdup(name);
        h->may_plain = plain_allowed(c, name);
        c->hosts = xrealloc(c->hosts, (c->nhosts + 1) * sizeof *c->hosts);
        c->hosts[c->nhosts++] = h;
    }
    pthread_mutex_unlock(&c->mu);
    return h;
}

/* A consistent copy of what is known of a host, taken under the lock. */
typedef struct host_view {
    int scheme, challenge;
    char *realm, *service;
} host_view;

static void host_view_get(reg_client *c, const host *h, host_view *v)
{
    pthread_mutex_lock(&c->mu);
    v->scheme = h->scheme;
    v->challenge = h->challenge;
    v->realm = h->realm ? xstrdup(h->realm) : NULL;
    v->service = h->service ? xstrdup(h->service) : NULL;
    pthread_mutex_unlock(&c->mu);
}

static void host_view_free(host_view *v)
{
    free(v->realm);
    free(v->service);
}

/*
 * Whether https or plain http works for a loopback or insecure registry is found out by
 * one worker while the others wait: a wave of failing TLS handshakes (each loading the
 * CA bundle) costs more than the wait. Returns true when the caller is that worker.
 */
static bool host_probe_claim(reg_client *c, host *h)
{
    bool mine = false;

    pthread_mutex_lock(&c->mu);
    while (h->probing)
        pthread_cond_wait(&c->cond, &c->mu);
    if (h->scheme == SCHEME_UNKNOWN)
        mine = h->probing = true;
    pthread_mutex_unlock(&c->mu);
    return mine;
}

static void host_probe_end(reg_client *c, host *h, int scheme)
{
    pthread_mutex_lock(&c->mu);
    if (scheme != SCHEME_UNKNOWN)
        h->scheme = scheme;
    h->probing = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void host_set_scheme(reg_client *c, host *h, int scheme)
{
    pthread_mutex_lock(&c->mu);
    h->scheme = scheme;
    pthread_mutex_unlock(&c->mu);
}

/* WWW-Authenticate: Bearer realm="…",service="…",scope="…" (RFC 7235 auth-params). */
static char *auth_param(const char *ch, const char *name)
{
    const char *p = ch + strcspn(ch, " ");
    size_t nl = strlen(name);

    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ',' && *p != ' ')
            p++;
        size_t kl = (size_t)(p - k);
        if (*p != '=')
            continue;
        p++;
        char *val = xmalloc(strlen(p) + 1), *o = val;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                *o++ = *p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ',' && *p != ' ')
                *o++ = *p++;
        }
        *o = '\0';
        if (kl == nl && strncasecmp(k, name, nl) == 0)
            return val;
        free(val);
    }
    return NULL;
}

static void host_learn(reg_client *c, host *h, const char *challenge)
{
    pthread_mutex_lock(&c->mu);
    if (challenge != NULL && strncasecmp(challenge, "bearer", 6) == 0) {
        free(h->realm);
        free(h->service);
        h->realm = auth_param(challenge, "realm");
        h->service = auth_param(challenge, "service");
        h->challenge = h->realm != NULL ? CH_BEARER : CH_UNKNOWN;
    } else if (challenge != NULL && strncasecmp(challenge, "basic", 5) == 0) {
        h->challenge = CH_BASIC;
    }
    pthread_mutex_unlock(&c->mu);
}

/* HTTP. */

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    resp *r = arg;
    size_t n = size * nitems, vl;
    const char *v;
    long status;

    if (http_status_line(buf, n, &status)) {
        /* A new response (after a redirect or 100): forget the previous headers. */
        r->digest[0] = '\0';
        free(r->ctype);
        free(r->challenge);
        r->ctype = r->challenge = NULL;
    } else if (http_header(buf, n, "docker-content-digest", &v, &vl)) {
        if (vl < sizeof r->digest)
            http_copy(v, vl, r->digest, sizeof r->digest);
    } else if (http_header(buf, n, "content-type", &v, &vl)) {
        size_t tl = 0;
        while (tl < vl && v[tl] != ';')
            tl++;
        while (tl > 0 && (v[tl - 1] == ' ' || v[tl - 1] == '\t'))
            tl--;
        free(r->ctype);
        r->ctype = strndup(v, tl);
        if (r->ctype == NULL)
            abort();
    } else if (http_header(buf, n, "www-authenticate", &v, &vl) && r->challenge == NULL &&
               ((vl >= 6 && strncasecmp(v, "bearer", 6) == 0) ||
                (vl >= 5 && strncasecmp(v, "basic", 5) == 0))) {
        r->challenge = strndup(v, vl);
        if (r->challenge == NULL)
            abort();
    }
    return n;
}

void reg_parse_headers_int(const char *buf, size_t len)
{
    resp r = {0};

    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - buf) + 1 : len;
        char *line = xmalloc(n);
        memcpy(line, buf, n);
        on_header(line, 1, n, &r);
        free(line);
        buf += n;
        len -= n;
    }
    if (r.challenge != NULL) {
        const char *names[] = {"realm", "service", "scope"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            free(auth_param(r.challenge, names[i]));
    }
    resp_reset(&r);
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *arg)
{
    resp *r = arg;
    size_t n = size * nitems;

    if (!util_buf_add(&r->body, buf, n)) {
        r->too_big = true;
        return 0;
    }
    return n;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c_, curl_off_t d)
{
    const reg_client *c = arg;

    (void)a, (void)b, (void)c_, (void)d;
    return c->ctx != NULL && c->ctx->interrupted != NULL && *c->ctx->interrupted;
}

/*
 * Per-registry CAs, as podman, skopeo and Docker read them: every *.crt of
 * /etc/containers/certs.d/HOST[:PORT]/ and /etc/docker/certs.d/HOST[:PORT]/, trusted besides
 * the system's. SNAP_REGISTRY_CERTS_DIRS (a colon-separated list of such roots) replaces the
 * two for tests. Read once per host; the host comes from the URL, so a plain name only.
 */
#define CA_FILE_MAX ((size_t)1 << 20)

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ca_dir_add(util_buf *pem, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    util_strv names = {0};

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".crt") == 0)
            util_strv_push(&names, xasprintf("%s/%s", dir, e->d_name));
    }
    closedir(d);
    qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        FILE *f = fopen(names.v[i], "re");
        char *buf = xmalloc(CA_FILE_MAX);
        size_t got = f ? fread(buf, 1, CA_FILE_MAX, f) : 0;
        if (f != NULL && got > 0 && got < CA_FILE_MAX) {
            util_buf_add(pem, buf, got);
            util_buf_addc(pem, '\n');
        }
        if (f != NULL)
            fclose(f);
        free(buf);
    }
    util_strv_free(&names);
}

static char *host_ca(reg_client *c, const char *url, size_t *len)
{
    CURLU *u = curl_url();
    char *hn = NULL, *port = NULL, *key = NULL, *out = NULL;
    const char *roots = getenv("SNAP_REGISTRY_CERTS_DIRS"), *have;

    *len = 0;
    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &hn, 0) != CURLUE_OK || hn[0] == '.' ||
        strchr(hn, '/') != NULL)
        goto out;
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    key = port ? xasprintf("%s:%s", hn, port) : xstrdup(hn);
    pthread_mutex_lock(&c->mu);
    if (c->host_cas == NULL)
        c->host_cas = json_object();
    have = json_string_value(json_object_get(c->host_cas, key));
    if (have == NULL) {
        util_buf pem = {0};
        char *list = xstrdup(roots && roots[0] ? roots : "/etc/containers/certs.d:/etc/docker/certs.d");
        char *save = NULL;
        for (char *r = strtok_r(list, ":", &save); r != NULL; r = strtok_r(NULL, ":", &save)) {
            char *d = xasprintf("%s/%s", r, key);
            ca_dir_add(&pem, d);
            free(d);
        }
        free(list);
        util_buf_addc(&pem, '\0');
        json_object_set_new(c->host_cas, key, json_string(pem.p));
        util_buf_free(&pem);
        have = json_string_value(json_object_get(c->host_cas, key));
    }
    if (have != NULL && have[0] != '\0') {
        out = xstrdup(have);
        *len = strlen(out);
    }
    pthread_mutex_unlock(&c->mu);
out:
    curl_free(hn);
    curl_free(port);
    free(key);
    curl_url_cleanup(u);
    return out;
}

typedef struct auth {
    const char *user, *pass; /* basic */
    const char *bearer;
} auth;

static CURLcode perform(worker *wk, const char *url, bool head, bool plain_ok, bool insecure_tls,
                        const char *accept, const auth *a, size_t max, resp *r)
{
    reg_client *c = wk->c;
    struct curl_slist *hdr = NULL;
    CURLcode cc;
    char *acc = NULL;

    size_t ca_len;
    char *ca = host_ca(c, url, &ca_len);

    resp_reset(r);
    r->body.max = max;
    http_opts ho = {.ca_pem = ca,
                    .ca_pem_len = ca_len,
                    .protocols = plain_ok ? "http,https" : "https",
                    .follow_redirects = true,
                    .timeout_ms = c->opts.timeout_ms > 0 ? c->opts.timeout_ms : 30000L,
                    .connect_timeout_ms = c->opts.connect_timeout_ms,
                    .tls_no_verify = insecure_tls,
                    .errbuf = wk->errbuf,
                    .progress = on_progress,
                    .progress_arg = c};
    http_setup(wk->h, &ho);
    curl_easy_setopt(wk->h, CURLOPT_URL, url);
    if (head)
        curl_easy_setopt(wk->h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(wk->h, CURLOPT_HTTPGET, 1L);
    if (accept != NULL) {
        acc = xasprintf("Accept: %s", accept);
        hdr = curl_slist_append(hdr, acc);
    }
    if (a != NULL && a->bearer != NULL) {
        curl_easy_setopt(wk->h, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(wk->h, CURLOPT_XOAUTH2_BEARER, a->bearer);
    } else if (a != NULL && a->user != NULL) {
        curl_easy_setopt(wk->h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(wk->h, CURLOPT_USERNAME, a->user);
        curl_easy_setopt(wk->h, CURLOPT_PASSWORD, a->pass);
    }
    curl_easy_setopt(wk->h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(wk->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(wk->h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(wk->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(wk->h, CURLOPT_WRITEDATA, r);
    cc = curl_easy_perform(wk->h);
    curl_easy_getinfo(wk->h, CURLINFO_RESPONSE_CODE, &r->status);
    /* The credentials must not outlive the request in the handle. */
    curl_easy_setopt(wk->h, CURLOPT_XOAUTH2_BEARER, NULL);
    curl_easy_setopt(wk->h, CURLOPT_PASSWORD, NULL);
    curl_easy_setopt(wk->h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    free(acc);
    free(ca);
    return cc;
}

static const char *curl_why(const worker *wk, CURLcode cc)
{
    return wk->errbuf[0] ? wk->errbuf : curl_easy_strerror(cc);
}

/* Tokens. */

static token *token_find(reg_client *c, const char *hostname, const char *scope)
{
    for (size_t i = 0; i < c->ntokens; i++)
        if (strcmp(c->tokens[i]->host, hostname) == 0 && strcmp(c->tokens[i]->scope, scope) == 0)
            return c->tokens[i];
    return NULL;
}

static void token_drop(reg_client *c, token *t)
{
    for (size_t i = 0; i < c->ntokens; i++)
        if (c->tokens[i] == t) {
            c->tokens[i] = c->tokens[--c->ntokens];
            break;
        }
    free(t->host);
    free(t->scope);
    free_secret(t->value);
    free(t);
}

bool reg_parse_token_int(const char *body, size_t len, char **value, long *ttl)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *tok = json_string_value(json_object_get(doc, "token"));
    bool ok;

    if (tok == NULL || tok[0] == '\0')
        tok = json_string_value(json_object_get(doc, "access_token"));
    ok = tok != NULL && tok[0] != '\0';
    if (ok) {
        *value = xstrdup(tok);
        json_int_t exp = json_integer_value(json_object_get(doc, "expires_in"));
        *ttl = exp >= 60 ? (long)exp : 60; /* the protocol's default is 60 seconds */
    }
    json_decref(doc);
    return ok;
}

/* A registry that asked for credentials this host does not have for it. */
static snap_rc no_credentials(const char *image, const char *domain, snap_err *err)
{
    err_set(err, SNAP_EUNREACH, 0, "image %s: registry %s requires credentials", image, domain);
    err_kind(err, "credentials");
    err_hint(err, "log in with `podman login %s` or `docker login %s` (REGISTRY_AUTH_FILE, "
                  "containers/auth.json or DOCKER_CONFIG's config.json)",
             domain, domain);
    return SNAP_EUNREACH;
}

/* Whether hostport (host[:port], IPv6 in brackets) names host, whatever the port. */
static bool same_host(const char *hostport, const char *name)
{
    size_t n;

    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        n = end != NULL ? (size_t)(end - hostport) + 1 : strlen(hostport);
    } else {
        n = strcspn(hostport, ":");
    }
    return strlen(name) == n && strncasecmp(hostport, name, n) == 0;
}

/*
 * Whether a token service on rhost (port rport or NULL) may receive the credentials of
 * the registry domain, reached at api: only the registry's own host, Docker Hub's known
 * token service, and the hosts the configuration names in token_hosts.
 */
static bool token_host_allowed(const reg_client *c, const char *api, const char *domain, const char *rhost,
                               const char *hp)
{
    if (same_host(api, rhost) || same_host(domain, rhost))
        return true;
    if (strcmp(domain, "docker.io") == 0 && strcasecmp(rhost, "auth.docker.io") == 0)
        return true;
    for (size_t i = 0; i < c->ntoken_hosts; i++)
        if (strcasecmp(c->token_hosts[i], rhost) == 0 || strcasecmp(c->token_hosts[i], hp) == 0)
            return true;
    return false;
}

/*
 * Asks the realm for a token; basic credentials go to the realm only when it is on the
 * registry's own host or one the configuration allows, and never the token to it.
 */
static snap_rc token_fetch(worker *wk, const host_view *hv, const char *api, const char *domain,
                           const char *scope, const char *image, char **value, long *ttl,
                           snap_err *err)
{
    reg_client *c = wk->c;
    const cred *cr = cred_find(c, domain);
    bool withheld = false;
    char *url = NULL, *rhost = NULL, *rscheme = NULL, *rport = NULL, *hp = NULL;
    CURLU *u = curl_url();
    resp r = {0};
    snap_rc rc = SNAP_OK;
    auth a = {0};

    *value = NULL;
    if (curl_url_set(u, CURLUPART_URL, hv->realm, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &rscheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &rhost, 0) != CURLUE_OK) {
        rc = err_set(err, SNAP_EFAIL, 0, "image %s: registry %s names a token service that is not a URL",
                     image, domain);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &rport, 0);
    hp = rport ? xasprintf("%s:%s", rhost, rport) : xstrdup(rhost);
    bool plain_ok = plain_allowed(c, hp) || plain_allowed(c, rhost);
    if (strcasecmp(rscheme, "https") != 0 && !plain_ok) {
        rc = err_set(err, SNAP_EUNREACH, 0,
                     "image %s: registry %s sends for tokens to %s over plain HTTP", image, domain, hp);
        err_hint(err, "name %s as an insecure registry only if that is truly meant", hp);
        goto out;
    }
    {
        char *svc = hv->service ? curl_easy_escape(wk->h, hv->service, 0) : NULL;
        char *sc = curl_easy_escape(wk->h, scope, 0);
        url = xasprintf("%s%c%s%s%sscope=%s", hv->realm, strchr(hv->realm, '?') ? '&' : '?',
                        svc ? "service=" : "", svc ? svc : "", svc ? "&" : "", sc);
        curl_free(svc);
        curl_free(sc);
    }
    if (cr != NULL && !token_host_allowed(c, api, domain, rhost, hp)) {
        log_warn(c->ctx, "registry %s sends for tokens to %s, another host: asking it without the credentials "
                         "of %s (name it in token_hosts to send them)", domain, hp, domain);
        cr = NULL;
        withheld = true;
    }
    if (cr != NULL) {
        a.user = cr->user;
        a.pass = cr->pass;
    }
    CURLcode cc = perform(wk, url, false, plain_ok, false, NULL, cr ? &a : NULL, TOKEN_MAX, &r);
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        rc = err_set(err, SNAP_EINTR, 0, "interrupted");
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = err_set(err, SNAP_EUNREACH, 0, "image %s: the token service of registry %s did not answer: %s",
                     image, domain, curl_why(wk, cc));
        goto out;
    }
    if (r.status == 401 || r.status == 403) {
        if (cr != NULL) {
            rc = err_set(err, SNAP_EUNREACH, 0,
                         "image %s: registry %s refused the credentials of user %s (from %s)",
                         image, domain, cr->user, cr->source);
            err_kind(err, "denied");
            err_hint(err, "log in again with `docker login %s`, or fix its entry in %s", domain,
                     cr->source);
        } else if (withheld) {
            rc = err_set(err, SNAP_EUNREACH, 0, "image %s: the token service %s of registry %s is on another "
                         "host, which gets no credentials", image, hp, domain);
            err_hint(err, "if %s is truly the token service of %s, name it in token_hosts", hp, domain);
        } else {
            rc = no_credentials(image, domain, err);
        }
        goto out;
    }
    if (r.status != 200) {
        rc = err_set(err, SNAP_EUNREACH, 0, "image %s: the token service of registry %s answered HTTP %ld",
                     image, domain, r.status);
        goto out;
    }
    if (!reg_parse_token_int(r.body.p ? r.body.p : "", r.body.len, value, ttl)) {
        rc = err_set(err, SNAP_EFAIL, 0, "image %s: the token service of registry %s sent no token",
                     image, domain);
        goto out;
    }
out:
    if (r.body.p != NULL)
        OPENSSL_cleanse(r.body.p, r.body.len);
    resp_reset(&r);
    curl_free(rhost);
    curl_free(rscheme);
    curl_free(rport);
    curl_url_cleanup(u);
    free(hp);
    free(url);
    return rc;
}

/* A token for (host, scope), fetched once however many workers want it. Caller frees. */
static snap_rc token_get(worker *wk, host *h, const host_view *hv, const char *domain,
                         const char *scope, const char *image, bool renew, char **out,
                         snap_err *err)
{
    reg_client *c = wk->c;
    token *t;
    char *value = NULL;
    long ttl = 0;
    snap_rc rc;

    *out = NULL;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        t = token_find(c, h->name, scope);
        if (t != NULL && t->state == TOK_FETCHING) {
            pthread_cond_wait(&c->cond, &c->mu);
            continue;
        }
        if (t != NULL && (renew || t->expires - TOKEN_SLACK <= time(NULL))) {
            token_drop(c, t);
            t = NULL;
            renew = false;
        }
        break;
    }
    if (t != NULL) {
        *out = xstrdup(t->value);
        pthread_mutex_unlock(&c->mu);
        return SNAP_OK;
    }
    t = xcalloc(1, sizeof *t);
    t->host = xstrdup(h->name);
    t->scope = xstrdup(scope);
    t->state = TOK_FETCHING;
    c->tokens = xrealloc(c->tokens, (c->ntokens + 1) * sizeof *c->tokens);
    c->tokens[c->ntokens++] = t;
    pthread_mutex_unlock(&c->mu);

    rc = token_fetch(wk, hv, h->name, domain, scope, image, &value, &ttl, err);

    pthread_mutex_lock(&c->mu);
    if (rc == SNAP_OK) {
        t->value = value;
        t->expires = time(NULL) + ttl;
        t->state = TOK_READY;
        *out = xstrdup(value);
    } else {
        token_drop(c, t); /* the next worker tries on its own and reports its own error */
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Manifests. */

static bool hash_matches(const char *digest, const char *buf, size_t len)
{
    const EVP_MD *md;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    const char *want;

    if (strncmp(digest, "sha256:", 7) == 0)
        md = EVP_sha256();
    else if (strncmp(digest, "sha512:", 7) == 0)
        md = EVP_sha512();
    else
        return false;
    want = digest + 7;
    if (EVP_Digest(buf, len, out, &outlen, md, NULL) != 1)
        return false;
    for (unsigned i = 0; i < outlen; i++)
        sprintf(hex + 2 * i, "%02x", out[i]);
    return strcmp(hex, want) == 0;
}

/*
 * One manifest request with the authentication dance: learn the challenge from a 401,
 * fetch a token or send basic credentials, try again. Returns SNAP_OK with r->status set,
 * or a transport or authentication failure.
 */
static snap_rc manifest_request(worker *wk, const img_ref *ref, const char *reference, bool head,
                                resp *r, snap_err *err)
{
    reg_client *c = wk->c;
    const char *image = img_ref_canonical(ref), *domain = img_ref_domain(ref);
    host *h = host_get(c, img_ref_api_host(ref));
    char *scope = xasprintf("repository:%s:pull", img_ref_path(ref));
    const cred *cr = cred_find(c, domain);
    bool sent_token = false, sent_basic = false, renew = false, retried_transport = false;
    snap_rc rc = SNAP_OK;

    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        host_view hv;
        char *tok = NULL, *url;
        auth a = {0};
        bool use_auth = false, probing = h->may_plain && host_probe_claim(c, h);

        host_view_get(c, h, &hv);
        if (hv.challenge == CH_BEARER) {
            rc = token_get(wk, h, &hv, domain, scope, image, renew, &tok, err);
            renew = false;
            if (rc != SNAP_OK) {
                if (probing)
                    host_probe_end(c, h, SCHEME_UNKNOWN);
                host_view_free(&hv);
                goto out;
            }
            a.bearer = tok;
            use_auth = sent_token = true;
        } else if (hv.challenge == CH_BASIC && cr != NULL) {
            a.user = cr->user;
            a.pass = cr->pass;
            use_auth = sent_basic = true;
        }
        int scheme = hv.scheme == SCHEME_HTTP ? SCHEME_HTTP : SCHEME_HTTPS;
        url = xasprintf("%s://%s/v2/%s/manifests/%s", scheme == SCHEME_HTTP ? "http" : "https",
                        h->name, img_ref_path(ref), reference);
        CURLcode cc = perform(wk, url, head, h->may_plain, h->may_plain, REG_ACCEPT,
                              use_auth ? &a : NULL, REG_MANIFEST_MAX, r);
        free(url);
        free_secret(tok);
        host_view_free(&hv);
        /* Docker's rule: a loopback or insecure registry falls back to plain HTTP. */
        bool fallback = cc != CURLE_OK && scheme == SCHEME_HTTPS && h->may_plain &&
                        hv.scheme == SCHEME_UNKNOWN && cc != CURLE_OPERATION_TIMEDOUT &&
                        cc != CURLE_ABORTED_BY_CALLBACK;
        int decided = cc == CURLE_OK ? scheme : fallback ? SCHEME_HTTP : SCHEME_UNKNOWN;
        if (probing)
            host_probe_end(c, h, decided);
        else if (hv.scheme == SCHEME_UNKNOWN && decided != SCHEME_UNKNOWN)
            host_set_scheme(c, h, decided);
        if (cc == CURLE_ABORTED_BY_CALLBACK) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            goto out;
        }
        if (cc != CURLE_OK) {
            if (fallback)
                continue;
            if (!retried_transport && http_connection_broken(cc)) {
                retried_transport = true;
                continue;
            }
            if (r->too_big) {
                rc = err_set(err, SNAP_EFAIL, 0, "image %s: the manifest is larger than %zu bytes",
                             image, REG_MANIFEST_MAX);
                goto out;
            }
            rc = err_set(err, SNAP_EUNREACH, 0, "image %s: registry %s did not answer: %s", image,
                         h->name, curl_why(wk, cc));
            if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
                err_hint(err, "put the registry's CA in /etc/containers/certs.d/%s/ca.crt (or "
                              "/etc/docker/certs.d/%s/), as for podman and docker",
                         h->name, h->name);
            else
                err_hint(err, "check that the registry is up and reachable from here; "
                              "--allow-unresolved records the tag alone");
            goto out;
        }
        if (r->status == 401) {
            bool bearer = r->challenge != NULL && strncasecmp(r->challenge, "bearer", 6) == 0;
            bool basic = r->challenge != NULL && strncasecmp(r->challenge, "basic", 5) == 0;
            if (bearer && !sent_token) {
                host_learn(c, h, r->challenge);
                continue;
            }
            if (bearer && sent_token && attempt < 2) {
                /* The token may have expired early or been revoked: one more, fresh. */
                host_learn(c, h, r->challenge);
                renew = true;
                continue;
            }
            if (basic && !sent_basic && cr != NULL) {
                host_learn(c, h, r->challenge);
                continue;
            }
            if (cr != NULL && (sent_basic || sent_token)) {
                rc = err_set(err, SNAP_EUNREACH, 0,
                             "image %s: registry %s refused the credentials of user %s (from %s)",
                             image, domain, cr->user, cr->source);
                err_kind(err, "denied");
                err_hint(err, "log in again with `docker login %s`, or fix its entry in %s",
                         domain, cr->source);
            } else {
                rc = no_credentials(image, domain, err);
            }
            goto out;
        }
        if (r->status != 500 && http_status_retryable(r->status) && attempt + 1 < ATTEMPTS) {
            if (!http_wait(c->ctx, http_backoff_ms(attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS), false)) {
                rc = err_set(err, SNAP_EINTR, 0, "interrupted");
                goto out;
            }
            continue;
        }
        break;
    }
out:
    free(scope);
    return rc;
}

static void run_job(worker *wk, reg_job *j)
{
    const char *image = img_ref_canonical(j->ref), *domain = img_ref_domain(j->ref);
    const char *reference = j->op == REG_EXISTS ? j->digest : img_ref_reference(j->ref);
    resp r = {0};
    json_t *doc = NULL;

    j->rc = manifest_request(wk, j->ref, reference, true, &r, &j->err);
    if (j->rc != SNAP_OK)
        goto out;
    if (r.status == 404) {
        if (j->op == REG_EXISTS) {
            j->exists = false;
            goto out;
        }
        if (img_ref_digest(j->ref) != NULL)
            j->rc = err_set(&j->err, SNAP_ENOTFOUND, 0, "image %s: registry %s has no manifest %s",
                            image, domain, img_ref_digest(j->ref));
        else
            j->rc = err_set(&j->err, SNAP_ENOTFOUND, 0, "image %s: registry %s has no tag %s",
                            image, domain, img_ref_tag(j->ref));
        err_hint(&j->err, "check the name and tag in the manifest; push the image, or fix the reference");
        goto out;
    }
    if (r.status == 403) {
        j->rc = err_set(&j->err, SNAP_EUNREACH, 0, "image %s: registry %s denied access", image, domain);
        err_kind(&j->err, "denied");
        err_hint(&j->err, "the account needs pull access to %s", img_ref_path(j->ref));
        goto out;
    }
    if (r.status != 200) {
        j->rc = err_set(&j->err, SNAP_EFAIL, 0, "image %s: registry %s answered HTTP %ld", image,
                        domain, r.status);
        goto out;
    }
    if (j->op == REG_EXISTS) {
        j->exists = true;
        snprintf(j->resolved, sizeof j->resolved, "%s", j->digest);
        goto out;
    }
    /* A digest reference names itself; a tag's digest is what the registry says now. */
    if (img_ref_digest(j->ref) != NULL)
        snprintf(j->resolved, sizeof j->resolved, "%s", img_ref_digest(j->ref));
    else
        snprintf(j->resolved, sizeof j->resolved, "%s", r.digest);
    if (j->op == REG_HEAD && j->resolved[0] != '\0') {
        if (!img_digest_valid(j->resolved))
            j->rc = err_set(&j->err, SNAP_EFAIL, 0, "image %s: registry %s sent a malformed digest",
                            image, domain);
        goto out;
    }
    /* GET by digest when known: the bytes cannot change under us, and are checked. */
    const char *get_ref = j->resolved[0] ? j->resolved : reference;
    if (j->resolved[0] && !img_digest_valid(j->resolved)) {
        j->rc = err_set(&j->err, SNAP_EFAIL, 0, "image %s: registry %s sent a malformed digest",
                        image, domain);
        goto out;
    }
    j->rc = manifest_request(wk, j->ref, get_ref, false, &r, &j->err);
    if (j->rc != SNAP_OK)
        goto out;
    if (r.status != 200) {
        j->rc = err_set(&j->err, r.status == 404 ? SNAP_ENOTFOUND : SNAP_EFAIL, 0,
                        "image %s: registry %s answered HTTP %ld to GET of manifest %s", image,
                        domain, r.status, get_ref);
        if (r.status == 404)
            err_hint(&j->err, "the tag moved or the manifest was deleted meanwhile; run snap again");
        goto out;
    }
    if (j->resolved[0] == '\0') {
        /* No Docker-Content-Digest on HEAD: the digest is the hash of the exact bytes. */
        if (img_digest_valid(r.digest)) {
            snprintf(j->resolved, sizeof j->resolved, "%s", r.digest);
        } else {
            char hex[65];
            util_sha256 *sh = util_sha256_new();
            util_sha256_update(sh, r.body.p ? r.body.p : "", r.body.len);
            util_sha256_final(sh, hex);
            snprintf(j->resolved, sizeof j->resolved, "sha256:%s", hex);
        }
    }
    if (!hash_matches(j->resolved, r.body.p ? r.body.p : "", r.body.len)) {
        j->rc = err_set(&j->err, SNAP_EVERIFY, 0,
                        "image %s: the manifest registry %s sent does not match digest %s", image,
                        domain, j->resolved);
        err_hint(&j->err, "the registry or something between it and here altered the manifest");
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(r.body.p ? r.body.p : "", r.body.len, 0, &jerr);
    if (!json_is_object(doc)) {
        j->rc = err_set(&j->err, SNAP_EFAIL, 0, "image %s: the manifest from registry %s is not a JSON object",
                        image, domain);
        goto out;
    }
    const char *mt = json_string_value(json_object_get(doc, "mediaType"));
    j->media_type = xstrdup(mt != NULL ? mt : r.ctype != NULL ? r.ctype : "");
    j->manifest_len = r.body.len;
    j->manifest = util_buf_take(&r.body);
out:
    json_decref(doc);
    resp_reset(&r);
}

void reg_job_clear(reg_job *j)
{
    free(j->media_type);
    free(j->manifest);
    j->media_type = NULL;
    j->manifest = NULL;
    j->manifest_len = 0;
    j->resolved[0] = '\0';
    j->rc = SNAP_OK;
    j->exists = false;
    err_clear(&j->err);
}

typedef struct run_arg {
    reg_client *c;
    reg_job *jobs;
    worker *wks; /* one per pool worker, each with its own connections */
    bool *ran;
} run_arg;

/* Each job keeps its own result, so that one image's failure does not stop the others. */
static snap_rc run_one(pool *p, void *arg, size_t worker_ix, size_t job, snap_err *err)
{
    run_arg *ra = arg;
    worker *wk = &ra->wks[worker_ix];
    reg_job *j = &ra->jobs[job];

    (void)p, (void)err;
    ra->ran[job] = true;
    if (wk->h == NULL)
        wk->h = curl_easy_init();
    if (wk->h == NULL) {
        j->rc = err_set(&j->err, SNAP_EFAIL, ENOMEM, "cannot start an HTTP client");
        return SNAP_OK;
    }
    run_job(wk, j);
    return SNAP_OK;
}

void reg_run(reg_client *c, reg_job *jobs, size_t n, int workers)
{
    size_t nt = workers < 1 ? 1 : (size_t)workers;
    run_arg ra = {.c = c, .jobs = jobs};
    snap_err e;

    if (n == 0)
        return;
    if (nt > n)
        nt = n;
    ra.wks = xcalloc(nt, sizeof *ra.wks);
    ra.ran = xcalloc(n, sizeof *ra.ran);
    for (size_t i = 0; i < nt; i++)
        ra.wks[i].c = c;
    err_clear(&e);
    pool_run(c->ctx, nt, n, run_one, &ra, &e);
    /* The pool stops taking jobs on an interrupt: those it never ran say so. */
    for (size_t i = 0; i < n; i++)
        if (!ra.ran[i])
            jobs[i].rc = err_set(&jobs[i].err, SNAP_EINTR, 0, "interrupted");
    for (size_t i = 0; i < nt; i++)
        curl_easy_cleanup(ra.wks[i].h);
    free(ra.wks);
    free(ra.ran);
}

snap_rc reg_client_new(const reg_opts *opts, const snap_ctx *ctx, reg_client **out,
                       snap_err *err)
{
    reg_client *c;
    snap_rc rc;

    *out = NULL;
    rc = http_global_init(err);
    if (rc != SNAP_OK)
        return rc;
    c = xcalloc(1, sizeof *c);
    if (opts != NULL)
        c->opts = *opts;
    c->ctx = ctx;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    for (size_t i = 0; opts != NULL && i < opts->ninsecure; i++) {
        c->insecure = xrealloc(c->insecure, (c->ninsecure + 1) * sizeof *c->insecure);
        c->insecure[c->ninsecure++] = norm_host(opts->insecure[i]);
    }
    for (size_t i = 0; opts != NULL && i < opts->ntoken_hosts; i++) {
        c->token_hosts = xrealloc(c->token_hosts, (c->ntoken_hosts + 1) * sizeof *c->token_hosts);
        c->token_hosts[c->ntoken_hosts++] = xstrdup(opts->token_hosts[i]);
    }
    /* Borrowed pointers are not kept: the lists are copied, the config read now. */
    c->opts.insecure = NULL;
    c->opts.ninsecure = 0;
    c->opts.token_hosts = NULL;
    c->opts.ntoken_hosts = 0;
    rc = load_config(c, c->opts.docker_config, err);
    c->opts.docker_config = NULL;
    if (rc != SNAP_OK) {
        reg_client_free(c);
        return rc;
    }
    *out = c;
    return SNAP_OK;
}

const char *reg_client_config_path(const reg_client *c)
{
    return c->config_path ? c->config_path : "~/.docker/config.json";
}

void reg_client_free(reg_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ncreds; i++) {
        free(c->creds[i]->host);
        free_secret(c->creds[i]->user);
        free_secret(c->creds[i]->pass);
        free(c->creds[i]->source);
        free(c->creds[i]);
    }
    free(c->creds);
    json_decref(c->helpers);
    free(c->store_helper);
    for (size_t i = 0; i < c->ninsecure; i++)
        free(c->insecure[i]);
    free(c->insecure);
    for (size_t i = 0; i < c->ntoken_hosts; i++)
        free(c->token_hosts[i]);
    free(c->token_hosts);
    for (size_t i = 0; i < c->nhosts; i++) {
        free(c->hosts[i]->name);
        free(c->hosts[i]->realm);
        free(c->hosts[i]->service);
        free(c->hosts[i]);
    }
    free(c->hosts);
    while (c->ntokens > 0)
        token_drop(c, c->tokens[0]);
    free(c->tokens);
    free(c->config_path);
    json_decref(c->host_cas);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}
