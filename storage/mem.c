/* mem.c: the in-memory store, mem://NAME, for tests: every open starts empty, and the
 * Nth call of an operation can be made to fail (stg_mem_fail). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "storage_int.h"

/* A commit of this key arms a failure instead of storing an object (see stg_mem_fail). */
#define MEM_CONTROL_KEY "MEM-FAIL"

typedef enum mem_op { MEM_WRITE, MEM_COMMIT, MEM_READ, MEM_LIST, MEM_REMOVE, MEM_STAT, MEM_NOPS } mem_op;

static const char *const op_names[MEM_NOPS] = {"write", "commit", "read", "list", "remove", "stat"};

typedef struct mem_obj {
    char *key;
    unsigned char *data;
    size_t len;
    time_t mtime;
} mem_obj;

typedef struct mem_fault {
    mem_op op;
    char prefix[256];
    unsigned nth; /* 0: none armed */
    unsigned seen;
    snap_rc rc;
} mem_fault;

typedef struct mem {
    pthread_mutex_t mu;
    char *url;
    mem_obj *objs;
    size_t n, cap;
    mem_fault fault;
} mem;

typedef struct mem_writer {
    mem *m;
    char *key;
    unsigned flags;
    unsigned char *data;
    size_t len, cap;
} mem_writer;

typedef struct mem_reader {
    unsigned char *data;
    size_t len, off;
} mem_reader;

static snap_rc check_key(const char *key, snap_err *err)
{
    if (key[0] == '\0' || key[0] == '/' || strstr(key, "//") != NULL)
        return err_set(err, SNAP_EUSAGE, 0, "bad store key \"%s\"", key);
    return SNAP_OK;
}

/* Counts a call of op on key; its armed error (err set) when it is the one to fail. */
static snap_rc fault_hit(mem *m, mem_op op, const char *key, snap_err *err)
{
    mem_fault *f = &m->fault;
    bool hit = false;
    snap_rc rc = SNAP_OK;

    pthread_mutex_lock(&m->mu);
    if (f->nth > 0 && f->op == op && strncmp(key, f->prefix, strlen(f->prefix)) == 0 && ++f->seen == f->nth) {
        hit = true;
        rc = f->rc;
        f->nth = 0;
    }
    pthread_mutex_unlock(&m->mu);
    if (hit)
        err_set(err, rc, 0, "%s: injected failure of %s %s", m->url, op_names[op], key);
    return rc;
}

/* The object at key, or NULL; the caller holds the mutex. */
static mem_obj *find(mem *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->objs[i].key, key) == 0)
            return &m->objs[i];
    return NULL;
}

static snap_rc mem_open(const char *url, bool create, snap_ctx *ctx, void **out, snap_err *err)
{
    mem *m;

    (void)create;
    (void)ctx;
    if (strncmp(url, "mem://", 6) != 0 || url[6] == '\0')
        return err_set(err, SNAP_EUSAGE, 0, "bad in-memory store URL %s", url);
    m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->url = xstrdup(url);
    *out = m;
    return SNAP_OK;
}

static void mem_free(void *drv)
{
    mem *m = drv;

    for (size_t i = 0; i < m->n; i++) {
        free(m->objs[i].key);
        free(m->objs[i].data);
    }
    free(m->objs);
    free(m->url);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const char *mem_url(void *drv)
{
    return ((mem *)drv)->url;
}

static snap_rc mem_writer_open(void *drv, const char *key, unsigned flags, void **out, snap_err *err)
{
    snap_rc rc = check_key(key, err);
    mem_writer *w;

    if (rc != SNAP_OK)
        return rc;
    w = xcalloc(1, sizeof *w);
    w->m = drv;
    w->key = xstrdup(key);
    w->flags = flags;
    *out = w;
    return SNAP_OK;
}

static snap_rc mem_write(void *wp, const void *buf, size_t len, snap_err *err)
{
    mem_writer *w = wp;
    snap_rc rc;

    if ((rc = fault_hit(w->m, MEM_WRITE, w->key, err)) != SNAP_OK)
        return rc;
    if (w->len + len > w->cap) {
        w->cap = (w->len + len) * 2;
        w->data = xrealloc(w->data, w->cap);
    }
    if (len > 0)
        memcpy(w->data + w->len, buf, len);
    w->len += len;
    return SNAP_OK;
}

static void mem_abort(void *wp)
{
    mem_writer *w = wp;

    free(w->data);
    free(w->key);
    free(w);
}

/* "OP NTH RC [PREFIX]": arms the failure of the NTH call of OP, counted from now. */
static snap_rc arm(mem *m, const mem_writer *w, snap_err *err)
{
    char text[300] = "", op[16], prefix[256] = "";
    unsigned nth;
    int rc;
    mem_fault f = {0};

    memcpy(text, w->data, w->len < sizeof text - 1 ? w->len : sizeof text - 1);
    if (sscanf(text, "%15s %u %d %255s", op, &nth, &rc, prefix) < 3)
        return err_set(err, SNAP_EUSAGE, 0, "%s: bad failure request \"%s\"", m->url, text);
    for (f.op = 0; f.op < MEM_NOPS && strcmp(op_names[f.op], op) != 0; f.op++)
        ;
    if (f.op == MEM_NOPS)
        return err_set(err, SNAP_EUSAGE, 0, "%s: no operation \"%s\" to fail", m->url, op);
    f.nth = nth;
    f.rc = (snap_rc)rc;
    snprintf(f.prefix, sizeof f.prefix, "%s", prefix);
    pthread_mutex_lock(&m->mu);
    m->fault = f;
    pthread_mutex_unlock(&m->mu);
    return SNAP_OK;
}

static snap_rc mem_commit(void *wp, snap_err *err)
{
    mem_writer *w = wp;
    mem *m = w->m;
    mem_obj *o;
    snap_rc rc = SNAP_OK;

    if (strcmp(w->key, MEM_CONTROL_KEY) == 0) {
        rc = arm(m, w, err);
        goto out;
    }
    if ((rc = fault_hit(m, MEM_COMMIT, w->key, err)) != SNAP_OK)
        goto out;
    pthread_mutex_lock(&m->mu);
    o = find(m, w->key);
    if (o != NULL && (w->flags & STG_CREATE_ONLY)) {
        pthread_mutex_unlock(&m->mu);
        rc = err_set(err, SNAP_ECONFLICT, 0, "%s/%s already exists", m->url, w->key);
        goto out;
    }
    if (o == NULL) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 16;
            m->objs = xrealloc(m->objs, m->cap * sizeof *m->objs);
        }
        o = &m->objs[m->n++];
        o->key = w->key;
        w->key = NULL;
    } else {
        free(o->data);
    }
    o->data = w->data;
    o->len = w->len;
    o->mtime = time(NULL);
    w->data = NULL;
    pthread_mutex_unlock(&m->mu);
out:
    mem_abort(w);
    return rc;
}

static snap_rc mem_replace(void *drv, const char *key, const void *old, size_t oldlen, const void *buf, size_t len,
                           snap_err *err)
{
    mem *m = drv;
    mem_obj *o;
    snap_rc rc = SNAP_OK;

    if ((rc = fault_hit(m, MEM_COMMIT, key, err)) != SNAP_OK)
        return rc;
    pthread_mutex_lock(&m->mu);
    o = find(m, key);
    if (o == NULL) {
        rc = err_set(err, SNAP_ENOTFOUND, 0, "%s/%s: not found", m->url, key);
    } else if (o->len != oldlen || (oldlen > 0 && memcmp(o->data, old, oldlen) != 0)) {
        rc = err_set(err, SNAP_ECONFLICT, 0, "%s/%s was changed by another writer", m->url, key);
    } else {
        free(o->data);
        o->data = xmalloc(len ? len : 1);
        if (len > 0)
            memcpy(o->data, buf, len);
        o->len = len;
        o->mtime = time(NULL);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static snap_rc mem_reader_open(void *drv, const char *key, uint64_t off, uint64_t len, void **out,
                               snap_err *err)
{
    mem *m = drv;
    mem_obj *o;
    mem_reader *r;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    if ((rc = fault_hit(m, MEM_READ, key, err)) != SNAP_OK)
        return rc;
    pthread_mutex_lock(&m->mu);
    o = find(m, key);
    if (o == NULL) {
        pthread_mutex_unlock(&m->mu);
        return err_set(err, SNAP_ENOTFOUND, 0, "%s/%s does not exist", m->url, key);
    }
    r = xcalloc(1, sizeof *r);
    if (off < o->len) {
        r->len = len == 0 || off + len > o->len ? o->len - off : len;
        r->data = xmalloc(r->len + 1);
        memcpy(r->data, o->data + off, r->len);
    }
    pthread_mutex_unlock(&m->mu);
    *out = r;
    return SNAP_OK;
}

static snap_rc mem_read(void *rp, void *buf, size_t cap, size_t *got, snap_err *err)
{
    mem_reader *r = rp;
    size_t n = r->len - r->off < cap ? r->len - r->off : cap;

    (void)err;
    if (n > 0)
        memcpy(buf, r->data + r->off, n);
    r->off += n;
    *got = n;
    return SNAP_OK;
}

static void mem_reader_free(void *rp)
{
    mem_reader *r = rp;

    free(r->data);
    free(r);
}

static snap_rc mem_stat(void *drv, const char *key, uint64_t *size, snap_err *err)
{
    mem *m = drv;
    mem_obj *o;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    if ((rc = fault_hit(m, MEM_STAT, key, err)) != SNAP_OK)
        return rc;
    pthread_mutex_lock(&m->mu);
    o = find(m, key);
    if (o != NULL)
        *size = o->len;
    else
        rc = err_set(err, SNAP_ENOTFOUND, 0, "%s/%s does not exist", m->url, key);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* Calls fn on a copy of the entries, without the mutex, so that fn may use the store. */
static snap_rc mem_list(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err)
{
    mem *m = drv;
    stg_entry *v;
    size_t n = 0, plen = strlen(prefix);
    snap_rc rc;

    if ((rc = fault_hit(m, MEM_LIST, prefix, err)) != SNAP_OK)
        return rc;
    pthread_mutex_lock(&m->mu);
    v = xcalloc(m->n + 1, sizeof *v);
    for (size_t i = 0; i < m->n; i++) {
        if (strncmp(m->objs[i].key, prefix, plen) != 0)
            continue;
        v[n].key = xstrdup(m->objs[i].key);
        v[n].size = m->objs[i].len;
        v[n++].mtime = m->objs[i].mtime;
    }
    pthread_mutex_unlock(&m->mu);
    bool go_on = true;
    for (size_t i = 0; i < n; i++) {
        if (go_on)
            go_on = fn(&v[i], arg);
        free((char *)(uintptr_t)v[i].key);
    }
    free(v);
    return SNAP_OK;
}

static snap_rc mem_remove(void *drv, const char *key, snap_err *err)
{
    mem *m = drv;
    mem_obj *o;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    if ((rc = fault_hit(m, MEM_REMOVE, key, err)) != SNAP_OK)
        return rc;
    pthread_mutex_lock(&m->mu);
    o = find(m, key);
    if (o != NULL) {
        free(o->key);
        free(o->data);
        *o = m->objs[--m->n];
    }
    pthread_mutex_unlock(&m->mu);
    return SNAP_OK;
}

static snap_rc mem_cleanup(void *drv, int64_t max_age, bool dry_run, unsigned *n, snap_err *err)
{
    (void)drv;
    (void)max_age;
    (void)dry_run;
    (void)err;
    *n = 0; /* an uncommitted writer holds its bytes itself: nothing is left behind */
    return SNAP_OK;
}

snap_rc stg_mem_fail(stg *s, const char *op, const char *prefix, unsigned nth, snap_rc rc, snap_err *err)
{
    char *text = xasprintf("%s %u %d %s", op, nth, (int)rc, prefix ? prefix : "");
    snap_rc r = stg_put(s, MEM_CONTROL_KEY, text, strlen(text), 0, err);

    free(text);
    return r;
}

const stg_driver stg_mem_driver = {
    .scheme = "mem",
    .features = STG_FEAT_RANGE | STG_FEAT_CREATE_ONLY,
    .open = mem_open,
    .free = mem_free,
    .url = mem_url,
    .describe = NULL,
    .writer_open = mem_writer_open,
    .write = mem_write,
    .commit = mem_commit,
    .abort = mem_abort,
    .reader_open = mem_reader_open,
    .read = mem_read,
    .reader_free = mem_reader_free,
    .stat = mem_stat,
    .list = mem_list,
    .remove = mem_remove,
    .remove_many = NULL,
    .cleanup = mem_cleanup,
    .replace = mem_replace,
};
