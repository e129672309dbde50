/* storage.c: the store object: driver dispatch, STORE.json, whole-object helpers. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "storage_int.h"

#define STORE_FORMAT 1
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
};

struct stg_writer {
    const stg_driver *drv;
    void *impl;
};

struct stg_reader {
    const stg_driver *drv;
    void *impl;
};

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

/* Reads STORE.json, or writes it (create-only) for a new store. */
static snap_rc store_meta(stg *s, bool create, snap_err *err)
{
    char *buf = NULL;
    size_t len;
    json_t *doc = NULL;
    json_error_t jerr;
    snap_rc rc = stg_get(s, STORE_META, 64 * 1024, &buf, &len, err);

    if (rc == SNAP_ENOTFOUND && create) {
        char id[33], now[32];
        util_random_hex(id, 16);
        util_iso8601(time(NULL), now);
        /* "encryption": null leaves room for client-side encryption without a new layout. */
        doc = json_pack("{s:i, s:s, s:s, s:s, s:n}", "format", STORE_FORMAT, "store_id", id,
                        "created", now, "tool", "snap " SNAP_VERSION, "encryption");
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        rc = stg_put(s, STORE_META, text, strlen(text), STG_CREATE_ONLY, err);
        free(text);
        json_decref(doc);
        if (rc == SNAP_ECONFLICT) /* another process made it first */
            return store_meta(s, false, err);
        if (rc == SNAP_OK)
            snprintf(s->id, sizeof s->id, "%s", id);
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
    free(buf);
    json_int_t format = 0;
    const char *id = NULL;
    json_t *enc = NULL;
    if (doc == NULL ||
        json_unpack(doc, "{s:I, s:s, s?o}", "format", &format, "store_id", &id, "encryption", &enc) != 0) {
        json_decref(doc);
        return err_set(err, SNAP_EFAIL, 0, "%s/%s is damaged: not a store description",
                       stg_url(s), STORE_META);
    }
    if (format != STORE_FORMAT || (enc != NULL && !json_is_null(enc))) {
        err_set(err, SNAP_EFAIL, 0, "store %s has format %lld%s, which this version cannot read",
                stg_url(s), (long long)format, enc && !json_is_null(enc) ? " with encryption" : "");
        err_hint(err, "use a newer version of snap");
        json_decref(doc);
        return SNAP_EFAIL;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    json_decref(doc);
    return SNAP_OK;
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
    if (s->drv->describe != NULL)
        s->drv->describe(s->impl, o);
}

snap_rc stg_writer_open(stg *s, const char *key, unsigned flags, stg_writer **out, snap_err *err)
{
    stg_writer *w = xcalloc(1, sizeof *w);
    snap_rc rc = s->drv->writer_open(s->impl, key, flags, &w->impl, err);

    if (rc != SNAP_OK) {
        free(w);
        *out = NULL;
        return rc;
    }
    w->drv = s->drv;
    *out = w;
    return SNAP_OK;
}

snap_rc stg_write(stg_writer *w, const void *buf, size_t len, snap_err *err)
{
    return w->drv->write(w->impl, buf, len, err);
}

snap_rc stg_commit(stg_writer *w, snap_err *err)
{
    snap_rc rc = w->drv->commit(w->impl, err);
    free(w);
    return rc;
}

void stg_abort(stg_writer *w)
{
    if (w == NULL)
        return;
    w->drv->abort(w->impl);
    free(w);
}

snap_rc stg_reader_open(stg *s, const char *key, uint64_t off, uint64_t len, stg_reader **out,
                        snap_err *err)
{
    stg_reader *r = xcalloc(1, sizeof *r);
    snap_rc rc = s->drv->reader_open(s->impl, key, off, len, &r->impl, err);

    if (rc != SNAP_OK) {
        free(r);
        *out = NULL;
        return rc;
    }
    r->drv = s->drv;
    *out = r;
    return SNAP_OK;
}

snap_rc stg_read(stg_reader *r, void *buf, size_t cap, size_t *got, snap_err *err)
{
    return r->drv->read(r->impl, buf, cap, got, err);
}

void stg_reader_free(stg_reader *r)
{
    if (r == NULL)
        return;
    r->drv->reader_free(r->impl);
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
    return s->drv->stat(s->impl, key, size, err);
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
