/* snapshot.c: the capture engine: sources -> components -> parts -> manifest, committed last. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/auth.h"
#include "../common/cry.h"
#include "../common/util.h"
#include "../engines/my_client.h"
#include "snapshot.h"

#define SNP_ENTRY(type) &snp_##type##_driver,
static const snp_driver *const drivers[] = {SNAP_ENGINES(SNP_ENTRY)};
#undef SNP_ENTRY

struct snp_capture {
    snap_ctx *ctx;
    stg *store;
    const char *name;
    char *section;
    cat_component *comp;
    arc_parts *parts;
    arc_opts opts;
    src_opts src;
    bool allow_missing;
    bool locks_held;
    const snp_redirect *redirect;
    size_t nredirect;
    evt_sink *events; /* phase and component events; NULL for a nested snapshot */
    cat_manifest **catalog; /* the store's snapshots, oldest first: what parts can reuse */
    size_t ncatalog;
    const char *parent; /* --parent NAME, or NULL */
};

const snp_driver *snp_driver_find(const char *type)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (strcmp(drivers[i]->type, type) == 0)
            return drivers[i];
    return NULL;
}

const char *snp_source_name(const snp_capture *c) { return c->name; }
snap_ctx *snp_ctx(const snp_capture *c) { return c->ctx; }
stg *snp_store(const snp_capture *c) { return c->store; }
bool snp_allow_missing(const snp_capture *c) { return c->allow_missing; }
bool snp_locks_held(const snp_capture *c) { return c->locks_held; }
cat_component *snp_component(const snp_capture *c) { return c->comp; }

const snp_redirect *snp_redirect_of(const snp_capture *c, const char *live)
{
    for (size_t i = 0; i < c->nredirect; i++)
        if (strcmp(c->redirect[i].source, c->name) == 0 && (live == NULL || strcmp(c->redirect[i].live, live) == 0))
            return &c->redirect[i];
    return NULL;
}
prg_bar *snp_progress(const snp_capture *c) { return c->opts.progress; }

const src_opts *snp_opts(const snp_capture *c) { return &c->src; }
cat_manifest *const *snp_catalog(const snp_capture *c, size_t *n)
{
    *n = c->ncatalog;
    return c->catalog;
}
const char *snp_parent(const snp_capture *c) { return c->parent; }
arc_parts *snp_parts(const snp_capture *c) { return c->parts; }

/* Every stored part is known by its content, so that a part written again is not stored again. */
static void know_parts(snp_capture *c)
{
    for (size_t i = 0; i < c->ncatalog; i++)
        for (size_t j = 0; j < cat_manifest_ncomponents(c->catalog[i]); j++) {
            cat_component *comp = cat_manifest_component(c->catalog[i], j);
            for (size_t k = 0; k < cat_component_nparts(comp); k++) {
                const char *key, *sha;
                uint64_t size, entries, raw;
                cat_component_part_raw(comp, k, &key, &size, &sha, &entries, &raw);
                arc_parts_know(c->parts, key, size, sha, entries, raw);
            }
        }
}

snap_rc snp_writer_new(snp_capture *c, arc_writer **out, snap_err *err)
{
    arc_opts o = c->opts;

    /* small files share text across entries; a table's rows, an image's blobs do not */
    o.whole_overlap = strcmp(cat_component_type(c->comp), "files") == 0;
    return arc_writer_new(c->store, c->parts, &o, c->ctx, out, err);
}

bool snp_group_mark(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h % 16 == 0;
}

struct snp_holds {
    pthread_mutex_t mu;
    snp_held *v;
    size_t n, alloc;
};

snp_holds *snp_holds_new(void)
{
    snp_holds *h = xcalloc(1, sizeof *h);

    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void snp_holds_free(snp_holds *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->mu);
    free(h->v);
    free(h);
}

void snp_holds_note(snp_holds *h, const arc_writer *w, snp_held *last, size_t table)
{
    snp_held one = {arc_writer_part_no(w), table, true};

    if (last->set && last->part == one.part && last->table == table)
        return;
    *last = one;
    pthread_mutex_lock(&h->mu);
    if (h->n == h->alloc)
        h->v = xrealloc(h->v, (h->alloc = h->alloc ? 2 * h->alloc : 64) * sizeof *h->v);
    h->v[h->n++] = one;
    pthread_mutex_unlock(&h->mu);
}

static int held_cmp(const void *a, const void *b)
{
    const snp_held *x = a, *y = b;

    if (x->part != y->part)
        return x->part < y->part ? -1 : 1;
    return x->table < y->table ? -1 : x->table > y->table;
}

json_t *snp_holds_json(snp_holds *h, const snp_capture *c, json_t *(*value)(size_t table, void *arg), void *arg)
{
    json_t *all = json_array();
    size_t k = 0;

    if (h->n > 0) /* qsort's array may not be NULL, even when empty */
        qsort(h->v, h->n, sizeof *h->v, held_cmp);
    for (size_t i = 0; i < arc_parts_count(c->parts); i++) {
        unsigned no = arc_parts_no(c->parts, i); /* the parts in the manifest's order */
        json_t *one = json_array();
        for (; k < h->n && h->v[k].part <= no; k++)
            if (h->v[k].part == no && (json_array_size(one) == 0 || h->v[k - 1].table != h->v[k].table))
                json_array_append_new(one, value(h->v[k].table, arg));
        json_array_append_new(all, one);
    }
    return all;
}

bool snp_row_mark(const void *row, size_t n, uint64_t target)
{
    const unsigned char *p = row;
    size_t head = n < 64 ? n : 64, tail = n - head < 64 ? n - head : 64;
    uint32_t h = 2166136261u; /* FNV-1a of the first and last 64 bytes: cheap, and a key
                               * or a changed value is most often there */

    if (n >= target || n >= (1ULL << 31))
        return true;
    for (size_t i = 0; i < head; i++)
        h = (h ^ p[i]) * 16777619u;
    for (size_t i = n - tail; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    h ^= h >> 15; /* FNV's low bits mix poorly */
    h *= 0x2c1b3c6dU;
    h ^= h >> 12;
    return h < ((uint64_t)n << 32) / target;
}

static snap_rc archive_opts(const snap_ctx *ctx, arc_opts *o, snap_err *err)
{
    long level = 0, threads = 0;
    snap_rc rc = cfg_int(ctx->cfg, "snap", "zstd_level", &level, err);

    if (rc == SNAP_OK)
        rc = cfg_int(ctx->cfg, "snap", "zstd_threads", &threads, err);
    if (rc == SNAP_OK)
        rc = cfg_size(ctx->cfg, "snap", "part_size", &o->part_size, err);
    o->zstd_level = (int)level;
    o->zstd_threads = (int)threads;
    return rc;
}

/* Labels and the note are stored as JSON strings: text that is not UTF-8 cannot be. */
static snap_rc check_labels(const snp_request *req, snap_err *err)
{
    if (req->note != NULL && !util_utf8_valid(req->note)) {
        err_set(err, SNAP_EUSAGE, 0, "the note is not valid UTF-8");
        err_hint(err, "write the note in UTF-8 (`iconv -t UTF-8` converts text)");
        return SNAP_EUSAGE;
    }
    for (size_t i = 0; i < req->nlabels; i++) {
        if (!util_utf8_valid(req->labels[i])) {
            err_set(err, SNAP_EUSAGE, 0, "label '%s' is not valid UTF-8", req->labels[i]);
            err_hint(err, "write labels in UTF-8 (`iconv -t UTF-8` converts text)");
            return SNAP_EUSAGE;
        }
        const char *eq = strchr(req->labels[i], '=');
        char *key;
        snap_rc rc;

        if (eq == NULL || eq == req->labels[i]) {
            err_set(err, SNAP_EUSAGE, 0, "invalid label '%s'", req->labels[i]);
            err_hint(err, "labels are KEY=VALUE");
            return SNAP_EUSAGE;
        }
        key = strndup(req->labels[i], (size_t)(eq - req->labels[i]));
        rc = cat_name_check("label", key, err);
        free(key);
        if (rc != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

/* Runs one source into its component of m. */
static snap_rc capture_source(snp_capture *c, cat_manifest *m, snap_err *err)
{
    const char *type;
    const snp_driver *drv;
    char *prefix;
    snap_rc rc = cat_name_check("source", c->name, err);

    if (rc == SNAP_OK)
        rc = src_opts_parse(c->ctx->cfg, c->section, &c->src, err);
    if (rc != SNAP_OK)
        return rc;
    type = c->src.type;
    if (type == NULL || (drv = snp_driver_find(type)) == NULL) {
        if (type == NULL)
            err_set(err, SNAP_EUSAGE, 0, "[source %s] has no type", c->name);
        else
            err_set(err, SNAP_EUSAGE, 0, "[source %s] has an unknown type '%s'", c->name, type);
        err_hint(err, "set type = files, postgres, mysql or images");
        return SNAP_EUSAGE;
    }
    c->comp = cat_manifest_add_component(m, c->name, type);
    prefix = cat_component_prefix(m, c->name);
    c->parts = arc_parts_new(prefix);
    free(prefix);
    know_parts(c);
    log_debug(c->ctx, "capturing %s (%s)", c->name, type);
    evt_emit(c->events, "component_start", json_pack("{s:s, s:s}", "component", c->name, "type", type));
    rc = drv->capture(c, err);
    evt_emit(c->events, "component_end",
             json_pack("{s:s, s:s, s:b}", "component", c->name, "type", type, "ok", rc == SNAP_OK));
    if (rc == SNAP_OK && ctx_interrupted(c->ctx, err))
        rc = SNAP_EINTR;
    if (rc != SNAP_OK && strncmp(err->msg, c->name, strlen(c->name)) != 0)
        err_prefix(err, "source %s", c->name);
    for (size_t i = 0; rc == SNAP_OK && i < arc_parts_count(c->parts); i++) {
        const char *key, *sha;
        uint64_t size, entries, raw;
        arc_parts_get(c->parts, i, &key, &size, &sha, &entries, &raw);
        cat_component_add_part(c->comp, key, size, sha, entries, raw);
    }
    if (rc == SNAP_OK && arc_parts_reused_bytes(c->parts) > 0)
        log_verbose(c->ctx, "%s: %llu stored bytes reused from earlier snapshots", c->name,
                 (unsigned long long)arc_parts_reused_bytes(c->parts));
    arc_parts_free(c->parts);
    c->parts = NULL;
    return rc;
}

/* Counts first what the sources will produce, so that progress has a total and an ETA. */
static void count_sources(snp_capture *c)
{
    size_t n = cfg_source_count(c->ctx->cfg);
    uint64_t t0 = util_now_ms();

    evt_phase(c->events, "count");
    for (size_t i = 0; i < n && !ctx_interrupted(c->ctx, NULL); i++) {
        const char *type;
        const snp_driver *drv;
        c->name = cfg_source_name(c->ctx->cfg, i);
        c->section = xasprintf("source %s", c->name);
        if (src_opts_parse(c->ctx->cfg, c->section, &c->src, NULL) == SNAP_OK) {
            type = c->src.type;
            drv = type != NULL ? snp_driver_find(type) : NULL;
            if (drv != NULL && drv->estimate != NULL)
                prg_add_total(c->opts.progress, drv->estimate(c));
            src_opts_free(&c->src);
        }
        free(c->section);
        c->section = NULL;
    }
    log_debug(c->ctx, "counted what the sources hold in %llu ms", (unsigned long long)(util_now_ms() - t0));
}

/*
 * Only what this host's keys authenticate is reused: a manifest anyone could have written
 * must not choose what a new snapshot holds (its parts, or the entries a files index says
 * a part holds).
 */
static void keep_authenticated(snp_capture *c, const auth_keyring *keys)
{
    size_t k = 0;
    char id[AUTH_KEY_ID_LEN + 1];

    for (size_t i = 0; i < c->ncatalog; i++) {
        if (auth_verify(keys, cat_manifest_json(c->catalog[i]), id) == AUTH_OK)
            c->catalog[k++] = c->catalog[i];
        else
            cat_manifest_free(c->catalog[i]);
    }
    c->ncatalog = k;
}

static bool in_catalog(const snp_capture *c, const char *name)
{
    for (size_t i = 0; i < c->ncatalog; i++)
        if (strcmp(cat_manifest_name(c->catalog[i]), name) == 0)
            return true;
    return false;
}

/*
 * The parts m refers to are there still: a snapshot deleted while this one was taken
 * takes the parts only it held. (The window left, between this look and the commit, is
 * what `snap verify` is for: docs/formats.md.)
 */
static snap_rc refs_present(stg *store, const cat_manifest *m, snap_err *err)
{
    char *own = xasprintf("data/%s/", cat_manifest_id(m));
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < cat_manifest_ncomponents(m) && rc == SNAP_OK; i++) {
        cat_component *comp = cat_manifest_component(m, i);
        for (size_t j = 0; j < cat_component_nparts(comp) && rc == SNAP_OK; j++) {
            const char *key, *sha;
            uint64_t size, entries, got;
            cat_component_part(comp, j, &key, &size, &sha, &entries);
            if (strncmp(key, own, strlen(own)) == 0)
                continue;
            rc = stg_stat(store, key, &got, err);
            if (rc == SNAP_OK && got != size)
                rc = err_set(err, SNAP_EVERIFY, 0, "part %s that this snapshot reuses has %llu bytes, not %llu", key,
                             (unsigned long long)got, (unsigned long long)size);
            if (rc == SNAP_ENOTFOUND) {
                err_set(err, SNAP_ECONFLICT, 0, "part %s that this snapshot reuses was deleted meanwhile", key);
                err_hint(err, "a snapshot was deleted while snap ran; run snap again (nothing was committed)");
                rc = SNAP_ECONFLICT;
            }
        }
    }
    free(own);
    return rc;
}

snap_rc snp_create(snap_ctx *ctx, stg *store, const snp_request *req, cat_manifest **out,
                   snap_err *err)
{
    char id[32], *data;
    bool exists = false;
    cat_manifest *m;
    auth_keyring *keys = NULL;
    snp_capture c = {0};
    snap_err lerr;
    size_t nsources = cfg_source_count(ctx->cfg);
    snap_rc rc = cat_name_check("snapshot", req->name, err);

    if (out != NULL)
        *out = NULL;
    if (rc == SNAP_OK)
        rc = check_labels(req, err);
    if (rc == SNAP_OK)
        rc = archive_opts(ctx, &c.opts, err);
    if (rc != SNAP_OK)
        return rc;
    if (nsources == 0) {
        err_set(err, SNAP_EUSAGE, 0, "nothing to capture: no source given");
        err_hint(err, "name one with --files PATH (or --pg, --mysql, --images), or a [source NAME] section in the config");
        return SNAP_EUSAGE;
    }
    rc = snp_check_targets(ctx, err);
    if (rc != SNAP_OK)
        return rc;
    /* Fail early on a taken name; the create-only commit settles races. */
    rc = cat_exists(store, req->name, &exists, err);
    if (rc == SNAP_OK && exists) {
        err_set(err, SNAP_ECONFLICT, 0, "snapshot %s already exists", req->name);
        err_hint(err, "choose another name, or `snap delete %s` first", req->name);
        rc = err_kind(err, "name_exists");
    }
    /* Every manifest is signed with every key this host holds (docs/formats.md). */
    if (rc == SNAP_OK)
        rc = auth_keyring_load(ctx->cfg, true, &keys, err);
    if (rc != SNAP_OK)
        return rc;

    cat_new_id(id);
    /* An encrypted store: the snapshot's data key first, so that no part is written plain. */
    rc = stg_snapshot_key_new(store, id, err);
    if (rc != SNAP_OK) {
        auth_keyring_free(keys);
        return rc;
    }
    m = cat_manifest_new(req->name, id);
    if (stg_encrypted(store))
        json_object_set_new(cat_manifest_json(m), "encryption", json_pack("{s:s}", "scheme", CRY_SCHEME));
    if (req->note != NULL)
        cat_manifest_set_note(m, req->note);
    for (size_t i = 0; i < req->nlabels; i++) {
        char *k = xstrdup(req->labels[i]), *eq = strchr(k, '=');
        *eq = '\0';
        cat_manifest_set_label(m, k, eq + 1);
        free(k);
    }
    c.ctx = ctx;
    c.store = store;
    c.allow_missing = req->allow_missing;
    c.locks_held = req->locks_held;
    c.redirect = req->redirect;
    c.nredirect = req->nredirect;
    c.events = req->nested ? NULL : ctx->events;
    c.parent = req->parent;
    /* What earlier snapshots stored, for reuse; a catalog that cannot be read only costs that. */
    if (cat_list(store, &c.catalog, &c.ncatalog, &lerr) != SNAP_OK)
        log_warn(ctx, "cannot list the snapshots of the store (%s): storing every part anew", lerr.msg);
    keep_authenticated(&c, keys);
    if (rc == SNAP_OK && req->parent != NULL && !in_catalog(&c, req->parent)) {
        err_set(err, SNAP_ENOTFOUND, 0, "no snapshot named %s that this host authenticates in %s, to use as the parent",
                req->parent, stg_url(store));
        err_hint(err, "`snap list` shows the snapshots of this store; a parent must be signed by a key this host holds");
        rc = SNAP_ENOTFOUND;
    }
    c.opts.progress = prg_new(ctx, "snap", 0);
    count_sources(&c);
    evt_phase(c.events, "capture");
    for (size_t i = 0; i < nsources && rc == SNAP_OK; i++) {
        c.name = cfg_source_name(ctx->cfg, i);
        c.section = xasprintf("source %s", c.name);
        rc = capture_source(&c, m, err);
        src_opts_free(&c.src);
        free(c.section);
    }
    prg_free(c.opts.progress);
    cat_list_free(c.catalog, c.ncatalog);
    if (rc == SNAP_OK)
        rc = refs_present(store, m, err);
    if (rc == SNAP_OK) {
        cat_manifest_set_finished(m, time(NULL));
        cat_manifest_set_format(m);
        auth_sign(keys, cat_manifest_json(m));
        util_failpoint("snap-before-commit");
        evt_phase(c.events, "commit");
        rc = cat_commit(store, m, err);
    }
    if (rc != SNAP_OK) {
        /* Nothing was committed: the parts are orphans, remove them now. */
        snap_err ignored;
        data = xasprintf("data/%s/", id);
        if (stg_delete_prefix(store, data, &ignored) != SNAP_OK)
            log_warn(ctx, "could not remove the parts of the failed snap (%s); `snap gc` will", ignored.msg);
        free(data);
        cat_manifest_free(m);
        auth_keyring_free(keys);
        return rc;
    }
    auth_keyring_free(keys);
    if (out != NULL)
        *out = m;
    else
        cat_manifest_free(m);
    return SNAP_OK;
}
