/* catalog.c: the catalog in a store: commit, load, list, delete, verify, leases, retention, gc. */
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "arc.h"
#include "../common/cry.h"
#include "../common/util.h"
#include "catalog.h"

#define MANIFEST_MAX (64u << 20)
#define INDEX_MAX (512u << 20)
#define LEASE_TTL (24 * 3600)

static char *manifest_key(const char *name)
{
    return xasprintf("catalog/%s.json", name);
}

/*
 * In an encrypted store a document that carries data is kept in an envelope: the id whose
 * data key seals it, and the sealed text (docs/encryption.md). *text is replaced.
 */
static snap_rc seal_doc(stg *s, const char *key, const char *name, const char *id, char **text, snap_err *err)
{
    char *b64 = NULL;
    json_t *env;
    snap_rc rc = stg_seal(s, id, key, *text, strlen(*text), &b64, err);

    if (rc != SNAP_OK)
        return rc;
    env = json_pack("{s:i, s:s?, s:s, s:{s:s}, s:s}", "format", CAT_FORMAT, "name", name, "id", id, "encryption",
                    "scheme", CRY_SCHEME, "sealed", b64);
    if (name == NULL)
        json_object_del(env, "name");
    free(*text);
    *text = json_dumps(env, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(env);
    free(b64);
    return SNAP_OK;
}

snap_rc cat_commit(stg *s, const cat_manifest *m, snap_err *err)
{
    char *key = manifest_key(cat_manifest_name(m));
    char *text = json_dumps(cat_manifest_json(m), JSON_INDENT(2) | JSON_SORT_KEYS);
    snap_rc rc = SNAP_OK;
    bool exists = false;

    json_int_t format = json_integer_value(json_object_get(cat_manifest_json(m), "format"));
    if (format > CAT_FORMAT)
        rc = stg_require_format(s, (int)format, err);
    if (rc == SNAP_OK && stg_encrypted(s))
        rc = seal_doc(s, key, cat_manifest_name(m), cat_manifest_id(m), &text, err);
    if (rc == SNAP_OK) {
        rc = stg_put(s, key, text, strlen(text), STG_CREATE_ONLY | STG_SEALED, err);
        exists = rc == SNAP_ECONFLICT;
    }
    if (exists) {
        err_set(err, SNAP_ECONFLICT, 0, "snapshot %s already exists", cat_manifest_name(m));
        err_hint(err, "choose another name, or `snap delete %s` first", cat_manifest_name(m));
        err_kind(err, "name_exists");
    }
    free(text);
    free(key);
    return rc;
}

snap_rc cat_exists(stg *s, const char *name, bool *exists, snap_err *err)
{
    char *key = manifest_key(name);
    uint64_t size;
    snap_rc rc = stg_stat(s, key, &size, err);

    free(key);
    *exists = rc == SNAP_OK;
    return rc == SNAP_ENOTFOUND ? SNAP_OK : rc;
}

/*
 * The catalog entry is the snapshot: its manifest must carry the entry's name, and an id
 * that can only name its own data directory, since delete and prune act on both.
 */
static snap_rc check_entry(const cat_manifest *m, const char *name, snap_err *err)
{
    const char *inner = cat_manifest_name(m), *id = cat_manifest_id(m);
    snap_err e;

    if (strcmp(inner, name) != 0) {
        err_set(err, SNAP_EVERIFY, 0, "catalog entry %s holds a manifest named %s", name, inner);
        err_hint(err, "the store was changed by hand or is damaged; nothing was changed. Look at "
                      "catalog/%s.json in the store and remove it by hand if it is not wanted", name);
        return SNAP_EVERIFY;
    }
    if (cat_name_check("snapshot id", id, &e) != SNAP_OK || strstr(id, "..") != NULL) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: the manifest's id '%s' is not a snapshot id", name, id);
        err_hint(err, "the store was changed by hand or is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    return SNAP_OK;
}

/* What a stored document's envelope says, against what the store is (envelope_open). */
typedef enum { ENV_OPEN, ENV_PLAIN, ENV_SEALED, ENV_BAD_ID } env_state;

/*
 * Opens a stored document that may be sealed (docs/formats.md): *buf becomes the plaintext.
 * What is not JSON is left as it is, for the caller's parser to name. sealed_id, when not
 * NULL, gets the envelope's snapshot id ("" for a plain document). A sealed document in a
 * plain store, a plain one in an encrypted store, or an envelope id that is not a snapshot
 * id leaves *buf alone and sets *st for the caller to say; a failed unseal sets err.
 */
static snap_rc envelope_open(stg *s, const char *key, size_t max, char **buf, size_t *len, char sealed_id[64],
                             env_state *st, snap_err *err)
{
    json_t *env = json_loadb(*buf, *len, 0, NULL);
    const char *id = json_string_value(json_object_get(env, "id"));
    const char *sealed = json_string_value(json_object_get(env, "sealed"));
    char *text = NULL;
    snap_err e;
    snap_rc rc = SNAP_OK;

    *st = ENV_OPEN;
    if (env != NULL && sealed == NULL && stg_encrypted(s)) {
        *st = ENV_PLAIN;
    } else if (sealed != NULL && !stg_encrypted(s)) {
        *st = ENV_SEALED;
    } else if (sealed != NULL) {
        if (id == NULL || cat_name_check("snapshot id", id, &e) != SNAP_OK || strstr(id, "..") != NULL)
            *st = ENV_BAD_ID;
        else if ((rc = stg_unseal(s, id, key, sealed, max, &text, len, err)) == SNAP_OK) {
            free(*buf);
            *buf = text;
        }
        if (sealed_id != NULL)
            snprintf(sealed_id, 64, "%s", id != NULL ? id : "");
    }
    json_decref(env);
    return rc;
}

/*
 * A catalog entry's state must be the store's: an encrypted store holds only sealed
 * manifests (a plaintext one was slipped in), a plain store none. Replaces *buf by the
 * opened manifest text.
 */
static snap_rc open_entry(stg *s, const char *name, const char *key, char **buf, size_t *len, char sealed_id[64],
                          snap_err *err)
{
    env_state st;
    snap_rc rc = envelope_open(s, key, MANIFEST_MAX, buf, len, sealed_id, &st, err);

    if (rc != SNAP_OK || st == ENV_OPEN)
        return rc;
    if (st == ENV_PLAIN) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: its manifest is not encrypted, and the store is", name);
        err_hint(err, "a plaintext manifest was put into this encrypted store; nothing was changed. "
                      "Look at catalog/%s.json and remove it if it is not wanted", name);
    } else if (st == ENV_SEALED) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: its manifest is encrypted, and the store is not", name);
        err_hint(err, "the store's STORE.json was replaced or is damaged; nothing was changed");
    } else {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: the envelope's id is not a snapshot id", name);
    }
    return SNAP_EVERIFY;
}

snap_rc cat_doc_seal(stg *s, const char *key, const char *snapshot_id, char **text, snap_err *err)
{
    if (!stg_encrypted(s))
        return SNAP_OK;
    if (snapshot_id == NULL)
        return err_set(err, SNAP_EFAIL, 0, "%s: no snapshot id whose key would seal it", key);
    return seal_doc(s, key, NULL, snapshot_id, text, err);
}

snap_rc cat_doc_open(stg *s, const char *key, size_t max, char **buf, size_t *len, snap_err *err)
{
    env_state st;
    snap_rc rc = envelope_open(s, key, max, buf, len, NULL, &st, err);

    if (rc != SNAP_OK || st == ENV_OPEN)
        return rc;
    return err_set(err, SNAP_EVERIFY, 0,
                   st == ENV_PLAIN    ? "%s is not encrypted, and the store is"
                   : st == ENV_SEALED ? "%s is encrypted, and the store is not"
                                      : "%s: the envelope's id is not a snapshot id",
                   key);
}

/* The opened manifest of a sealed entry must be the envelope's snapshot, and say it is encrypted. */
static snap_rc check_sealed(stg *s, const cat_manifest *m, const char *name, const char *sealed_id, snap_err *err)
{
    const json_t *enc = json_object_get(cat_manifest_json(m), "encryption");
    const char *scheme = json_string_value(json_object_get(enc, "scheme"));

    if (sealed_id[0] != '\0' && strcmp(sealed_id, cat_manifest_id(m)) != 0) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: the envelope's id is not the manifest's", name);
        err_hint(err, "the store was altered; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (stg_encrypted(s) && (scheme == NULL || strcmp(scheme, CRY_SCHEME) != 0)) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: its manifest does not say it is encrypted", name);
        err_hint(err, "the store was altered; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (!stg_encrypted(s) && enc != NULL && !json_is_null(enc)) {
        err_set(err, SNAP_EVERIFY, 0, "snapshot %s: its manifest says it is encrypted, and the store is not", name);
        err_hint(err, "the store was altered; nothing was changed");
        return SNAP_EVERIFY;
    }
    return SNAP_OK;
}

snap_rc cat_load(stg *s, const char *name, cat_manifest **out, snap_err *err)
{
    char *key, *buf = NULL, sealed_id[64] = "";
    size_t len;
    snap_rc rc = cat_name_check("snapshot", name, err);

    *out = NULL;
    if (rc != SNAP_OK)
        return rc;
    key = manifest_key(name);
    rc = stg_get(s, key, MANIFEST_MAX, &buf, &len, err);
    if (rc == SNAP_OK)
        rc = open_entry(s, name, key, &buf, &len, sealed_id, err);
    free(key);
    if (rc == SNAP_ENOTFOUND) {
        err_set(err, SNAP_ENOTFOUND, 0, "no snapshot named %s in %s", name, stg_url(s));
        err_hint(err, "`snap list` shows the snapshots of this store");
        return rc;
    }
    if (rc == SNAP_OK) {
        rc = cat_manifest_parse(buf, len, out, err);
        if (rc != SNAP_OK)
            err_prefix(err, "snapshot %s", name);
    }
    if (rc == SNAP_OK)
        rc = check_entry(*out, name, err);
    if (rc == SNAP_OK)
        rc = check_sealed(s, *out, name, sealed_id, err);
    if (rc != SNAP_OK) {
        cat_manifest_free(*out);
        *out = NULL;
    }
    free(buf);
    return rc;
}

static bool collect_manifest(const stg_entry *e, void *arg)
{
    size_t n = strlen(e->key);

    if (n > 13 && strcmp(e->key + n - 5, ".json") == 0 && strchr(e->key + 8, '/') == NULL) {
        char *name = strndup(e->key + 8, n - 13); /* catalog/ NAME .json */
        util_strv_push(arg, xstrdup(name));
        free(name);
    }
    return true;
}

static int by_time(const void *a, const void *b)
{
    const cat_manifest *x = *(cat_manifest *const *)a, *y = *(cat_manifest *const *)b;
    return strcmp(cat_manifest_id(x), cat_manifest_id(y));
}

snap_rc cat_list(stg *s, cat_manifest ***out, size_t *n, snap_err *err)
{
    util_strv l = {0};
    cat_manifest **v;
    size_t k = 0;
    snap_rc rc = stg_list(s, "catalog/", collect_manifest, &l, err);

    *out = NULL;
    *n = 0;
    if (rc != SNAP_OK) {
        util_strv_free(&l);
        return rc;
    }
    v = xcalloc(l.n + 1, sizeof *v);
    for (size_t i = 0; i < l.n; i++) {
        snap_err e;
        rc = cat_load(s, l.v[i], &v[k], &e);
        if (rc == SNAP_OK)
            k++;
        else if (rc == SNAP_ENOTFOUND || rc == SNAP_EVERIFY || rc == SNAP_EUSAGE || rc == SNAP_EFAIL)
            log_warn(NULL, "skipping catalog entry %s: %s", l.v[i], e.msg); /* deleted meanwhile, or damaged */
        else {
            *err = e;
            cat_list_free(v, k);
            util_strv_free(&l);
            return rc;
        }
    }
    util_strv_free(&l);
    qsort(v, k, sizeof *v, by_time);
    *out = v;
    *n = k;
    return SNAP_OK;
}

void cat_list_free(cat_manifest **list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        cat_manifest_free(list[i]);
    free(list);
}

/*
 * Removes the entry named (the commit point). The name and id were checked by cat_load to
 * be the entry's own (check_entry). Its data goes afterwards, by sweep_data.
 */
static snap_rc delete_entry(stg *s, const cat_manifest *m, snap_err *err)
{
    char *key = manifest_key(cat_manifest_name(m));
    bool held;
    snap_rc rc = cat_lease_held(s, cat_manifest_name(m), &held, err);

    if (rc == SNAP_OK && held) {
        rc = err_set(err, SNAP_ECONFLICT, 0, "snapshot %s is in use by a revert", cat_manifest_name(m));
        err_kind(err, "locked");
        err_hint(err, "wait for the revert to finish; a lease older than a day no longer counts");
    }
    /* The catalog entry goes first: from then on the snapshot does not exist, and
     * what a crash leaves of its data is an orphan for gc. */
    if (rc == SNAP_OK)
        rc = stg_delete(s, key, err);
    free(key);
    return rc;
}

/* Does another entry of list than m use m's data directory? */
static bool data_shared(cat_manifest *const *list, size_t n, const bool *gone, const cat_manifest *m)
{
    for (size_t i = 0; i < n; i++)
        if ((gone == NULL || !gone[i]) && strcmp(cat_manifest_name(list[i]), cat_manifest_name(m)) != 0 &&
            strcmp(cat_manifest_id(list[i]), cat_manifest_id(m)) == 0)
            return true;
    return false;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The reference counts: every key that a manifest of list (but those gone, and those named
 * skip) holds, sorted. They are counted from the catalog each time, never stored, so that
 * no count can drift from what the manifests say.
 */
static void refs_collect(cat_manifest *const *list, size_t n, const bool *gone, const char *skip, util_strv *refs)
{
    for (size_t i = 0; i < n; i++) {
        if ((gone != NULL && gone[i]) || (skip != NULL && strcmp(cat_manifest_name(list[i]), skip) == 0))
            continue;
        for (size_t j = 0; j < cat_manifest_ncomponents(list[i]); j++) {
            cat_component *c = cat_manifest_component(list[i], j);
            for (size_t k = 0; k < cat_component_nparts(c); k++) {
                const char *key, *sha;
                uint64_t size, entries;
                cat_component_part(c, k, &key, &size, &sha, &entries);
                util_strv_push(refs, xstrdup(key));
            }
        }
    }
    if (refs->n > 1)
        qsort(refs->v, refs->n, sizeof *refs->v, by_str);
}

static bool referenced(const util_strv *refs, const char *key)
{
    return refs->n > 0 && bsearch(&key, refs->v, refs->n, sizeof *refs->v, by_str) != NULL;
}

typedef struct sweep {
    const util_strv *refs;
    util_strv doomed;
    bool kept;
} sweep;

static bool sweep_one(const stg_entry *e, void *arg)
{
    sweep *w = arg;
    const char *base = strrchr(e->key, '/');

    if (referenced(w->refs, e->key))
        w->kept = true;
    else if (base == NULL || strcmp(base + 1, "keys.json") != 0)
        util_strv_push(&w->doomed, xstrdup(e->key));
    return true;
}

/*
 * Removes data/<id>/ of a snapshot that no entry holds any more, but for the parts another
 * snapshot refers to (and, while one is kept, the data key that opens it).
 */
static snap_rc sweep_data(stg *s, const char *id, const util_strv *refs, const snap_ctx *ctx, snap_err *err)
{
    char *prefix = xasprintf("data/%s/", id);
    sweep w = {.refs = refs};
    snap_rc rc = stg_list(s, prefix, sweep_one, &w, err);

    if (rc == SNAP_OK && !w.kept)
        rc = stg_delete_prefix(s, prefix, err);
    else if (rc == SNAP_OK) {
        log_info(ctx, "keeping the parts of %s that another snapshot refers to", prefix);
        for (size_t i = 0; i < w.doomed.n && rc == SNAP_OK; i++)
            rc = stg_delete(s, w.doomed.v[i], err);
    }
    util_strv_free(&w.doomed);
    free(prefix);
    return rc;
}

static bool id_listed(cat_manifest *const *list, size_t n, const bool *gone, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if ((gone == NULL || !gone[i]) && strcmp(cat_manifest_id(list[i]), id) == 0)
            return true;
    return false;
}

/*
 * The snapshots whose parts m referred to and whose entries are gone already: what only m
 * kept of their data goes with m (a running snap never has its parts referred to, so
 * these are no one's).
 */
static snap_rc sweep_referred(stg *s, cat_manifest *const *list, size_t n, const bool *gone, const cat_manifest *m,
                              const util_strv *refs, const snap_ctx *ctx, snap_err *err)
{
    util_strv done = {0};
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < cat_manifest_ncomponents(m) && rc == SNAP_OK; i++) {
        cat_component *c = cat_manifest_component(m, i);
        for (size_t j = 0; j < cat_component_nparts(c) && rc == SNAP_OK; j++) {
            const char *key, *sha, *slash;
            uint64_t size, entries;
            char *id;
            bool seen = false;
            cat_component_part(c, j, &key, &size, &sha, &entries);
            slash = strchr(key + 5, '/'); /* data/ID/...: checked by the parser */
            id = strndup(key + 5, (size_t)(slash - (key + 5)));
            for (size_t k = 0; k < done.n && !seen; k++)
                seen = strcmp(done.v[k], id) == 0;
            if (!seen && strcmp(id, cat_manifest_id(m)) != 0 && !id_listed(list, n, gone, id)) {
                rc = sweep_data(s, id, refs, ctx, err);
                util_strv_push(&done, id);
            } else
                free(id);
        }
    }
    util_strv_free(&done);
    return rc;
}

/* Whether everything left in data/<id>/ is kept for other snapshots (nothing for gc to do). */
static bool only_referred(stg *s, const char *id, const util_strv *refs)
{
    char *prefix = xasprintf("data/%s/", id);
    sweep w = {.refs = refs};
    snap_err e;
    bool only = stg_list(s, prefix, sweep_one, &w, &e) == SNAP_OK && w.kept && w.doomed.n == 0;

    util_strv_free(&w.doomed);
    free(prefix);
    return only;
}

snap_rc cat_delete(stg *s, const cat_manifest *m, snap_err *err)
{
    cat_manifest **list;
    size_t n;
    bool shared;
    util_strv refs = {0};
    snap_rc rc = cat_list(s, &list, &n, err);

    if (rc != SNAP_OK)
        return rc;
    shared = data_shared(list, n, NULL, m);
    refs_collect(list, n, NULL, cat_manifest_name(m), &refs);
    if (shared)
        log_warn(NULL, "the data of %s (id %s) is also named by another snapshot; keeping it",
                 cat_manifest_name(m), cat_manifest_id(m));
    rc = delete_entry(s, m, err);
    if (rc == SNAP_OK && !shared)
        rc = sweep_data(s, cat_manifest_id(m), &refs, NULL, err);
    if (rc == SNAP_OK)
        rc = sweep_referred(s, list, n, NULL, m, &refs, NULL, err);
    cat_list_free(list, n);
    util_strv_free(&refs);
    return rc;
}

snap_rc cat_verify(stg *s, const cat_manifest *m, const snap_ctx *ctx, json_t *report,
                   snap_err *err)
{
    snap_rc worst = SNAP_OK;
    prg_bar *bar = prg_new(ctx, "verify", cat_manifest_bytes(m));
    unsigned bad = 0;

    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *c = cat_manifest_component(m, i);
        for (size_t j = 0; j < cat_component_nparts(c); j++) {
            const char *key, *sha;
            uint64_t size, entries, got = 0;
            snap_err e;
            snap_rc rc;

            cat_component_part(c, j, &key, &size, &sha, &entries);
            rc = arc_verify_part(s, key, size, sha, ctx, bar, &got, &e);
            if (rc == SNAP_OK && got != entries)
                rc = err_set(&e, SNAP_EVERIFY, 0, "part %s has %llu entries, the manifest says %llu", key,
                             (unsigned long long)got, (unsigned long long)entries);
            json_array_append_new(report, json_pack("{s:s, s:s, s:s, s:s?}", "component", cat_component_name(c),
                                                    "key", key, "status", rc == SNAP_OK ? "ok" : "damaged",
                                                    "error", rc == SNAP_OK ? NULL : e.msg));
            if (rc == SNAP_EINTR) {
                prg_free(bar);
                *err = e;
                return rc;
            }
            if (rc != SNAP_OK) {
                bad++;
                if (worst == SNAP_OK || rc == SNAP_EVERIFY) {
                    worst = rc;
                    *err = e;
                }
            }
        }
    }
    prg_free(bar);
    if (bad > 1)
        err_prefix(err, "%u parts are damaged; the first", bad);
    return worst;
}

snap_rc cat_lease_take(stg *s, const char *name, const char *holder_id, snap_err *err)
{
    char *key = xasprintf("leases/%s/%s.json", name, holder_id), now[32];
    char *text;
    snap_rc rc;

    util_iso8601(time(NULL), now);
    text = xasprintf("{\"snapshot\": \"%s\", \"holder\": \"%s\", \"taken\": \"%s\"}\n", name, holder_id, now);
    rc = stg_put(s, key, text, strlen(text), 0, err);
    free(text);
    free(key);
    return rc;
}

void cat_lease_drop(stg *s, const char *name, const char *holder_id)
{
    char *key = xasprintf("leases/%s/%s.json", name, holder_id);
    snap_err err;

    stg_delete(s, key, &err);
    free(key);
}

static bool live_lease(const stg_entry *e, void *arg)
{
    if (e->mtime + LEASE_TTL > time(NULL)) {
        *(bool *)arg = true;
        return false;
    }
    return true;
}

snap_rc cat_lease_held(stg *s, const char *name, bool *held, snap_err *err)
{
    char *prefix = xasprintf("leases/%s/", name);
    snap_rc rc;

    *held = false;
    rc = stg_list(s, prefix, live_lease, held, err);
    free(prefix);
    return rc;
}

void cat_retention_apply(cat_manifest *const *list, size_t n, const cat_retention *policy,
                         const char *const *labels, size_t nlabels, time_t now, bool *doomed)
{
    long newer = 0; /* matching snapshots newer than the one looked at */

    for (size_t i = n; i-- > 0;) {
        bool keep;
        doomed[i] = false;
        if (!cat_manifest_match_labels(list[i], labels, nlabels))
            continue;
        keep = (policy->keep_last > 0 && newer < policy->keep_last) ||
               (policy->keep_within > 0 && cat_manifest_created(list[i]) >= now - policy->keep_within);
        doomed[i] = !keep;
        newer++;
    }
}

/* The data of the snapshots prune deleted, once every deletion is done: references
 * between them no longer keep anything. */
static snap_rc prune_sweep(stg *s, cat_manifest *const *list, size_t n, const bool *gone, const snap_ctx *ctx,
                           snap_err *err)
{
    util_strv refs = {0};
    snap_rc rc = SNAP_OK;

    refs_collect(list, n, gone, NULL, &refs);
    for (size_t i = 0; i < n && rc == SNAP_OK; i++) {
        if (!gone[i])
            continue;
        if (data_shared(list, n, gone, list[i]))
            log_warn(ctx, "the data of %s (id %s) is also named by another snapshot; keeping it",
                     cat_manifest_name(list[i]), cat_manifest_id(list[i]));
        else
            rc = sweep_data(s, cat_manifest_id(list[i]), &refs, ctx, err);
        if (rc == SNAP_OK)
            rc = sweep_referred(s, list, n, gone, list[i], &refs, ctx, err);
    }
    util_strv_free(&refs);
    return rc;
}

snap_rc cat_prune(stg *s, const cat_retention *policy, const char *const *labels, size_t nlabels,
                  bool dry_run, const snap_ctx *ctx, json_t *report, snap_err *err)
{
    cat_manifest **list;
    size_t n;
    bool *doomed, *gone;
    snap_rc rc = cat_list(s, &list, &n, err);

    if (rc != SNAP_OK)
        return rc;
    doomed = xcalloc(n + 1, sizeof *doomed);
    gone = xcalloc(n + 1, sizeof *gone);
    cat_retention_apply(list, n, policy, labels, nlabels, time(NULL), doomed);
    for (size_t i = 0; i < n && rc == SNAP_OK; i++) {
        const char *name = cat_manifest_name(list[i]);
        const char *action = doomed[i] ? (dry_run ? "would-delete" : "deleted") : "kept";
        bool held = false;

        if (doomed[i]) {
            rc = cat_lease_held(s, name, &held, err);
            if (rc == SNAP_OK && held) {
                action = "kept-in-use";
                log_info(ctx, "keeping %s: a revert is using it", name);
            } else if (rc == SNAP_OK && !dry_run) {
                rc = delete_entry(s, list[i], err);
                gone[i] = rc == SNAP_OK;
            }
        }
        if (cat_manifest_match_labels(list[i], labels, nlabels))
            json_array_append_new(report, json_pack("{s:s, s:s, s:s}", "name", name, "id",
                                                    cat_manifest_id(list[i]), "action", action));
    }
    if (rc == SNAP_OK)
        rc = prune_sweep(s, list, n, gone, ctx, err);
    free(doomed);
    free(gone);
    cat_list_free(list, n);
    return rc;
}

typedef struct data_ids {
    util_strv ids;
    uint64_t bytes;
} data_ids;

static bool collect_id(const stg_entry *e, void *arg)
{
    data_ids *d = arg;
    const char *id = e->key + 5, *slash = strchr(id, '/'); /* data/ID/... */
    char *s;

    if (slash == NULL)
        return true;
    s = strndup(id, (size_t)(slash - id));
    if (d->ids.n == 0 || strcmp(d->ids.v[d->ids.n - 1], s) != 0) {
        bool seen = false;
        for (size_t i = 0; i < d->ids.n && !seen; i++)
            seen = strcmp(d->ids.v[i], s) == 0;
        if (!seen)
            util_strv_push(&d->ids, xstrdup(s));
    }
    free(s);
    return true;
}

snap_rc cat_gc(stg *s, int64_t min_age, bool dry_run, const snap_ctx *ctx, json_t *report,
               snap_err *err)
{
    data_ids d = {0};
    cat_manifest **list = NULL;
    size_t n = 0;
    util_strv refs = {0};
    unsigned temps = 0;
    json_t *removed = json_array();
    time_t now = time(NULL);
    snap_rc rc = stg_list(s, "data/", collect_id, &d, err);

    if (rc == SNAP_OK)
        rc = cat_list(s, &list, &n, err);
    if (rc == SNAP_OK)
        refs_collect(list, n, NULL, NULL, &refs);
    for (size_t i = 0; i < d.ids.n && rc == SNAP_OK; i++) {
        bool used = false;
        for (size_t j = 0; j < n && !used; j++)
            used = strcmp(cat_manifest_id(list[j]), d.ids.v[i]) == 0;
        /* A snap still running has data and no manifest yet: leave young data alone. */
        if (used || util_parse_time(d.ids.v[i], NULL) > now - min_age || only_referred(s, d.ids.v[i], &refs))
            continue;
        json_array_append_new(removed, json_string(d.ids.v[i]));
        if (!dry_run) {
            log_debug(ctx, "removing orphaned data data/%s/", d.ids.v[i]);
            rc = sweep_data(s, d.ids.v[i], &refs, ctx, err);
        }
    }
    if (rc == SNAP_OK)
        rc = stg_cleanup(s, min_age, dry_run, &temps, err);
    json_object_set_new(report, "orphaned_snapshots", removed);
    json_object_set_new(report, "unfinished_uploads", json_integer(temps));
    json_object_set_new(report, "dry_run", json_boolean(dry_run));
    cat_list_free(list, n);
    util_strv_free(&refs);
    util_strv_free(&d.ids);
    return rc;
}

json_t *cat_index_parse(const char *text, size_t len)
{
    json_t *doc = json_loadb(text, len, 0, NULL);

    if (doc != NULL && (json_integer_value(json_object_get(doc, "format")) != CAT_INDEX_FORMAT ||
                        !json_is_array(json_object_get(doc, "parts")))) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

/* The index's stored bytes, checked against the size and SHA-256 the manifest holds. */
static snap_rc index_fetch(stg *s, cat_component *c, char **buf, size_t *blen, const char **key, snap_err *err)
{
    json_t *ix = json_object_get(cat_component_json(c), "index");
    const char *want = json_string_value(json_object_get(ix, "sha256"));
    char sha[65];
    util_sha256 *h;
    snap_rc rc;

    *buf = NULL;
    *key = json_string_value(json_object_get(ix, "key"));
    if (*key == NULL || want == NULL)
        return err_set(err, SNAP_ENOTFOUND, 0, "component %s has no entry index", cat_component_name(c));
    rc = stg_get(s, *key, INDEX_MAX, buf, blen, err);
    if (rc != SNAP_OK) {
        err_prefix(err, "entry index %s", *key);
        return rc;
    }
    h = util_sha256_new();
    util_sha256_update(h, *buf, *blen);
    util_sha256_final(h, sha);
    if ((json_int_t)*blen != json_integer_value(json_object_get(ix, "size")) || strcmp(sha, want) != 0) {
        free(*buf);
        *buf = NULL;
        return err_set(err, SNAP_EVERIFY, 0, "entry index %s fails its checksum", *key);
    }
    return SNAP_OK;
}

struct cat_ixr {
    char *buf, *key; /* the stored bytes, checked */
    ZSTD_inBuffer in;
    ZSTD_DCtx *zd;
    unsigned long long want, got; /* the frame's content size; handed out so far */
    size_t last; /* what ZSTD_decompressStream returned last: 0 once the frame is whole */
};

snap_rc cat_index_open(stg *s, cat_component *c, cat_ixr **out, snap_err *err)
{
    cat_ixr *r = xcalloc(1, sizeof *r);
    size_t blen = 0;
    const char *key;
    snap_rc rc = index_fetch(s, c, &r->buf, &blen, &key, err);

    *out = NULL;
    if (rc != SNAP_OK) {
        cat_ixr_free(r);
        return rc;
    }
    r->key = xstrdup(key);
    r->in = (ZSTD_inBuffer){r->buf, blen, 0};
    r->want = ZSTD_getFrameContentSize(r->buf, blen);
    r->zd = ZSTD_createDCtx();
    /* the index is written at level 3 (a 2 MiB window at most): a frame that asks for more
     * memory than 8 MiB is not ours */
    if (r->zd != NULL && ZSTD_isError(ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, 23))) {
        ZSTD_freeDCtx(r->zd);
        r->zd = NULL;
    }
    r->last = 1;
    if (r->want == ZSTD_CONTENTSIZE_ERROR || r->want == ZSTD_CONTENTSIZE_UNKNOWN || r->want > INDEX_MAX ||
        r->zd == NULL) {
        err_set(err, SNAP_EVERIFY, 0, "entry index %s is damaged", key);
        cat_ixr_free(r);
        return SNAP_EVERIFY;
    }
    *out = r;
    return SNAP_OK;
}

snap_rc cat_ixr_read(cat_ixr *r, char *buf, size_t n, size_t *got, snap_err *err)
{
    ZSTD_outBuffer o = {buf, n, 0};

    *got = 0;
    while (o.pos < o.size && r->last != 0) {
        size_t in_at = r->in.pos, out_at = o.pos;
        r->last = ZSTD_decompressStream(r->zd, &o, &r->in);
        if (ZSTD_isError(r->last))
            return err_set(err, SNAP_EVERIFY, 0, "entry index %s is damaged", r->key);
        if (r->in.pos == in_at && o.pos == out_at)
            break; /* the stored bytes end before the frame does */
    }
    r->got += o.pos;
    *got = o.pos;
    /* one frame, of the size its header says, and nothing after it */
    if (r->got > r->want || (o.pos == 0 && n > 0 && (r->last != 0 || r->got != r->want || r->in.pos != r->in.size)))
        return err_set(err, SNAP_EVERIFY, 0, "entry index %s is damaged", r->key);
    return SNAP_OK;
}

uint64_t cat_ixr_size(const cat_ixr *r)
{
    return r->want;
}

snap_rc cat_ixr_rewind(cat_ixr *r, snap_err *err)
{
    if (ZSTD_isError(ZSTD_DCtx_reset(r->zd, ZSTD_reset_session_only)))
        return err_set(err, SNAP_EFAIL, 0, "cannot read entry index %s again", r->key);
    r->in.pos = 0;
    r->got = 0;
    r->last = 1;
    return SNAP_OK;
}

void cat_ixr_free(cat_ixr *r)
{
    if (r == NULL)
        return;
    ZSTD_freeDCtx(r->zd);
    free(r->buf);
    free(r->key);
    free(r);
}

snap_rc cat_record_revert(stg *s, const char *revert_id, json_t *record, snap_err *err)
{
    char *key = xasprintf("reverts/%s.json", revert_id);
    char *text = json_dumps(record, JSON_INDENT(2) | JSON_SORT_KEYS);
    const char *id = json_string_value(json_object_get(record, "snapshot_id"));
    snap_rc rc = SNAP_OK;

    /* sealed under the data key of the snapshot it put back */
    if (stg_encrypted(s))
        rc = id != NULL ? seal_doc(s, key, NULL, id, &text, err)
                        : err_set(err, SNAP_EFAIL, 0, "a revert record without its snapshot id");
    if (rc == SNAP_OK)
        rc = stg_put(s, key, text, strlen(text), STG_CREATE_ONLY | STG_SEALED, err);

    free(text);
    free(key);
    return rc;
}

snap_rc cat_cat(stg *s, const cat_manifest *m, const char *component, long part, int fd, const snap_ctx *ctx,
                snap_err *err)
{
    cat_component *c = cat_manifest_find(m, component);
    size_t n = c != NULL ? cat_component_nparts(c) : 0;
    snap_rc rc = SNAP_OK;

    if (c == NULL) {
        err_set(err, SNAP_ENOTFOUND, 0, "snapshot %s has no component %s", cat_manifest_name(m), component);
        err_hint(err, "`snap show %s` lists its components", cat_manifest_name(m));
        return SNAP_ENOTFOUND;
    }
    if (part >= 0 && (size_t)part >= n) {
        err_set(err, SNAP_ENOTFOUND, 0, "component %s has %zu part%s; there is no part %ld", component, n,
                n == 1 ? "" : "s", part);
        err_hint(err, "parts count from 0");
        return SNAP_ENOTFOUND;
    }
    for (size_t i = part >= 0 ? (size_t)part : 0; rc == SNAP_OK && i < (part >= 0 ? (size_t)part + 1 : n); i++) {
        const char *key, *sha;
        uint64_t size, entries;
        cat_component_part(c, i, &key, &size, &sha, &entries);
        rc = arc_cat_part(s, key, size, sha, part >= 0 || i + 1 == n, fd, ctx, err);
    }
    return rc;
}
