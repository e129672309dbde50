/*
 * Unit tests of the revert engine (restore/restore.c): plan, safety snapshot, staging, the
 * journaled cut-over, and recovery of the journal a killed revert leaves, with a fake
 * target type and the in-memory store.
 *
 * The fake target writes every call it gets ("stage:b") to a log file, so that a revert
 * run in a child process that "crashes" (exits at a chosen call, as a kill would stop it)
 * can be followed by rst_recover in the test itself, from the journal left behind.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/auth.h"
#include "../../../common/util.h"
#include "../../../restore/restore_int.h"
#include "../../../storage/storage_int.h"

#define CRASH_STATUS 86 /* a child that "crashed" at the chosen call exits with this */

/* What the fake target does; set by each test (the test's own state, not the product's). */
static struct {
    char log[128];      /* every call, one "op:component" a line */
    char live[128];     /* live/<component>: the directories the safety snapshot captures */
    const char *fail_at; /* "cutover:b rollback:a": those calls fail with fail_rc */
    snap_rc fail_rc;
    const char *crash_at; /* "stage:b": the process exits at that call */
    const char *signal_at; /* "stage:b": SIGINT arrives during that call */
    volatile sig_atomic_t *interrupted;
} fake;

/* Whether the space-separated list has word. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = strstr(list, word); p != NULL; p = strstr(p + 1, word))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static snap_rc fake_call(const char *op, rst_target *t, snap_err *err)
{
    char call[128];
    int fd;

    snprintf(call, sizeof call, "%s:%s", op, rst_component_name(t));
    fd = open(fake.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dprintf(fd, "%s\n", call);
        close(fd);
    }
    if (fake.crash_at != NULL && strcmp(fake.crash_at, call) == 0)
        _exit(CRASH_STATUS);
    if (fake.signal_at != NULL && strcmp(fake.signal_at, call) == 0)
        *fake.interrupted = 1;
    if (fake.fail_at != NULL && has_word(fake.fail_at, call))
        return err_set(err, fake.fail_rc, 0, "fake %s failed", call);
    return SNAP_OK;
}

static snap_rc fake_plan(rst_target *t, snap_err *err)
{
    char *key = xasprintf("fake:%s", rst_component_name(t));

    rst_set_lock_key(t, key);
    free(key);
    json_object_set_new(rst_plan(t), "target", json_string(rst_component_name(t)));
    return fake_call("plan", t, err);
}

static snap_rc fake_safety_source(rst_target *t, cfg *c, const char *section, snap_err *err)
{
    char *path = xasprintf("%s/%s", fake.live, rst_component_name(t)); /* one target, one source */

    cfg_set(c, section, "type", "files");
    cfg_add(c, section, "path", path);
    free(path);
    return fake_call("safety", t, err);
}

static snap_rc fake_stage(rst_target *t, snap_err *err)
{
    snap_rc rc = fake_call("stage", t, err);

    if (rc == SNAP_OK) /* what recovery needs: kept in the journal */
        json_object_set_new(rst_state(t), "staged", json_string(rst_component_name(t)));
    return rc;
}

/* Every call after staging checks that the state came back from the journal. */
static snap_rc fake_staged_call(const char *op, rst_target *t, snap_err *err)
{
    const char *staged = json_string_value(json_object_get(rst_state(t), "staged"));

    if (strcmp(op, "discard") != 0 && (staged == NULL || strcmp(staged, rst_component_name(t)) != 0))
        return err_set(err, SNAP_EFAIL, 0, "%s of %s without its staged state", op, rst_component_name(t));
    return fake_call(op, t, err);
}

static snap_rc fake_cutover(rst_target *t, snap_err *err) { return fake_staged_call("cutover", t, err); }
static snap_rc fake_rollback(rst_target *t, snap_err *err) { return fake_staged_call("rollback", t, err); }
static snap_rc fake_discard(rst_target *t, snap_err *err) { return fake_staged_call("discard", t, err); }

static snap_rc fake_finish(rst_target *t, bool drop_old, snap_err *err)
{
    return fake_staged_call(drop_old ? "finish-drop" : "finish", t, err);
}

static snap_rc fake_check_state(const json_t *state, snap_err *err)
{
    static const rst_field fields[] = {{"staged", JSON_STRING, false, JSON_NULL}};

    return rst_check_fields("fake state", state, fields, 1, err);
}

static const rst_driver fake_driver = {
    .type = "fake",
    .plan = fake_plan,
    .safety_source = fake_safety_source,
    .stage = fake_stage,
    .cutover = fake_cutover,
    .rollback = fake_rollback,
    .discard = fake_discard,
    .finish = fake_finish,
    .check_state = fake_check_state,
};
static const rst_driver *const extra[] = {&fake_driver};

static int write_file(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    int rc = fp != NULL && fputs(text, fp) >= 0 ? 0 : -1;

    if (fp != NULL && fclose(fp) != 0)
        rc = -1;
    free(path);
    return rc;
}

typedef struct fixture {
    char dir[64];
    char *state;
    cfg *c;
    snap_ctx ctx;
    volatile sig_atomic_t intr;
    stg *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snap_err err;

    strcpy(f->dir, "/tmp/snap-rst-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->state = xasprintf("%s/state", f->dir);
    snprintf(fake.log, sizeof fake.log, "%s/calls", f->dir);
    snprintf(fake.live, sizeof fake.live, "%s/live", f->dir);
    fake.fail_at = fake.crash_at = fake.signal_at = NULL;
    fake.interrupted = &f->intr;
    fake.fail_rc = SNAP_EFAIL;
    if (mkdir(fake.live, 0700) != 0)
        return -1;
    for (const char *c = "ab"; *c; c++) {
        char *dir = xasprintf("%s/%c", fake.live, *c);
        int bad = mkdir(dir, 0700) != 0 || write_file(dir, "f", "live bytes\n") != 0;
        free(dir);
        if (bad)
            return -1;
    }
    f->c = cfg_new();
    cfg_set(f->c, "revert", "state_dir", f->state);
    f->ctx.verbosity = -1;
    f->ctx.assume_yes = true;
    f->ctx.jobs = 1;
    f->ctx.cfg = f->c;
    f->ctx.interrupted = &f->intr;
    if (stg_open("mem://revert", true, &f->ctx, &f->s, &err) != SNAP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    stg_free(f->s);
    cfg_free(f->c);
    util_rm_rf(f->dir, NULL);
    free(f->state);
    free(f);
    return 0;
}

/* A snapshot whose components a, b ... are fake targets; signed with this host's key
 * unless unsigned_, so that its targets are trusted. */
static void make_snapshot(fixture *f, const char *name, bool unsigned_)
{
    char id[32];
    cat_manifest *m;
    auth_keyring *keys = NULL;
    snap_err err;

    cat_new_id(id);
    m = cat_manifest_new(name, id);
    cat_manifest_add_component(m, "a", "fake");
    cat_manifest_add_component(m, "b", "fake");
    cat_manifest_set_finished(m, time(NULL));
    if (!unsigned_) {
        assert_int_equal(auth_keyring_load(f->c, true, &keys, &err), SNAP_OK);
        auth_sign(keys, cat_manifest_json(m));
        auth_keyring_free(keys);
    }
    assert_int_equal(cat_commit(f->s, m, &err), SNAP_OK);
    cat_manifest_free(m);
}

/* The calls the fake target got since the last look, one line each, as "op:x op:y". */
static char *calls(void)
{
    char *text = xcalloc(1, 65536), *p;
    FILE *fp = fopen(fake.log, "r");

    if (fp != NULL) {
        size_t n = fread(text, 1, 65535, fp);
        text[n] = '\0';
        fclose(fp);
    }
    for (p = text; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : '\0';
    unlink(fake.log);
    return text;
}

#define assert_calls(want)          \
    do {                            \
        char *got_ = calls();       \
        assert_string_equal(got_, want); \
        free(got_);                 \
    } while (0)

/* Files in <state>/sub whose name ends with suffix. */
static unsigned count_state(fixture *f, const char *sub, const char *suffix)
{
    char *dir = xasprintf("%s/%s", f->state, sub);
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;

    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (de->d_name[0] != '.' && l > s && strcmp(de->d_name + l - s, suffix) == 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    free(dir);
    return n;
}

static bool count_key(const stg_entry *e, void *arg)
{
    (void)e;
    (*(unsigned *)arg)++;
    return true;
}

static unsigned count_keys(fixture *f, const char *prefix)
{
    unsigned n = 0;
    snap_err err;

    assert_int_equal(stg_list(f->s, prefix, count_key, &n, &err), SNAP_OK);
    return n;
}

static snap_rc revert(fixture *f, bool safety, json_t **res, snap_err *err)
{
    rst_request req = {.name = "s1", .no_safety_snapshot = !safety};

    return rst_revert_int(&f->ctx, f->s, &req, extra, 1, res, err);
}

static void test_revert_two_targets(void **state)
{
    fixture *f = *state;
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    assert_int_equal(revert(f, true, &res, &err), SNAP_OK);
    assert_calls("plan:a plan:b safety:a safety:b stage:a stage:b cutover:a cutover:b finish:a finish:b");
    assert_string_equal(json_string_value(json_object_get(res, "status")), "reverted");
    assert_true(json_is_true(json_object_get(res, "authenticated")));
    /* The safety snapshot holds the live files; the revert is recorded; no journal stays. */
    const char *safety = json_string_value(json_object_get(res, "safety_snapshot"));
    assert_non_null(safety);
    assert_int_equal(strncmp(safety, "pre-revert-", 11), 0);
    char *key = xasprintf("catalog/%s.json", safety);
    uint64_t size;
    assert_int_equal(stg_stat(f->s, key, &size, &err), SNAP_OK);
    free(key);
    assert_int_equal(count_keys(f, "reverts/"), 1);
    assert_int_equal(count_keys(f, "leases/"), 0);
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_state(f, "undo", ".json"), 1);
    json_decref(res);
}

static void test_unsigned_refused(void **state)
{
    fixture *f = *state;
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", true);
    assert_int_equal(revert(f, true, &res, &err), SNAP_EVERIFY);
    assert_non_null(strstr(err.msg, "is not authenticated"));
    assert_calls(""); /* refused before any driver call */
    assert_int_equal(count_keys(f, "catalog/"), 1);
    json_decref(res);
}

static void test_stage_fails(void **state)
{
    fixture *f = *state;
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    fake.fail_at = "stage:b";
    fake.fail_rc = SNAP_EVERIFY;
    assert_int_equal(revert(f, false, &res, &err), SNAP_EVERIFY);
    assert_string_equal(err.msg, "fake stage:b failed");
    /* Both discarded, in reverse order; nothing switched, nothing finished. */
    assert_calls("plan:a plan:b stage:a stage:b discard:b discard:a");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_keys(f, "reverts/"), 0);
    assert_int_equal(count_keys(f, "leases/"), 0);
    json_decref(res);
}

static void test_interrupted_in_stage(void **state)
{
    fixture *f = *state;
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    fake.signal_at = "stage:b";
    assert_int_equal(revert(f, false, &res, &err), SNAP_EINTR);
    /* The last chance to stop with nothing changed: both stagings go, nothing switches. */
    assert_calls("plan:a plan:b stage:a stage:b discard:b discard:a");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_keys(f, "leases/"), 0);
    json_decref(res);
}

static void test_cutover_fails_rolls_back(void **state)
{
    fixture *f = *state;
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    fake.fail_at = "cutover:b";
    assert_int_equal(revert(f, false, &res, &err), SNAP_EROLLEDBACK);
    assert_int_equal(err.code, 7);
    assert_non_null(strstr(err.msg, "cut-over failed and was rolled back: fake cutover:b failed"));
    assert_string_equal(err.hint, "every target is as it was before the revert");
    /* Only a was switched: it goes back, then both stagings go. */
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b rollback:a discard:b discard:a");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_keys(f, "reverts/"), 0);
    json_decref(res);
}

static void test_rollback_fails_keeps_journal(void **state)
{
    fixture *f = *state;
    json_t *res = NULL, *rec = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    /* The cut-over of b fails, and switching a back fails too: the journal stays (exit 8). */
    fake.fail_at = "cutover:b rollback:a";
    assert_int_equal(revert(f, false, &res, &err), SNAP_ERECOVER);
    json_decref(res);
    assert_non_null(strstr(err.msg, "cut-over failed (fake cutover:b failed) and switching a back failed too"));
    assert_string_equal(err.hint, "run `revert --recover`");
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b rollback:a");
    assert_int_equal(count_state(f, "journal", ".json"), 1);
    /* A new revert refuses while it is pending, before any driver call. */
    fake.fail_at = NULL;
    assert_int_equal(revert(f, false, &res, &err), SNAP_ERECOVER);
    assert_non_null(strstr(err.msg, "an interrupted revert left a journal"));
    json_decref(res);
    assert_calls("");
    /* Everything was staged: recovery completes the cut-over. */
    assert_int_equal(rst_recover_int(&f->ctx, f->s, extra, 1, &rec, &err), SNAP_OK);
    assert_calls("cutover:a cutover:b finish:a finish:b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(rec, "recovered"), 0),
                                                          "outcome")), "completed");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    json_decref(rec);
}

/* Runs the revert in a child that exits at fake.crash_at, as a kill would stop it. */
static void revert_crashing(fixture *f, const char *at)
{
    int status;
    pid_t pid;

    fake.crash_at = at;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        json_t *res = NULL;
        snap_err err;
        _exit(revert(f, false, &res, &err) == SNAP_OK ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), CRASH_STATUS);
    fake.crash_at = NULL;
}

/* Recovers; the outcome of the one journal it found. */
static char *recover(fixture *f, snap_rc want)
{
    json_t *rec = NULL;
    snap_err err;
    char *outcome;

    assert_int_equal(rst_recover_int(&f->ctx, f->s, extra, 1, &rec, &err), want);
    json_t *list = json_object_get(rec, "recovered");
    assert_int_equal(json_array_size(list), 1);
    outcome = xstrdup(json_string_value(json_object_get(json_array_get(list, 0), "outcome")));
    json_decref(rec);
    return outcome;
}

static void test_crash_in_stage(void **state)
{
    fixture *f = *state;
    char *outcome;

    make_snapshot(f, "s1", false);
    revert_crashing(f, "stage:b");
    assert_calls("plan:a plan:b stage:a stage:b");
    assert_int_equal(count_state(f, "journal", ".json"), 1);
    outcome = recover(f, SNAP_OK);
    assert_string_equal(outcome, "rolled-back");
    assert_calls("discard:b discard:a"); /* nothing was switched: nothing to undo */
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    free(outcome);
}

static void test_crash_in_cutover(void **state)
{
    fixture *f = *state;
    char *outcome;

    make_snapshot(f, "s1", false);
    revert_crashing(f, "cutover:b"); /* a switched and journaled, b not */
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b");
    outcome = recover(f, SNAP_OK);
    assert_string_equal(outcome, "completed");
    assert_calls("cutover:a cutover:b finish:a finish:b");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_state(f, "undo", ".json"), 1);
    free(outcome);
}

static void test_crash_in_cutover_recovery_fails(void **state)
{
    fixture *f = *state;
    char *outcome;

    make_snapshot(f, "s1", false);
    revert_crashing(f, "cutover:b");
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b");
    /* b cannot be switched during recovery either: both go back, in reverse order. */
    fake.fail_at = "cutover:b";
    outcome = recover(f, SNAP_OK);
    assert_string_equal(outcome, "rolled-back");
    assert_calls("cutover:a cutover:b rollback:b rollback:a discard:b discard:a");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    free(outcome);
}

static void test_crash_in_finish(void **state)
{
    fixture *f = *state;
    char *outcome;

    make_snapshot(f, "s1", false);
    revert_crashing(f, "finish:a");
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b finish:a");
    outcome = recover(f, SNAP_OK);
    assert_string_equal(outcome, "completed");
    assert_calls("cutover:a cutover:b finish:a finish:b");
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    free(outcome);
}

static void test_damaged_journal_set_aside(void **state)
{
    fixture *f = *state;
    json_t *rec = NULL, *res = NULL;
    snap_err err;
    char *dir = xasprintf("%s/journal", f->state), *text;

    make_snapshot(f, "s1", false);
    /* The driver's own check refuses a state field of the wrong type. */
    (void)mkdir(f->state, 0700); /* made already for the host key */
    assert_int_equal(mkdir(dir, 0700), 0);
    text = xstrdup("{\"format\": 1, \"phase\": \"cutover\", \"revert_id\": \"r1\", \"snapshot\": \"s1\", "
                   "\"targets\": [{\"component\": \"a\", \"type\": \"fake\", \"switched\": true, "
                   "\"state\": {\"staged\": 5}}]}");
    assert_int_equal(write_file(dir, "r1.json", text), 0);
    free(text);
    assert_int_equal(rst_recover_int(&f->ctx, f->s, extra, 1, &rec, &err), SNAP_EVERIFY);
    assert_non_null(strstr(err.msg, "is damaged: target 0 (a): fake state is damaged: \"staged\" is not a string"));
    assert_non_null(strstr(err.hint, "switched: a"));
    assert_calls(""); /* no driver was called on it */
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    assert_int_equal(count_state(f, "journal", ".json.damaged"), 1);
    json_decref(rec);
    /* Set aside, it no longer blocks a revert. */
    assert_int_equal(revert(f, false, &res, &err), SNAP_OK);
    assert_calls("plan:a plan:b stage:a stage:b cutover:a cutover:b finish:a finish:b");
    json_decref(res);
    free(dir);
}

/* The store fails one operation of the safety snapshot: no manifest, nothing staged. */
static void safety_store_fails(fixture *f, const char *op, const char *prefix, snap_rc code)
{
    json_t *res = NULL;
    snap_err err;

    make_snapshot(f, "s1", false);
    assert_int_equal(stg_mem_fail(f->s, op, prefix, 1, code, &err), SNAP_OK);
    assert_int_equal(revert(f, true, &res, &err), code);
    assert_non_null(strstr(err.msg, "safety snapshot"));
    assert_non_null(strstr(err.msg, "injected failure"));
    assert_calls("plan:a plan:b safety:a safety:b");
    assert_int_equal(count_keys(f, "catalog/"), 1); /* s1 alone */
    assert_int_equal(count_keys(f, "data/"), 0);    /* the parts were removed again */
    assert_int_equal(count_keys(f, "leases/"), 0);
    assert_int_equal(count_keys(f, "reverts/"), 0);
    assert_int_equal(count_state(f, "journal", ".json"), 0);
    json_decref(res);
}

static void test_store_fails_safety_part(void **state)
{
    safety_store_fails(*state, "commit", "data/", SNAP_EUNREACH);
}

static void test_store_fails_safety_manifest(void **state)
{
    safety_store_fails(*state, "commit", "catalog/", SNAP_EFAIL);
}

static void test_store_fails_safety_write(void **state)
{
    safety_store_fails(*state, "write", "data/", SNAP_EUNREACH);
}

/* The names a revert of live gets in test_orphan_verdict: live~s~<snapshot>, live~d~<id>. */
static void orphan_names(const char *live, const char *id, const char *snap, char **staging, char **displaced)
{
    *staging = xasprintf("%s~s~%s", live, snap);
    *displaced = xasprintf("%s~d~%s", live, id);
}

/* rst_orphan_verdict's answer on one object: "-" (left alone), "staging" or "displaced";
 * the report gets the entry, or nothing. */
static const char *verdict(fixture *f, json_t *report, const char *name, const char *marker)
{
    static const rst_orphan_kind kind = {"database", true, orphan_names};
    size_t before = json_array_size(report);
    bool staging = true;
    json_t *e = rst_orphan_verdict(&f->ctx, &kind, "live", name, marker, report, &staging);

    if (e == NULL) {
        assert_false(staging);
        assert_int_equal(json_array_size(report), before);
        return "-";
    }
    assert_int_equal(json_array_size(report), before + 1);
    assert_ptr_equal(json_array_get(report, before), e);
    assert_string_equal(json_string_value(json_object_get(e, "database")), "live");
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "kept");
    if (staging)
        assert_null(json_object_get(e, "displaced"));
    else
        assert_string_equal(json_string_value(json_object_get(e, "displaced")), name);
    return staging ? "staging" : "displaced";
}

/* A marker is trusted only for what it can name: the revert's own two names beside its live
 * object, a revert id of plain characters, and a revert no journal names. */
static void test_orphan_verdict(void **state)
{
    fixture *f = *state;
    json_t *report = json_array(), *e;
    char *dir = xasprintf("%s/journal", f->state);

    assert_string_equal(verdict(f, report, "live~s~S1", "{\"revert_id\":\"r1\",\"snapshot\":\"S1\",\"live\":\"live\","
                                                        "\"created\":7}"), "staging");
    e = json_array_get(report, 0);
    assert_string_equal(json_string_value(json_object_get(e, "revert_id")), "r1");
    assert_string_equal(json_string_value(json_object_get(e, "snapshot")), "S1");
    assert_int_equal(json_integer_value(json_object_get(e, "created")), 7);
    assert_string_equal(verdict(f, report, "live~d~r1", "{\"revert_id\":\"r1\",\"snapshot\":\"S1\",\"live\":\"live\"}"),
                        "displaced");
    assert_null(json_object_get(json_array_get(report, 1), "created"));
    /* no marker, not JSON, another live object's, a name the revert does not give */
    assert_string_equal(verdict(f, report, "live~s~S1", NULL), "-");
    assert_string_equal(verdict(f, report, "live~s~S1", "{\"revert_id\":"), "-");
    assert_string_equal(verdict(f, report, "live~s~S1", "{\"revert_id\":\"r1\",\"snapshot\":\"S1\",\"live\":\"other\"}"),
                        "-");
    assert_string_equal(verdict(f, report, "live", "{\"revert_id\":\"r1\",\"snapshot\":\"S1\",\"live\":\"live\"}"), "-");
    assert_string_equal(verdict(f, report, "live~s~S2", "{\"revert_id\":\"r1\",\"snapshot\":\"S1\",\"live\":\"live\"}"),
                        "-");
    /* revert ids that could reach outside the journal directory, or none */
    assert_string_equal(verdict(f, report, "live~d~../x", "{\"revert_id\":\"../x\",\"snapshot\":\"S\",\"live\":\"live\"}"),
                        "-");
    assert_string_equal(verdict(f, report, "live~d~.x", "{\"revert_id\":\".x\",\"snapshot\":\"S\",\"live\":\"live\"}"),
                        "-");
    assert_string_equal(verdict(f, report, "live~d~", "{\"revert_id\":\"\",\"snapshot\":\"S\",\"live\":\"live\"}"), "-");
    /* a revert a journal names belongs to its recovery */
    (void)mkdir(f->state, 0700);
    (void)mkdir(dir, 0700); /* rst_journaled made it already */
    assert_int_equal(write_file(dir, "r2.json", "{}"), 0);
    assert_string_equal(verdict(f, report, "live~s~S1", "{\"revert_id\":\"r2\",\"snapshot\":\"S1\",\"live\":\"live\"}"),
                        "-");
    assert_int_equal(json_array_size(report), 2);
    json_decref(report);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_revert_two_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsigned_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_in_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cutover_fails_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_fails_keeps_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_in_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_in_cutover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_in_cutover_recovery_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_in_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_journal_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fails_safety_part, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fails_safety_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fails_safety_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_verdict, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
