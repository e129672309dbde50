/* storage.c: the store object: driver dispatch, STORE.json, whole-object helpers. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "storage_int.h"

#define STORE_FORMAT 1      /* what a new store is created with */
#define STORE_FORMAT_REFS 2 /* a manifest refers to another snapshot's parts (docs/formats.md) */
#define STORE_FORMAT_MAX 3  /* a manifest holds PostgreSQL data in binary COPY format */
#define STORE_META "STORE.json"

static const stg_driver *const drivers[] = {
    &stg_local_driver,
    &stg_mem_driver,
    &stg_s3_driver,
};

struct stg {
    const stg_driver *drv;
    void *impl;
    snap_ctx *ctx;
    char id[64];
    json_t *meta;    /* STORE.json */
    char *meta_text; /* its bytes as read or last written: what stg_meta_put writes over */
    size_t meta_len;
    stg_enc *enc;    /* NULL: a plain store */
};

/* A sealed object streams through cw (writer) or cr (reader), between the caller and the driver. */
struct stg_writer {
    const stg_driver *drv;
    void *impl;
    cry_writer *cw;
};

struct stg_reader {
    const stg_driver *drv;
    void *impl;
    cry_reader *cr;
    uint64_t left; /* a ranged read of a sealed object: plain bytes still to give */
    bool ranged;
};

stg_enc *stg_enc_get(stg *s)
{
    return s->enc;
}

json_t *stg_meta_get(stg *s)
{
    return s->meta;
}

static void meta_text_set(stg *s, char *text, size_t len)
{
    free(s->meta_text);
    s->meta_text = text;
    s->meta_len = len;
}

snap_rc stg_meta_put(stg *s, snap_err *err)
{
    char *text = json_dumps(s->meta, JSON_INDENT(2) | JSON_SORT_KEYS);
    snap_rc rc = stg_replace(s, STORE_META, s->meta_text, s->meta_len, text, strlen(text), err);

    if (rc == SNAP_OK) {
        meta_text_set(s, text, strlen(text));
        return SNAP_OK;
    }
    free(text);
    if (rc == SNAP_ECONFLICT) {
        err_set(err, SNAP_ECONFLICT, 0, "%s/%s was changed by another process since this one read it; "
                "nothing was written", stg_url(s), STORE_META);
        err_hint(err, "run the command again");
    }
    return rc;
}

static const stg_driver *driver_for(const char *url)
{
    const char *colon = strstr(url, "://");

    if (colon == NULL)
        return &stg_local_driver;
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
        size_t n = strlen(drivers[i]->scheme);
        if ((size_t)(colon - url) == n && strncmp(url, drivers[i]->scheme, n) == 0)
            return drivers[i];
    }
    return NULL;
}

/* A new store's STORE.json, encrypted when a key is configured; create-only. */
static snap_rc store_meta_create(stg *s, snap_err *err)
{
    char id[33], now[32], *text;
    json_t *enc = NULL, *doc;
    snap_rc rc;

    util_random_hex(id, 16);
    util_iso8601(time(NULL), now);
    rc = enc_new_store(s->ctx != NULL ? s->ctx->cfg : NULL, id, &enc, &s->enc, err);
    if (rc != SNAP_OK)
        return rc;
    doc = json_pack("{s:i, s:s, s:s, s:s, s:o}", "format", STORE_FORMAT, "store_id", id, "created", now, "tool",
                    "snap " SNAP_VERSION, "encryption", enc != NULL ? enc : json_null());
    text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    rc = stg_put(s, STORE_META, text, strlen(text), STG_CREATE_ONLY, err);
    if (rc == SNAP_OK) {
        snprintf(s->id, sizeof s->id, "%s", id);
        s->meta = doc;
        meta_text_set(s, text, strlen(text));
        return SNAP_OK;
    }
    free(text);
    json_decref(doc);
    enc_free(s->enc);
    s->enc = NULL;
    return rc;
}

/* An encrypted store needs this host's key; a key configured for a plain store is an alarm. */
static snap_rc store_meta_enc(stg *s, json_t *enc, snap_err *err)
{
    const cfg *c = s->ctx != NULL ? s->ctx->cfg : NULL;
    const char *file = c ? cfg_get(c, "store", "key_file") : NULL, *cmd = c ? cfg_get(c, "store", "key_command") : NULL;

    if (enc != NULL && !json_is_null(enc))
        return enc_open_store(c, s->id, enc, &s->enc, err);
    if ((file != NULL && file[0] != '\0') || (cmd != NULL && cmd[0] != '\0')) {
        err_set(err, SNAP_EVERIFY, 0, "store %s is not encrypted, and a key is configured for it", stg_url(s));
        err_hint(err, "an encrypted store stays encrypted: if this one was, its STORE.json was replaced. "
                      "Otherwise unset [store] key_file and key_command, or use a new store");
        return err_kind(err, "not_encrypted");
    }
    return SNAP_OK;
}

/* Reads STORE.json, or writes it (create-only) for a new store. */
static snap_rc store_meta(stg *s, bool create, snap_err *err)
{
    char *buf = NULL;
    size_t len;
    json_t *doc = NULL;
    json_error_t jerr;
    snap_rc rc = stg_get(s, STORE_META, 64 * 1024, &buf, &len, err);

    if (rc == SNAP_ENOTFOUND && create) {
        rc = store_meta_create(s, err);
        if (rc == SNAP_ECONFLICT) /* another process made it first */
            return store_meta(s, false, err);
        return rc;
    }
    if (rc == SNAP_ENOTFOUND) {
        err_set(err, SNAP_ENOTFOUND, 0, "no snap store at %s", stg_url(s));
        err_hint(err, "check --store; `snap create` makes a new store on first use");
        return SNAP_ENOTFOUND;
    }
    if (rc != SNAP_OK)
        return rc;
    doc = json_loadb(buf, len, 0, &jerr);
    meta_text_set(s, buf, len);
    json_int_t format = 0;
    const char *id = NULL;
    json_t *enc = NULL;
    if (doc == NULL ||
        json_unpack(doc, "{s:I, s:s, s?o}", "format", &format, "store_id", &id, "encryption", &enc) != 0) {
        json_decref(doc);
        return err_set(err, SNAP_EFAIL, 0, "%s/%s is damaged: not a store description",
                       stg_url(s), STORE_META);
    }
    if (format < STORE_FORMAT || format > STORE_FORMAT_MAX) {
        err_set(err, SNAP_EFAIL, 0, "store %s has format %lld, which this version cannot read",
                stg_url(s), (long long)format);
        err_hint(err, "use a newer version of snap");
        json_decref(doc);
        return SNAP_EFAIL;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    s->meta = doc;
    return store_meta_enc(s, enc, err);
}

snap_rc stg_replace(stg *s, const char *key, const char *old, size_t oldlen, const void *buf, size_t len,
                    snap_err *err)
{
    /* the one plain object an encrypted store rewrites (enc_object_key refuses the others) */
    if (s->enc != NULL && strcmp(key, STORE_META) != 0)
        return err_set(err, SNAP_EUSAGE, 0, "refusing a plain rewrite of %s in an encrypted store", key);
    return s->drv->replace(s->impl, key, old, oldlen, buf, len, err);
}

/* Raises STORE.json as read now (old, len), keeping what other writers put in it. */
static snap_rc raise_format(stg *s, const char *old, size_t len, int format, snap_err *err)
{
    json_t *doc = json_loadb(old, len, 0, NULL), *f = json_object_get(doc, "format");
    char *text;
    snap_rc rc;

    if (!json_is_object(doc) || !json_is_integer(f)) {
        json_decref(doc);
        return err_set(err, SNAP_EFAIL, 0, "%s/%s is damaged: not a store description", stg_url(s), STORE_META);
    }
    if (json_integer_value(f) >= format) {
        json_object_set(s->meta, "format", f);
        json_decref(doc);
        return SNAP_OK;
    }
    json_object_set_new(doc, "format", json_integer(format));
    text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    rc = stg_replace(s, STORE_META, old, len, text, strlen(text), err);
    if (rc == SNAP_OK)
        json_object_set_new(s->meta, "format", json_integer(format));
    free(text);
    json_decref(doc);
    return rc;
}

snap_rc stg_require_format(stg *s, int format, snap_err *err)
{
    char *text;
    size_t len;
    snap_rc rc = SNAP_ECONFLICT;

    if (json_integer_value(json_object_get(s->meta, "format")) >= format)
        return SNAP_OK;
    if (format > STORE_FORMAT_MAX)
        return err_set(err, SNAP_EFAIL, 0, "store format %d is not one this version writes", format);
    /* Read again, then write only over that copy: another snap may raise it meanwhile, and
     * a format must never be lowered. A lost race reads the winner's copy and tries again. */
    for (int attempt = 0; attempt < 8 && rc == SNAP_ECONFLICT; attempt++) {
        if (attempt > 0) /* let the other writer finish */
            usleep((useconds_t)attempt * 25000);
        rc = stg_get(s, STORE_META, 64 * 1024, &text, &len, err);
        if (rc != SNAP_OK)
            break;
        rc = raise_format(s, text, len, format, err);
        free(text);
    }
    if (rc != SNAP_OK)
        err_prefix(err, "cannot raise the store's format to %d", format);
    return rc;
}

snap_rc stg_open(const char *url, bool create, snap_ctx *ctx, stg **out, snap_err *err)
{
    const stg_driver *drv = driver_for(url);
    stg *s;
    snap_rc rc;

    *out = NULL;
    if (drv == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "unsupported store URL %s", url);
        err_hint(err, "use a directory path, file://PATH or s3://BUCKET/PREFIX");
        return SNAP_EUSAGE;
    }
    s = xcalloc(1, sizeof *s);
    s->drv = drv;
    s->ctx = ctx;
    rc = drv->open(url, create, ctx, &s->impl, err);
    if (rc == SNAP_OK)
        rc = store_meta(s, create, err);
    if (rc != SNAP_OK) {
        stg_free(s);
        return rc;
    }
    *out = s;
    return SNAP_OK;
}

void stg_free(stg *s)
{
    if (s == NULL)
        return;
    if (s->impl != NULL)
        s->drv->free(s->impl);
    enc_free(s->enc);
    json_decref(s->meta);
    free(s->meta_text);
    free(s);
}

const char *stg_url(const stg *s)
{
    return s->drv->url(s->impl);
}

unsigned stg_features(const stg *s)
{
    return s->drv->features;
}

const char *stg_id(const stg *s)
{
    return s->id;
}

void stg_describe(const stg *s, void *json_object)
{
    json_t *o = json_object;

    json_object_set_new(o, "url", json_string(stg_url(s)));
    json_object_set_new(o, "driver", json_string(s->drv->scheme));
    json_object_set_new(o, "store_id", json_string(s->id));
    json_object_set_new(o, "encryption", s->enc != NULL ? json_string(CRY_SCHEME) : json_null());
    if (s->drv->describe != NULL)
        s->drv->describe(s->impl, o);
}

static snap_rc drv_sink(void *arg, const void *buf, size_t len, snap_err *err)
{
    stg_writer *w = arg;
    return w->drv->write(w->impl, buf, len, err);
}

snap_rc stg_writer_open(stg *s, const char *key, unsigned flags, stg_writer **out, snap_err *err)
{
    stg_writer *w;
    cry_key *dk = NULL;
    snap_rc rc = s->enc != NULL ? enc_object_key(s, s->enc, key, true, flags, &dk, err) : SNAP_OK;

    *out = NULL;
    if (rc != SNAP_OK)
        return rc;
    w = xcalloc(1, sizeof *w);
    rc = s->drv->writer_open(s->impl, key, flags & ~STG_SEALED, &w->impl, err);
    if (rc != SNAP_OK) {
        cry_key_free(dk);
        free(w);
        return rc;
    }
    w->drv = s->drv;
    if (dk != NULL)
        w->cw = cry_writer_new(dk, enc_seg(s->enc), s->id, key, NULL, drv_sink, w);
    cry_key_free(dk);
    *out = w;
    return SNAP_OK;
}

snap_rc stg_write(stg_writer *w, const void *buf, size_t len, snap_err *err)
{
    if (w->cw != NULL)
        return cry_writer_write(w->cw, buf, len, err);
    return w->drv->write(w->impl, buf, len, err);
}

snap_rc stg_commit(stg_writer *w, snap_err *err)
{
    snap_rc rc = w->cw != NULL ? cry_writer_finish(w->cw, err) : SNAP_OK;

    if (rc != SNAP_OK) {
        stg_abort(w);
        return rc;
    }
    rc = w->drv->commit(w->impl, err);
    cry_writer_free(w->cw);
    free(w);
    return rc;
}

void stg_abort(stg_writer *w)
{
    if (w == NULL)
        return;
    w->drv->abort(w->impl);
    cry_writer_free(w->cw);
    free(w);
}

static snap_rc drv_source(void *arg, void *buf, size_t cap, size_t *got, snap_err *err)
{
    stg_reader *r = arg;
    return r->drv->read(r->impl, buf, cap, got, err);
}

/* The header of a sealed object, for a ranged read that starts past it. */
static snap_rc read_header(stg *s, const char *key, unsigned char hdr[CRY_HDR_LEN], snap_err *err)
{
    void *impl = NULL;
    size_t n = 0, got = 0;
    snap_rc rc = s->drv->reader_open(s->impl, key, 0, CRY_HDR_LEN, &impl, err);

    while (rc == SNAP_OK && n < CRY_HDR_LEN) {
        rc = s->drv->read(impl, hdr + n, CRY_HDR_LEN - n, &got, err);
        if (rc == SNAP_OK && got == 0)
            rc = err_set(err, SNAP_EVERIFY, 0, "%s is too short for an encrypted object", key);
        n += got;
    }
    if (impl != NULL)
        s->drv->reader_free(impl);
    return rc;
}

/*
 * A ranged read of a sealed object maps onto whole segments: the driver reads from the
 * first segment that holds off to the last that holds off+len, and the bytes before off
 * in the first are dropped once it is authenticated.
 */
static snap_rc open_sealed_range(stg *s, stg_reader *r, const char *key, const cry_key *dk, uint64_t off,
                                 uint64_t len, snap_err *err)
{
    uint32_t seg = enc_seg(s->enc);
    uint64_t stored, plain, end, first, last, endseg, soff, slen;
    unsigned char hdr[CRY_HDR_LEN];
    snap_rc rc = s->drv->stat(s->impl, key, &stored, err);

    if (rc == SNAP_OK && !cry_plain_size(stored, seg, &plain))
        rc = err_set(err, SNAP_EVERIFY, 0, "%s has a size no encrypted object has (truncated?)", key);
    if (rc == SNAP_OK)
        rc = read_header(s, key, hdr, err);
    if (rc != SNAP_OK)
        return rc;
    if (off > plain)
        off = plain;
    end = len == 0 || off + len > plain ? plain : off + len;
    first = off / seg;
    last = plain == 0 ? 0 : (plain - 1) / seg;
    endseg = end == 0 ? 0 : (end - 1) / seg;
    if (endseg < first)
        endseg = first;
    soff = CRY_HDR_LEN + first * ((uint64_t)seg + CRY_TAG_LEN);
    slen = (endseg - first + 1) * ((uint64_t)seg + CRY_TAG_LEN);
    if (soff + slen > stored)
        slen = stored - soff;
    rc = s->drv->reader_open(s->impl, key, soff, slen, &r->impl, err);
    if (rc != SNAP_OK)
        return rc;
    r->cr = cry_reader_new(dk, seg, s->id, key, drv_source, r);
    cry_reader_range(r->cr, hdr, first, (int64_t)last, (size_t)(off - first * seg));
    r->ranged = true;
    r->left = end - off;
    return SNAP_OK;
}

snap_rc stg_reader_open(stg *s, const char *key, uint64_t off, uint64_t len, stg_reader **out,
                        snap_err *err)
{
    stg_reader *r = xcalloc(1, sizeof *r);
    cry_key *dk = NULL;
    snap_rc rc = s->enc != NULL ? enc_object_key(s, s->enc, key, false, 0, &dk, err) : SNAP_OK;

    *out = NULL;
    r->drv = s->drv;
    if (rc == SNAP_OK && dk != NULL && (off > 0 || len > 0))
        rc = open_sealed_range(s, r, key, dk, off, len, err);
    else if (rc == SNAP_OK) {
        rc = s->drv->reader_open(s->impl, key, off, len, &r->impl, err);
        if (rc == SNAP_OK && dk != NULL)
            r->cr = cry_reader_new(dk, enc_seg(s->enc), s->id, key, drv_source, r);
    }
    cry_key_free(dk);
    if (rc != SNAP_OK) {
        stg_reader_free(r);
        return rc;
    }
    *out = r;
    return SNAP_OK;
}

snap_rc stg_read(stg_reader *r, void *buf, size_t cap, size_t *got, snap_err *err)
{
    snap_rc rc;

    if (r->cr == NULL)
        return r->drv->read(r->impl, buf, cap, got, err);
    if (r->ranged && cap > r->left)
        cap = (size_t)r->left;
    if (r->ranged && cap == 0) {
        *got = 0;
        return SNAP_OK;
    }
    rc = cry_reader_read(r->cr, buf, cap, got, err);
    if (rc == SNAP_OK && r->ranged) {
        if (*got == 0)
            return err_set(err, SNAP_EVERIFY, 0, "an encrypted object ended before the range read of it");
        r->left -= *got;
    }
    return rc;
}

void stg_reader_free(stg_reader *r)
{
    if (r == NULL)
        return;
    if (r->impl != NULL)
        r->drv->reader_free(r->impl);
    cry_reader_free(r->cr);
    free(r);
}

snap_rc stg_get(stg *s, const char *key, size_t max, char **buf, size_t *len, snap_err *err)
{
    stg_reader *r;
    size_t n = 0, cap = 4096, got;
    char *p;
    snap_rc rc = stg_reader_open(s, key, 0, 0, &r, err);

    *buf = NULL;
    *len = 0;
    if (rc != SNAP_OK)
        return rc;
    p = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                rc = err_set(err, SNAP_EFAIL, 0, "%s/%s is larger than %zu bytes", stg_url(s), key, max);
                break;
            }
            cap = cap * 2 > max ? max : cap * 2;
            p = xrealloc(p, cap + 1);
        }
        rc = stg_read(r, p + n, cap - n, &got, err);
        if (rc != SNAP_OK || got == 0)
            break;
        n += got;
    }
    stg_reader_free(r);
    if (rc != SNAP_OK) {
        free(p);
        return rc;
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return SNAP_OK;
}

snap_rc stg_put(stg *s, const char *key, const void *buf, size_t len, unsigned flags, snap_err *err)
{
    stg_writer *w;
    snap_rc rc = stg_writer_open(s, key, flags, &w, err);

    if (rc != SNAP_OK)
        return rc;
    rc = stg_write(w, buf, len, err);
    if (rc != SNAP_OK) {
        stg_abort(w);
        return rc;
    }
    return stg_commit(w, err);
}

snap_rc stg_stat(stg *s, const char *key, uint64_t *size, snap_err *err)
{
    snap_rc rc = s->drv->stat(s->impl, key, size, err);

    /* A sealed object counts its plain bytes: the manifest's sizes are those. */
    if (rc == SNAP_OK && s->enc != NULL && enc_sealed_key(key) && !cry_plain_size(*size, enc_seg(s->enc), size))
        *size = UINT64_MAX;
    return rc;
}

snap_rc stg_list(stg *s, const char *prefix, stg_list_fn fn, void *arg, snap_err *err)
{
    return s->drv->list(s->impl, prefix, fn, arg, err);
}

snap_rc stg_delete(stg *s, const char *key, snap_err *err)
{
    return s->drv->remove(s->impl, key, err);
}

typedef struct key_list {
    char **keys;
    size_t n, cap;
} key_list;

static bool collect_key(const stg_entry *e, void *arg)
{
    key_list *l = arg;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->keys = xrealloc(l->keys, l->cap * sizeof *l->keys);
    }
    l->keys[l->n++] = xstrdup(e->key);
    return true;
}

snap_rc stg_delete_prefix(stg *s, const char *prefix, snap_err *err)
{
    key_list l = {0};
    snap_rc rc = stg_list(s, prefix, collect_key, &l, err);

    if (rc == SNAP_OK && l.n > 0) {
        if (s->drv->remove_many != NULL) {
            rc = s->drv->remove_many(s->impl, (const char *const *)l.keys, l.n, err);
        } else {
            for (size_t i = 0; i < l.n && rc == SNAP_OK; i++)
                rc = stg_delete(s, l.keys[i], err);
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.keys[i]);
    free(l.keys);
    return rc;
}

snap_rc stg_cleanup(stg *s, int64_t max_age, bool dry_run, unsigned *n, snap_err *err)
{
    *n = 0;
    return s->drv->cleanup(s->impl, max_age, dry_run, n, err);
}
