/* cry.c: the segmented AES-256-GCM stream and key wrapping (OpenSSL); docs/encryption.md. */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"
#include "util.h"

#define MAGIC "SNAPAE\0\1"
#define NONCE_LEN 12

struct cry_key {
    unsigned char b[CRY_KEY_LEN];
};

cry_key *cry_key_random(void)
{
    cry_key *k = xmalloc(sizeof *k);

    if (RAND_bytes(k->b, sizeof k->b) != 1)
        abort();
    return k;
}

cry_key *cry_key_from(const unsigned char *bytes, size_t len)
{
    cry_key *k;

    if (len != CRY_KEY_LEN)
        return NULL;
    k = xmalloc(sizeof *k);
    memcpy(k->b, bytes, CRY_KEY_LEN);
    return k;
}

cry_key *cry_key_dup(const cry_key *k)
{
    return cry_key_from(k->b, sizeof k->b);
}

void cry_key_free(cry_key *k)
{
    if (k == NULL)
        return;
    OPENSSL_cleanse(k->b, sizeof k->b);
    free(k);
}

void cry_key_id(const cry_key *k, char id[CRY_ID_LEN + 1])
{
    static const char label[] = CRY_SCHEME " key id";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (HMAC(EVP_sha256(), k->b, sizeof k->b, (const unsigned char *)label, sizeof label - 1, md, &mdlen) == NULL)
        abort();
    util_hex(md, mdlen, hex);
    memcpy(id, hex, CRY_ID_LEN);
    id[CRY_ID_LEN] = '\0';
}

/* One AES-256-GCM operation; false when the tag does not match (open) or OpenSSL fails. */
static bool gcm(bool seal, const unsigned char *key, const unsigned char nonce[NONCE_LEN], const void *aad,
                size_t aadlen, const unsigned char *in, size_t len, unsigned char *out, unsigned char tag[CRY_TAG_LEN])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = c != NULL &&
              EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, seal ? 1 : 0) == 1 &&
              (aadlen == 0 || EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) == 1) &&
              (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) &&
              (seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRY_TAG_LEN, tag) == 1) &&
              EVP_CipherFinal_ex(c, out + (len == 0 ? 0 : (size_t)n), &fin) == 1 &&
              (!seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRY_TAG_LEN, tag) == 1);

    EVP_CIPHER_CTX_free(c);
    return ok;
}

char *cry_wrap(const cry_key *kek, const cry_key *k, const char *aad)
{
    unsigned char buf[NONCE_LEN + CRY_KEY_LEN + CRY_TAG_LEN];
    char *hex = xmalloc(2 * sizeof buf + 1);

    if (RAND_bytes(buf, NONCE_LEN) != 1 ||
        !gcm(true, kek->b, buf, aad, strlen(aad), k->b, CRY_KEY_LEN, buf + NONCE_LEN, buf + NONCE_LEN + CRY_KEY_LEN))
        abort();
    util_hex(buf, sizeof buf, hex);
    return hex;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

snap_rc cry_unwrap(const cry_key *kek, const char *hex, const char *aad, cry_key **out, snap_err *err)
{
    unsigned char buf[NONCE_LEN + CRY_KEY_LEN + CRY_TAG_LEN], plain[CRY_KEY_LEN];
    bool ok = hex != NULL && strlen(hex) == 2 * sizeof buf;

    *out = NULL;
    for (size_t i = 0; ok && i < sizeof buf; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        buf[i] = (unsigned char)(hi << 4 | (lo & 0xf));
    }
    if (ok)
        ok = gcm(false, kek->b, buf, aad, strlen(aad), buf + NONCE_LEN, CRY_KEY_LEN, plain, buf + NONCE_LEN + CRY_KEY_LEN);
    if (ok)
        *out = cry_key_from(plain, sizeof plain);
    OPENSSL_cleanse(plain, sizeof plain);
    if (!ok)
        return err_set(err, SNAP_EVERIFY, 0, "a wrapped key does not open with the key that should open it");
    return SNAP_OK;
}

uint64_t cry_stored_size(uint64_t plain, uint32_t seg)
{
    uint64_t nseg = plain / seg + 1; /* the final segment may be empty, never absent */

    if (plain > 0 && plain % seg == 0)
        nseg--;
    return CRY_HDR_LEN + plain + nseg * CRY_TAG_LEN;
}

bool cry_plain_size(uint64_t stored, uint32_t seg, uint64_t *plain)
{
    uint64_t body, full, rest;

    if (stored < CRY_HDR_LEN + CRY_TAG_LEN)
        return false;
    body = stored - CRY_HDR_LEN;
    full = body / (seg + CRY_TAG_LEN);
    rest = body % (seg + CRY_TAG_LEN);
    if (rest != 0 && rest < CRY_TAG_LEN)
        return false;
    *plain = full * seg + (rest ? rest - CRY_TAG_LEN : 0);
    return true;
}

/* ---- segments --------------------------------------------------------------------- */

/* What both sides share: the object's key, header and associated data. */
typedef struct stream {
    unsigned char key[CRY_KEY_LEN];
    unsigned char hdr[CRY_HDR_LEN];
    uint32_t seg;
    unsigned char *aad; /* "snap-aead-1" header store-id name, then segment number and final flag */
    size_t aadlen, aadfix;
} stream;

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* HKDF-SHA256(dk, salt, "snap-aead-1 segment key") into s->key. */
static bool derive(stream *s, const cry_key *dk, const unsigned char *salt)
{
    static const char info[] = CRY_SCHEME " segment key";
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t) "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)dk->b, CRY_KEY_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt, CRY_SALT_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, sizeof info - 1),
        OSSL_PARAM_construct_end(),
    };
    bool ok = kc != NULL && EVP_KDF_derive(kc, s->key, sizeof s->key, p) == 1;

    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return ok;
}

/* Fills the header and the fixed part of the associated data. */
static void stream_init(stream *s, uint32_t seg, const char *store_id, const char *name)
{
    size_t ls = strlen(store_id), ln = strlen(name), off = 0;

    s->seg = seg;
    s->aadfix = sizeof CRY_SCHEME - 1 + CRY_HDR_LEN + 2 + ls + 2 + ln;
    s->aadlen = s->aadfix + 5;
    s->aad = xmalloc(s->aadlen);
    memcpy(s->aad, CRY_SCHEME, sizeof CRY_SCHEME - 1);
    off = sizeof CRY_SCHEME - 1 + CRY_HDR_LEN;
    put16(s->aad + off, ls);
    memcpy(s->aad + off + 2, store_id, ls);
    off += 2 + ls;
    put16(s->aad + off, ln);
    memcpy(s->aad + off + 2, name, ln);
}

static void stream_header(stream *s, const unsigned char hdr[CRY_HDR_LEN])
{
    memcpy(s->hdr, hdr, CRY_HDR_LEN);
    memcpy(s->aad + sizeof CRY_SCHEME - 1, hdr, CRY_HDR_LEN);
}

static void stream_free(stream *s)
{
    OPENSSL_cleanse(s->key, sizeof s->key);
    free(s->aad);
}

/* Seals or opens segment no: out gets len bytes, the tag sits after the text. */
static bool segment(stream *s, bool seal, uint64_t no, bool final, const unsigned char *in, size_t len,
                    unsigned char *out, unsigned char *tag)
{
    unsigned char nonce[NONCE_LEN] = {0};

    put32(nonce + 7, (uint32_t)no);
    nonce[11] = final ? 1 : 0;
    memcpy(s->aad + s->aadfix, nonce + 7, 5);
    return no <= UINT32_MAX && gcm(seal, s->key, nonce, s->aad, s->aadlen, in, len, out, tag);
}

/* ---- write side ------------------------------------------------------------------- */

struct cry_writer {
    stream s;
    cry_sink_fn sink;
    void *arg;
    unsigned char *pt, *ct; /* one segment of plain text; its sealed form */
    size_t fill;
    uint64_t no;
    bool started, finished;
};

cry_writer *cry_writer_new(const cry_key *dk, uint32_t seg, const char *store_id, const char *name,
                           const unsigned char *salt, cry_sink_fn sink, void *arg)
{
    cry_writer *w = xcalloc(1, sizeof *w);
    unsigned char hdr[CRY_HDR_LEN];

    memcpy(hdr, MAGIC, 8);
    put32(hdr + 8, seg);
    if (salt != NULL)
        memcpy(hdr + 12, salt, CRY_SALT_LEN);
    else if (RAND_bytes(hdr + 12, CRY_SALT_LEN) != 1)
        abort();
    stream_init(&w->s, seg, store_id, name);
    stream_header(&w->s, hdr);
    if (!derive(&w->s, dk, hdr + 12))
        abort();
    w->sink = sink;
    w->arg = arg;
    w->pt = xmalloc(seg);
    w->ct = xmalloc((size_t)seg + CRY_TAG_LEN);
    return w;
}

static snap_rc flush_segment(cry_writer *w, bool final, snap_err *err)
{
    snap_rc rc;

    if (!w->started) {
        rc = w->sink(w->arg, w->s.hdr, CRY_HDR_LEN, err);
        if (rc != SNAP_OK)
            return rc;
        w->started = true;
    }
    if (!segment(&w->s, true, w->no, final, w->pt, w->fill, w->ct, w->ct + w->fill))
        return err_set(err, SNAP_EFAIL, 0, "cannot encrypt: the object is too large for one stream");
    rc = w->sink(w->arg, w->ct, w->fill + CRY_TAG_LEN, err);
    w->no++;
    w->fill = 0;
    return rc;
}

snap_rc cry_writer_write(cry_writer *w, const void *buf, size_t len, snap_err *err)
{
    const unsigned char *p = buf;

    while (len > 0) {
        size_t n;
        /* A full segment is sealed only once more follows: the last one carries the flag. */
        if (w->fill == w->s.seg) {
            snap_rc rc = flush_segment(w, false, err);
            if (rc != SNAP_OK)
                return rc;
        }
        n = w->s.seg - w->fill < len ? w->s.seg - w->fill : len;
        memcpy(w->pt + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
    }
    return SNAP_OK;
}

snap_rc cry_writer_finish(cry_writer *w, snap_err *err)
{
    if (w->finished)
        return SNAP_OK;
    w->finished = true;
    return flush_segment(w, true, err);
}

void cry_writer_free(cry_writer *w)
{
    if (w == NULL)
        return;
    stream_free(&w->s);
    OPENSSL_cleanse(w->pt, w->s.seg);
    free(w->pt);
    free(w->ct);
    free(w);
}

/* ---- read side -------------------------------------------------------------------- */

struct cry_reader {
    stream s;
    cry_key *dk;
    char *name;
    cry_source_fn source;
    void *arg;
    unsigned char *ct, *pt; /* ct holds one sealed segment and one byte more: is there a next? */
    size_t cfill, ccap, pfill, poff, skip;
    uint64_t no;
    int64_t last; /* -1: the source ends where the object does */
    bool have_hdr, done, eof;
};

cry_reader *cry_reader_new(const cry_key *dk, uint32_t seg, const char *store_id, const char *name,
                           cry_source_fn source, void *arg)
{
    cry_reader *r = xcalloc(1, sizeof *r);

    stream_init(&r->s, seg, store_id, name);
    r->dk = cry_key_dup(dk);
    r->name = xstrdup(name);
    r->source = source;
    r->arg = arg;
    r->ccap = (size_t)seg + CRY_TAG_LEN + 1;
    r->ct = xmalloc(r->ccap);
    r->pt = xmalloc(seg);
    r->last = -1;
    return r;
}

void cry_reader_range(cry_reader *r, const unsigned char hdr[CRY_HDR_LEN], uint64_t first_seg, int64_t last_seg,
                      size_t skip)
{
    stream_header(&r->s, hdr);
    r->have_hdr = derive(&r->s, r->dk, hdr + 12);
    r->no = first_seg;
    r->last = last_seg;
    r->skip = skip;
}

/* Fills ct up to want bytes or the end of the source. */
static snap_rc fill(cry_reader *r, size_t want, snap_err *err)
{
    while (!r->eof && r->cfill < want) {
        size_t got = 0;
        snap_rc rc = r->source(r->arg, r->ct + r->cfill, want - r->cfill, &got, err);
        if (rc != SNAP_OK)
            return rc;
        if (got == 0)
            r->eof = true;
        r->cfill += got;
    }
    return SNAP_OK;
}

static snap_rc damaged(const cry_reader *r, snap_err *err, const char *what)
{
    err_set(err, SNAP_EVERIFY, 0, "%s %s", r->name, what);
    err_hint(err, "the store was altered or is damaged; nothing was changed");
    return SNAP_EVERIFY;
}

static snap_rc read_header(cry_reader *r, snap_err *err)
{
    unsigned char hdr[CRY_HDR_LEN];
    uint32_t seg;
    snap_rc rc = fill(r, CRY_HDR_LEN, err);

    if (rc != SNAP_OK)
        return rc;
    if (r->cfill < CRY_HDR_LEN || memcmp(r->ct, MAGIC, 8) != 0)
        return damaged(r, err, "is not an encrypted object of this store (no snap-aead-1 header)");
    seg = (uint32_t)r->ct[8] << 24 | (uint32_t)r->ct[9] << 16 | (uint32_t)r->ct[10] << 8 | r->ct[11];
    if (seg != r->s.seg)
        return damaged(r, err, "has a header that was altered (segment size)");
    memcpy(hdr, r->ct, CRY_HDR_LEN);
    r->cfill = 0;
    cry_reader_range(r, hdr, 0, -1, 0);
    if (!r->have_hdr)
        return err_set(err, SNAP_EFAIL, 0, "cannot derive a key (OpenSSL HKDF)");
    return SNAP_OK;
}

/* Opens the next segment into pt. */
static snap_rc next_segment(cry_reader *r, snap_err *err)
{
    size_t full = (size_t)r->s.seg + CRY_TAG_LEN, len;
    bool final;
    snap_rc rc = fill(r, r->last < 0 ? full + 1 : full, err);

    if (rc != SNAP_OK)
        return rc;
    if (r->last >= 0)
        final = (int64_t)r->no == r->last;
    else
        final = r->cfill <= full;
    len = r->cfill < full ? r->cfill : full;
    if (len < CRY_TAG_LEN || (!final && len < full))
        return damaged(r, err, "is truncated");
    if (!segment(&r->s, false, r->no, final, r->ct, len - CRY_TAG_LEN, r->pt, r->ct + len - CRY_TAG_LEN)) {
        char what[96];
        snprintf(what, sizeof what, "fails authentication at segment %llu (damaged, truncated or altered)",
                 (unsigned long long)r->no);
        return damaged(r, err, what);
    }
    memmove(r->ct, r->ct + len, r->cfill - len);
    r->cfill -= len;
    r->pfill = len - CRY_TAG_LEN;
    r->poff = 0;
    r->no++;
    if (final) {
        r->done = true;
        if (r->cfill > 0 || (r->last < 0 && fill(r, 1, err) == SNAP_OK && r->cfill > 0))
            return damaged(r, err, "has bytes after its final segment");
    }
    return SNAP_OK;
}

snap_rc cry_reader_read(cry_reader *r, void *buf, size_t cap, size_t *got, snap_err *err)
{
    snap_rc rc;

    *got = 0;
    if (!r->have_hdr && (rc = read_header(r, err)) != SNAP_OK)
        return rc;
    while (r->poff == r->pfill || r->skip > 0) {
        if (r->poff < r->pfill) { /* a ranged read starts inside this segment */
            size_t n = r->pfill - r->poff < r->skip ? r->pfill - r->poff : r->skip;
            r->poff += n;
            r->skip -= n;
            continue;
        }
        if (r->done)
            return SNAP_OK;
        rc = next_segment(r, err);
        if (rc != SNAP_OK)
            return rc;
    }
    *got = r->pfill - r->poff < cap ? r->pfill - r->poff : cap;
    memcpy(buf, r->pt + r->poff, *got);
    r->poff += *got;
    return SNAP_OK;
}

void cry_reader_free(cry_reader *r)
{
    if (r == NULL)
        return;
    stream_free(&r->s);
    cry_key_free(r->dk);
    free(r->name);
    OPENSSL_cleanse(r->pt, r->s.seg);
    free(r->pt);
    free(r->ct);
    free(r);
}
