/*
 * s3_sts.c: the fetches of the credential chain (s3_chain.c): STS AssumeRole (signed with
 * sigv4.c) and AssumeRoleWithWebIdentity, container credentials (ECS, EKS Pod Identity),
 * IMDSv2 and credential_process. Each answer is read with a bound, checked field by field
 * (keys that could break a header line are refused) and never logged: it holds secrets.
 */
#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "s3_int.h"

#define FETCH_MAX (256 * 1024) /* no credential answer is this large */
#define TOKEN_MAX (16 * 1024)  /* web identity and container authorization tokens */
#define STS_VERSION "2011-06-15"

extern char **environ;

/* ---------------------------------------------------------------- one HTTP exchange */

typedef struct fetch {
    const char *method, *url;
    struct curl_slist *headers;
    const char *body;
    long timeout_ms;
    util_buf resp;
    long status;
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE];
    bool too_big;
} fetch;

static size_t fetch_write(char *src, size_t size, size_t nmemb, void *arg)
{
    fetch *f = arg;
    size_t n = size * nmemb;

    if (f->resp.len + n > FETCH_MAX) {
        f->too_big = true;
        return 0;
    }
    util_buf_add(&f->resp, src, n);
    return n;
}

/* Sends f once; no redirects: where credentials come from is local configuration. */
static void fetch_once(const s3_fetch_env *e, fetch *f)
{
    CURL *h = curl_easy_init();
    http_opts o = {.http_1_1 = true,
                   .timeout_ms = f->timeout_ms,
                   .connect_timeout_ms = f->timeout_ms < 10000 ? f->timeout_ms : 10000,
                   .tls_no_verify = !e->tls_verify,
                   .ca_file = e->ca_file,
                   .errbuf = f->errbuf};

    if (h == NULL)
        abort();
    util_buf_free(&f->resp);
    f->status = 0;
    f->errbuf[0] = '\0';
    f->too_big = false;
    http_setup(h, &o);
    curl_easy_setopt(h, CURLOPT_URL, f->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    if (f->body != NULL)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, f->body);
    if (strcmp(f->method, "GET") != 0 && strcmp(f->method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, f->method);
    f->cc = curl_easy_perform(h);
    if (f->cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f->status);
    curl_easy_cleanup(h);
}

/* Sends f, again after a transport failure or a 5xx/429, up to attempts times. */
static void fetch_run(const s3_fetch_env *e, fetch *f, int attempts)
{
    for (int i = 0; i < attempts; i++) {
        if (i > 0 && !http_wait(e->ctx, http_backoff_ms(i - 1, 200, 2000), false))
            return;
        fetch_once(e, f);
        if (f->cc == CURLE_OK ? !http_status_retryable(f->status)
                              : !http_transport_retryable(f->cc))
            return;
    }
}

static const char *fetch_failure(const fetch *f)
{
    if (f->too_big)
        return "the answer is too large";
    return f->errbuf[0] ? f->errbuf : curl_easy_strerror(f->cc);
}

/* Every failure to get credentials has the JSON code "credentials" (docs/s3.md). */
static snap_rc cred_err(snap_err *err, snap_rc rc)
{
    (void)rc;
    return err_kind(err, "credentials");
}

/* ---------------------------------------------------------------- answers */

/* Keys go into header lines: printable ASCII without blanks only. */
static bool key_sane(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL || s[0] == '\0')
        return false;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || n >= max)
            return false;
    return true;
}

/* A token for a header value or a form: printable ASCII, blanks allowed, no line breaks. */
static bool token_sane(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* "2026-11-30T07:30:00Z", with fractions or a "+HH:MM" offset. */
static bool parse_expiry(const char *s, time_t *out)
{
    const char *rest = NULL;
    time_t t = util_parse_time(s, &rest);
    int hh, mm;

    if (t == 0 || rest == NULL)
        return false;
    if (rest[0] == '\0' && rest > s && rest[-1] == 'Z') {
        *out = t;
        return true;
    }
    if ((rest[0] == '+' || rest[0] == '-') && sscanf(rest + 1, "%2d:%2d", &hh, &mm) == 2 &&
        strlen(rest) == 6) {
        long off = (hh * 60L + mm) * 60L;
        *out = rest[0] == '+' ? t - off : t + off;
        return true;
    }
    return false;
}

/* Fills out from the strings of an answer; false names the missing or bad field. */
static bool take_key(const char *ak, const char *sk, const char *tok, const char *exp,
                     bool need_exp, s3_key *out, const char **bad)
{
    time_t t = 0;

    *bad = !key_sane(ak, 256)           ? "AccessKeyId"
           : !key_sane(sk, 256)         ? "SecretAccessKey"
           : tok && !key_sane(tok, 8192) ? "SessionToken"
           : exp == NULL && need_exp    ? "Expiration"
           : exp && !parse_expiry(exp, &t) ? "Expiration"
                                           : NULL;
    if (*bad != NULL)
        return false;
    out->access_key = xstrdup(ak);
    out->secret_key = xstrdup(sk);
    out->session_token = tok ? xstrdup(tok) : NULL;
    out->expires = t;
    return true;
}

static const char *jstr(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A JSON answer (container, IMDS, credential_process) into out; token_field names the
 * session token's field ("Token" or "SessionToken"). */
static bool json_key(const char *buf, size_t len, const char *token_field, bool need_exp,
                     s3_key *out, const char **bad)
{
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    bool ok;

    if (!json_is_object(o)) {
        *bad = "not a JSON object";
        json_decref(o);
        return false;
    }
    ok = take_key(jstr(o, "AccessKeyId"), jstr(o, "SecretAccessKey"), jstr(o, token_field),
                  jstr(o, "Expiration"), need_exp, out, bad);
    json_decref(o);
    return ok;
}

static xmlNode *xml_find(xmlNode *n, const char *name, int depth)
{
    for (; n != NULL && depth > 0; n = n->next) {
        xmlNode *f;
        if (s3_xml_is(n, name))
            return n;
        if ((f = xml_find(n->children, name, depth - 1)) != NULL)
            return f;
    }
    return NULL;
}

/* ---------------------------------------------------------------- STS */

typedef struct url_parts {
    char *host; /* the Host header: host[:port] */
    char *path; /* "/" when none */
} url_parts;

static bool split_url(const char *url, url_parts *u)
{
    CURLU *cu = curl_url();
    char *host = NULL, *port = NULL, *path = NULL, *scheme = NULL;
    bool ok = false;

    if (cu == NULL)
        abort();
    if (curl_url_set(cu, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) ||
        curl_url_get(cu, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    curl_url_get(cu, CURLUPART_PORT, &port, 0); /* absent unless given */
    curl_url_get(cu, CURLUPART_PATH, &path, 0);
    u->host = port ? xasprintf("%s:%s", host, port) : xstrdup(host);
    u->path = xstrdup(path && path[0] ? path : "/");
    ok = true;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(cu);
    return ok;
}

static void form_add(util_buf *b, const char *name, const char *value)
{
    char *enc = sigv4_uri_encode(value, false);

    if (b->len > 0)
        util_buf_addc(b, '&');
    util_buf_adds(b, name);
    util_buf_addc(b, '=');
    util_buf_adds(b, enc);
    OPENSSL_cleanse(enc, strlen(enc));
    free(enc);
}

static void role_form(util_buf *b, const char *action, const s3_role *r)
{
    char dur[24];

    form_add(b, "Action", action);
    form_add(b, "Version", STS_VERSION);
    form_add(b, "RoleArn", r->role_arn);
    form_add(b, "RoleSessionName", r->session_name);
    if (r->external_id != NULL)
        form_add(b, "ExternalId", r->external_id);
    if (r->duration > 0) {
        snprintf(dur, sizeof dur, "%ld", r->duration);
        form_add(b, "DurationSeconds", dur);
    }
}

static void sts_refused_hint(snap_err *err, const char *action, const char *code)
{
    if (strcmp(code, "ExpiredTokenException") == 0 || strcmp(code, "ExpiredToken") == 0)
        err_hint(err, "the web identity token has expired: whatever writes the token file "
                      "(the kubelet for IRSA) must renew it; mount a fresh one");
    else if (strcmp(code, "InvalidIdentityToken") == 0 ||
             strcmp(code, "IDPRejectedClaim") == 0)
        err_hint(err, "the identity provider's token was not accepted: check the role's "
                      "trust policy names this provider and audience");
    else if (strcmp(action, "AssumeRole") == 0)
        err_hint(err, "check that the role's trust policy lets the source credentials "
                      "assume it and that role_arn is right");
    else
        err_hint(err, "check that the role's trust policy allows this web identity and "
                      "that AWS_ROLE_ARN (or role_arn) is right");
}

/* Reads the <Credentials> of an STS answer, or says why the call failed. */
static snap_rc sts_answer(const fetch *f, const char *action, const s3_role *r, s3_key *out,
                          snap_err *err)
{
    xmlDoc *doc = s3_xml_parse(f->resp.p, f->resp.len);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL, *n;
    char code[96], msg[256], ak[260], exp[64];
    char *sk = NULL, *tok = NULL;
    const char *bad = NULL;
    snap_rc rc = SNAP_OK;

    if (f->status < 200 || f->status >= 300) {
        n = root ? xml_find(root, "Error", 3) : NULL;
        s3_xml_text(n, "Code", code, sizeof code);
        s3_xml_text(n, "Message", msg, sizeof msg);
        rc = err_set(err, SNAP_EUNREACH, 0, "sts %s of role %s at %s refused: %ld%s%s%s%s",
                     action, r->role_arn, f->url, f->status, code[0] ? " " : "", code,
                     msg[0] ? ": " : "", msg);
        sts_refused_hint(err, action, code);
        goto out;
    }
    n = root ? xml_find(root, "Credentials", 4) : NULL;
    if (n != NULL) {
        s3_xml_text(n, "AccessKeyId", ak, sizeof ak);
        s3_xml_text(n, "Expiration", exp, sizeof exp);
        sk = s3_xml_text_dup(n, "SecretAccessKey");
        tok = s3_xml_text_dup(n, "SessionToken");
    }
    if (n == NULL || !take_key(ak, sk, tok, exp, true, out, &bad)) {
        rc = err_set(err, SNAP_EUNREACH, 0, "sts %s of role %s at %s: the answer has no valid "
                                            "credentials (%s)",
                     action, r->role_arn, f->url, n ? bad : "no Credentials element");
        err_hint(err, "check that [store] sts_endpoint (or AWS_ENDPOINT_URL_STS) is an STS service");
    }
out:
    if (sk)
        OPENSSL_cleanse(sk, strlen(sk));
    if (tok)
        OPENSSL_cleanse(tok, strlen(tok));
    free(sk);
    free(tok);
    xmlFreeDoc(doc);
    return rc;
}

/* POSTs the form to STS, signed with src when given, and reads the answer. */
static snap_rc sts_call(const s3_fetch_env *e, const s3_role *r, const char *action,
                        util_buf *form, const s3_key *src, s3_key *out, snap_err *err)
{
    url_parts u = {0};
    fetch f = {.method = "POST", .url = r->endpoint, .body = form->p,
               .timeout_ms = e->timeout * 1000L};
    char amz_date[17], hash[65];
    char *auth = NULL, *line;
    snap_rc rc;

    if (!split_url(r->endpoint, &u)) {
        rc = err_set(err, SNAP_EUSAGE, 0, "sts endpoint \"%s\" is not an http(s) URL", r->endpoint);
        err_hint(err, "set [store] sts_endpoint (or AWS_ENDPOINT_URL_STS) to https://HOST");
        goto out;
    }
    f.headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    f.headers = curl_slist_append(f.headers, "Accept:");
    f.headers = curl_slist_append(f.headers, "Expect:");
    if (src != NULL) {
        sigv4_header hs[4] = {{"Host", u.host},
                              {"Content-Type", "application/x-www-form-urlencoded"},
                              {"x-amz-date", amz_date},
                              {"x-amz-security-token", src->session_token}};
        sigv4_amz_date(time(NULL), amz_date);
        sigv4_sha256_hex(form->p, form->len, hash);
        sigv4_request sr = {"POST", u.path, NULL, hs, src->session_token ? 4 : 3, hash,
                            amz_date, r->region, "sts"};
        auth = sigv4_authorization(&sr, src->access_key, src->secret_key);
        line = xasprintf("Authorization: %s", auth);
        f.headers = curl_slist_append(f.headers, line);
        free(line);
        line = xasprintf("x-amz-date: %s", amz_date);
        f.headers = curl_slist_append(f.headers, line);
        free(line);
        if (src->session_token != NULL) {
            line = xasprintf("x-amz-security-token: %s", src->session_token);
            f.headers = curl_slist_append(f.headers, line);
            OPENSSL_cleanse(line, strlen(line));
            free(line);
        }
    }
    if (f.headers == NULL)
        abort();
    fetch_run(e, &f, 3);
    if (f.cc != CURLE_OK) {
        rc = err_set(err, SNAP_EUNREACH, 0, "sts %s of role %s at %s: %s", action, r->role_arn,
                     r->endpoint, fetch_failure(&f));
        err_hint(err, "check [store] sts_endpoint (or AWS_ENDPOINT_URL_STS) and that it is "
                      "reachable from here");
        goto out;
    }
    rc = sts_answer(&f, action, r, out, err);
out:
    if (auth)
        OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    curl_slist_free_all(f.headers);
    util_buf_free(&f.resp);
    free(u.host);
    free(u.path);
    return rc == SNAP_OK ? rc : cred_err(err, rc);
}

snap_rc s3_sts_assume_role(const s3_fetch_env *e, const s3_role *r, const s3_key *src,
                           s3_key *out, snap_err *err)
{
    util_buf form = {0};
    snap_rc rc;

    role_form(&form, "AssumeRole", r);
    rc = sts_call(e, r, "AssumeRole", &form, src, out, err);
    util_buf_free(&form);
    return rc;
}

/* The first line of a small file, blanks trimmed; NULL with err set. */
static char *read_token(const char *path, const char *what, snap_err *err)
{
    FILE *fp = fopen(path, "re");
    char *buf = xmalloc(TOKEN_MAX + 1);
    size_t n = 0;
    bool ok = false;

    if (fp == NULL) {
        err_sys(err, SNAP_EUNREACH, "cannot read the %s %s", what, path);
        goto out;
    }
    n = fread(buf, 1, TOKEN_MAX + 1, fp);
    fclose(fp);
    if (n > TOKEN_MAX) {
        err_set(err, SNAP_EUNREACH, 0, "the %s %s is larger than %d bytes", what, path, TOKEN_MAX);
        goto out;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (!token_sane(buf)) {
        err_set(err, SNAP_EUNREACH, 0, "the %s %s is empty or not one printable line", what, path);
        goto out;
    }
    ok = true;
out:
    if (ok)
        return buf;
    err_kind(err, "credentials");
    OPENSSL_cleanse(buf, TOKEN_MAX + 1);
    free(buf);
    return NULL;
}

/* The exp claim of a JWT, read without checking it (for a hint only); 0 when none. */
static time_t jwt_exp(const char *token)
{
    const char *p = strchr(token, '.'), *q = p ? strchr(p + 1, '.') : NULL;
    size_t n = q ? (size_t)(q - p - 1) : 0, i;
    char *b64;
    unsigned char *raw;
    json_t *o;
    time_t exp = 0;
    int got;

    if (n == 0 || n > TOKEN_MAX)
        return 0;
    b64 = xmalloc(n + 4);
    for (i = 0; i < n; i++)
        b64[i] = p[1 + i] == '-' ? '+' : p[1 + i] == '_' ? '/' : p[1 + i];
    while (i % 4 != 0)
        b64[i++] = '=';
    raw = xmalloc(i);
    got = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)i);
    if (got > 0) {
        while (got > 0 && raw[got - 1] == '\0') /* EVP_DecodeBlock counts the padding */
            got--;
        o = json_loadb((const char *)raw, (size_t)got, 0, NULL);
        if (json_is_integer(json_object_get(o, "exp")))
            exp = (time_t)json_integer_value(json_object_get(o, "exp"));
        json_decref(o);
    }
    free(b64);
    free(raw);
    return exp;
}

snap_rc s3_sts_web_identity(const s3_fetch_env *e, const s3_role *r, const char *token_file,
                            s3_key *out, snap_err *err)
{
    util_buf form = {0};
    char *token = read_token(token_file, "web identity token file", err);
    snap_rc rc;

    if (token == NULL)
        return err->code;
    role_form(&form, "AssumeRoleWithWebIdentity", r);
    form_add(&form, "WebIdentityToken", token);
    rc = sts_call(e, r, "AssumeRoleWithWebIdentity", &form, NULL, out, err);
    if (rc != SNAP_OK) {
        time_t exp = jwt_exp(token);
        char when[32];
        err_prefix(err, "web identity token %s", token_file);
        if (exp != 0 && exp <= time(NULL)) {
            util_iso8601(exp, when);
            err_hint(err, "the token expired at %s (its exp claim): whatever writes %s (the "
                          "kubelet for IRSA, the CI system) must renew it",
                     when, token_file);
        }
    }
    OPENSSL_cleanse(form.p, form.len);
    OPENSSL_cleanse(token, strlen(token));
    util_buf_free(&form);
    free(token);
    return rc;
}

/* ---------------------------------------------------------------- container, IMDS */

snap_rc s3_container_fetch(const s3_fetch_env *e, const char *url, const char *token,
                           const char *token_file, s3_key *out, snap_err *err)
{
    fetch f = {.method = "GET", .url = url, .timeout_ms = 2000};
    char *tok = token_file ? read_token(token_file, "container authorization token file", err)
                           : token ? xstrdup(token) : NULL;
    const char *bad = NULL;
    snap_rc rc = SNAP_OK;

    if (tok == NULL && token_file != NULL)
        return err->code;
    if (tok != NULL && !token_sane(tok)) {
        free(tok);
        err_set(err, SNAP_EUSAGE, 0, "AWS_CONTAINER_AUTHORIZATION_TOKEN is not one printable line");
        return cred_err(err, SNAP_EUSAGE);
    }
    if (tok != NULL) {
        char *line = xasprintf("Authorization: %s", tok);
        f.headers = curl_slist_append(NULL, line);
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
    fetch_run(e, &f, 3);
    if (f.cc != CURLE_OK || f.status != 200) {
        rc = err_set(err, SNAP_EUNREACH, 0, "container credentials at %s: %s%s", url,
                     f.cc != CURLE_OK ? fetch_failure(&f) : "HTTP status ",
                     f.cc != CURLE_OK ? "" : (f.status == 401 || f.status == 403 ? "refused (401/403)"
                                                                                 : "not 200"));
        err_hint(err, "check AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI and the "
                      "authorization token (AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])");
    } else if (!json_key(f.resp.p, f.resp.len, "Token", false, out, &bad)) {
        rc = err_set(err, SNAP_EUNREACH, 0, "container credentials at %s: the answer has no "
                                            "valid credentials (%s)",
                     url, bad);
    }
    if (tok)
        OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    curl_slist_free_all(f.headers);
    if (f.resp.p)
        OPENSSL_cleanse(f.resp.p, f.resp.len);
    util_buf_free(&f.resp);
    return rc == SNAP_OK ? rc : cred_err(err, rc);
}

/* The role name IMDS lists: it goes into a URL path, so a plain name only. */
static bool role_name_ok(const char *s)
{
    if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("+=,.@_-", *s) != NULL))
            return false;
    return true;
}

static snap_rc imds_get(const s3_fetch_env *e, fetch *f, const char *url, const char *hdr,
                        snap_err *err)
{
    f->method = "GET";
    f->url = url;
    f->headers = curl_slist_append(NULL, hdr);
    fetch_run(e, f, 1);
    curl_slist_free_all(f->headers);
    f->headers = NULL;
    if (f->cc != CURLE_OK || f->status != 200) {
        err_set(err, SNAP_EUNREACH, 0, "instance metadata at %s: %s%s", url,
                f->cc != CURLE_OK ? fetch_failure(f) : "no credentials here",
                f->cc != CURLE_OK ? "" : (f->status == 404 ? " (404: no role attached)" : ""));
        return cred_err(err, SNAP_EUNREACH);
    }
    util_buf_addc(&f->resp, '\0');
    f->resp.len--;
    return SNAP_OK;
}

snap_rc s3_imds_fetch(const s3_fetch_env *e, const char *endpoint, long timeout_s, s3_key *out,
                      snap_err *err)
{
    char *base = xasprintf("%s%s", endpoint, endpoint[strlen(endpoint) - 1] == '/' ? "" : "/");
    char *url = xasprintf("%slatest/api/token", base), *hdr = NULL, *role = NULL;
    fetch f = {.method = "PUT", .url = url, .timeout_ms = timeout_s * 1000L};
    const char *bad = NULL;
    snap_rc rc;

    f.headers = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    f.body = "";
    fetch_run(e, &f, 1);
    curl_slist_free_all(f.headers);
    f.headers = NULL;
    f.body = NULL;
    util_buf_addc(&f.resp, '\0');
    if (f.cc != CURLE_OK || f.status != 200 || !key_sane(f.resp.p, 4096)) {
        rc = err_set(err, SNAP_EUNREACH, 0, "instance metadata at %s: %s (%ld)", endpoint,
                     f.cc != CURLE_OK ? fetch_failure(&f) : "no IMDSv2 session token", f.status);
        err_hint(err, "IMDSv2 must answer PUT /latest/api/token (set AWS_EC2_METADATA_DISABLED=true "
                      "where there is no instance metadata)");
        rc = cred_err(err, rc);
        goto out;
    }
    hdr = xasprintf("X-aws-ec2-metadata-token: %s", f.resp.p);
    free(url);
    url = xasprintf("%slatest/meta-data/iam/security-credentials/", base);
    if ((rc = imds_get(e, &f, url, hdr, err)) != SNAP_OK)
        goto out;
    role = strndup(f.resp.p, strcspn(f.resp.p, "\r\n"));
    if (role == NULL)
        abort();
    if (!role_name_ok(role)) {
        rc = cred_err(err, err_set(err, SNAP_EUNREACH, 0, "instance metadata at %s names no "
                                                          "valid role",
                                   endpoint));
        goto out;
    }
    free(url);
    url = xasprintf("%slatest/meta-data/iam/security-credentials/%s", base, role);
    if ((rc = imds_get(e, &f, url, hdr, err)) != SNAP_OK)
        goto out;
    if (!json_key(f.resp.p, f.resp.len, "Token", true, out, &bad))
        rc = cred_err(err, err_set(err, SNAP_EUNREACH, 0, "instance metadata at %s: the answer "
                                                          "for role %s has no valid credentials (%s)",
                                   endpoint, role, bad));
out:
    if (f.resp.p)
        OPENSSL_cleanse(f.resp.p, f.resp.len);
    util_buf_free(&f.resp);
    if (hdr)
        OPENSSL_cleanse(hdr, strlen(hdr));
    free(hdr);
    free(role);
    free(url);
    free(base);
    return rc;
}

/* ---------------------------------------------------------------- credential_process */

/* Runs sh -c command with stdout into a pipe; its stderr stays ours. */
static snap_rc run_process(const char *command, util_buf *outb, int *status, snap_err *err)
{
    int p[2];
    pid_t pid;
    posix_spawn_file_actions_t fa;
    char *argv[] = {"sh", "-c", (char *)(uintptr_t)command, NULL};
    char buf[4096];
    ssize_t n;
    bool too_big = false;

    if (pipe2(p, O_CLOEXEC) != 0)
        return err_sys(err, SNAP_EFAIL, "pipe");
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    int e = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (e != 0) {
        close(p[0]);
        errno = e;
        return err_sys(err, SNAP_EFAIL, "credential_process: cannot run /bin/sh");
    }
    while ((n = read(p[0], buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (outb->len + (size_t)n > FETCH_MAX)
            too_big = true;
        else
            util_buf_add(outb, buf, (size_t)n);
    }
    close(p[0]);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    if (too_big)
        *status = -1;
    return SNAP_OK;
}

snap_rc s3_process_fetch(const s3_fetch_env *e, const char *command, s3_key *out, snap_err *err)
{
    util_buf b = {0};
    int status = 0;
    const char *bad = NULL;
    json_t *o = NULL;
    snap_rc rc;

    (void)e;
    if ((rc = run_process(command, &b, &status, err)) != SNAP_OK)
        goto out;
    if (status == -1) {
        rc = err_set(err, SNAP_EUNREACH, 0, "credential_process printed more than %d bytes",
                     FETCH_MAX);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        rc = err_set(err, SNAP_EUNREACH, 0, "credential_process failed (%s %d)",
                     WIFEXITED(status) ? "exit status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        err_hint(err, "run the profile's credential_process by hand to see why; its error "
                      "output is shown above");
        goto out;
    } else if ((o = json_loadb(b.p ? b.p : "", b.len, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
               !json_is_object(o) || json_integer_value(json_object_get(o, "Version")) != 1) {
        rc = err_set(err, SNAP_EUNREACH, 0, "credential_process printed no credentials "
                                            "document (JSON with \"Version\": 1)");
    } else if (!json_key(b.p, b.len, "SessionToken", false, out, &bad)) {
        rc = err_set(err, SNAP_EUNREACH, 0, "credential_process printed no valid credentials "
                                            "(%s)",
                     bad);
    }
    if (rc != SNAP_OK)
        err_hint(err, "it must print {\"Version\": 1, \"AccessKeyId\": ..., \"SecretAccessKey\": "
                      "..., \"SessionToken\": ..., \"Expiration\": ISO 8601} and exit 0");
out:
    json_decref(o);
    if (b.p)
        OPENSSL_cleanse(b.p, b.len);
    util_buf_free(&b);
    return rc == SNAP_OK ? rc : cred_err(err, rc);
}
