/*
 * s3_chain.c: the AWS credential chain: which source applies (in the AWS CLI's order,
 * from local configuration only), the credentials in force, and their renewal before
 * they expire. The fetches themselves are in s3_sts.c.
 *
 * Order (botocore's): the environment; a profile's role_arn with source_profile or
 * credential_source (AssumeRole); web identity (AWS_WEB_IDENTITY_TOKEN_FILE, or the
 * profile's web_identity_token_file); the profile's keys in the shared credentials file;
 * its credential_process; its keys in the config file; container credentials; IMDSv2.
 */
#include "s3_int.h"

#define ROLE_DEPTH_MAX 4
#define RENEW_AHEAD_MAX 300 /* seconds before expiry that renewal starts, at most */
#define RENEW_RETRY 5       /* seconds between renewals that failed while keys still hold */

/* ---------------------------------------------------------------- keys */

void s3_key_free(s3_key *k)
{
    if (k->secret_key)
        OPENSSL_cleanse(k->secret_key, strlen(k->secret_key));
    if (k->session_token)
        OPENSSL_cleanse(k->session_token, strlen(k->session_token));
    free(k->access_key);
    free(k->secret_key);
    free(k->session_token);
    memset(k, 0, sizeof *k);
}

void s3_key_copy(s3_key *dst, const s3_key *src)
{
    dst->access_key = src->access_key ? xstrdup(src->access_key) : NULL;
    dst->secret_key = src->secret_key ? xstrdup(src->secret_key) : NULL;
    dst->session_token = src->session_token ? xstrdup(src->session_token) : NULL;
    dst->expires = src->expires;
}

/* ---------------------------------------------------------------- profiles */

enum { P_AK, P_SK, P_TOK, P_ROLE_ARN, P_SOURCE_PROFILE, P_CRED_SOURCE, P_PROCESS, P_WIT,
       P_SESSION, P_EXTID, P_DURATION, P_MFA, P_N };

static const char *const prof_keys[P_N] = {
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "role_arn",
    "source_profile", "credential_source", "credential_process", "web_identity_token_file",
    "role_session_name", "external_id", "duration_seconds", "mfa_serial"};

/* One profile as both files give it: v[0] the shared credentials file, v[1] the config file. */
typedef struct prof {
    char *name;
    char *v[2][P_N];
} prof;

typedef struct prof_read {
    prof *p;
    int file; /* 0 credentials, 1 config ("profile NAME" sections but "default") */
} prof_read;

static int prof_cb(void *arg, const char *section, const char *name, const char *value)
{
    prof_read *r = arg;
    const char *s = section;

    if (name == NULL)
        return 1;
    if (r->file == 1 && strcmp(s, "default") != 0) {
        if (strncmp(s, "profile ", 8) != 0)
            return 1;
        for (s += 8; *s == ' ';)
            s++;
    }
    if (strcmp(s, r->p->name) != 0)
        return 1;
    for (int k = 0; k < P_N; k++)
        if (strcmp(name, prof_keys[k]) == 0) {
            free(r->p->v[r->file][k]);
            r->p->v[r->file][k] = value[0] ? xstrdup(value) : NULL;
        }
    return 1;
}

static char *aws_file(const char *env, const char *rel)
{
    const char *v = s3_env(env), *home = s3_env("HOME");

    if (v != NULL)
        return xstrdup(v);
    return home ? xasprintf("%s/%s", home, rel) : NULL;
}

static void prof_load(prof *p, const char *name)
{
    char *files[2] = {aws_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
                      aws_file("AWS_CONFIG_FILE", ".aws/config")};

    memset(p, 0, sizeof *p);
    p->name = xstrdup(name);
    for (int f = 0; f < 2; f++) {
        prof_read r = {p, f};
        if (files[f] != NULL)
            ini_parse(files[f], prof_cb, &r); /* a missing file is no error */
        free(files[f]);
    }
}

static void prof_free(prof *p)
{
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < P_N; k++) {
            if (p->v[f][k])
                OPENSSL_cleanse(p->v[f][k], strlen(p->v[f][k]));
            free(p->v[f][k]);
        }
    free(p->name);
}

/* A setting: the credentials file's, else the config file's. */
static const char *pget(const prof *p, int k)
{
    return p->v[0][k] ? p->v[0][k] : p->v[1][k];
}

static bool prof_keys_in(const prof *p, int f)
{
    return p->v[f][P_AK] != NULL && p->v[f][P_SK] != NULL;
}

/* ---------------------------------------------------------------- sources */

typedef enum src_type { SRC_STATIC, SRC_PROCESS, SRC_WEB, SRC_ROLE, SRC_CONTAINER, SRC_IMDS } src_type;

typedef struct src {
    src_type type;
    char *name;            /* what -v and describe show: no secrets */
    s3_key fixed;          /* SRC_STATIC */
    char *command;         /* SRC_PROCESS */
    char *role_arn, *session, *extid, *token_file; /* SRC_WEB, SRC_ROLE */
    long duration;
    struct src *from;      /* SRC_ROLE: what signs AssumeRole */
    char *url, *token;     /* SRC_CONTAINER (token_file too), SRC_IMDS (url) */
    long timeout;          /* SRC_IMDS */
    bool fallback;         /* the chain's last resort: failing means "none found" */
} src;

struct s3_chain {
    src *top;
    char *profile, *sts_endpoint;
    pthread_mutex_t lock;  /* guards what follows */
    s3_key cur;
    bool have;
    time_t renew_at;
};

static void src_free(src *s)
{
    if (s == NULL)
        return;
    src_free(s->from);
    s3_key_free(&s->fixed);
    if (s->token)
        OPENSSL_cleanse(s->token, strlen(s->token));
    free(s->name);
    free(s->command);
    free(s->role_arn);
    free(s->session);
    free(s->extid);
    free(s->token_file);
    free(s->url);
    free(s->token);
    free(s);
}

static src *src_new(src_type t, char *name)
{
    src *s = xcalloc(1, sizeof *s);
    s->type = t;
    s->name = name;
    return s;
}

static src *src_static(const char *ak, const char *sk, const char *tok, char *name)
{
    src *s = src_new(SRC_STATIC, name);
    s->fixed.access_key = xstrdup(ak);
    s->fixed.secret_key = xstrdup(sk);
    s->fixed.session_token = tok ? xstrdup(tok) : NULL;
    return s;
}

static bool env_true(const char *name)
{
    const char *v = s3_env(name);
    return v != NULL && strcasecmp(v, "true") == 0;
}

/* AWS_CONTAINER_CREDENTIALS_*: the URL and token, or NULL when not in a container. */
static snap_rc pick_container(src **out, snap_err *err)
{
    const char *rel = s3_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = s3_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char *host = NULL, *scheme = NULL;
    CURLU *u;
    src *s;
    bool ok;

    *out = NULL;
    if (rel == NULL && full == NULL)
        return SNAP_OK;
    if (rel != NULL && rel[0] != '/')
        return err_set(err, SNAP_EUSAGE, 0, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must "
                                            "start with /");
    if (rel == NULL) {
        /* As the AWS SDKs: https anywhere, http only to loopback or the container agents. */
        if ((u = curl_url()) == NULL)
            abort();
        ok = curl_url_set(u, CURLUPART_URL, full, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             (strcmp(scheme, "https") == 0 ||
              (strcmp(scheme, "http") == 0 &&
               (strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
                strcmp(host, "localhost") == 0 || strcmp(host, "169.254.170.2") == 0 ||
                strcmp(host, "169.254.170.23") == 0 || strcmp(host, "[fd00:ec2::23]") == 0)));
        curl_free(scheme);
        curl_free(host);
        curl_url_cleanup(u);
        if (!ok) {
            err_set(err, SNAP_EUSAGE, 0, "AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" is neither "
                                         "https nor http to loopback or a container agent",
                    full);
            err_hint(err, "http is allowed to 127.0.0.0/8, ::1, 169.254.170.2, 169.254.170.23 "
                          "and fd00:ec2::23 only, as in the AWS SDKs");
            return SNAP_EUSAGE;
        }
    }
    s = src_new(SRC_CONTAINER, xstrdup("container credentials"));
    s->url = rel ? xasprintf("http://169.254.170.2%s", rel) : xstrdup(full);
    if (s3_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))
        s->token_file = xstrdup(s3_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"));
    else if (s3_env("AWS_CONTAINER_AUTHORIZATION_TOKEN"))
        s->token = xstrdup(s3_env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    *out = s;
    return SNAP_OK;
}

static src *pick_imds(void)
{
    const char *ep = s3_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = s3_env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    const char *to = s3_env("AWS_METADATA_SERVICE_TIMEOUT");
    src *s = src_new(SRC_IMDS, xstrdup("instance metadata (IMDSv2)"));

    if (ep != NULL)
        s->url = xstrdup(ep);
    else if (mode != NULL && strcasecmp(mode, "IPv6") == 0)
        s->url = xstrdup("http://[fd00:ec2::254]");
    else
        s->url = xstrdup("http://169.254.169.254");
    s->timeout = to ? strtol(to, NULL, 10) : 1;
    if (s->timeout < 1 || s->timeout > 60)
        s->timeout = 1;
    return s;
}

static void role_settings(src *s, const prof *p)
{
    const char *v = pget(p, P_SESSION);

    s->role_arn = xstrdup(pget(p, P_ROLE_ARN));
    s->session = v ? xstrdup(v) : xasprintf("snap-%lld", (long long)time(NULL));
    if (pget(p, P_EXTID))
        s->extid = xstrdup(pget(p, P_EXTID));
    if (pget(p, P_DURATION))
        s->duration = strtol(pget(p, P_DURATION), NULL, 10);
}

static snap_rc pick_role(const prof *p, int depth, src **out, snap_err *err);

/* What a role's source_profile S gives: another role, web identity, a process, keys. */
static snap_rc pick_source_profile(const prof *p, int depth, src **out, snap_err *err)
{
    prof sp;
    snap_rc rc = SNAP_OK;
    bool self = strcmp(pget(p, P_SOURCE_PROFILE), p->name) == 0;

    prof_load(&sp, pget(p, P_SOURCE_PROFILE));
    *out = NULL;
    if (!self && pget(&sp, P_ROLE_ARN) && !pget(&sp, P_WIT)) {
        rc = pick_role(&sp, depth + 1, out, err);
    } else if (!self && pget(&sp, P_ROLE_ARN) && pget(&sp, P_WIT)) {
        *out = src_new(SRC_WEB, xasprintf("web identity of profile %s", sp.name));
        role_settings(*out, &sp);
        (*out)->token_file = xstrdup(pget(&sp, P_WIT));
    } else if (prof_keys_in(&sp, 0) || prof_keys_in(&sp, 1)) {
        int f = prof_keys_in(&sp, 0) ? 0 : 1;
        *out = src_static(sp.v[f][P_AK], sp.v[f][P_SK], sp.v[f][P_TOK],
                          xasprintf("keys of profile %s", sp.name));
    } else if (pget(&sp, P_PROCESS)) {
        *out = src_new(SRC_PROCESS, xasprintf("credential_process of profile %s", sp.name));
        (*out)->command = xstrdup(pget(&sp, P_PROCESS));
    } else {
        rc = err_set(err, SNAP_EUSAGE, 0, "source_profile %s of profile %s has no credentials",
                     sp.name, p->name);
        err_hint(err, "give profile %s keys, a credential_process or a role_arn", sp.name);
    }
    prof_free(&sp);
    return rc;
}

static snap_rc pick_credential_source(const prof *p, src **out, snap_err *err)
{
    const char *cs = pget(p, P_CRED_SOURCE);

    *out = NULL;
    if (strcmp(cs, "Environment") == 0) {
        if (s3_env("AWS_ACCESS_KEY_ID") && s3_env("AWS_SECRET_ACCESS_KEY"))
            *out = src_static(s3_env("AWS_ACCESS_KEY_ID"), s3_env("AWS_SECRET_ACCESS_KEY"),
                              s3_env("AWS_SESSION_TOKEN"), xstrdup("environment"));
    } else if (strcmp(cs, "Ec2InstanceMetadata") == 0) {
        *out = pick_imds();
    } else if (strcmp(cs, "EcsContainer") == 0) {
        if (pick_container(out, err) != SNAP_OK)
            return err->code;
    } else {
        err_set(err, SNAP_EUSAGE, 0, "profile %s: credential_source \"%s\" is unknown", p->name, cs);
        err_hint(err, "use Environment, Ec2InstanceMetadata or EcsContainer");
        return SNAP_EUSAGE;
    }
    if (*out == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "profile %s: credential_source %s gives no credentials here",
                p->name, cs);
        err_hint(err, "%s", strcmp(cs, "Environment") == 0
                                ? "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                                : "set AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI");
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

/* A profile with role_arn: AssumeRole signed with what source_profile or credential_source gives. */
static snap_rc pick_role(const prof *p, int depth, src **out, snap_err *err)
{
    src *s, *from = NULL;
    snap_rc rc;

    *out = NULL;
    if (depth > ROLE_DEPTH_MAX) {
        err_set(err, SNAP_EUSAGE, 0, "profile %s: the chain of source_profile roles is longer "
                                     "than %d or loops",
                p->name, ROLE_DEPTH_MAX);
        return SNAP_EUSAGE;
    }
    if (pget(p, P_MFA) != NULL) {
        err_set(err, SNAP_EUSAGE, 0, "profile %s: mfa_serial is not supported", p->name);
        err_hint(err, "snap runs unattended: use a role without MFA, or get session keys "
                      "first (aws sts get-session-token) and give them in the environment");
        return SNAP_EUSAGE;
    }
    if ((pget(p, P_SOURCE_PROFILE) != NULL) == (pget(p, P_CRED_SOURCE) != NULL)) {
        err_set(err, SNAP_EUSAGE, 0, "profile %s has role_arn with %s", p->name,
                pget(p, P_SOURCE_PROFILE) ? "both source_profile and credential_source"
                                          : "neither source_profile nor credential_source");
        err_hint(err, "give exactly one of them, as for the AWS CLI");
        return SNAP_EUSAGE;
    }
    rc = pget(p, P_SOURCE_PROFILE) ? pick_source_profile(p, depth, &from, err)
                                   : pick_credential_source(p, &from, err);
    if (rc != SNAP_OK)
        return rc;
    s = src_new(SRC_ROLE, xasprintf("role_arn of profile %s (AssumeRole, source: %s)", p->name,
                                    from->name));
    role_settings(s, p);
    s->from = from;
    *out = s;
    return SNAP_OK;
}

static snap_rc pick_env(src **out, snap_err *err)
{
    const char *ak = s3_env("AWS_ACCESS_KEY_ID"), *sk = s3_env("AWS_SECRET_ACCESS_KEY");

    *out = NULL;
    if (ak == NULL && sk == NULL)
        return SNAP_OK;
    if (ak == NULL || sk == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set");
        err_hint(err, "set both, or neither to use ~/.aws/credentials");
        return SNAP_EUSAGE;
    }
    *out = src_static(ak, sk, s3_env("AWS_SESSION_TOKEN"), xstrdup("environment"));
    return SNAP_OK;
}

static snap_rc pick_web_env(src **out, snap_err *err)
{
    const char *file = s3_env("AWS_WEB_IDENTITY_TOKEN_FILE"), *arn = s3_env("AWS_ROLE_ARN");
    src *s;

    *out = NULL;
    if (file == NULL)
        return SNAP_OK;
    if (arn == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
        err_hint(err, "set AWS_ROLE_ARN to the role to assume with the token");
        return SNAP_EUSAGE;
    }
    s = src_new(SRC_WEB, xstrdup("web identity (AssumeRoleWithWebIdentity)"));
    s->role_arn = xstrdup(arn);
    s->token_file = xstrdup(file);
    s->session = s3_env("AWS_ROLE_SESSION_NAME") ? xstrdup(s3_env("AWS_ROLE_SESSION_NAME"))
                                                 : xasprintf("snap-%lld", (long long)time(NULL));
    *out = s;
    return SNAP_OK;
}

/* The profile's own sources, in order: role, web identity, keys, process, config keys. */
static snap_rc pick_profile(const prof *p, src **out, snap_err *err)
{
    snap_rc rc;

    *out = NULL;
    if (pget(p, P_ROLE_ARN) && !pget(p, P_WIT))
        return pick_role(p, 0, out, err);
    if ((rc = pick_web_env(out, err)) != SNAP_OK || *out != NULL)
        return rc;
    if (pget(p, P_ROLE_ARN) && pget(p, P_WIT)) {
        *out = src_new(SRC_WEB, xasprintf("web identity of profile %s", p->name));
        role_settings(*out, p);
        (*out)->token_file = xstrdup(pget(p, P_WIT));
    } else if (prof_keys_in(p, 0)) {
        *out = src_static(p->v[0][P_AK], p->v[0][P_SK], p->v[0][P_TOK],
                          xstrdup("shared credentials file"));
    } else if (pget(p, P_PROCESS)) {
        *out = src_new(SRC_PROCESS, xasprintf("credential_process of profile %s", p->name));
        (*out)->command = xstrdup(pget(p, P_PROCESS));
    } else if (prof_keys_in(p, 1)) {
        *out = src_static(p->v[1][P_AK], p->v[1][P_SK], p->v[1][P_TOK], xstrdup("config file"));
    }
    return SNAP_OK;
}

snap_rc s3_chain_new(s3_drv *d, const cfg *c, const char *profile, s3_chain **out, snap_err *err)
{
    s3_chain *ch = xcalloc(1, sizeof *ch);
    const char *sts = cfg_get(c, "store", "sts_endpoint");
    src *s = NULL;
    prof p;
    snap_rc rc;

    pthread_mutex_init(&ch->lock, NULL);
    ch->profile = xstrdup(profile);
    if (sts == NULL)
        sts = s3_env("AWS_ENDPOINT_URL_STS");
    ch->sts_endpoint = sts ? xstrdup(sts) : xasprintf("https://sts.%s.amazonaws.com", d->region);
    prof_load(&p, profile);
    if ((rc = pick_env(&s, err)) == SNAP_OK && s == NULL)
        rc = pick_profile(&p, &s, err);
    if (rc == SNAP_OK && s == NULL)
        rc = pick_container(&s, err);
    if (rc == SNAP_OK && s == NULL && !env_true("AWS_EC2_METADATA_DISABLED")) {
        s = pick_imds();
        s->fallback = true;
    }
    prof_free(&p);
    if (rc == SNAP_OK && s == NULL) {
        rc = err_set(err, SNAP_EUNREACH, 0, "%s: no AWS credentials found (profile %s; tried the "
                                            "environment, web identity, the profile's role_arn, "
                                            "keys and credential_process, container credentials; "
                                            "instance metadata is off: AWS_EC2_METADATA_DISABLED)",
                     d->url, profile);
        err_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE "
                      "with AWS_ROLE_ARN, or give the profile keys, a role_arn or a "
                      "credential_process in ~/.aws/config (AWS_PROFILE picks the profile)");
        err_kind(err, "credentials");
    } else if (rc != SNAP_OK) {
        err_prefix(err, "%s", d->url);
    }
    if (rc != SNAP_OK) {
        src_free(s);
        s3_chain_free(ch);
        return rc;
    }
    ch->top = s;
    *out = ch;
    return SNAP_OK;
}

void s3_chain_free(s3_chain *ch)
{
    if (ch == NULL)
        return;
    src_free(ch->top);
    s3_key_free(&ch->cur);
    pthread_mutex_destroy(&ch->lock);
    free(ch->profile);
    free(ch->sts_endpoint);
    free(ch);
}

const char *s3_chain_source(const s3_chain *ch)
{
    return ch->top->name;
}

/* ---------------------------------------------------------------- fetching, renewal */

static snap_rc src_fetch(const s3_drv *d, const s3_chain *ch, const src *s, s3_key *out,
                         snap_err *err)
{
    s3_fetch_env e = {d->ctx, d->ca_file, d->tls_verify, d->timeout > 0 ? d->timeout : 60};
    s3_role r = {s->role_arn, s->session, s->extid, s->duration, ch->sts_endpoint, d->region};
    s3_key from = {0};
    snap_rc rc;

    switch (s->type) {
    case SRC_STATIC:
        s3_key_copy(out, &s->fixed);
        return SNAP_OK;
    case SRC_PROCESS:
        return s3_process_fetch(&e, s->command, out, err);
    case SRC_WEB:
        return s3_sts_web_identity(&e, &r, s->token_file, out, err);
    case SRC_ROLE:
        if ((rc = src_fetch(d, ch, s->from, &from, err)) == SNAP_OK)
            rc = s3_sts_assume_role(&e, &r, &from, out, err);
        s3_key_free(&from);
        return rc;
    case SRC_CONTAINER:
        return s3_container_fetch(&e, s->url, s->token, s->token_file, out, err);
    case SRC_IMDS:
        rc = s3_imds_fetch(&e, s->url, s->timeout, out, err);
        if (rc != SNAP_OK && s->fallback) {
            char was[sizeof err->msg];
            snprintf(was, sizeof was, "%s", err->msg);
            err_set(err, SNAP_EUNREACH, 0, "%s: no AWS credentials found (profile %s; tried the "
                                           "environment, web identity, the profile's role_arn, "
                                           "keys and credential_process, container credentials, "
                                           "then %s)",
                    d->url, ch->profile, was);
            err_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE "
                          "with AWS_ROLE_ARN, or a profile with keys, role_arn or credential_process "
                          "(AWS_PROFILE); AWS_EC2_METADATA_DISABLED=true skips instance metadata");
            err_kind(err, "credentials");
        }
        return rc;
    }
    return SNAP_EFAIL;
}

/* When to renew keys that expire: ahead by half their life, at most RENEW_AHEAD_MAX. */
static time_t renew_time(time_t now, time_t expires)
{
    time_t ahead = expires > now ? (expires - now) / 2 : 0;

    if (ahead > RENEW_AHEAD_MAX)
        ahead = RENEW_AHEAD_MAX;
    return expires - ahead;
}

snap_rc s3_chain_get(s3_drv *d, s3_key *out, snap_err *err)
{
    s3_chain *ch = d->chain;
    s3_key fresh = {0};
    time_t now = time(NULL);
    char when[32] = "";
    snap_rc rc = SNAP_OK;

    pthread_mutex_lock(&ch->lock);
    if (ch->have && (ch->cur.expires == 0 || now < ch->renew_at))
        goto copy;
    rc = src_fetch(d, ch, ch->top, &fresh, err);
    if (rc != SNAP_OK) {
        if (!ch->have || ch->cur.expires <= now + 1)
            goto out;
        /* The keys in hand still hold: use them, try again shortly. */
        log_warn(d->ctx, "%s: renewing the credentials from %s failed, the current ones hold "
                         "for %lld s more: %s",
                 d->url, ch->top->name, (long long)(ch->cur.expires - now), err->msg);
        ch->renew_at = now + RENEW_RETRY;
        rc = SNAP_OK;
        goto copy;
    }
    if (fresh.expires != 0)
        util_iso8601(fresh.expires, when);
    log_verbose(d->ctx, "%s: %s credentials from %s%s%s", d->url, ch->have ? "renewed" : "using",
              ch->top->name, when[0] ? ", expiring " : "", when);
    s3_key_free(&ch->cur);
    ch->cur = fresh;
    ch->have = true;
    ch->renew_at = fresh.expires ? renew_time(now, fresh.expires) : 0;
copy:
    s3_key_copy(out, &ch->cur);
out:
    pthread_mutex_unlock(&ch->lock);
    return rc;
}

bool s3_chain_expire(s3_drv *d, const s3_key *refused)
{
    s3_chain *ch = d->chain;
    bool renew = false;

    pthread_mutex_lock(&ch->lock);
    if (ch->have && ch->cur.expires != 0 && refused->access_key != NULL &&
        strcmp(ch->cur.access_key, refused->access_key) == 0) {
        ch->renew_at = 0;
        renew = true;
    } else if (ch->have && ch->cur.expires != 0) {
        renew = true; /* another thread renewed them already */
    }
    pthread_mutex_unlock(&ch->lock);
    return renew;
}
