/* image.c: image references, parsed and normalised as distribution/reference does. */
#include "image_ref.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128

struct img_ref {
    char *written;
    char *domain;
    char *path;
    char *name;
    char *tag;
    char *digest;
    char *canonical;
};

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool img_digest_valid(const char *d)
{
    size_t want, i;

    if (d == NULL)
        return false;
    if (strncmp(d, "sha256:", 7) == 0) {
        d += 7;
        want = 64;
    } else if (strncmp(d, "sha512:", 7) == 0) {
        d += 7;
        want = 128;
    } else {
        return false;
    }
    for (i = 0; d[i] != '\0'; i++)
        if (!is_hex_lower(d[i]))
            return false;
    return i == want;
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+ */
static bool path_component_valid(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    while (i < n) {
        if (is_lower_alnum(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_lower_alnum(s[j]))
            j++;
        size_t sep = j - i;
        bool ok = false;
        if (sep == 1 && (s[i] == '.' || s[i] == '_' || s[i] == '-'))
            ok = true;
        else if (sep == 2 && s[i] == '_' && s[i + 1] == '_')
            ok = true;
        else if (strspn(s + i, "-") >= sep)
            ok = true;
        if (!ok)
            return false;
        i = j;
    }
    return true;
}

/* domain := component ('.' component)* [':' port], or [ipv6]:port; component is a host label. */
static bool domain_valid(const char *s, size_t n)
{
    size_t host_end = n, i;

    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return false;
        for (const char *p = s + 1; p < close; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return false;
        host_end = (size_t)(close - s) + 1;
        if (host_end == 2)
            return false;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL)
            host_end = (size_t)(colon - s);
        size_t start = 0;
        for (i = 0; i <= host_end; i++) {
            if (i < host_end && s[i] != '.')
                continue;
            size_t len = i - start;
            if (len == 0 || s[start] == '-' || s[i - 1] == '-')
                return false;
            for (size_t k = start; k < i; k++)
                if (!isalnum((unsigned char)s[k]) && s[k] != '-')
                    return false;
            start = i + 1;
        }
    }
    if (host_end < n) {
        if (s[host_end] != ':' || host_end + 1 == n)
            return false;
        for (i = host_end + 1; i < n; i++)
            if (!isdigit((unsigned char)s[i]))
                return false;
    }
    return true;
}

static bool tag_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > TAG_MAX_LEN)
        return false;
    if (!isalnum((unsigned char)s[0]) && s[0] != '_')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static snap_rc bad_ref(snap_err *err, const char *s, const char *why)
{
    err_set(err, SNAP_EUSAGE, 0, "invalid image reference \"%s\": %s", s, why);
    err_hint(err, "write it as [registry/]repository[:tag][@sha256:digest], "
                  "such as nginx:1.25 or ghcr.io/org/app:v1");
    return SNAP_EUSAGE;
}

snap_rc img_ref_parse(const char *s, img_ref **out, snap_err *err)
{
    char *work = NULL, *at, *colon, *slash, *remainder;
    img_ref *r = NULL;
    snap_rc rc = SNAP_OK;
    size_t n = strlen(s), i;

    *out = NULL;
    if (n == 0)
        return bad_ref(err, s, "it is empty");
    for (i = 0; i < n; i++)
        if (isspace((unsigned char)s[i]) || iscntrl((unsigned char)s[i]))
            return bad_ref(err, s, "it contains white space or control characters");
    if (n == 64 && strspn(s, "0123456789abcdef") == 64)
        return bad_ref(err, s, "a 64-digit hexadecimal string is ambiguous with an image id");

    work = xstrdup(s);
    r = xcalloc(1, sizeof *r);
    r->written = xstrdup(s);

    at = strchr(work, '@');
    if (at != NULL) {
        *at = '\0';
        if (!img_digest_valid(at + 1)) {
            rc = bad_ref(err, s, "the digest is not sha256: or sha512: with lowercase hex digits");
            goto out;
        }
        r->digest = xstrdup(at + 1);
    }
    slash = strrchr(work, '/');
    colon = strrchr(work, ':');
    if (colon != NULL && (slash == NULL || colon > slash)) {
        *colon = '\0';
        if (!tag_valid(colon + 1)) {
            rc = bad_ref(err, s, "the tag is not valid (letters, digits, '_', '.', '-', at most 128)");
            goto out;
        }
        r->tag = xstrdup(colon + 1);
    }
    if (work[0] == '\0') {
        rc = bad_ref(err, s, "the name is empty");
        goto out;
    }

    /* The first component is a domain when it has '.' or ':', is localhost, or is not lowercase. */
    slash = strchr(work, '/');
    bool has_domain = false;
    if (slash != NULL) {
        size_t dn = (size_t)(slash - work);
        has_domain = memchr(work, '.', dn) != NULL || memchr(work, ':', dn) != NULL ||
                     (dn == 9 && strncmp(work, "localhost", 9) == 0) || work[0] == '[';
        for (i = 0; i < dn && !has_domain; i++)
            if (isupper((unsigned char)work[i]))
                has_domain = true;
    }
    if (has_domain) {
        *slash = '\0';
        if (!domain_valid(work, strlen(work))) {
            rc = bad_ref(err, s, "the registry host is not valid");
            goto out;
        }
        r->domain = xstrdup(strcmp(work, "index.docker.io") == 0 ? "docker.io" : work);
        remainder = slash + 1;
    } else {
        r->domain = xstrdup("docker.io");
        remainder = work;
    }
    if (strcmp(r->domain, "docker.io") == 0 && strchr(remainder, '/') == NULL)
        r->path = xasprintf("library/%s", remainder);
    else
        r->path = xstrdup(remainder);

    for (char *p = r->path;;) {
        char *e = strchr(p, '/');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (!path_component_valid(p, len)) {
            rc = bad_ref(err, s, "the repository must be lowercase letters and digits "
                                 "separated by '/', '.', '_', '__' or '-'");
            goto out;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    r->name = xasprintf("%s/%s", r->domain, r->path);
    if (strlen(r->name) > NAME_MAX_LEN) {
        rc = bad_ref(err, s, "the name is longer than 255 characters");
        goto out;
    }
    if (r->tag == NULL && r->digest == NULL)
        r->tag = xstrdup("latest");
    r->canonical = xasprintf("%s%s%s%s%s", r->name, r->tag ? ":" : "", r->tag ? r->tag : "",
                             r->digest ? "@" : "", r->digest ? r->digest : "");
out:
    free(work);
    if (rc != SNAP_OK) {
        img_ref_free(r);
        return rc;
    }
    *out = r;
    return SNAP_OK;
}

void img_ref_free(img_ref *r)
{
    if (r == NULL)
        return;
    free(r->written);
    free(r->domain);
    free(r->path);
    free(r->name);
    free(r->tag);
    free(r->digest);
    free(r->canonical);
    free(r);
}

const char *img_ref_written(const img_ref *r) { return r->written; }
const char *img_ref_domain(const img_ref *r) { return r->domain; }
const char *img_ref_path(const img_ref *r) { return r->path; }
const char *img_ref_name(const img_ref *r) { return r->name; }
const char *img_ref_tag(const img_ref *r) { return r->tag; }
const char *img_ref_digest(const img_ref *r) { return r->digest; }
const char *img_ref_canonical(const img_ref *r) { return r->canonical; }

const char *img_ref_api_host(const img_ref *r)
{
    return strcmp(r->domain, "docker.io") == 0 ? "registry-1.docker.io" : r->domain;
}

const char *img_ref_reference(const img_ref *r)
{
    return r->digest != NULL ? r->digest : r->tag;
}

char *img_pinned_text(const char *written, const char *digest)
{
    if (strchr(written, '@') != NULL || digest == NULL)
        return xstrdup(written);
    return xasprintf("%s@%s", written, digest);
}
