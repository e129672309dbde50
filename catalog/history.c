/* history.c: records of what was done with a store, one object per event, listed by time. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"
#include "catalog.h"
#include "history.h"

#define HISTORY_PREFIX "history/"

void cat_history_stamp(json_t *rec, const char *event)
{
    char now[32], host[256] = "";

    util_iso8601(time(NULL), now);
    gethostname(host, sizeof host - 1);
    json_object_set_new(rec, "format", json_integer(1));
    json_object_set_new(rec, "event", json_string(event));
    json_object_set_new(rec, "time", json_string(now));
    json_object_set_new(rec, "host", json_string(host));
}

snap_rc cat_history_add(stg *s, const json_t *rec, snap_err *err)
{
    /* Records sort by key: two of one process (a failed check, then the revert's own) must
     * not share a millisecond, where the random tail would order them, and a clock set back
     * must not put a later record first. Only the main thread records events (cli_event). */
    static int64_t last_ms;
    struct timespec ts;
    int64_t ms;
    char id[32], *key, *text;
    snap_rc rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms <= last_ms)
        ms = last_ms + 1;
    last_ms = ms;
    cat_new_id_at(id, ms);
    key = xasprintf(HISTORY_PREFIX "%s.json", id);
    if (stg_encrypted(s)) {
        /* Stored as it is (a failed snap has no data key to seal it under), so it keeps only
         * what the store's names and sizes show anyway: no labels, no components, no error
         * text, which may quote a server's words about the data (docs/encryption.md). */
        json_t *bare = json_deep_copy(rec);
        json_object_del(bare, "labels");
        json_object_del(bare, "components");
        json_object_del(json_object_get(bare, "error"), "message");
        text = json_dumps(bare, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(bare);
    } else {
        text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    }
    rc = stg_put(s, key, text, strlen(text), STG_CREATE_ONLY | STG_SEALED, err);
    free(text);
    free(key);
    return rc;
}

typedef struct keys {
    util_strv v;
    time_t since;
} keys;

/* Keys whose name (an id, which begins with its time) is at or after since. */
static bool collect(const stg_entry *e, void *arg)
{
    keys *k = arg;
    const char *name = e->key + strlen(HISTORY_PREFIX);
    size_t n = strlen(e->key);
    time_t t;

    if (strncmp(e->key, HISTORY_PREFIX, strlen(HISTORY_PREFIX)) != 0 || n < 6 ||
        strcmp(e->key + n - 5, ".json") != 0 || e->size > CAT_HISTORY_MAX)
        return true;
    t = util_parse_time(name, NULL);
    if (t == 0 || t < k->since)
        return true;
    util_strv_push(&k->v, xstrdup(e->key));
    return true;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool labels_match(const json_t *rec, const char *const *labels, size_t n)
{
    const json_t *have = json_object_get(rec, "labels");

    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(labels[i], '=');
        char *k = eq ? xasprintf("%.*s", (int)(eq - labels[i]), labels[i]) : xstrdup(labels[i]);
        const char *v = json_string_value(json_object_get(have, k));
        bool ok = v != NULL && (eq == NULL || strcmp(v, eq + 1) == 0);
        free(k);
        if (!ok)
            return false;
    }
    return true;
}

snap_rc cat_history_list(stg *s, time_t since, const char *const *labels, size_t nlabels, json_t **out,
                         size_t *skipped, snap_err *err)
{
    keys k = {{0}, since};
    snap_rc rc = stg_list(s, HISTORY_PREFIX, collect, &k, err);

    *out = json_array();
    *skipped = 0;
    if (rc == SNAP_ENOTFOUND)
        rc = SNAP_OK; /* no history yet */
    if (k.v.n > 0)
        qsort(k.v.v, k.v.n, sizeof *k.v.v, by_key);
    for (size_t i = 0; i < k.v.n && rc == SNAP_OK; i++) {
        char *buf = NULL;
        size_t len = 0;
        json_t *rec;
        rc = stg_get(s, k.v.v[i], CAT_HISTORY_MAX, &buf, &len, err);
        if (rc == SNAP_ENOTFOUND) { /* removed meanwhile */
            rc = SNAP_OK;
            continue;
        }
        if (rc != SNAP_OK)
            break;
        rec = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
        free(buf);
        if (!json_is_object(rec) || !json_is_string(json_object_get(rec, "event")) ||
            !json_is_string(json_object_get(rec, "time"))) {
            json_decref(rec);
            (*skipped)++;
            continue;
        }
        if (labels_match(rec, labels, nlabels))
            json_array_append(*out, rec);
        json_decref(rec);
    }
    util_strv_free(&k.v);
    return rc;
}
