/* sigv4.c: AWS Signature Version 4, as described in AWS's "Signing AWS API requests". */
#include "sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

void sigv4_sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;

    if (EVP_Digest(buf, len, d, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort(); /* only fails when OpenSSL is out of memory */
    util_hex(d, 32, out);
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 0;

    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n) ==
            NULL ||
        n != 32)
        abort();
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    util_buf b = {0};

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            util_buf_addc(&b, (char)*p);
        } else {
            char e[3] = {'%', digits[*p >> 4], digits[*p & 15]};
            util_buf_add(&b, e, 3);
        }
    }
    return util_buf_take(&b);
}

typedef struct enc_param {
    char *name, *value;
} enc_param;

static int cmp_param(const void *a, const void *b)
{
    const enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

char *sigv4_query(const sigv4_param *p, size_t n)
{
    enc_param *e = xcalloc(n ? n : 1, sizeof *e);
    util_buf b = {0};

    for (size_t i = 0; i < n; i++) {
        e[i].name = sigv4_uri_encode(p[i].name, false);
        e[i].value = sigv4_uri_encode(p[i].value ? p[i].value : "", false);
    }
    qsort(e, n, sizeof *e, cmp_param);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            util_buf_addc(&b, '&');
        util_buf_adds(&b, e[i].name);
        util_buf_addc(&b, '=');
        util_buf_adds(&b, e[i].value);
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    return util_buf_take(&b);
}

typedef struct canon_header {
    char *name;        /* lowercase */
    const char *value; /* trimmed span */
    size_t vlen;
} canon_header;

static int cmp_header(const void *a, const void *b)
{
    return strcmp(((const canon_header *)a)->name, ((const canon_header *)b)->name);
}

/* Lowercased names, trimmed values, sorted by name. Caller frees names and the array. */
static canon_header *canon_headers(const sigv4_request *r)
{
    canon_header *h = xcalloc(r->nheaders ? r->nheaders : 1, sizeof *h);

    for (size_t i = 0; i < r->nheaders; i++) {
        const char *v = r->headers[i].value;
        size_t len;

        h[i].name = xstrdup(r->headers[i].name);
        for (char *c = h[i].name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        while (*v == ' ' || *v == '\t')
            v++;
        len = strlen(v);
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        h[i].value = v;
        h[i].vlen = len;
    }
    qsort(h, r->nheaders, sizeof *h, cmp_header);
    return h;
}

static void free_headers(canon_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(h[i].name);
    free(h);
}

static void add_signed_headers(util_buf *b, const canon_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            util_buf_addc(b, ';');
        util_buf_adds(b, h[i].name);
    }
}

char *sigv4_signed_headers(const sigv4_request *r)
{
    canon_header *h = canon_headers(r);
    util_buf b = {0};

    add_signed_headers(&b, h, r->nheaders);
    free_headers(h, r->nheaders);
    return util_buf_take(&b);
}

char *sigv4_canonical_request(const sigv4_request *r)
{
    canon_header *h = canon_headers(r);
    util_buf b = {0};

    util_buf_adds(&b, r->method);
    util_buf_addc(&b, '\n');
    util_buf_adds(&b, r->path && r->path[0] ? r->path : "/");
    util_buf_addc(&b, '\n');
    util_buf_adds(&b, r->query ? r->query : "");
    util_buf_addc(&b, '\n');
    for (size_t i = 0; i < r->nheaders; i++) {
        /* Sequential blanks inside a value become one, as the specification asks. */
        bool blank = false;

        util_buf_adds(&b, h[i].name);
        util_buf_addc(&b, ':');
        for (size_t j = 0; j < h[i].vlen; j++) {
            char c = h[i].value[j];
            if (c == ' ' || c == '\t') {
                blank = true;
                continue;
            }
            if (blank)
                util_buf_addc(&b, ' ');
            blank = false;
            util_buf_addc(&b, c);
        }
        util_buf_addc(&b, '\n');
    }
    util_buf_addc(&b, '\n');
    add_signed_headers(&b, h, r->nheaders);
    util_buf_addc(&b, '\n');
    util_buf_adds(&b, r->payload_hash);
    free_headers(h, r->nheaders);
    return util_buf_take(&b);
}

char *sigv4_string_to_sign(const sigv4_request *r, const char *canonical_request)
{
    char h[65];

    sigv4_sha256_hex(canonical_request, strlen(canonical_request), h);
    return xasprintf("AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", r->amz_date,
                     r->amz_date, r->region, r->service, h);
}

void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32])
{
    char *k = xasprintf("AWS4%s", secret);
    unsigned char a[32], b[32];

    hmac(k, strlen(k), date8, a);
    hmac(a, 32, region, b);
    hmac(b, 32, service, a);
    hmac(a, 32, "aws4_request", key);
    /* The derived keys are as good as the secret: do not leave them on the heap or stack. */
    OPENSSL_cleanse(k, strlen(k));
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    free(k);
}

void sigv4_signature(const sigv4_request *r, const char *secret, char out[65])
{
    char date8[9];
    unsigned char key[32], sig[32];
    char *creq = sigv4_canonical_request(r);
    char *sts = sigv4_string_to_sign(r, creq);

    snprintf(date8, sizeof date8, "%.8s", r->amz_date);
    sigv4_signing_key(secret, date8, r->region, r->service, key);
    hmac(key, 32, sts, sig);
    util_hex(sig, 32, out);
    OPENSSL_cleanse(key, sizeof key);
    free(creq);
    free(sts);
}

char *sigv4_authorization(const sigv4_request *r, const char *access_key, const char *secret)
{
    char sig[65];
    char *signed_headers = sigv4_signed_headers(r);
    char *out;

    sigv4_signature(r, secret, sig);
    out = xasprintf("AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request,SignedHeaders=%s,"
                    "Signature=%s",
                    access_key, r->amz_date, r->region, r->service, signed_headers, sig);
    free(signed_headers);
    return out;
}
