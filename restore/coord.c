/*
 * coord.c: the store journal and its lease.
 *
 * Every revert writes its journal to the store as well as to the state directory, as
 * journal/<revert-id>.json, rewritten (one PUT, which replaces the object whole) at each
 * step, signed like a manifest with every key this host holds, so that a runner on another
 * host with the shared key ([store] auth_key_file) can finish it, and nobody who can only
 * write to the store can plant one. While the revert runs a thread rewrites the object
 * every third of the lease; a journal is taken for abandoned only when the store's own
 * clock (the object's Last-Modified against that of a probe written just now) says that
 * its lease ran out at least one more lease ago.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../catalog/catalog.h"
#include "../common/util.h"
#include "coord.h"

#define COORD_PREFIX "journal/"
#define KEPT_PREFIX "kept/"
#define COORD_MAX (16u << 20)

struct rst_coord {
    snap_ctx *ctx;
    stg *store;
    auth_keyring *keys;
    char *host;
    int64_t lease;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stop;
    char *key;  /* the object renewed, and its last text */
    char *text;
};

snap_rc coord_new(snap_ctx *ctx, stg *store, const char *host, int64_t lease, rst_coord **out, snap_err *err)
{
    rst_coord *co;
    auth_keyring *keys = NULL;
    snap_rc rc = auth_keyring_load(ctx->cfg, true, &keys, err);

    *out = NULL;
    if (rc != SNAP_OK)
        return rc;
    co = xcalloc(1, sizeof *co);
    co->ctx = ctx;
    co->store = store;
    co->keys = keys;
    co->host = xstrdup(host);
    co->lease = lease > 0 ? lease : 60;
    pthread_mutex_init(&co->mu, NULL);
    pthread_cond_init(&co->cv, NULL);
    *out = co;
    return SNAP_OK;
}

static void lease_stop(rst_coord *co)
{
    if (!co->running)
        return;
    pthread_mutex_lock(&co->mu);
    co->stop = true;
    pthread_cond_signal(&co->cv);
    pthread_mutex_unlock(&co->mu);
    pthread_join(co->thread, NULL);
    co->running = false;
}

void coord_free(rst_coord *co)
{
    if (co == NULL)
        return;
    lease_stop(co);
    pthread_mutex_destroy(&co->mu);
    pthread_cond_destroy(&co->cv);
    auth_keyring_free(co->keys);
    free(co->host);
    free(co->key);
    free(co->text);
    free(co);
}

static char *journal_key(const char *revert_id)
{
    return xasprintf(COORD_PREFIX "%s.json", revert_id);
}

snap_rc coord_save(rst_coord *co, const char *revert_id, const json_t *doc, snap_err *err)
{
    json_t *copy = json_deep_copy(doc);
    char now[32], *text, *key = journal_key(revert_id);
    snap_rc rc;

    util_iso8601(time(NULL), now);
    json_object_set_new(copy, "lease", json_pack("{s:s, s:I, s:s}", "host", co->host, "seconds",
                                                 (json_int_t)co->lease, "renewed", now));
    auth_sign(co->keys, copy);
    text = json_dumps(copy, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(copy);
    rc = cat_doc_seal(co->store, key, json_string_value(json_object_get(doc, "snapshot_id")), &text, err);
    /* Under the lock, so that a renewal never puts an older copy back over this one. */
    pthread_mutex_lock(&co->mu);
    if (rc == SNAP_OK)
        rc = stg_put(co->store, key, text, strlen(text), STG_SEALED, err);
    if (rc == SNAP_OK) {
        free(co->key);
        free(co->text);
        co->key = key;
        co->text = text;
        key = text = NULL;
    }
    pthread_mutex_unlock(&co->mu);
    if (rc != SNAP_OK)
        err_prefix(err, "cannot write the store journal %s", key);
    free(key);
    free(text);
    return rc;
}

static void *renew(void *arg)
{
    rst_coord *co = arg;
    int64_t every = co->lease / 3 > 0 ? co->lease / 3 : 1;

    pthread_mutex_lock(&co->mu);
    while (!co->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)every;
        while (!co->stop && pthread_cond_timedwait(&co->cv, &co->mu, &until) == 0)
            ;
        if (co->stop || co->text == NULL)
            continue;
        snap_err e;
        if (stg_put(co->store, co->key, co->text, strlen(co->text), STG_SEALED, &e) != SNAP_OK)
            log_warn(co->ctx, "could not renew the lease of %s: %s", co->key, e.msg);
    }
    pthread_mutex_unlock(&co->mu);
    return NULL;
}

void coord_lease_start(rst_coord *co)
{
    if (co->running)
        return;
    co->stop = false;
    if (pthread_create(&co->thread, NULL, renew, co) == 0)
        co->running = true;
    else
        log_warn(co->ctx, "could not start the lease renewal; a revert that runs longer than [revert] lease "
                          "may be taken for abandoned");
}

void coord_remove(rst_coord *co, const char *revert_id)
{
    char *key = journal_key(revert_id);
    snap_err e;

    lease_stop(co);
    pthread_mutex_lock(&co->mu);
    free(co->text);
    co->text = NULL;
    pthread_mutex_unlock(&co->mu);
    if (stg_delete(co->store, key, &e) != SNAP_OK)
        log_warn(co->ctx, "could not remove the store journal %s: %s", key, e.msg);
    free(key);
}

snap_rc coord_exists(rst_coord *co, const char *revert_id, bool *found, snap_err *err)
{
    char *key = journal_key(revert_id);
    uint64_t size = 0;
    snap_rc rc = stg_stat(co->store, key, &size, err);

    *found = rc == SNAP_OK;
    if (rc == SNAP_ENOTFOUND)
        rc = SNAP_OK;
    free(key);
    return rc;
}

snap_rc coord_record_recovery(rst_coord *co, const char *revert_id, const char *snapshot_id, const json_t *entry,
                              snap_err *err)
{
    json_t *rec = json_deep_copy(entry);
    char now[32];
    snap_rc rc;

    if (snapshot_id != NULL) /* what seals it in an encrypted store */
        json_object_set_new(rec, "snapshot_id", json_string(snapshot_id));

    util_iso8601(time(NULL), now);
    json_object_set_new(rec, "recovered_by", json_string(co->host));
    json_object_set_new(rec, "recovered", json_string(now));
    auth_sign(co->keys, rec);
    rc = cat_record_revert(co->store, revert_id, rec, err);
    json_decref(rec);
    return rc;
}

snap_rc coord_recovered_elsewhere(rst_coord *co, const char *revert_id, bool *yes, char **by, snap_err *err)
{
    char *key = xasprintf("reverts/%s.json", revert_id), *buf = NULL;
    char key_id[AUTH_KEY_ID_LEN + 1];
    size_t len = 0;
    json_t *doc;
    snap_rc rc = stg_get(co->store, key, COORD_MAX, &buf, &len, err);

    *yes = false;
    *by = NULL;
    if (rc == SNAP_OK)
        rc = cat_doc_open(co->store, key, COORD_MAX, &buf, &len, err);
    free(key);
    if (rc == SNAP_ENOTFOUND)
        return SNAP_OK;
    if (rc != SNAP_OK) {
        free(buf);
        return rc;
    }
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    /* only a record a key of this host signed: a store writer cannot make a runner drop its journal */
    if (json_is_object(doc) && json_is_string(json_object_get(doc, "recovered_by")) &&
        auth_verify(co->keys, doc, key_id) == AUTH_OK) {
        *yes = true;
        *by = xstrdup(json_string_value(json_object_get(doc, "recovered_by")));
    }
    json_decref(doc);
    return SNAP_OK;
}

/* ---- reading them back ---- */

typedef struct listing {
    const char *prefix;
    util_strv keys;
    time_t *mtimes;
    const char *probe;
    time_t probe_mtime;
} listing;

/* journal/<name>.json, one level down, not a temporary file. */
static bool collect(const stg_entry *e, void *arg)
{
    listing *l = arg;
    const char *name = e->key + strlen(l->prefix);
    size_t n;

    if (l->probe != NULL && strcmp(e->key, l->probe) == 0)
        l->probe_mtime = e->mtime;
    if (strncmp(e->key, l->prefix, strlen(l->prefix)) != 0)
        return true;
    n = strlen(name);
    if (name[0] == '.' || strchr(name, '/') != NULL ||
        n < 6 || strcmp(name + n - 5, ".json") != 0)
        return true;
    util_strv_push(&l->keys, xstrdup(e->key));
    l->mtimes = xrealloc(l->mtimes, l->keys.n * sizeof *l->mtimes);
    l->mtimes[l->keys.n - 1] = e->mtime;
    return true;
}

/* Lists the store journals together with a probe written just now: the probe's time is
 * the store's "now", so that no runner's clock decides whether a lease ran out. */
static snap_rc list_journals(rst_coord *co, listing *l, time_t *now, snap_err *err)
{
    char id[32], *probe;
    snap_rc rc;

    cat_new_id(id);
    probe = xasprintf("%s.clock/%s", l->prefix, id);
    rc = stg_put(co->store, probe, "{}\n", 3, STG_SEALED /* carries nothing: stored as it is */, err);
    l->probe = rc == SNAP_OK ? probe : NULL;
    if (rc != SNAP_OK)
        log_warn(co->ctx, "could not read the store's clock (%s); using this host's", err->msg);
    rc = stg_list(co->store, l->prefix, collect, l, err);
    if (l->probe != NULL) {
        snap_err e;
        stg_delete(co->store, probe, &e);
    }
    *now = l->probe_mtime != 0 ? l->probe_mtime : time(NULL);
    free(probe);
    return rc == SNAP_ENOTFOUND ? SNAP_OK : rc;
}

static void read_one(rst_coord *co, const char *key, coord_journal *cj)
{
    char *buf = NULL;
    size_t len = 0;
    snap_err e;
    json_t *lease;
    char key_id[AUTH_KEY_ID_LEN + 1];

    cj->doc = NULL;
    cj->auth = AUTH_UNSIGNED;
    if (stg_get(co->store, key, COORD_MAX, &buf, &len, &e) != SNAP_OK ||
        cat_doc_open(co->store, key, COORD_MAX, &buf, &len, &e) != SNAP_OK) {
        log_warn(co->ctx, "cannot read the store journal %s: %s", key, e.msg);
        free(buf);
        return;
    }
    cj->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (!json_is_object(cj->doc)) {
        json_decref(cj->doc);
        cj->doc = NULL;
        return;
    }
    cj->auth = auth_verify(co->keys, cj->doc, key_id);
    lease = json_object_get(json_object_get(cj->doc, "lease"), "seconds");
    if (cj->auth == AUTH_OK && json_is_integer(lease) && json_integer_value(lease) > cj->lease &&
        json_integer_value(lease) <= 86400)
        cj->lease = json_integer_value(lease);
}

static snap_rc each_under(rst_coord *co, const char *prefix, coord_fn fn, void *arg, snap_err *err)
{
    listing l = {prefix, {0}, NULL, NULL, 0};
    time_t now;
    snap_rc rc = list_journals(co, &l, &now, err);

    for (size_t i = 0; i < l.keys.n && rc == SNAP_OK; i++) {
        coord_journal cj = {.key = l.keys.v[i], .lease = co->lease};
        read_one(co, cj.key, &cj);
        cj.age = (int64_t)(now - l.mtimes[i]);
        /* expired (one lease after its last renewal), and that a lease ago */
        cj.stale = cj.age > 2 * cj.lease;
        rc = fn(&cj, arg, err);
        json_decref(cj.doc);
    }
    util_strv_free(&l.keys);
    free(l.mtimes);
    return rc;
}

snap_rc coord_each(rst_coord *co, coord_fn fn, void *arg, snap_err *err)
{
    return each_under(co, COORD_PREFIX, fn, arg, err);
}

snap_rc coord_each_kept(rst_coord *co, coord_fn fn, void *arg, snap_err *err)
{
    return each_under(co, KEPT_PREFIX, fn, arg, err);
}

snap_rc coord_kept_save(rst_coord *co, const char *revert_id, const json_t *doc, snap_err *err)
{
    json_t *copy = json_deep_copy(doc);
    char now[32], *text, *key = xasprintf(KEPT_PREFIX "%s.json", revert_id);
    snap_rc rc;

    util_iso8601(time(NULL), now);
    json_object_set_new(copy, "kept", json_pack("{s:s, s:s}", "host", co->host, "since", now));
    auth_sign(co->keys, copy);
    text = json_dumps(copy, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(copy);
    rc = cat_doc_seal(co->store, key, json_string_value(json_object_get(doc, "snapshot_id")), &text, err);
    if (rc == SNAP_OK)
        rc = stg_put(co->store, key, text, strlen(text), STG_SEALED, err);
    free(text);
    free(key);
    return rc;
}

snap_rc coord_kept_delete(rst_coord *co, const char *revert_id, snap_err *err)
{
    char *key = xasprintf(KEPT_PREFIX "%s.json", revert_id);
    snap_rc rc = stg_delete(co->store, key, err);

    free(key);
    return rc;
}
