/* restore.c: the revert engine: plan, safety snapshot, stage, journaled cut-over, finish, recover. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/auth.h"
#include "../engines/pg_client.h"
#include "../common/state.h"
#include "../common/util.h"
#include "../snapshot/snapshot.h"
#include "../engines/my_client.h"
#include "../engines/targets.h"
#include "check.h"
#include "estimate.h"
#include "restore.h"
#include "restore_int.h"
#include "coord.h"

#define RST_ENTRY(type) &rst_##type##_driver,
static const rst_driver *const drivers[] = {SNAP_ENGINES(RST_ENTRY)};
#undef RST_ENTRY

#define JOURNAL_MAX (16u << 20)

typedef struct journal journal;

/* Target types besides the built-in ones: empty but for tests (rst_revert_int). */
typedef struct drv_set {
    const rst_driver *const *v;
    size_t n;
} drv_set;

struct rst_target {
    const rst_driver *drv;
    snap_ctx *ctx;
    stg *store;
    const cat_manifest *m;
    const cat_component *comp;
    char *name;
    char *to;
    journal *j;
    json_t *plan;
    json_t *state;
    util_strv lock_keys;
    int *lock_fds; /* one per key, -1 until taken */
    struct held {
        void *handle;
        void (*release)(void *);
    } *held;       /* the driver's locks in the target's server (rst_hold) */
    size_t nheld;
    bool switched;
    bool detail;
    bool trusted; /* the manifest verified with a key this host holds */
    rst_opts opts;
    src_opts src;    /* [source NAME] of this component */
    snap_rc opts_rc; /* a bad [revert] value, reported when the plan is made */
    snap_err opts_err;
    prg_bar *bar; /* while it stages: the stored bytes read, of the component's */
};

struct journal {
    char *path;
    int fd; /* <revert-id>.lock beside it, held with flock(LOCK_EX) while the revert runs */
    json_t *doc;
    rst_target **targets;
    size_t n;
    drv_set extra;
    char *host;       /* this runner ([revert] host) */
    rst_coord *co;    /* the store's copy and its lease; NULL without a store */
    bool own_co;
    int64_t lock_wait;
};

const rst_driver *rst_driver_find(const char *type)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (strcmp(drivers[i]->type, type) == 0)
            return drivers[i];
    return NULL;
}

static const rst_driver *driver_in(const drv_set *extra, const char *type)
{
    for (size_t i = 0; extra != NULL && type != NULL && i < extra->n; i++)
        if (strcmp(extra->v[i]->type, type) == 0)
            return extra->v[i];
    return type != NULL ? rst_driver_find(type) : NULL;
}

snap_ctx *rst_ctx(const rst_target *t) { return t->ctx; }
stg *rst_store(const rst_target *t) { return t->store; }
const cat_manifest *rst_manifest(const rst_target *t) { return t->m; }
const cat_component *rst_component(const rst_target *t) { return t->comp; }
const char *rst_component_name(const rst_target *t) { return t->name; }
const char *rst_to(const rst_target *t) { return t->to; }
json_t *rst_plan(rst_target *t) { return t->plan; }
json_t *rst_state(rst_target *t) { return t->state; }
bool rst_plan_detail(const rst_target *t) { return t->detail; }
prg_bar *rst_progress(const rst_target *t) { return t->bar; }

bool rst_trusted(const rst_target *t)
{
    return t->m != NULL && t->trusted;
}

const char *rst_revert_id(const rst_target *t)
{
    return json_string_value(json_object_get(t->j->doc, "revert_id"));
}

snap_rc rst_opts_parse(const cfg *c, rst_opts *o, snap_err *err)
{
    snap_rc rc;

    memset(o, 0, sizeof *o);
    if ((rc = cfg_str(c, "revert", "mode", &o->mode, err)) != SNAP_OK ||
        (rc = cfg_str(c, "revert", "images_lock", &o->images_lock, err)) != SNAP_OK ||
        (rc = cfg_str(c, "revert", "pg_bindir", &o->pg_bindir, err)) != SNAP_OK ||
        (rc = cfg_str(c, "revert", "pg_maintenance_db", &o->pg_maintenance_db, err)) != SNAP_OK ||
        (rc = cfg_str(c, "revert", "pg_maintenance_work_mem", &o->pg_maintenance_work_mem, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "pin", &o->pin, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "require_images", &o->require_images, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "allow_external_symlinks", &o->allow_external_symlinks, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "allow_special_files", &o->allow_special_files, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "check_free_space", &o->check_free_space, err)) != SNAP_OK ||
        (rc = cfg_bool(c, "revert", "mysql_require_local_infile", &o->mysql_require_local_infile, err)) != SNAP_OK ||
        (rc = cfg_duration(c, "revert", "lock_wait_timeout", &o->lock_wait_timeout, err)) != SNAP_OK ||
        (rc = cfg_duration(c, "revert", "lock_wait", &o->lock_wait, err)) != SNAP_OK ||
        (rc = cfg_duration(c, "revert", "lease", &o->lease, err)) != SNAP_OK)
        return rc;
    return cfg_duration(c, "revert", "keep_old", &o->keep_old, err);
}

const rst_opts *rst_options(const rst_target *t) { return &t->opts; }
int64_t rst_lock_wait(const rst_target *t) { return t->opts.lock_wait; }
const char *rst_host(const rst_target *t) { return t->j->host != NULL ? t->j->host : ""; }

void rst_hold(rst_target *t, void *handle, void (*release)(void *))
{
    t->held = xrealloc(t->held, (t->nheld + 1) * sizeof *t->held);
    t->held[t->nheld].handle = handle;
    t->held[t->nheld++].release = release;
}
const src_opts *rst_source(const rst_target *t) { return &t->src; }

void rst_set_lock_key(rst_target *t, const char *key)
{
    for (size_t i = 0; i < t->lock_keys.n; i++)
        if (strcmp(t->lock_keys.v[i], key) == 0)
            return;
    util_strv_push(&t->lock_keys, xstrdup(key));
    t->lock_fds = xrealloc(t->lock_fds, t->lock_keys.n * sizeof *t->lock_fds);
    t->lock_fds[t->lock_keys.n - 1] = -1;
}

/* ---- journal ---------------------------------------------------------------------- */

static snap_rc write_json_file(const char *path, json_t *doc, snap_err *err)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    snap_rc rc = util_write_file(path, text, strlen(text), 0600, err);

    if (rc != SNAP_OK) /* whatever the errno, a journal that cannot be written is exit 1 */
        rc = err->code = SNAP_EFAIL;
    free(text);
    return rc;
}

/* The store's copy: before the cut-over a revert must not go on without it (no other
 * runner could finish it); from the cut-over on, the local journal is enough to go on. */
static snap_rc store_journal_save(journal *j, snap_err *err)
{
    const char *phase = json_string_value(json_object_get(j->doc, "phase"));
    snap_err e;
    snap_rc rc = coord_save(j->co, json_string_value(json_object_get(j->doc, "revert_id")), j->doc, &e);

    if (rc == SNAP_OK)
        return SNAP_OK;
    if (phase != NULL && (strcmp(phase, "plan") == 0 || strcmp(phase, "stage") == 0)) {
        *err = e;
        err_hint(err, "nothing live changed; check that the store can be written, then revert again");
        return rc;
    }
    if (j->n > 0)
        log_warn(j->targets[0]->ctx, "%s; the local journal goes on alone", e.msg);
    return SNAP_OK;
}

/* <dir>/<revert-id>.lock beside <dir>/<revert-id>.json. */
static char *lock_path_of(const char *json_path)
{
    size_t n = strlen(json_path);

    return xasprintf("%.*s.lock", (int)(n > 5 ? n - 5 : n), json_path);
}

static snap_rc journal_save(journal *j, snap_err *err)
{
    json_t *targets = json_array();
    snap_rc rc;

    for (size_t i = 0; i < j->n; i++) {
        rst_target *t = j->targets[i];
        json_array_append_new(targets, json_pack("{s:s, s:s, s:s?, s:b, s:O}", "component", t->name,
                                                 "type", t->drv->type, "to", t->to, "switched", t->switched,
                                                 "state", t->state));
    }
    json_object_set_new(j->doc, "targets", targets);
    rc = write_json_file(j->path, j->doc, err);
    if (rc == SNAP_OK && j->co != NULL)
        rc = store_journal_save(j, err);
    return rc;
}

snap_rc rst_journal_save(rst_target *t, snap_err *err)
{
    return journal_save(t->j, err);
}

static snap_rc journal_phase(journal *j, const char *phase, snap_err *err)
{
    json_object_set_new(j->doc, "phase", json_string(phase));
    return journal_save(j, err);
}

static void journal_remove(journal *j)
{
    char *dir, *lock = lock_path_of(j->path);

    if (j->co != NULL)
        coord_remove(j->co, json_string_value(json_object_get(j->doc, "revert_id")));
    unlink(j->path);
    unlink(lock);
    free(lock);
    dir = util_dirname(j->path);
    util_fsync_dir(dir, NULL);
    free(dir);
}

static void target_free(rst_target *t)
{
    if (t == NULL)
        return;
    for (size_t i = t->nheld; i-- > 0;)
        t->held[i].release(t->held[i].handle);
    free(t->held);
    for (size_t i = 0; i < t->lock_keys.n; i++)
        if (t->lock_fds[i] >= 0) {
            if (ftruncate(t->lock_fds[i], 0) != 0) /* the holder's note goes with the lock */
                log_debug(t->ctx, "cannot clear the note of the lock of %s", t->lock_keys.v[i]);
            close(t->lock_fds[i]);
        }
    free(t->lock_fds);
    util_strv_free(&t->lock_keys);
    json_decref(t->plan);
    json_decref(t->state);
    src_opts_free(&t->src);
    free(t->name);
    free(t->to);
    free(t);
}

static void journal_free(journal *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n; i++)
        target_free(j->targets[i]);
    free(j->targets);
    if (j->fd >= 0)
        close(j->fd);
    if (j->own_co)
        coord_free(j->co);
    json_decref(j->doc);
    free(j->host);
    free(j->path);
    free(j);
}

static rst_target *target_new(journal *j, snap_ctx *ctx, stg *store, const rst_driver *drv,
                              const char *name)
{
    rst_target *t = xcalloc(1, sizeof *t);
    const cfg *c = ctx != NULL ? ctx->cfg : NULL; /* none when a journal is only parsed */
    char *section;

    t->drv = drv;
    t->ctx = ctx;
    t->store = store;
    t->j = j;
    t->opts_rc = rst_opts_parse(c, &t->opts, &t->opts_err);
    if (t->opts_rc != SNAP_OK) /* the table's defaults, for a recovery that must finish */
        (void)rst_opts_parse(NULL, &t->opts, NULL);
    section = xasprintf("source %s", name);
    if (t->opts_rc == SNAP_OK)
        t->opts_rc = src_opts_parse(c, section, &t->src, &t->opts_err);
    else
        (void)src_opts_parse(c, section, &t->src, NULL);
    free(section);
    t->name = xstrdup(name);
    t->plan = json_pack("{s:s, s:s}", "component", name, "type", drv->type);
    t->state = json_object();
    j->targets = xrealloc(j->targets, (j->n + 1) * sizeof *j->targets);
    j->targets[j->n++] = t;
    return t;
}

/*
 * Calls fn for every journal in the state directory, with an open fd and whether its
 * lock could be taken: a journal whose lock can be taken was left by a process that
 * died, while a locked one belongs to a revert that is running. Stops when fn does not
 * return SNAP_OK.
 */
typedef snap_rc (*journal_fn)(const char *path, int fd, bool abandoned, void *arg, snap_err *err);

static snap_rc each_journal(const snap_ctx *ctx, journal_fn fn, void *arg, snap_err *err)
{
    char *dir;
    DIR *d;
    struct dirent *de;
    snap_rc rc = state_subdir(ctx->cfg, "journal", &dir, err);

    if (rc != SNAP_OK)
        return rc;
    d = opendir(dir);
    while (d != NULL && rc == SNAP_OK && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        char *path = xasprintf("%s/%s", dir, de->d_name), *lock = lock_path_of(path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        /* The lock is a file of its own: the journal is replaced (renamed over) at each step. */
        int lfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 && lfd >= 0)
            rc = fn(path, fd, flock(lfd, LOCK_EX | LOCK_NB) == 0, arg, err);
        if (fd >= 0)
            close(fd);
        if (lfd >= 0)
            close(lfd);
        free(lock);
        free(path);
    }
    if (d != NULL)
        closedir(d);
    free(dir);
    return rc;
}

static snap_rc note_abandoned(const char *path, int fd, bool abandoned, void *arg, snap_err *err)
{
    (void)fd;
    if (!abandoned)
        return SNAP_OK;
    err_set(err, SNAP_ERECOVER, 0, "an interrupted revert left a journal: %s", path);
    err_hint(err, "run `revert --recover` to finish or roll it back first");
    (void)arg;
    return SNAP_ERECOVER;
}

/* What the holder of a target's lock writes into it, for the message of one who waits. */
static void lock_note(rst_target *t, int fd)
{
    char now[32], *note;

    util_iso8601(time(NULL), now);
    note = xasprintf("revert %s, pid %d on host %s since %s", rst_revert_id(t), (int)getpid(), rst_host(t), now);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, note, strlen(note), 0) < 0)
        log_debug(t->ctx, "cannot write the holder into the lock of %s", t->name);
    free(note);
}

/* The targets' locks in the state directory, waiting up to --lock-wait for each. */
static snap_rc lock_target(rst_target *t, snap_err *err)
{
    snap_rc rc = SNAP_OK;
    uint64_t until = util_now_ns() + (uint64_t)t->opts.lock_wait * 1000000000ull;

    for (size_t i = 0; i < t->lock_keys.n && rc == SNAP_OK; i++) {
        bool said = false;
        while ((rc = state_lock(t->ctx->cfg, t->lock_keys.v[i], false, &t->lock_fds[i], err)) == SNAP_ECONFLICT &&
               util_now_ns() < until && !ctx_interrupted(t->ctx, NULL)) {
            if (!said)
                log_info(t->ctx, "%s; waiting up to %lld s", err->msg, (long long)t->opts.lock_wait);
            said = true;
            usleep(200000);
        }
        if (rc == SNAP_OK)
            lock_note(t, t->lock_fds[i]);
    }
    return rc;
}

/* ---- reading a journal back ------------------------------------------------------- */

static const char *json_type_text(json_type t)
{
    switch (t) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "true or false";
    default: return "null";
    }
}

static bool type_is(const json_t *v, json_type t)
{
    if (t == JSON_TRUE || t == JSON_FALSE)
        return json_is_boolean(v);
    if (t == JSON_REAL)
        return json_is_number(v);
    return json_typeof(v) == t;
}

snap_rc rst_check_fields(const char *what, const json_t *obj, const rst_field *fields, size_t n,
                         snap_err *err)
{
    if (!json_is_object(obj))
        return err_set(err, SNAP_EVERIFY, 0, "%s is damaged: it is %s, not an object", what,
                       obj ? json_type_text(json_typeof(obj)) : "missing");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fields[i].name), *e;
        size_t k;
        if (v == NULL || json_is_null(v)) {
            if (!fields[i].required)
                continue;
            return err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"%s\" is missing", what, fields[i].name);
        }
        if (!type_is(v, fields[i].type))
            return err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"%s\" is not %s", what, fields[i].name,
                           json_type_text(fields[i].type));
        if (fields[i].type != JSON_ARRAY || fields[i].elem == JSON_NULL)
            continue;
        json_array_foreach(v, k, e)
            if (!type_is(e, fields[i].elem))
                return err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"%s\"[%zu] is not %s", what,
                               fields[i].name, k, json_type_text(fields[i].elem));
    }
    return SNAP_OK;
}

/* check and switchback: a checked cut-over (restore/check.c) and its undo. */
static const char *const phases[] = {"plan", "stage", "cutover", "check", "switchback", "finish"};

/*
 * Checks every field recovery reads, and the driver state of each target; on the first
 * problem says what it is in why and returns false. A journal that passes can be used
 * without another check.
 */
static bool journal_valid(const json_t *doc, const drv_set *extra, char *why, size_t n)
{
    const json_t *v, *tj;
    const char *phase;
    size_t i;
    bool known = false;

#define BAD(...) (snprintf(why, n, __VA_ARGS__), false)
    if (!json_is_object(doc))
        return BAD("it is not a JSON object");
    v = json_object_get(doc, "format");
    if (v == NULL)
        return BAD("\"format\" is missing");
    if (!json_is_integer(v) || json_integer_value(v) != 1)
        return BAD("\"format\" is not 1");
    static const char *const strings[] = {"revert_id", "snapshot", "phase"};
    for (i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        v = json_object_get(doc, strings[i]);
        if (v == NULL)
            return BAD("\"%s\" is missing", strings[i]);
        if (!json_is_string(v) || json_string_length(v) == 0)
            return BAD("\"%s\" is not a string", strings[i]);
    }
    if (cat_name_check("revert id", json_string_value(json_object_get(doc, "revert_id")), NULL) != SNAP_OK)
        return BAD("\"revert_id\" is not a revert id");
    phase = json_string_value(json_object_get(doc, "phase"));
    for (i = 0; i < sizeof phases / sizeof phases[0]; i++)
        known = known || strcmp(phase, phases[i]) == 0;
    if (!known)
        return BAD("\"phase\" is not one of plan, stage, cutover, finish");
    v = json_object_get(doc, "targets");
    if (v == NULL)
        return BAD("\"targets\" is missing");
    if (!json_is_array(v))
        return BAD("\"targets\" is not an array");
    json_array_foreach(v, i, tj) {
        const json_t *f;
        if (!json_is_object(tj))
            return BAD("target %zu is not an object", i);
        f = json_object_get(tj, "component");
        if (!json_is_string(f) || json_string_length(f) == 0)
            return BAD("target %zu: \"component\" is %s", i, f ? "not a string" : "missing");
        f = json_object_get(tj, "type");
        if (!json_is_string(f))
            return BAD("target %zu: \"type\" is %s", i, f ? "not a string" : "missing");
        if (driver_in(extra, json_string_value(f)) == NULL)
            return BAD("target %zu: type \"%.64s\" is not one this build knows", i, json_string_value(f));
        f = json_object_get(tj, "switched");
        if (!json_is_boolean(f))
            return BAD("target %zu: \"switched\" is %s", i, f ? "not true or false" : "missing");
        f = json_object_get(tj, "to");
        if (f != NULL && !json_is_null(f) && !json_is_string(f))
            return BAD("target %zu: \"to\" is not a string", i);
        f = json_object_get(tj, "state");
        if (!json_is_object(f))
            return BAD("target %zu: \"state\" is %s", i, f ? "not an object" : "missing");
        const rst_driver *drv = driver_in(extra, json_string_value(json_object_get(tj, "type")));
        if (drv->check_state != NULL) {
            snap_err e;
            if (drv->check_state(f, &e) != SNAP_OK)
                return BAD("target %zu (%.64s): %.200s", i, json_string_value(json_object_get(tj, "component")), e.msg);
        }
    }
    return true;
#undef BAD
}

/* What the readable part of a damaged journal says about the targets, for the hint. */
static void damaged_hint(const json_t *doc, const char *aside, snap_err *err)
{
    const char *phase = json_string_value(json_object_get(doc, "phase"));
    const char *snap = json_string_value(json_object_get(doc, "snapshot"));
    const char *id = json_string_value(json_object_get(doc, "revert_id"));
    char targets[200] = "", switched[200] = "";
    const json_t *tj;
    size_t i;

    json_array_foreach(json_object_get(doc, "targets"), i, tj) {
        const char *name = json_string_value(json_object_get(tj, "component"));
        size_t n = strlen(targets), m = strlen(switched);
        if (name == NULL)
            continue;
        snprintf(targets + n, sizeof targets - n, "%s%s", n ? ", " : "", name);
        if (json_is_true(json_object_get(tj, "switched")))
            snprintf(switched + m, sizeof switched - m, "%s%s", m ? ", " : "", name);
    }
    if (snap == NULL || !util_utf8_valid(snap))
        snap = "(unreadable)";
    if (phase != NULL && (strcmp(phase, "plan") == 0 || strcmp(phase, "stage") == 0))
        err_hint(err, "it was set aside as %s. It stopped before the cut-over (revert of snapshot %s%s%s): no live "
                 "target changed; staging it left beside the targets%s%s may remain, remove it by hand",
                 aside, snap, targets[0] ? ", targets " : "", targets, targets[0] ? " " : "", targets);
    else if (phase != NULL && strcmp(phase, "cutover") == 0)
        err_hint(err, "it was set aside as %s. It stopped during the cut-over to snapshot %s: switched: %s; not "
                 "known to be switched: the other targets (%s). Check each target, then run `revert %s` again, "
                 "or `revert pre-revert-%s` to go back if its safety snapshot was taken; staging and displaced "
                 "copies are named after the revert id", aside, snap,
                 json_is_true(json_object_get(doc, "salvaged")) ? "unknown" : switched[0] ? switched : "none",
                 targets[0] ? targets : "unknown", snap, id ? id : "ID");
    else if (phase != NULL && strcmp(phase, "finish") == 0)
        err_hint(err, "it was set aside as %s. The cut-over to snapshot %s had completed (%s); the state it "
                 "displaced stays beside each target until removed by hand", aside, snap, targets[0] ? targets : "targets unknown");
    else
        err_hint(err, "it was set aside as %s; what it did cannot be read, so the targets may be in any state. "
                 "Check each target against the snapshot (`snap show`), and run the revert again", aside);
}

/*
 * What can still be read from a journal that is not JSON (cut short by a full disk, say):
 * journals are written with sorted keys, so the top-level strings come before "targets",
 * and the names of the targets follow as "component" keys.
 */
static json_t *journal_salvage(int fd)
{
    static const char *const keys[] = {"phase", "revert_id", "snapshot"};
    char buf[65536], *targets;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    json_t *doc = json_object(), *list = json_array();

    if (n <= 0) {
        json_decref(list);
        return doc;
    }
    buf[n] = '\0';
    targets = strstr(buf, "\"targets\"");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char pat[32], val[200];
        const char *p;
        snprintf(pat, sizeof pat, "\"%s\": \"", keys[i]);
        p = strstr(buf, pat);
        if (p == NULL || (targets != NULL && p > targets) || sscanf(p + strlen(pat), "%199[^\"]", val) != 1)
            continue;
        json_object_set_new(doc, keys[i], json_string(val)); /* NULL when not UTF-8: left out */
    }
    for (const char *p = targets; p != NULL && (p = strstr(p, "\"component\": \"")) != NULL; p++) {
        char val[200];
        if (sscanf(p + 14, "%199[^\"]", val) == 1)
            json_array_append_new(list, json_pack("{s:s?}", "component", util_utf8_valid(val) ? val : NULL));
    }
    json_object_set_new(doc, "targets", list);
    json_object_set_new(doc, "salvaged", json_true()); /* which targets switched is not known */
    return doc;
}

/*
 * Reads the journal at path. A journal that cannot be parsed or fails journal_valid is
 * renamed to <path>.damaged (0600) so that it no longer blocks every revert, and the
 * error says what is wrong and, from what could be read, where the targets are.
 */
static snap_rc journal_read(const char *path, int fd, const drv_set *extra, json_t **out, snap_err *err)
{
    json_error_t jerr;
    struct stat st;
    json_t *doc = NULL;
    char why[300] = "";
    char *aside;

    *out = NULL;
    if (fstat(fd, &st) != 0)
        return err_sys(err, SNAP_EFAIL, "cannot read journal %s", path);
    if (st.st_size > (off_t)JOURNAL_MAX)
        snprintf(why, sizeof why, "it is larger than %u MiB", JOURNAL_MAX >> 20);
    else if ((doc = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        snprintf(why, sizeof why, "it is not valid JSON (%s, line %d)", jerr.text, jerr.line);
        doc = journal_salvage(fd);
    }
    else if (journal_valid(doc, extra, why, sizeof why)) {
        *out = doc;
        return SNAP_OK;
    }
    aside = xasprintf("%s.damaged", path);
    if (fchmod(fd, 0600) != 0 || rename(path, aside) != 0) {
        err_sys(err, SNAP_EVERIFY, "journal %s is damaged (%s), and setting it aside failed", path, why);
        err_hint(err, "move it out of the journal directory by hand, then check the targets");
    } else {
        char *dir = util_dirname(path);
        util_fsync_dir(dir, NULL);
        free(dir);
        err_set(err, SNAP_EVERIFY, 0, "journal %s is damaged: %s", path, why);
        damaged_hint(doc, aside, err);
    }
    free(aside);
    json_decref(doc);
    return SNAP_EVERIFY;
}

/* ---- plan ------------------------------------------------------------------------- */

static snap_rc check_parts(stg *s, const cat_component *c, snap_err *err)
{
    for (size_t i = 0; i < cat_component_nparts(c); i++) {
        const char *key, *sha;
        uint64_t size, have = 0, entries;
        snap_rc rc;

        cat_component_part(c, i, &key, &size, &sha, &entries);
        rc = stg_stat(s, key, &have, err);
        if (rc == SNAP_ENOTFOUND) {
            err_set(err, SNAP_EVERIFY, ENOENT, "part %s of %s is missing from the store", key,
                    cat_component_name(c));
            err_hint(err, "the snapshot is damaged; nothing was changed. `snap verify` lists what is missing");
            return SNAP_EVERIFY;
        }
        if (rc != SNAP_OK)
            return rc;
        if (have != size) {
            err_set(err, SNAP_EVERIFY, 0, "part %s of %s has %llu bytes, the manifest says %llu", key,
                    cat_component_name(c), (unsigned long long)have, (unsigned long long)size);
            err_hint(err, "the snapshot is damaged; nothing was changed. `snap verify` lists what is damaged");
            return SNAP_EVERIFY;
        }
    }
    return SNAP_OK;
}

static bool selected(const rst_request *req, const char *name)
{
    if (req->nonly == 0)
        return true;
    for (size_t i = 0; i < req->nonly; i++)
        if (strcmp(req->only[i], name) == 0)
            return true;
    return false;
}

static snap_rc build_targets(snap_ctx *ctx, stg *store, const rst_request *req,
                             const cat_manifest *m, bool trusted, journal *j, snap_err *err)
{
    for (size_t i = 0; i < req->nonly; i++) {
        if (cat_manifest_find(m, req->only[i]) == NULL) {
            char names[512] = "";
            for (size_t k = 0; k < cat_manifest_ncomponents(m); k++) {
                size_t n = strlen(names);
                snprintf(names + n, sizeof names - n, "%s%s", k ? ", " : "",
                         cat_component_name(cat_manifest_component(m, k)));
            }
            err_set(err, SNAP_ENOTFOUND, 0, "snapshot %s has no component %s", req->name, req->only[i]);
            err_hint(err, "its components are: %s", names);
            return SNAP_ENOTFOUND;
        }
    }
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        const cat_component *c = cat_manifest_component(m, i);
        const rst_driver *drv;
        rst_target *t;

        if (!selected(req, cat_component_name(c)))
            continue;
        drv = driver_in(&j->extra, cat_component_type(c));
        if (drv == NULL) {
            err_set(err, SNAP_EFAIL, 0, "component %s has type %s, which this build cannot revert",
                    cat_component_name(c), cat_component_type(c));
            return SNAP_EFAIL;
        }
        t = target_new(j, ctx, store, drv, cat_component_name(c));
        if (t->opts_rc != SNAP_OK) {
            *err = t->opts_err;
            return t->opts_rc;
        }
        t->m = m;
        t->comp = c;
        t->trusted = trusted;
        t->to = req->to ? xstrdup(req->to) : NULL;
    }
    if (req->to != NULL && j->n != 1) {
        err_set(err, SNAP_EUSAGE, 0, "--to restores one component, and %zu are selected", j->n);
        err_hint(err, "choose one with --only NAME (`snap show %s` lists them)", req->name);
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

/* ---- trust: who chose the target -------------------------------------------------- */

/* Whether the snapshot's manifest verifies with a key this host holds; says which with -v. */
static snap_rc authenticate(snap_ctx *ctx, const cat_manifest *m, bool *trusted, json_t *res,
                            snap_err *err)
{
    auth_keyring *keys = NULL;
    char key_id[AUTH_KEY_ID_LEN + 1];
    auth_status st;
    snap_rc rc = auth_keyring_load(ctx->cfg, false, &keys, err);

    *trusted = false;
    if (rc != SNAP_OK)
        return rc;
    st = auth_verify(keys, cat_manifest_json(m), key_id);
    *trusted = st == AUTH_OK;
    if (st == AUTH_OK)
        log_verbose(ctx, "snapshot %s is authenticated by key %s", cat_manifest_name(m), key_id);
    else
        log_verbose(ctx, "snapshot %s is not authenticated: %s", cat_manifest_name(m), auth_status_text(st));
    json_object_set_new(res, "authenticated", json_boolean(*trusted));
    if (st == AUTH_OK)
        json_object_set_new(res, "key_id", json_string(key_id));
    auth_keyring_free(keys);
    return SNAP_OK;
}

typedef struct path_match {
    const char *path;
    bool found;
} path_match;

static bool match_path(const char *value, void *arg)
{
    path_match *pm = arg;
    /* Only an absolute path names a target: a relative one would depend on where revert
     * runs, so a manifest could make it name any directory of that name. */
    char *abs = value[0] == '/' ? util_abspath(value) : NULL;

    pm->found = abs != NULL && strcmp(abs, pm->path) == 0;
    free(abs);
    return !pm->found;
}

/* Does a [source NAME] of this type (files: paths, path; images: manifests) name path? */
static bool path_configured(const cfg *c, const char *type, const char *path)
{
    path_match pm = {path, false};

    for (size_t i = 0; c != NULL && i < cfg_source_count(c) && !pm.found; i++) {
        char *section = xasprintf("source %s", cfg_source_name(c, i));
        src_opts so;
        if (src_opts_parse(c, section, &so, NULL) == SNAP_OK) {
            const util_strv *l = strcmp(type, "images") == 0 ? &so.manifests : &so.paths;
            for (size_t k = 0; so.type != NULL && strcmp(so.type, type) == 0 && k < l->n && !pm.found; k++)
                (void)match_path(l->v[k], &pm);
            src_opts_free(&so);
        }
        free(section);
    }
    return pm.found;
}

static snap_rc refuse(rst_target *t, const char *what, snap_err *err)
{
    err_set(err, SNAP_EVERIFY, 0, "snapshot %s is not authenticated, and its component %s asks to replace %s, "
            "which neither the local configuration nor the command line names; nothing was changed",
            cat_manifest_name(t->m), t->name, what);
    json_object_set_new(t->plan, "refused", json_string("not authenticated, and not named locally"));
    return SNAP_EVERIFY;
}

/*
 * A target is replaced only when the local configuration or the command line names it, or
 * when the manifest is authenticated. Fills the plan's "requested", "authenticated" and
 * "named_by"; refuses (SNAP_EVERIFY) before any connection is made.
 */
static snap_rc check_named(rst_target *t, snap_err *err)
{
    const cfg *c = t->ctx->cfg;
    json_t *info = cat_component_info((cat_component *)(uintptr_t)t->comp), *r;
    const char *type = t->drv->type, *named = t->trusted ? "authenticated manifest" : NULL;
    char *requested = NULL, *section = xasprintf("source %s", t->name);
    snap_rc rc = SNAP_OK;
    size_t i;

    json_object_set_new(t->plan, "authenticated", json_boolean(t->trusted));
    if (strcmp(type, "files") == 0 || strcmp(type, "images") == 0) {
        json_t *roots = json_object_get(info, "roots");
        bool all = true;
        /* Every root an absolute, normalised path, before one is compared with the config. */
        rc = rst_files_check_roots(t, err);
        if (rc != SNAP_OK)
            goto out;
        json_array_foreach(roots, i, r) {
            const char *path = json_string_value(json_object_get(r, "path"));
            char *prev = requested;
            requested = prev ? xasprintf("%s %s", prev, path) : xstrdup(path);
            free(prev);
            if (!path_configured(c, type, path))
                all = false;
        }
        if (t->to != NULL)
            named = "command line";
        else if (all)
            named = "configuration";
        if (named == NULL) {
            rc = refuse(t, requested, err);
            err_hint(err, "name %s in the configuration ([source %s] type = %s, %s = ...), restore beside it with "
                          "--to DIR, or give this host the key that signed the snapshot ([store] auth_key_file)",
                     requested, t->name, type, strcmp(type, "images") == 0 ? "manifests" : "paths");
        }
    } else if (strcmp(type, "postgres") == 0 || strcmp(type, "mysql") == 0) {
        const char *ctype = t->src.type, *dsn = t->src.dsn;
        const char *src = cat_component_source(t->comp);
        const char *db = json_string_value(json_object_get(info, strcmp(type, "postgres") == 0 ? "database_name"
                                                                                                 : "database"));
        bool configured = ctype != NULL && strcmp(ctype, type) == 0 && dsn != NULL;

        requested = xasprintf("database %s on %s", db ? db : "(none)", src ? src : "(no source)");
        if (configured && t->to == NULL && db != NULL) {
            /* The configured server; the database too, when the DSN names one. */
            char *cdb = NULL;
            if (strcmp(type, "postgres") == 0) {
                cdb = pg_dsn_dbname(dsn);
            } else {
                my_dsn *d = NULL;
                snap_err ignored;
                if (my_dsn_parse(dsn, &d, &ignored) == SNAP_OK && my_dsn_db(d) != NULL && my_dsn_db(d)[0] != '\0')
                    cdb = xstrdup(my_dsn_db(d));
                my_dsn_free(d);
            }
            if (cdb != NULL && strcmp(cdb, db) != 0 && !t->trusted) {
                rc = refuse(t, requested, err);
                err_hint(err, "[source %s] names database %s, not %s: fix the dsn there, or give this host the key "
                              "that signed the snapshot ([store] auth_key_file); no connection was made",
                         t->name, cdb, db);
                free(cdb);
                goto out;
            }
            free(cdb);
        }
        if (configured)
            named = "configuration";
        if (named == NULL) {
            rc = refuse(t, requested, err);
            err_hint(err, "name the server in the configuration ([source %s] type = %s, dsn = ...), or give this "
                          "host the key that signed the snapshot ([store] auth_key_file); no connection was made",
                     t->name, type);
        }
    } else if (!t->trusted) {
        rc = refuse(t, "its target", err);
    }
out:
    if (requested != NULL)
        json_object_set_new(t->plan, "requested", json_string(requested));
    json_object_set_new(t->plan, "named_by", named ? json_string(named) : json_null());
    free(requested);
    free(section);
    return rc;
}

/* ---- the revert ------------------------------------------------------------------- */

/*
 * The safety snapshot pre-revert-<revert id>: of the live targets before staging, or, when
 * displaced, of the state the cut-over displaced (each target's displaced_source), which
 * is recorded under the live names so that reverting to it puts the live targets back.
 */
static snap_rc safety_snapshot(snap_ctx *ctx, stg *store, journal *j, const char *name,
                               const char *revert_id, bool displaced, json_t *result, snap_err *err)
{
    snp_redirect *rd = NULL;
    size_t nrd = 0;
    cfg *c = cfg_new();
    snap_ctx sub = *ctx;
    char *snap_name = xasprintf("pre-revert-%s", revert_id);
    char *label = xasprintf("revert-of=%s", name);
    char *id_label = xasprintf("revert-id=%s", revert_id);
    const char *labels[] = {label, id_label};
    snp_request req = {.name = snap_name, .labels = labels, .nlabels = 2, .allow_missing = true,
                       .locks_held = true /* lock_target took them */, .nested = true};
    snap_rc rc = SNAP_OK;

    /* Every setting of the user's config applies to the safety snapshot too: capture
     * ([snap]), the keys it is signed with ([store], [revert] state_dir), and each
     * source's own keys, which its driver copies before it names the live target. */
    cfg_copy_section(c, ctx->cfg, "snap", "snap", NULL);
    cfg_copy_section(c, ctx->cfg, "store", "store", NULL);
    cfg_copy_section(c, ctx->cfg, "revert", "revert", NULL);
    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++) {
        rst_target *t = j->targets[i];
        char *section = xasprintf("source %s", t->name);
        rc = displaced ? t->drv->displaced_source(t, c, section, &rd, &nrd, err)
                       : t->drv->safety_source(t, c, section, err);
        free(section);
    }
    sub.cfg = c;
    req.redirect = rd;
    req.nredirect = nrd;
    if (rc == SNAP_OK) {
        log_info(ctx, "taking safety snapshot %s of the %s state", snap_name, displaced ? "displaced" : "current");
        rc = snp_create(&sub, store, &req, NULL, err);
        if (rc != SNAP_OK)
            err_prefix(err, "safety snapshot");
    }
    if (rc == SNAP_OK)
        json_object_set_new(result, "safety_snapshot", json_string(snap_name));
    free(rd);
    cfg_free(c);
    free(snap_name);
    free(label);
    free(id_label);
    return rc;
}

/* Removes every target's staging; false when one could not be removed (the journal stays). */
static bool discard_all(journal *j)
{
    bool ok = true;

    for (size_t i = j->n; i-- > 0;) {
        snap_err e;
        if (j->targets[i]->drv->discard(j->targets[i], &e) != SNAP_OK) {
            log_warn(j->targets[i]->ctx, "could not remove staging of %s: %s", j->targets[i]->name, e.msg);
            ok = false;
        }
    }
    return ok;
}

/* Blocks the signals that would stop us in the middle of the cut-over. */
static void block_signals(bool block, sigset_t *old)
{
    sigset_t set;

    if (block) {
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGQUIT);
        pthread_sigmask(SIG_BLOCK, &set, old);
    } else {
        pthread_sigmask(SIG_SETMASK, old, NULL);
    }
}

/* Switches every target; on a failure switches back those already switched. */
static snap_rc cutover_all(journal *j, json_t *result, snap_err *err)
{
    uint64_t t0 = util_now_ns();
    snap_rc rc = SNAP_OK;
    size_t i;

    for (i = 0; i < j->n; i++) {
        rst_target *t = j->targets[i];
        rc = t->drv->cutover(t, err);
        if (rc != SNAP_OK)
            break;
        t->switched = true;
        rc = journal_save(j, err);
        if (rc != SNAP_OK) {
            i++;
            break;
        }
        util_failpoint("cutover-after-switch");
    }
    if (rc != SNAP_OK) {
        snap_err first = *err;
        log_warn(j->targets[0]->ctx, "cut-over failed (%s); switching back", first.msg);
        for (size_t k = i; k-- > 0;) {
            snap_err e;
            if (j->targets[k]->drv->rollback(j->targets[k], &e) != SNAP_OK) {
                /* Leave the journal: recovery must finish what we could not. */
                err_set(err, SNAP_ERECOVER, 0, "cut-over failed (%s) and switching %s back failed too: %s",
                        first.msg, j->targets[k]->name, e.msg);
                err_hint(err, "run `revert --recover`");
                return SNAP_ERECOVER;
            }
            j->targets[k]->switched = false;
        }
        discard_all(j);
        err_set(err, SNAP_EROLLEDBACK, first.sys_errno, "cut-over failed and was rolled back: %s", first.msg);
        err_hint(err, "every target is as it was before the revert");
        return SNAP_EROLLEDBACK;
    }
    json_object_set_new(result, "cutover_ms", json_real((double)(util_now_ns() - t0) / 1e6));
    return SNAP_OK;
}

/* Drops the displaced state a record (a journal document, checked) names; false when some
 * of it could not be dropped. */
static bool drop_displaced(snap_ctx *ctx, stg *store, json_t *doc, const drv_set *extra)
{
    journal j = {.fd = -1, .doc = doc};
    bool ok = true;
    json_t *tj;
    snap_err err;
    size_t i;

    json_array_foreach(json_object_get(doc, "targets"), i, tj) {
        const rst_driver *drv = driver_in(extra, json_string_value(json_object_get(tj, "type")));
        if (drv == NULL)
            continue;
        rst_target *t = target_new(&j, ctx, store, drv, json_string_value(json_object_get(tj, "component")));
        json_decref(t->state);
        t->state = json_incref(json_object_get(tj, "state"));
        if (drv->finish(t, true, &err) != SNAP_OK) {
            log_warn(ctx, "could not drop the displaced state of %s: %s", t->name, err.msg);
            ok = false;
        }
    }
    for (size_t k = 0; k < j.n; k++)
        target_free(j.targets[k]);
    free(j.targets);
    return ok;
}

/* Drops displaced state older than [revert] keep_old (default 7d) recorded by earlier reverts. */
static void expire_undo(snap_ctx *ctx, stg *store, const drv_set *extra)
{
    int64_t keep = 0;
    char *dir;
    DIR *d;
    struct dirent *de;
    snap_err err;

    if (cfg_duration(ctx->cfg, "revert", "keep_old", &keep, &err) != SNAP_OK) {
        log_warn(ctx, "%s; keeping displaced state", err.msg);
        return;
    }
    if (state_subdir(ctx->cfg, "undo", &dir, &err) != SNAP_OK)
        return;
    d = opendir(dir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char *path;
        struct stat st;
        json_t *doc;

        if (de->d_name[0] == '.')
            continue;
        path = xasprintf("%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || st.st_mtime + keep > time(NULL)) {
            free(path);
            continue;
        }
        {
            char why[300] = "not valid JSON";
            size_t n = strlen(de->d_name);
            doc = n > 5 && strcmp(de->d_name + n - 5, ".json") == 0 ? json_load_file(path, 0, NULL) : NULL;
            if (doc == NULL || !journal_valid(doc, extra, why, sizeof why)) {
                if (n > 5 && strcmp(de->d_name + n - 5, ".json") == 0) {
                    char *aside = xasprintf("%s.damaged", path);
                    log_warn(ctx, "record of displaced state %s is damaged (%s); set aside as %s, and what it "
                             "names is left in place", path, why, aside);
                    if (rename(path, aside) == 0)
                        chmod(aside, 0600);
                    free(aside);
                }
                json_decref(doc);
                free(path);
                continue;
            }
        }
        if (drop_displaced(ctx, store, doc, extra)) {
            char *kept = xasprintf("kept/%s", de->d_name);
            log_debug(ctx, "dropped displaced state of revert %s (older than keep_old)", de->d_name);
            unlink(path);
            if (store != NULL)
                (void)stg_delete(store, kept, &err); /* its record in the store goes too */
            free(kept);
        }
        json_decref(doc);
        free(path);
    }
    if (d != NULL)
        closedir(d);
    free(dir);
}

static snap_rc keep_undo(journal *j, snap_err *err)
{
    char *dir, *path;
    const char *id = json_string_value(json_object_get(j->doc, "revert_id"));
    snap_rc rc = state_subdir(j->targets[0]->ctx->cfg, "undo", &dir, err);

    if (rc != SNAP_OK)
        return rc;
    path = xasprintf("%s/%s.json", dir, id);
    rc = write_json_file(path, j->doc, err);
    free(path);
    free(dir);
    if (rc == SNAP_OK && j->co != NULL) {
        /* in the store too, so that any runner lists it and can drop it */
        snap_err e;
        if (coord_kept_save(j->co, id, j->doc, &e) != SNAP_OK && j->n > 0)
            log_warn(j->targets[0]->ctx, "could not record the displaced state in the store: %s", e.msg);
    }
    return rc;
}

/* This runner's name, and the store's copy of the journal with its lease. */
static snap_rc open_coord(snap_ctx *ctx, stg *store, journal *j, snap_err *err)
{
    rst_opts o;
    snap_rc rc;

    j->host = state_host(ctx->cfg);
    if (store == NULL)
        return SNAP_OK;
    if (rst_opts_parse(ctx->cfg, &o, err) != SNAP_OK)
        (void)rst_opts_parse(NULL, &o, NULL);
    rc = coord_new(ctx, store, j->host, o.lease, &j->co, err);
    j->own_co = rc == SNAP_OK;
    return rc;
}

static snap_rc open_journal(snap_ctx *ctx, const rst_request *req, stg *store, journal *j,
                            snap_err *err)
{
    char *dir, id[32], now[32];
    snap_rc rc = state_subdir(ctx->cfg, "journal", &dir, err);

    if (rc != SNAP_OK)
        return rc;
    rc = open_coord(ctx, store, j, err);
    cat_new_id(id);
    util_iso8601(time(NULL), now);
    j->path = xasprintf("%s/%s.json", dir, id);
    free(dir);
    j->doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:b}", "format", 1, "revert_id", id,
                       "snapshot", req->name, "store", stg_url(store), "started", now, "host", j->host,
                       "pid", (int)getpid(), "phase", "plan", "store_journal", j->co != NULL);
    return rc;
}

/* Takes the journal's lock file, <revert-id>.lock: held while this process runs. */
static snap_rc lock_journal(journal *j, snap_err *err)
{
    char *lock = lock_path_of(j->path);
    snap_rc rc = SNAP_OK;

    j->fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (j->fd < 0 || flock(j->fd, LOCK_EX | LOCK_NB) != 0)
        rc = err_sys(err, SNAP_EFAIL, "cannot lock journal %s", lock);
    free(lock);
    return rc;
}

static snap_rc create_journal_file(journal *j, snap_err *err)
{
    /* locked before it exists, so that no recovery takes it for abandoned */
    snap_rc rc = lock_journal(j, err);

    if (rc == SNAP_OK)
        rc = journal_phase(j, "stage", err);
    if (rc == SNAP_OK && j->co != NULL)
        coord_lease_start(j->co);
    return rc;
}

/* What the result says of the revert before it starts: snapshot, ids, the store. */
static void describe(json_t *res, const rst_request *req, const cat_manifest *m, const journal *j, stg *store)
{
    json_t *desc = json_object();

    json_object_set_new(res, "snapshot", json_string(req->name));
    json_object_set_new(res, "snapshot_id", json_string(cat_manifest_id(m)));
    if (!req->dry_run) /* a revert that never happens has no id */
        json_object_set_new(res, "revert_id", json_deep_copy(json_object_get(j->doc, "revert_id")));
    json_object_set_new(res, "dry_run", json_boolean(req->dry_run));
    stg_describe(store, desc);
    json_object_set_new(res, "store", desc);
}

/*
 * Two components that would replace one live target (a hostile manifest, or one written
 * before snap refused such sources) would make the revert wait for its own lock, or swap
 * one over the other: refused before any lock or connection, nothing changed. The targets
 * are those the plan would replace: each root, or the database on the DSN the local
 * configuration names (else the manifest's).
 */
static snap_rc check_distinct(const rst_request *req, journal *j, snap_err *err)
{
    tgt_set *set = tgt_set_new("component");
    char msg[1024];
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < j->n; i++) {
        rst_target *t = j->targets[i];
        json_t *info = cat_component_info((cat_component *)(uintptr_t)t->comp), *r;
        const char *type = t->drv->type;
        size_t k;
        if (strcmp(type, "files") == 0 || strcmp(type, "images") == 0) {
            json_array_foreach(json_object_get(info, "roots"), k, r)
                if (json_string_value(json_object_get(r, "path")) != NULL)
                    tgt_add_path(set, t->name, json_string_value(json_object_get(r, "path")));
        } else if (strcmp(type, "postgres") == 0 || strcmp(type, "mysql") == 0) {
            bool pg = strcmp(type, "postgres") == 0;
            const char *dsn = t->src.type != NULL && strcmp(t->src.type, type) == 0 && t->src.dsn != NULL
                                  ? t->src.dsn
                                  : cat_component_source(t->comp);
            const char *db = json_string_value(json_object_get(info, pg ? "database_name" : "database"));
            if (dsn != NULL)
                tgt_add_db(set, t->name, type, dsn, t->to != NULL ? t->to : db);
        }
    }
    if (tgt_clash(set, msg, sizeof msg)) {
        rc = err_set(err, SNAP_EVERIFY, 0, "snapshot %s names one target twice: %s; nothing was changed", req->name,
                     msg);
        err_hint(err, "revert one of them at a time with --only NAME (`snap show %s` lists the components)",
                 req->name);
    }
    tgt_set_free(set);
    return rc;
}

/* Steps 0 and 1: every target named locally or by an authenticated manifest, every part
 * present, every target reachable; the plan lists them all. Nothing changes. */
static snap_rc plan_all(snap_ctx *ctx, stg *store, const rst_request *req, journal *j, json_t *plans,
                        snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < j->n; i++) {
        snap_err e;
        snap_rc r = check_named(j->targets[i], rc == SNAP_OK ? err : &e);
        if (rc == SNAP_OK)
            rc = r;
    }
    if (rc == SNAP_OK)
        rc = check_distinct(req, j, err);
    if (rc != SNAP_OK) {
        for (size_t i = 0; i < j->n; i++)
            json_array_append(plans, j->targets[i]->plan);
        return rc;
    }
    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++) {
        rst_target *t = j->targets[i];
        t->detail = req->dry_run || !ctx->assume_yes;
        rc = check_parts(store, t->comp, err);
        /* The target's own lock first, so that the plan sees it as the holder left it. */
        if (rc == SNAP_OK && !req->dry_run && t->drv->lock != NULL)
            rc = t->drv->lock(t, err);
        if (rc == SNAP_OK)
            rc = t->drv->plan(t, err);
        json_array_append(plans, t->plan);
    }
    return rc;
}

/* The targets' locks, then the user's word (a prompt, or --yes). */
static snap_rc lock_and_confirm(snap_ctx *ctx, const rst_request *req, journal *j, json_t *res, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++)
        rc = lock_target(j->targets[i], err);
    if (rc != SNAP_OK || ctx->assume_yes)
        return rc;
    if (req->confirm == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "refusing to change live targets without confirmation");
        err_hint(err, "stdin is not a terminal: pass --yes, or --dry-run to see the plan");
        return SNAP_EUSAGE;
    }
    if (!req->confirm(res, req->confirm_arg))
        return err_set(err, SNAP_EFAIL, 0, "revert cancelled; nothing was changed");
    return SNAP_OK;
}

/* Step 3: stage and verify beside the live targets. On failure nothing live changed and
 * the staging is discarded; *keep_journal is set when it could not be, so that
 * `revert --recover` removes it later. */
static snap_rc stage_all(snap_ctx *ctx, journal *j, const json_t *res, bool *keep_journal, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    util_failpoint("stage-begin");
    evt_phase(ctx->events, "stage");
    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++) {
        rst_target *t = j->targets[i];
        log_info(ctx, "staging %s", t->name);
        evt_emit(ctx->events, "component_start", json_pack("{s:s, s:s}", "component", t->name, "type", t->drv->type));
        t->bar = prg_new(ctx, t->name, t->comp != NULL ? cat_component_bytes(t->comp) : 0);
        rc = t->drv->stage(t, err);
        prg_free(t->bar);
        t->bar = NULL;
        evt_emit(ctx->events, "component_end",
                 json_pack("{s:s, s:s, s:b}", "component", t->name, "type", t->drv->type, "ok", rc == SNAP_OK));
        if (rc == SNAP_OK)
            rc = journal_save(j, err);
        if (rc == SNAP_OK && ctx_interrupted(ctx, err))
            rc = SNAP_EINTR;
    }
    util_failpoint("stage-end");
    if (rc == SNAP_OK && ctx_interrupted(ctx, err))
        rc = SNAP_EINTR; /* the last chance to stop with nothing changed */
    if (rc == SNAP_OK)
        rc = rst_hook_before_cutover(ctx, res, err);
    if (rc != SNAP_OK && !discard_all(j)) {
        *keep_journal = true;
        err_hint(err, "nothing live changed; run `revert --recover` to remove the staging left behind");
    }
    return rc;
}

/* Step 4: the cut-over, journaled; signals wait until it is done. A checked one goes on
 * to phase "check", which recovery undoes, rather than "finish", which it completes. */
static snap_rc cutover_phase(journal *j, json_t *res, bool checked, snap_err *err)
{
    sigset_t oldmask;
    snap_rc rc;

    block_signals(true, &oldmask);
    evt_phase(j->n > 0 ? j->targets[0]->ctx->events : NULL, "cutover");
    rc = journal_phase(j, "cutover", err);
    util_failpoint("cutover-begin");
    if (rc == SNAP_OK)
        rc = cutover_all(j, res, err);
    if (rc == SNAP_OK)
        rc = journal_phase(j, checked ? "check" : "finish", err);
    block_signals(false, &oldmask);
    return rc;
}

/* Every switched target back to the state it displaced, last first, journaled; then the
 * restored copies go. SNAP_ERECOVER when a target cannot be switched back, or its copy
 * cannot be removed (the journal stays for `revert --recover`). */
static snap_rc switch_back(journal *j, snap_err *err)
{
    for (size_t k = j->n; k-- > 0;) {
        snap_rc rc = j->targets[k]->drv->rollback(j->targets[k], err);
        if (rc == SNAP_OK) {
            j->targets[k]->switched = false;
            rc = journal_save(j, err);
        }
        if (rc != SNAP_OK) {
            err_prefix(err, "switching %s back", j->targets[k]->name);
            err_hint(err, "run `revert --recover` to finish switching every target back");
            return SNAP_ERECOVER;
        }
        util_failpoint("switchback-after-target");
    }
    if (discard_all(j))
        return SNAP_OK;
    err_set(err, SNAP_ERECOVER, 0, "every target was switched back, but a restored copy could not be removed");
    err_hint(err, "run `revert --recover` to remove it");
    return SNAP_ERECOVER;
}

/* Step 4b: the check ([revert] check, --check). When it fails (or is interrupted), every
 * target is switched back under phase "switchback" with signals held, and the revert
 * ends with SNAP_ECHECK (SNAP_EINTR). */
static snap_rc check_phase(snap_ctx *ctx, journal *j, json_t *res, snap_err *err)
{
    sigset_t oldmask;
    snap_err first;
    snap_rc rc = rst_check_run(ctx, res, err);

    if (rc == SNAP_OK)
        return journal_phase(j, "finish", err);
    first = *err;
    log_warn(ctx, "%s; switching every target back", first.msg);
    block_signals(true, &oldmask);
    rc = journal_phase(j, "switchback", err);
    util_failpoint("switchback-begin");
    if (rc == SNAP_OK)
        rc = switch_back(j, err);
    block_signals(false, &oldmask);
    if (rc != SNAP_OK)
        return SNAP_ERECOVER;
    *err = first;
    err_hint(err, "every target was switched back to its state before the revert; the snapshot stays in the "
                  "store");
    json_object_set_new(res, "status", json_string("switched-back"));
    return first.code;
}

/* --check undoes the cut-over by switching back: every target must have a displaced state. */
static snap_rc check_switchable(journal *j, snap_err *err)
{
    for (size_t i = 0; i < j->n; i++) {
        const rst_target *t = j->targets[i];
        if (strcmp(t->drv->type, "postgres") != 0 || t->to != NULL || t->opts.mode == NULL ||
            strcmp(t->opts.mode, "transaction") != 0)
            continue;
        err_set(err, SNAP_EUSAGE, 0, "a checked revert cannot use PostgreSQL transaction mode (%s): it replaces "
                "the contents in place and keeps no state to switch back to", t->name);
        err_hint(err, "use --mode swap (the default) with --check, or revert without a check; nothing was changed");
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

/* The revert's record in the store: its result, host and start. */
static void record_revert(snap_ctx *ctx, stg *store, const journal *j, const json_t *res)
{
    json_t *rec = json_deep_copy(res);
    snap_err e;

    json_object_set_new(rec, "host", json_deep_copy(json_object_get(j->doc, "host")));
    json_object_set_new(rec, "started", json_deep_copy(json_object_get(j->doc, "started")));
    if (cat_record_revert(store, json_string_value(json_object_get(j->doc, "revert_id")), rec, &e) != SNAP_OK)
        log_warn(ctx, "could not record the revert in the store: %s", e.msg);
    json_decref(rec);
}

/* Step 5: keep (or drop) the displaced state, record the revert in the store. */
static void finish_all(snap_ctx *ctx, stg *store, const rst_request *req, journal *j, json_t *res,
                       const drv_set *extra)
{
    snap_err e;

    evt_phase(ctx->events, "finish");
    for (size_t i = 0; i < j->n; i++)
        if (j->targets[i]->drv->finish(j->targets[i], req->drop_old, &e) != SNAP_OK)
            log_warn(ctx, "%s: %s", j->targets[i]->name, e.msg);
    json_object_set_new(res, "status", json_string("reverted"));
    if (!req->drop_old && req->to == NULL && keep_undo(j, &e) != SNAP_OK)
        log_warn(ctx, "could not record the displaced state for later removal: %s", e.msg);
    record_revert(ctx, store, j, res);
    expire_undo(ctx, store, extra);
}

/* Whether every target keeps the state it displaces whole, so that the safety snapshot can
 * wait until after the cut-over (swap mode); transaction mode, which displaces nothing,
 * takes it first. */
static bool safety_deferrable(journal *j)
{
    for (size_t i = 0; i < j->n; i++) {
        rst_target *t = j->targets[i];
        if (t->drv->safety_deferrable == NULL || t->drv->displaced_source == NULL || !t->drv->safety_deferrable(t))
            return false;
    }
    return j->n > 0;
}

/*
 * The safety snapshot the journal says is due ("safety_due"), from the displaced state,
 * after the cut-over. Until it is committed the displaced state stays (nothing drops it)
 * and so does the journal: `revert --recover` takes it. A snapshot of that name that was
 * committed before a kill counts as taken.
 */
static snap_rc deferred_safety(snap_ctx *ctx, stg *store, journal *j, json_t *res, snap_err *err)
{
    const char *name = json_string_value(json_object_get(j->doc, "snapshot"));
    const char *id = json_string_value(json_object_get(j->doc, "revert_id"));
    char *snap_name = xasprintf("pre-revert-%s", id);
    cat_manifest *m = NULL;
    uint64_t t0 = util_now_ns();
    snap_rc rc;

    util_failpoint("safety-deferred-begin");
    evt_phase(ctx->events, "safety_snapshot");
    if (store == NULL)
        rc = err_set(err, SNAP_EUNREACH, 0, "the store is not open");
    else if (cat_load(store, snap_name, &m, err) == SNAP_OK) {
        json_object_set_new(res, "safety_snapshot", json_string(snap_name));
        rc = SNAP_OK;
    } else
        rc = safety_snapshot(ctx, store, j, name, id, true, res, err);
    cat_manifest_free(m);
    if (rc == SNAP_OK) {
        json_object_set_new(res, "safety_ms", json_real((double)(util_now_ns() - t0) / 1e6));
        json_object_del(j->doc, "safety_due");
        rc = journal_save(j, err);
    }
    if (rc != SNAP_OK) {
        snap_err first = *err;
        err_set(err, SNAP_ERECOVER, first.sys_errno, "the cut-over completed, but the safety snapshot %s of the "
                "state it displaced was not taken: %s", snap_name, first.msg);
        err_hint(err, "the displaced state is kept beside each target; run `revert --recover` to take the safety "
                      "snapshot");
        rc = SNAP_ERECOVER;
    }
    free(snap_name);
    return rc;
}

static snap_rc revert(snap_ctx *ctx, stg *store, const rst_request *req, const drv_set *extra,
                      json_t **result, snap_err *err)
{
    uint64_t started = util_now_ns(), bytes = 0;
    rst_safety safety = RST_SAFETY_NONE;
    cat_manifest *m = NULL;
    journal *j = xcalloc(1, sizeof *j);
    json_t *res = json_object(), *plans = json_array();
    bool leased = false, journaled = false, trusted = false, keep_journal = false;
    const char *revert_id, *check = NULL;
    snap_rc rc;

    j->fd = -1;
    j->extra = *extra;
    *result = res;
    json_object_set_new(res, "targets", plans);
    evt_set_snapshot(ctx->events, req->name);
    evt_phase(ctx->events, "plan");
    rc = each_journal(ctx, note_abandoned, NULL, err);
    if (rc == SNAP_OK)
        rc = cat_load(store, req->name, &m, err);
    if (rc == SNAP_OK)
        rc = authenticate(ctx, m, &trusted, res, err);
    if (rc == SNAP_OK)
        rc = open_journal(ctx, req, store, j, err);
    if (rc == SNAP_OK) /* whose data key seals the journal's copy in an encrypted store */
        json_object_set_new(j->doc, "snapshot_id", json_string(cat_manifest_id(m)));
    if (rc == SNAP_OK)
        rc = build_targets(ctx, store, req, m, trusted, j, err);
    if (rc == SNAP_OK)
        rc = rst_check_cmd(ctx, &check, err);
    if (rc == SNAP_OK && check != NULL)
        rc = check_switchable(j, err);
    if (rc != SNAP_OK)
        goto out;
    describe(res, req, m, j, store);
    if (ctx->log_fields != NULL) /* JSON log lines carry the revert's id from here on */
        json_object_set(ctx->log_fields, "revert_id", json_object_get(j->doc, "revert_id"));
    revert_id = json_string_value(json_object_get(j->doc, "revert_id"));
    if (!req->dry_run)
        evt_set_revert_id(ctx->events, revert_id);
    rc = plan_all(ctx, store, req, j, plans, err);
    if (rc != SNAP_OK)
        goto out;
    if (!req->no_safety_snapshot && req->to == NULL)
        safety = safety_deferrable(j) ? RST_SAFETY_DEFERRED : RST_SAFETY_FIRST;
    for (size_t i = 0; i < j->n; i++)
        bytes += cat_component_bytes(j->targets[i]->comp);
    rst_estimate_plan(ctx, store, res, bytes, safety);
    if (req->dry_run)
        goto out;
    rc = lock_and_confirm(ctx, req, j, res, err);
    if (rc == SNAP_OK)
        rc = cat_lease_take(store, req->name, revert_id, err);
    if (rc != SNAP_OK)
        goto out;
    leased = true;
    /* 2. Safety snapshot, so that this revert can be reverted: of the live state now, or
     * (swap mode) of the displaced state after the cut-over, which the journal notes. */
    if (safety != RST_SAFETY_NONE) {
        json_object_set_new(res, "safety_deferred", json_boolean(safety == RST_SAFETY_DEFERRED));
        if (safety == RST_SAFETY_DEFERRED) {
            json_object_set_new(j->doc, "safety_due", json_true());
        } else {
            uint64_t t0 = util_now_ns();
            evt_phase(ctx->events, "safety_snapshot");
            rc = safety_snapshot(ctx, store, j, req->name, revert_id, false, res, err);
            json_object_set_new(res, "safety_ms", json_real((double)(util_now_ns() - t0) / 1e6));
        }
    }
    if (rc == SNAP_OK) {
        rc = create_journal_file(j, err);
        journaled = true; /* removed again on failure: nothing was staged yet */
    }
    if (rc != SNAP_OK)
        goto out;
    rc = stage_all(ctx, j, res, &keep_journal, err);
    if (rc == SNAP_OK) {
        rc = cutover_phase(j, res, check != NULL, err);
        if (rc == SNAP_OK)
            json_object_set_new(res, "cutover_at_ms", json_real((double)(util_now_ns() - started) / 1e6));
        if (rc == SNAP_OK && check != NULL)
            rc = check_phase(ctx, j, res, err);
        keep_journal = rc == SNAP_ERECOVER;
        if (rc == SNAP_ECHECK || (rc == SNAP_EINTR && check != NULL))
            record_revert(ctx, store, j, res);
        if (rc != SNAP_ERECOVER)
            rst_hook_after_cutover(ctx, res, rc);
    }
    if (rc == SNAP_OK && json_is_true(json_object_get(j->doc, "safety_due"))) {
        rc = deferred_safety(ctx, store, j, res, err);
        keep_journal = rc != SNAP_OK;
    }
    if (rc != SNAP_OK) {
        journaled = !keep_journal;
        goto out;
    }
    util_failpoint("finish-begin");
    finish_all(ctx, store, req, j, res, extra);
    json_object_set_new(res, "total_ms", json_real((double)(util_now_ns() - started) / 1e6));
    rst_estimate_record(ctx, store, res, bytes, safety);
out:
    if (journaled)
        journal_remove(j);
    if (leased)
        cat_lease_drop(store, req->name, json_string_value(json_object_get(j->doc, "revert_id")));
    journal_free(j);
    cat_manifest_free(m);
    return rc;
}

snap_rc rst_revert(snap_ctx *ctx, stg *store, const rst_request *req, json_t **result,
                   snap_err *err)
{
    const drv_set none = {NULL, 0};

    return revert(ctx, store, req, &none, result, err);
}

snap_rc rst_revert_int(snap_ctx *ctx, stg *store, const rst_request *req, const rst_driver *const *extra,
                       size_t nextra, json_t **result, snap_err *err)
{
    const drv_set set = {extra, nextra};

    return revert(ctx, store, req, &set, result, err);
}

/* ---- recovery --------------------------------------------------------------------- */

/* The targets a journal names, from its document j->doc. */
static snap_rc journal_targets(journal *j, snap_ctx *ctx, stg *store, snap_err *err)
{
    json_t *tj;
    size_t i;

    json_array_foreach(json_object_get(j->doc, "targets"), i, tj) {
        const char *type = json_string_value(json_object_get(tj, "type"));
        const char *name = json_string_value(json_object_get(tj, "component"));
        const rst_driver *drv;
        rst_target *t;
        if (type == NULL || name == NULL) {
            err_set(err, SNAP_EVERIFY, 0, "journal %s is damaged: target %zu lacks its %s", j->path,
                    i + 1, type == NULL ? "type" : "component name");
            err_hint(err, "nothing was done; move the journal aside and check its targets by hand");
            return SNAP_EVERIFY;
        }
        drv = driver_in(&j->extra, type);
        if (drv == NULL)
            return err_set(err, SNAP_EFAIL, 0, "journal %s names a target type this build does not know", j->path);
        t = target_new(j, ctx, store, drv, name);
        json_decref(t->state);
        t->state = json_incref(json_object_get(tj, "state"));
        t->switched = json_is_true(json_object_get(tj, "switched"));
        const char *to = json_string_value(json_object_get(tj, "to"));
        t->to = to ? xstrdup(to) : NULL;
    }
    return SNAP_OK;
}

snap_rc rst_journal_parse_int(const char *buf, size_t len, snap_err *err)
{
    char why[256];
    json_error_t jerr;
    journal *j = xcalloc(1, sizeof *j);
    snap_rc rc;

    j->fd = -1;
    j->path = xstrdup("(buffer)");
    j->doc = json_loadb(buf, len, 0, &jerr);
    if (j->doc == NULL)
        rc = err_set(err, SNAP_EVERIFY, 0, "journal %s is unreadable: %s", j->path, jerr.text);
    else if (!journal_valid(j->doc, NULL, why, sizeof why))
        rc = err_set(err, SNAP_EVERIFY, 0, "journal %s is damaged: %s", j->path, why);
    else
        rc = journal_targets(j, NULL, NULL, err);
    journal_free(j);
    return rc;
}

typedef struct recovery {
    snap_ctx *ctx;
    stg *store;
    drv_set extra;
    json_t *report;
    size_t damaged;
    snap_err first_damaged; /* reported once every other journal was handled */
    rst_coord *co;          /* the store journals; NULL without a store */
    char *host;
    size_t pending;         /* left for another runner or host, or refused */
    snap_err first_pending;
} recovery;

/* Locks every target in its own server before recovery touches it: a revert still running
 * elsewhere holds them. */
static snap_rc lock_for_recovery(journal *j, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++)
        if (j->targets[i]->drv->lock != NULL)
            rc = j->targets[i]->drv->lock(j->targets[i], err);
    return rc;
}

/*
 * Whether another runner finished the revert of j: while this one waited for the locks
 * (an adopted journal that left the store), or, for a journal of this runner's own, while
 * this runner was gone (an authenticated record says who recovered it). Then the local
 * journal is removed and the report says so.
 */
static bool finished_elsewhere(recovery *r, journal *j, bool adopted, snap_rc *rc, snap_err *err)
{
    const json_t *doc = j->doc;
    const char *id = json_string_value(json_object_get(doc, "revert_id"));
    bool found = true, elsewhere = false;
    char *by = NULL;

    if (r->co == NULL || !(adopted || json_is_true(json_object_get(doc, "store_journal"))))
        return false;
    if (adopted)
        *rc = coord_exists(r->co, id, &found, err);
    else
        *rc = coord_recovered_elsewhere(r->co, id, &elsewhere, &by, err);
    if (*rc != SNAP_OK || (found && !elsewhere))
        return false;
    log_info(r->ctx, "revert %s of %s: finished by another runner%s%s", id,
             json_string_value(json_object_get(doc, "snapshot")), by ? ", " : "", by ? by : "");
    free(by);
    json_array_append_new(r->report, json_pack("{s:O, s:O, s:s, s:b}", "revert_id", json_object_get(doc, "revert_id"),
                                               "snapshot", json_object_get(doc, "snapshot"), "outcome",
                                               "finished-elsewhere", "from_store", adopted));
    j->co = NULL; /* the store's copy is gone already, or another runner's to keep */
    journal_remove(j);
    return true;
}

/* A completed cut-over whose deferred safety snapshot is still due: take it now, from the
 * displaced state (the drivers read the scope, schemas say, from the snapshot reverted to). */
static snap_rc recover_safety(snap_ctx *ctx, stg *store, journal *j, json_t *res, snap_err *err)
{
    cat_manifest *m = NULL;
    snap_rc rc = SNAP_OK;

    if (!json_is_true(json_object_get(j->doc, "safety_due")))
        return SNAP_OK;
    if (store != NULL && cat_load(store, json_string_value(json_object_get(j->doc, "snapshot")), &m, err) == SNAP_OK)
        for (size_t i = 0; i < j->n; i++) {
            j->targets[i]->m = m;
            j->targets[i]->comp = cat_manifest_find(m, j->targets[i]->name);
            if (j->targets[i]->comp == NULL)
                j->targets[i]->m = NULL;
        }
    for (size_t i = 0; i < j->n && rc == SNAP_OK; i++)
        if (j->targets[i]->comp == NULL)
            rc = err_set(err, SNAP_EUNREACH, 0, "snapshot %s (component %s) cannot be read",
                         json_string_value(json_object_get(j->doc, "snapshot")), j->targets[i]->name);
    if (rc == SNAP_OK)
        rc = deferred_safety(ctx, store, j, res, err);
    else
        rc = deferred_safety(ctx, NULL, j, res, err); /* says what is due, and keeps the journal */
    for (size_t i = 0; i < j->n; i++) {
        j->targets[i]->m = NULL;
        j->targets[i]->comp = NULL;
    }
    cat_manifest_free(m);
    return rc;
}

static snap_rc recover_one(recovery *r, const char *path, int fd, bool adopted, snap_err *err)
{
    snap_ctx *ctx = r->ctx;
    stg *store = r->store;
    const drv_set *extra = &r->extra;
    json_t *report = r->report;
    json_t *safety = json_object();
    json_t *doc;
    journal *j;
    const char *phase;
    const char *outcome;
    snap_rc rc = journal_read(path, fd, extra, &doc, err);
    size_t i;

    if (rc != SNAP_OK) {
        json_decref(safety);
        return rc;
    }
    j = xcalloc(1, sizeof *j);
    j->fd = fd;
    j->doc = doc;
    j->path = xstrdup(path);
    j->extra = *extra;
    j->host = xstrdup(r->host);
    j->co = r->co;
    phase = json_string_value(json_object_get(doc, "phase"));
    rc = journal_targets(j, ctx, store, err);
    if (rc == SNAP_OK)
        rc = lock_for_recovery(j, err);
    if (rc == SNAP_OK && finished_elsewhere(r, j, adopted, &rc, err))
        goto out;
    if (rc != SNAP_OK)
        goto out;
    if (phase != NULL && (strcmp(phase, "check") == 0 || strcmp(phase, "switchback") == 0)) {
        /* A checked cut-over whose check did not pass: switch every target back. */
        rc = switch_back(j, err);
        if (rc != SNAP_OK)
            goto out;
        outcome = "switched-back";
    } else if (phase != NULL && (strcmp(phase, "cutover") == 0 || strcmp(phase, "finish") == 0)) {
        /* Everything was staged and verified: complete the cut-over. */
        json_t *dummy = json_object();
        rc = SNAP_OK;
        for (i = 0; i < j->n && rc == SNAP_OK; i++) {
            rc = j->targets[i]->drv->cutover(j->targets[i], err);
            if (rc == SNAP_OK) {
                j->targets[i]->switched = true;
                rc = journal_save(j, err);
            }
        }
        json_decref(dummy);
        if (rc != SNAP_OK) {
            snap_err first = *err;
            for (size_t k = j->n; k-- > 0;) {
                if (j->targets[k]->drv->rollback(j->targets[k], err) != SNAP_OK) {
                    err_prefix(err, "cannot complete (%s) nor roll back revert %s", first.msg, path);
                    rc = SNAP_ERECOVER;
                    goto out;
                }
            }
            outcome = "rolled-back";
            rc = SNAP_OK;
            if (!discard_all(j))
                goto keep;
        } else {
            rc = recover_safety(ctx, store, j, safety, err);
            if (rc != SNAP_OK)
                goto out; /* the displaced state and the journal stay */
            for (i = 0; i < j->n; i++) {
                snap_err e;
                if (j->targets[i]->drv->finish(j->targets[i], false, &e) != SNAP_OK)
                    log_warn(ctx, "%s: %s", j->targets[i]->name, e.msg);
            }
            if (keep_undo(j, err) != SNAP_OK)
                log_warn(ctx, "could not record the displaced state: %s", err->msg);
            outcome = "completed";
        }
    } else {
        /* Interrupted before the cut-over: nothing live changed; remove the staging. */
        outcome = "rolled-back";
        if (!discard_all(j))
            goto keep;
    }
    json_array_append_new(report, json_pack("{s:O, s:O, s:s, s:O?, s:b, s:O*}", "revert_id",
                                            json_object_get(doc, "revert_id"), "snapshot",
                                            json_object_get(doc, "snapshot"), "outcome", outcome, "host",
                                            json_object_get(doc, "host"), "from_store", adopted, "safety_snapshot",
                                            json_object_get(safety, "safety_snapshot")));
    if (adopted && r->co != NULL) {
        snap_err e;
        if (coord_record_recovery(r->co, json_string_value(json_object_get(doc, "revert_id")),
                                  json_string_value(json_object_get(doc, "snapshot_id")),
                                  json_array_get(report, json_array_size(report) - 1), &e) != SNAP_OK)
            log_warn(ctx, "could not record the recovery in the store: %s", e.msg);
    }
    log_info(ctx, "revert %s of %s: %s", json_string_value(json_object_get(doc, "revert_id")),
             json_string_value(json_object_get(doc, "snapshot")), outcome);
    journal_remove(j);
    goto out;
keep:
    rc = err_set(err, SNAP_EUNREACH, 0, "revert %s: staging could not be removed; its journal stays",
                 json_string_value(json_object_get(doc, "revert_id")));
    err_hint(err, "make the target reachable and run `revert --recover` again; nothing live was changed");
out:
    j->fd = -1; /* the caller closes it */
    journal_free(j);
    json_decref(safety);
    return rc;
}

static snap_rc recover_abandoned(const char *path, int fd, bool abandoned, void *arg, snap_err *err)
{
    recovery *r = arg;
    snap_rc rc;

    if (!abandoned) {
        log_info(r->ctx, "revert journal %s belongs to a revert that is still running", path);
        return SNAP_OK;
    }
    rc = recover_one(r, path, fd, false, err);
    if (rc == SNAP_EVERIFY) {
        /* Set aside: say so, and go on with the journals that can be read. */
        json_array_append_new(r->report, json_pack("{s:s, s:s, s:s}", "journal", path, "outcome", "damaged",
                                                   "message", err->msg));
        if (r->damaged++ == 0)
            r->first_damaged = *err;
        else
            log_error(r->ctx, err);
        return SNAP_OK;
    }
    return rc;
}

/* A store journal that is not recovered here: in the report, and the first one is the
 * error once every other journal was handled. */
static snap_rc leave_pending(recovery *r, const coord_journal *cj, const char *outcome, const snap_err *why)
{
    json_t *id = json_object_get(cj->doc, "revert_id");

    json_array_append_new(r->report, json_pack("{s:s, s:O?, s:O?, s:s, s:s, s:b}", "journal", cj->key, "revert_id",
                                               json_is_string(id) ? id : NULL, "host",
                                               json_is_string(json_object_get(cj->doc, "host"))
                                                   ? json_object_get(cj->doc, "host") : NULL,
                                               "outcome", outcome, "message", why->msg, "from_store", 1));
    if (r->pending++ == 0)
        r->first_pending = *why;
    else
        log_error(r->ctx, why);
    return SNAP_OK;
}

/* Whether a target of the journal lives on one host only (files, images: paths). */
static bool host_bound(const json_t *doc)
{
    const json_t *tj;
    size_t i;

    json_array_foreach(json_object_get(doc, "targets"), i, tj) {
        const char *type = json_string_value(json_object_get(tj, "type"));
        if (type != NULL && (strcmp(type, "files") == 0 || strcmp(type, "images") == 0))
            return true;
    }
    return false;
}

/* Copies an authenticated store journal into this runner's journal directory, locked, and
 * recovers it from there, as if this runner had started it. */
static snap_rc adopt(recovery *r, const coord_journal *cj, const char *id, snap_err *err)
{
    char *dir, *path, *lock;
    int fd = -1, lfd = -1;
    json_t *doc = json_deep_copy(cj->doc);
    snap_rc rc = state_subdir(r->ctx->cfg, "journal", &dir, err);

    if (rc != SNAP_OK) {
        json_decref(doc);
        return rc;
    }
    path = xasprintf("%s/%s.json", dir, id);
    lock = lock_path_of(path);
    json_object_del(doc, "auth");
    json_object_del(doc, "lease");
    lfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0)
        rc = err_sys(err, SNAP_ECONFLICT, "cannot lock journal %s", lock);
    if (rc == SNAP_OK)
        rc = write_json_file(path, doc, err);
    if (rc == SNAP_OK && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = err_sys(err, SNAP_EFAIL, "cannot read journal %s", path);
    if (rc == SNAP_OK) {
        log_info(r->ctx, "revert %s of %s, started on %s, left its journal in the store %lld s ago: recovering it",
                 id, json_string_value(json_object_get(doc, "snapshot")),
                 json_string_value(json_object_get(doc, "host")), (long long)cj->age);
        rc = recover_one(r, path, fd, true, err);
    }
    if (fd >= 0)
        close(fd);
    if (lfd >= 0)
        close(lfd);
    json_decref(doc);
    free(lock);
    free(path);
    free(dir);
    return rc;
}

static snap_rc recover_stored(const coord_journal *cj, void *arg, snap_err *err)
{
    recovery *r = arg;
    char why[300] = "", *dir = NULL, *local = NULL, *aside;
    const char *id, *host;
    snap_err e;
    struct stat st;
    bool mine;
    snap_rc rc;

    if (cj->doc == NULL || cj->auth != AUTH_OK) {
        err_set(&e, SNAP_EVERIFY, 0, "store journal %s is not authenticated (%s): refused; nothing was changed",
                cj->key, cj->doc == NULL ? "not a JSON object" : auth_status_text(cj->auth));
        err_hint(&e, "only a runner holding the same [store] auth_key_file recovers it; if no runner wrote it, "
                     "delete it from the store");
        return leave_pending(r, cj, "refused", &e);
    }
    if (!journal_valid(cj->doc, &r->extra, why, sizeof why)) {
        err_set(&e, SNAP_EVERIFY, 0, "store journal %s is damaged: %s", cj->key, why);
        return leave_pending(r, cj, "damaged", &e);
    }
    id = json_string_value(json_object_get(cj->doc, "revert_id"));
    host = json_string_value(json_object_get(cj->doc, "host"));
    rc = state_subdir(r->ctx->cfg, "journal", &dir, err);
    if (rc != SNAP_OK)
        return rc;
    local = xasprintf("%s/%s.json", dir, id);
    aside = xasprintf("%s/%s.lock", dir, id);
    free(dir);
    /* This runner's own: the local pass saw its journal, or set it aside as damaged (its lock
     * file stays): the store's copy is left to whoever looks at that journal, and is not
     * taken here for a revert that is still running. */
    mine = stat(local, &st) == 0 || stat(aside, &st) == 0;
    free(local);
    free(aside);
    if (mine)
        return SNAP_OK;
    if (!cj->stale) {
        err_set(&e, SNAP_ECONFLICT, 0, "revert %s of %s is locked by %s: its lease was renewed %lld s ago, so it "
                "is still running", id, json_string_value(json_object_get(cj->doc, "snapshot")), host ? host : "?",
                (long long)cj->age);
        err_hint(&e, "wait for it to finish; if that runner is gone, `revert --recover` takes the revert over once "
                     "its lease (%lld s) has run out twice", (long long)cj->lease);
        err_kind(&e, "locked");
        return leave_pending(r, cj, "running", &e);
    }
    if (host_bound(cj->doc) && (host == NULL || strcmp(host, r->host) != 0)) {
        err_set(&e, SNAP_ERECOVER, 0, "revert %s of %s has files or images targets on host %s, not on this host "
                "(%s): nothing was changed", id, json_string_value(json_object_get(cj->doc, "snapshot")),
                host ? host : "(unknown)", r->host);
        err_hint(&e, "run `revert --recover` on %s, which owns those paths", host ? host : "the host that started it");
        return leave_pending(r, cj, "other-host", &e);
    }
    rc = adopt(r, cj, id, err);
    if (rc == SNAP_ECONFLICT || rc == SNAP_EVERIFY || rc == SNAP_EUNREACH)
        return leave_pending(r, cj, rc == SNAP_ECONFLICT ? "locked" : rc == SNAP_EVERIFY ? "damaged" : "pending", err);
    return rc;
}

bool rst_journaled(snap_ctx *ctx, const char *id)
{
    char *dir = NULL, *path;
    snap_err e;
    bool yes;

    if (state_subdir(ctx->cfg, "journal", &dir, &e) != SNAP_OK)
        return true; /* unknown: as if it did */
    path = xasprintf("%s/%s.json", dir, id);
    yes = access(path, F_OK) == 0;
    free(path);
    free(dir);
    return yes;
}

json_t *rst_orphan_verdict(snap_ctx *ctx, const rst_orphan_kind *k, const char *live, const char *name,
                           const char *marker, json_t *report, bool *staging)
{
    json_t *m = marker != NULL ? json_loads(marker, 0, NULL) : NULL, *e = NULL;
    const char *id = json_string_value(json_object_get(m, "revert_id"));
    const char *snap = json_string_value(json_object_get(m, "snapshot"));
    const char *mlive = json_string_value(json_object_get(m, "live"));
    char *stn = NULL, *dpn = NULL;

    *staging = false;
    if (id == NULL || snap == NULL || mlive == NULL || strcmp(mlive, live) != 0) {
        if (k->warn_foreign)
            log_warn(ctx, "%s %s carries no marker of a revert of %s: left alone", k->word, name, live);
        goto out;
    }
    if (!*id || *id == '.' ||
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(id)) {
        log_warn(ctx, "%s %s carries a marker that names no revert id: left alone", k->word, name);
        goto out;
    }
    if (rst_journaled(ctx, id)) {
        log_warn(ctx, "%s %s: the journal of revert %s names it; its recovery owns it", k->word, name, id);
        goto out;
    }
    k->names(live, id, snap, &stn, &dpn);
    if (strcmp(name, stn) != 0 && strcmp(name, dpn) != 0) {
        log_warn(ctx, "%s %s carries the marker of revert %s of %s under another name: left alone", k->word, name,
                 id, live);
        goto out;
    }
    e = json_pack("{s:s, s:s, s:s, s:s}", "database", live, "revert_id", id, "snapshot", snap, "outcome", "kept");
    if (json_is_integer(json_object_get(m, "created")))
        json_object_set(e, "created", json_object_get(m, "created"));
    json_array_append_new(report, e);
    if (strcmp(name, dpn) == 0) {
        json_object_set_new(e, "displaced", json_string(name));
        log_info(ctx, "revert %s of %s %s kept the displaced %s %s: `revert --drop-kept` owns it", id, k->word, live,
                 k->word, name);
    } else {
        *staging = true;
    }
out:
    json_decref(m);
    free(stn);
    free(dpn);
    return e;
}

snap_rc rst_displaced_as_live(rst_target *t, cfg *c, const char *section, const char *key, snp_redirect **rd,
                              size_t *nrd, snap_err *err)
{
    snap_rc rc = t->drv->safety_source(t, c, section, err);

    if (rc != SNAP_OK)
        return rc;
    *rd = xrealloc(*rd, (*nrd + 1) * sizeof **rd);
    (*rd)[(*nrd)++] = (snp_redirect){t->name, json_string_value(json_object_get(t->state, "live")),
                                     json_string_value(json_object_get(t->state, key))};
    return SNAP_OK;
}

/* What reverts left beside the live target of every configured source, by its driver. */
static snap_rc each_orphan(snap_ctx *ctx, json_t *report, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; rc == SNAP_OK && i < cfg_source_count(ctx->cfg); i++) {
        char *section = xasprintf("source %s", cfg_source_name(ctx->cfg, i));
        const char *type = cfg_get(ctx->cfg, section, "type");
        const rst_driver *drv = type != NULL ? rst_driver_find(type) : NULL;

        if (drv != NULL && drv->orphans != NULL)
            rc = drv->orphans(ctx, section, report, err);
        if (rc == SNAP_EUNREACH) {
            /* a server that cannot be reached leaves nothing to recover here now: a revert of
             * it would stop at its own staging, and the next --recover looks again */
            log_warn(ctx, "cannot look for what earlier reverts left beside [%s]: %s", section, err->msg);
            rc = SNAP_OK;
        }
        free(section);
    }
    return rc;
}

static snap_rc recover(snap_ctx *ctx, stg *store, const drv_set *extra, json_t **result, snap_err *err)
{
    recovery r = {ctx, store, *extra, json_array(), 0, {0}, NULL, state_host(ctx->cfg), 0, {0}};
    rst_opts o;
    size_t norphans = 0;
    snap_rc rc = SNAP_OK;

    *result = json_pack("{s:o}", "recovered", r.report);
    if (rst_opts_parse(ctx->cfg, &o, err) != SNAP_OK)
        (void)rst_opts_parse(NULL, &o, NULL);
    if (store != NULL)
        rc = coord_new(ctx, store, r.host, o.lease, &r.co, err);
    if (rc == SNAP_OK)
        rc = each_journal(ctx, recover_abandoned, &r, err);
    if (rc == SNAP_OK && r.co != NULL)
        rc = coord_each(r.co, recover_stored, &r, err);
    coord_free(r.co);
    free(r.host);
    /* Then what no journal names any longer: only when every journal was dealt with. */
    if (rc == SNAP_OK && r.pending == 0 && r.damaged == 0) {
        json_t *orphans = json_array();
        rc = each_orphan(ctx, orphans, err);
        norphans = json_array_size(orphans);
        if (norphans > 0) /* the document is as before when there is none */
            json_object_set(*result, "orphans", orphans);
        json_decref(orphans);
    }
    if (rc == SNAP_OK && r.pending > 0) {
        *err = r.first_pending;
        if (r.pending > 1)
            err_prefix(err, "%zu store journals were left; the first", r.pending);
        return err->code;
    }
    if (rc == SNAP_OK && r.damaged > 0) {
        *err = r.first_damaged;
        if (r.damaged > 1)
            err_prefix(err, "%zu journals were damaged and set aside; the first", r.damaged);
        return SNAP_EVERIFY;
    }
    if (rc == SNAP_OK && json_array_size(r.report) == 0 && norphans == 0)
        log_info(ctx, "nothing to recover");
    return rc;
}

snap_rc rst_recover(snap_ctx *ctx, stg *store, json_t **result, snap_err *err)
{
    const drv_set none = {NULL, 0};

    return recover(ctx, store, &none, result, err);
}

snap_rc rst_recover_int(snap_ctx *ctx, stg *store, const rst_driver *const *extra, size_t nextra,
                        json_t **result, snap_err *err)
{
    const drv_set set = {extra, nextra};

    return recover(ctx, store, &set, result, err);
}

/* ---- kept state ------------------------------------------------------------------- */

typedef struct kept_walk {
    snap_ctx *ctx;
    stg *store;
    bool drop;
    int64_t older_than;
    char *host;
    json_t *list;
    size_t failed;
} kept_walk;

/* What each target of a record displaced: a database, a schema, directories. */
static json_t *kept_targets(const json_t *doc)
{
    json_t *out = json_array(), *tj, *r;
    size_t i, k;

    json_array_foreach(json_object_get(doc, "targets"), i, tj) {
        json_t *st = json_object_get(tj, "state"), *names = json_array();
        const char *one = json_string_value(json_object_get(st, "displaced"));
        if (one == NULL)
            one = json_string_value(json_object_get(st, "old"));
        if (one != NULL)
            json_array_append_new(names, json_string(one));
        json_array_foreach(json_object_get(st, "roots"), k, r)
            if (json_is_string(json_object_get(r, "displaced")))
                json_array_append(names, json_object_get(r, "displaced"));
        json_array_append_new(out, json_pack("{s:O?, s:O?, s:o}", "component", json_object_get(tj, "component"),
                                             "type", json_object_get(tj, "type"), "displaced", names));
    }
    return out;
}

/* The bytes the targets of a record keep, as their drivers measured them when it was
 * written (kept_bytes: databases); null when no target has a size (files, older records). */
static json_t *kept_size(const json_t *doc)
{
    json_t *tj, *b;
    json_int_t sum = 0;
    bool any = false;
    size_t i;

    json_array_foreach(json_object_get(doc, "targets"), i, tj) {
        b = json_object_get(json_object_get(tj, "state"), "kept_bytes");
        if (json_is_integer(b) && json_integer_value(b) >= 0) {
            if (__builtin_add_overflow(sum, json_integer_value(b), &sum))
                return json_null(); /* no size a record of ours could hold */
            any = true;
        }
    }
    return any ? json_integer(sum) : json_null();
}

static snap_rc kept_one(const coord_journal *cj, void *arg, snap_err *err)
{
    kept_walk *w = arg;
    const drv_set none = {NULL, 0};
    char why[300];
    const char *id, *host;
    json_t *e;

    (void)err;
    if (cj->doc == NULL || !journal_valid(cj->doc, &none, why, sizeof why)) {
        log_warn(w->ctx, "record %s of displaced state is damaged; left alone", cj->key);
        return SNAP_OK;
    }
    id = json_string_value(json_object_get(cj->doc, "revert_id"));
    host = json_string_value(json_object_get(cj->doc, "host"));
    e = json_pack("{s:s, s:O, s:s?, s:I, s:b, s:o, s:o}", "revert_id", id, "snapshot",
                  json_object_get(cj->doc, "snapshot"), "host", host, "age", (json_int_t)cj->age, "authenticated",
                  cj->auth == AUTH_OK, "targets", kept_targets(cj->doc), "size", kept_size(cj->doc));
    json_array_append_new(w->list, e);
    if (!w->drop || cj->age < w->older_than)
        return SNAP_OK;
    if (cj->auth != AUTH_OK) {
        log_warn(w->ctx, "revert %s: its record of displaced state is not authenticated (%s); nothing dropped", id,
                 auth_status_text(cj->auth));
        w->failed++;
    } else if (host_bound(cj->doc) && (host == NULL || strcmp(host, w->host) != 0)) {
        log_warn(w->ctx, "revert %s kept files or images state on host %s: drop it there", id, host ? host : "?");
        w->failed++;
    } else if (drop_displaced(w->ctx, w->store, cj->doc, &none)) {
        snap_err de;
        char *dir = NULL;
        if (state_subdir(w->ctx->cfg, "undo", &dir, &de) == SNAP_OK) {
            char *path = xasprintf("%s/%s.json", dir, id);
            unlink(path);
            free(path);
        }
        free(dir);
        if (stg_delete(w->store, cj->key, &de) != SNAP_OK)
            log_warn(w->ctx, "could not remove %s: %s", cj->key, de.msg);
        json_object_set_new(e, "dropped", json_true());
        log_info(w->ctx, "dropped the displaced state of revert %s", id);
        return SNAP_OK;
    } else {
        w->failed++;
    }
    json_object_set_new(e, "dropped", json_false());
    return SNAP_OK;
}

snap_rc rst_kept(snap_ctx *ctx, stg *store, bool drop, int64_t older_than, json_t **result, snap_err *err)
{
    kept_walk w = {ctx, store, drop, older_than, state_host(ctx->cfg), json_array(), 0};
    rst_opts o;
    rst_coord *co = NULL;
    snap_rc rc = rst_opts_parse(ctx->cfg, &o, err);

    *result = json_pack("{s:o}", "kept", w.list);
    if (rc == SNAP_OK && w.older_than < 0)
        w.older_than = o.keep_old;
    if (rc == SNAP_OK)
        rc = coord_new(ctx, store, w.host, o.lease, &co, err);
    if (rc == SNAP_OK)
        rc = coord_each_kept(co, kept_one, &w, err);
    coord_free(co);
    free(w.host);
    if (rc == SNAP_OK && w.failed > 0) {
        err_set(err, SNAP_EFAIL, 0, "%zu record%s of displaced state could not be dropped", w.failed,
                w.failed == 1 ? "" : "s");
        err_hint(err, "the warnings above say why; what could not be dropped is left as it was");
        rc = SNAP_EFAIL;
    }
    return rc;
}
