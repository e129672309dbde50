/* revert: put every captured target back to a named point, atomically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "../common/hook.h"
#include "../restore/check.h"
#include "../restore/restore.h"
#include "opts.h"

static const opt_def options[] = {
    {"store", 0, "URL", "SNAP_STORE", "store: a directory, file://PATH or s3://BUCKET/PREFIX", NULL},
    {"config", 'c', "FILE", "SNAP_CONFIG", "configuration file (else /etc/snap/snap.conf; never ./snap.conf)", NULL},
    {"json", 0, NULL, NULL, "print the plan and the result as JSON on stdout", NULL},
    {"quiet", 'q', NULL, NULL, "print only errors", NULL},
    {"verbose", 'v', NULL, NULL, "print more about each step; twice (-vv): debug messages too", NULL},
    {"log-format", 0, "FORMAT", NULL, "text (default) or json: one JSON object per log line on stderr", NULL},
    {"syslog", 0, NULL, NULL, "send every log line to syslog as well", NULL},
    {"no-progress", 0, NULL, NULL, "never draw progress, even on a terminal", "revert"},
    {"jobs", 'j', "N", "SNAP_JOBS", "parallel workers (default: CPUs, at most 4)", "revert"},
    {"only", 'o', "COMPONENT", NULL, "revert only this component (repeatable; `snap show` lists them)", "revert"},
    {"to", 0, "TARGET", NULL, "restore into a new path or database beside the original, never touching it", "revert"},
    {"dry-run", 'n', NULL, NULL, "print the plan and change nothing", "revert"},
    {"yes", 'y', NULL, NULL, "do not ask for confirmation (required without a terminal)", "revert"},
    {"no-safety-snapshot", 0, NULL, NULL, "do not capture the current state first", "revert"},
    {"drop-old", 0, NULL, NULL, "remove the displaced state after success instead of keeping it", "revert"},
    {"check", 0, "CMD", NULL,
     "run CMD after the cut-over; when it fails, switch every target back and exit 9 ([revert] check)", "revert"},
    {"mode", 0, "MODE", NULL, "PostgreSQL: swap (default) or transaction", "revert"},
    {"pin", 0, NULL, NULL, "images: write every image reference as name@sha256:...", "revert"},
    {"images-lock", 0, "FILE", NULL, "images: write the references and digests as JSON to FILE", "revert"},
    {"require-images", 0, NULL, NULL, "images: fail when a recorded digest is gone from its registry", "revert"},
    {"allow-external-symlinks", 0, NULL, NULL, "files: restore symlinks that point outside the target", "revert"},
    {"allow-special-files", 0, NULL, NULL,
     "files: restore device nodes, FIFOs and set-id files from a snapshot that is not authenticated", "revert"},
    {"events", 0, "FILE", NULL, "write progress events as JSON lines to FILE (- for stderr)", "revert"},
    {"lock-wait", 0, "DURATION", NULL, "wait up to DURATION for a target another revert holds (default: fail at once)", NULL},
    {"recover", 0, NULL, NULL, "finish or roll back a revert that was interrupted, here or on another runner", "recover"},
    {"kept", 0, NULL, NULL, "list the displaced state that finished reverts kept, as the store records it", "kept"},
    {"drop-kept", 0, NULL, NULL, "remove kept displaced state older than --older-than (default: [revert] keep_old)", "kept"},
    {"older-than", 0, "DURATION", NULL, "with --drop-kept: what is older than DURATION (90m, 12h, 7d)", "kept"},
    {"help", 'h', NULL, NULL, "show this help", NULL},
    {"version", 'V', NULL, NULL, "show the version", NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

/* The two modes, as `revert --help` and `revert [--recover] --help` show them. */
static const char usage_revert[] =
    "revert NAME [--only COMPONENT]... [--to TARGET] [--dry-run] [--yes] [--no-safety-snapshot]\n"
    "                   [--drop-old] [--check CMD] [--lock-wait DURATION] [--events FILE] [--json] [--store URL]\n"
    "                   [--config FILE]";
static const char usage_recover[] = "revert --recover [--lock-wait DURATION] [--store URL]";
static const char usage_kept[] = "revert (--kept | --drop-kept [--older-than DURATION]) [--json] [--store URL]";
static const char exit_codes[] =
    "Exit codes: 0 reverted, 2 usage or the prompt declined, 3 not found, 4 conflict,\n"
    "5 verification failed (nothing changed), 6 unreachable or denied, 7 cut-over failed and rolled back,\n"
    "8 recovery needed, 9 reverted but the check failed and every target was switched back,\n"
    "10 a before_cutover hook failed (nothing changed), 130 interrupted.\n";

/* The usage of one mode ("revert", "recover") with its options alone, or (NULL) of both. */
static void print_usage(FILE *f, const char *mode)
{
    if (mode == NULL)
        fprintf(f, "usage: %s\n       %s\n       %s\n", usage_revert, usage_recover, usage_kept);
    else
        fprintf(f, "usage: %s\n", strcmp(mode, "recover") == 0 ? usage_recover
                                   : strcmp(mode, "kept") == 0  ? usage_kept
                                                                : usage_revert);
    fputs(exit_codes, f);
    opts_help(f, options, mode);
}

static void print_list(FILE *f, const json_t *plan, const char *kind, char mark)
{
    json_t *a = json_object_get(plan, kind), *v;
    size_t i;

    json_array_foreach(a, i, v) util_fprintf_esc(f, "        %c %s\n", mark, json_string_value(v));
}

/* The plan, for a person: on stderr so stdout stays for results. */
static void print_plan(const json_t *res, FILE *f)
{
    json_t *t;
    size_t i;

    util_fprintf_esc(f, "revert to snapshot %s (%s, %s):\n", json_string_value(json_object_get(res, "snapshot")),
            json_string_value(json_object_get(res, "snapshot_id")),
            json_is_true(json_object_get(res, "authenticated")) ? "authenticated" : "not authenticated");
    json_array_foreach(json_object_get(res, "targets"), i, t) {
        json_t *changes = json_object_get(t, "changes"), *p;
        size_t k;
        util_fprintf_esc(f, "  %s (%s): %s\n", json_string_value(json_object_get(t, "component")),
                json_string_value(json_object_get(t, "type")),
                json_object_get(t, "action") ? json_string_value(json_object_get(t, "action")) : "revert");
        json_array_foreach(json_object_get(t, "paths"), k, p)
            util_fprintf_esc(f, "      %s%s\n", json_string_value(json_object_get(p, "path")),
                    json_is_true(json_object_get(p, "existed")) ? "" : " (does not exist now)");
        if (json_is_string(json_object_get(t, "target")))
            util_fprintf_esc(f, "      target %s\n", json_string_value(json_object_get(t, "target")));
        if (json_is_string(json_object_get(t, "refused")))
            util_fprintf_esc(f, "      asks for %s: refused (%s)\n", json_string_value(json_object_get(t, "requested")),
                    json_string_value(json_object_get(t, "refused")));
        else if (json_is_string(json_object_get(t, "named_by")))
            util_fprintf_esc(f, "      target named by the %s\n", json_string_value(json_object_get(t, "named_by")));
        if (changes != NULL) {
            util_fprintf_esc(f, "      %lld to replace, %lld to add, %lld to remove\n",
                    (long long)json_integer_value(json_object_get(changes, "replace")),
                    (long long)json_integer_value(json_object_get(changes, "add")),
                    (long long)json_integer_value(json_object_get(changes, "remove")));
            print_list(f, t, "replace", '~');
            print_list(f, t, "add", '+');
            print_list(f, t, "remove", '-');
        }
        json_t *notes = json_object_get(t, "notes"), *n;
        json_array_foreach(notes, k, n) util_fprintf_esc(f, "      note: %s\n", json_string_value(n));
    }
    json_t *est = json_object_get(res, "estimate");
    if (est != NULL)
        util_fprintf_esc(f, "  estimate: back in service in about %.0f s, all done in about %.0f s (%s)\n",
                         json_number_value(json_object_get(est, "cutover_at_s")),
                         json_number_value(json_object_get(est, "total_s")),
                         json_string_value(json_object_get(est, "basis")));
}

static bool any_refused(const json_t *res)
{
    json_t *t;
    size_t i;

    json_array_foreach(json_object_get(res, "targets"), i, t)
        if (json_is_string(json_object_get(t, "refused")))
            return true;
    return false;
}

/* arg: a bool set when the answer is no, so that the exit code is CLI_DECLINED. */
static bool confirm(const json_t *plan, void *arg)
{
    bool *declined = arg;

    print_plan(plan, stderr);
    *declined = !cli_ask("revert these targets now?");
    return !*declined;
}


/* The history records of a revert (and of its check): what, where, how it ended. */
static void record_revert(const cli *c, stg *store, const char *name, const json_t *res, const snap_err *err,
                          uint64_t t0)
{
    json_t *rec = json_pack("{s:f}", "seconds", (double)(util_now_ms() - t0) / 1000.0), *comps = json_array(), *t;
    const json_t *check = json_object_get(res, "check");
    const char *status = json_string_value(json_object_get(res, "status"));
    cat_manifest *m = NULL;
    snap_err e;
    size_t i;

    static const char *const copied[] = {"revert_id", "cutover_ms", "safety_snapshot"};
    json_object_set_new(rec, "name", json_string(name));
    json_object_set(rec, "id", json_object_get(res, "snapshot_id"));
    for (i = 0; i < sizeof copied / sizeof copied[0]; i++)
        json_object_set(rec, copied[i], json_object_get(res, copied[i]));
    json_array_foreach(json_object_get(res, "targets"), i, t)
        json_array_append(comps, json_object_get(t, "component"));
    json_object_set_new(rec, "components", comps);
    json_object_set_new(rec, "outcome", json_string(err == NULL ? "reverted" : status ? status : "failed"));
    if (err != NULL)
        json_object_set_new(rec, "error", json_pack("{s:i, s:s, s:s?}", "exit_code", (int)err->code, "code",
                                                    err_json_code(err), "message",
                                                    util_utf8_valid(err->msg) ? err->msg : NULL));
    if (json_is_string(json_object_get(res, "snapshot")) &&
        cat_load(store, json_string_value(json_object_get(res, "snapshot")), &m, &e) == SNAP_OK)
        json_object_set(rec, "labels", cat_manifest_labels(m));
    if (check != NULL) {
        json_t *cr = json_pack("{s:O?, s:O?, s:O?, s:s, s:O?, s:O?}", "name", json_object_get(res, "snapshot"),
                               "id", json_object_get(res, "snapshot_id"), "revert_id",
                               json_object_get(res, "revert_id"), "outcome",
                               json_is_true(json_object_get(check, "passed")) ? "passed" : "failed", "tries",
                               json_object_get(check, "tries"), "ms", json_object_get(check, "ms"));
        if (m != NULL)
            json_object_set(cr, "labels", cat_manifest_labels(m));
        cli_event(c, store, "check", cr);
    }
    cat_manifest_free(m);
    cli_event(c, store, "revert", rec);
}

/* The events of a recovery: one per journal handled, and its failure. */
static void record_recover(const cli *c, stg *store, const json_t *res, const snap_err *err)
{
    json_t *r;
    size_t i;

    json_array_foreach(json_object_get(res, "recovered"), i, r)
        cli_event(c, store, "recover", json_pack("{s:O?, s:O?, s:O?, s:O?}", "name", json_object_get(r, "snapshot"),
                                                 "revert_id", json_object_get(r, "revert_id"), "outcome",
                                                 json_object_get(r, "outcome"), "message",
                                                 json_object_get(r, "message")));
    if (err != NULL)
        cli_event(c, store, "recover", json_pack("{s:s, s:{s:i, s:s, s:s?}}", "outcome", "failed", "error",
                                                 "exit_code", (int)err->code, "code", err_json_code(err), "message",
                                                 util_utf8_valid(err->msg) ? err->msg : NULL));
}

static int run_recover(cli *c, stg *store)
{
    json_t *res = NULL;
    snap_err err;
    snap_rc rc = rst_recover(&c->ctx, store, &res, &err);
    int code = 0;

    if (res != NULL)
        json_object_set_new(res, "format", json_integer(JSON_FORMAT_RECOVER));
    if (rc != SNAP_OK && c->ctx.json && res != NULL) {
        /* what was recovered, and the error: one document */
        cli_add_error(res, &err);
        log_error(&c->ctx, &err);
        cli_print_json(res);
        code = (int)rc;
    } else if (rc != SNAP_OK) {
        code = cli_fail(c, &err);
    } else if (c->ctx.json) {
        cli_print_json(res);
    }
    fflush(stdout);
    if (rc != SNAP_OK) {
        json_t *facts = hook_facts_new("recover");
        hook_on_failure(&c->ctx, facts, &err);
        json_decref(facts);
    }
    record_recover(c, store, res, rc == SNAP_OK ? NULL : &err);
    json_decref(res);
    return code;
}

/* --kept lists the displaced state the store records; --drop-kept removes what is old enough. */
static int run_kept(cli *c, stg *store)
{
    json_t *res = NULL, *e;
    snap_err err;
    int64_t older = -1;
    const char *v = opts_get(&c->o, "older-than");
    size_t i;
    snap_rc rc;

    if (v != NULL && !cfg_parse_duration(v, &older)) {
        err_set(&err, SNAP_EUSAGE, 0, "--older-than %s is not a duration", v);
        err_hint(&err, "write it as 90m, 12h, 7d or 2w");
        return cli_fail(c, &err);
    }
    rc = rst_kept(&c->ctx, store, opts_has(&c->o, "drop-kept"), older, &res, &err);
    if (res != NULL)
        json_object_set_new(res, "format", json_integer(JSON_FORMAT_KEPT));
    if (c->ctx.json && res != NULL) {
        if (rc != SNAP_OK)
            cli_add_error(res, &err);
        cli_print_json(res);
    } else if (res != NULL && c->ctx.verbosity >= 0) {
        json_array_foreach(json_object_get(res, "kept"), i, e) {
            json_t *t;
            size_t k;
            util_fprintf_esc(stdout, "%s  %s  %s  %lld s%s%s\n", json_string_value(json_object_get(e, "revert_id")),
                             json_string_value(json_object_get(e, "snapshot")),
                             json_string_value(json_object_get(e, "host")) ? json_string_value(json_object_get(e, "host")) : "?",
                             (long long)json_integer_value(json_object_get(e, "age")),
                             json_is_true(json_object_get(e, "authenticated")) ? "" : "  (not authenticated)",
                             json_is_true(json_object_get(e, "dropped")) ? "  dropped" : "");
            json_array_foreach(json_object_get(e, "targets"), k, t) {
                json_t *d;
                size_t m;
                json_array_foreach(json_object_get(t, "displaced"), m, d)
                    util_fprintf_esc(stdout, "    %s (%s): %s\n", json_string_value(json_object_get(t, "component")),
                                     json_string_value(json_object_get(t, "type")), json_string_value(d));
            }
        }
    }
    json_decref(res);
    if (rc != SNAP_OK) {
        log_error(&c->ctx, &err);
        return (int)rc;
    }
    return 0;
}

/* One snapshot name, or none with --recover. */
static snap_rc check_words(const cli *c, bool recover, snap_err *err)
{
    if (recover && c->o.nwords != 0)
        err_set(err, SNAP_EUSAGE, 0, "--recover takes no snapshot name");
    else if (!recover && c->o.nwords == 0)
        err_set(err, SNAP_EUSAGE, 0, "revert needs a snapshot name");
    else if (!recover && c->o.nwords > 1)
        err_set(err, SNAP_EUSAGE, 0, "unexpected argument '%s'", c->o.words[1]);
    else
        return SNAP_OK;
    err_hint(err, "see revert --help");
    return SNAP_EUSAGE;
}

/* Engine options reach the drivers through [revert]. */
static void pass_engine_options(cli *c)
{
    static const struct {
        const char *flag, *key, *origin;
    } valued[] = {{"mode", "mode", "flag --mode"},
                  {"images-lock", "images_lock", "flag --images-lock"},
                  {"check", "check", "flag --check"},
                  {"lock-wait", "lock_wait", "flag --lock-wait"}},
      flags[] = {{"pin", "pin", "flag --pin"},
                 {"require-images", "require_images", "flag --require-images"},
                 {"allow-external-symlinks", "allow_external_symlinks", "flag --allow-external-symlinks"},
                 {"allow-special-files", "allow_special_files", "flag --allow-special-files"}};
    const char *v;

    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if ((v = opts_get(&c->o, valued[i].flag)) != NULL)
            cfg_set_from(c->cfg, "revert", valued[i].key, v, valued[i].origin);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (opts_has(&c->o, flags[i].flag))
            cfg_set_from(c->cfg, "revert", flags[i].key, "true", flags[i].origin);
}

/* --to is recorded in the journal and the plan as a JSON string, and a relative one is
 * a path under the current directory (or a database name): it must be UTF-8, and the
 * current directory must exist, so that it never becomes "/". */
static snap_rc check_to(const char *v, snap_err *err)
{
    char *abs;

    if (v == NULL)
        return SNAP_OK;
    if (!util_utf8_valid(v)) {
        err_set(err, SNAP_EUSAGE, 0, "--to %s is not valid UTF-8", v);
        err_hint(err, "restore beside under a name in UTF-8, then rename it");
        return SNAP_EUSAGE;
    }
    if (v[0] == '/')
        return SNAP_OK;
    if (util_abspath_err(v, &abs, err) != SNAP_OK) {
        err_hint(err, "give --to as an absolute path, or run from a directory that exists");
        return SNAP_EUSAGE;
    }
    free(abs);
    return SNAP_OK;
}

/* What a finished revert says on a terminal. */
static void print_done(const json_t *res, const char *name)
{
    json_t *safety = json_object_get(res, "safety_snapshot");
    size_t n = json_array_size(json_object_get(res, "targets"));

    util_fprintf_esc(stdout, "reverted %zu component%s to %s; cut-over took %.1f ms, %.2f s after the start "
                     "(all done in %.2f s)\n", n, n == 1 ? "" : "s", name,
                     json_real_value(json_object_get(res, "cutover_ms")),
                     json_real_value(json_object_get(res, "cutover_at_ms")) / 1000.0,
                     json_real_value(json_object_get(res, "total_ms")) / 1000.0);
    if (safety != NULL)
        util_fprintf_esc(stdout, "the state before is snapshot %s: `revert %s` undoes this revert\n",
                         json_string_value(safety), json_string_value(safety));
}

static int run_revert(cli *c, stg *store)
{
    snap_err err;
    size_t nonly = 0;
    const char **only = opts_all(&c->o, "only", &nonly);
    json_t *res = NULL;
    bool declined = false;
    int code = 0;
    rst_request req = {
        .name = c->o.words[0],
        .only = only,
        .nonly = nonly,
        .to = opts_get(&c->o, "to"),
        .dry_run = opts_has(&c->o, "dry-run"),
        .no_safety_snapshot = opts_has(&c->o, "no-safety-snapshot"),
        .drop_old = opts_has(&c->o, "drop-old"),
        .confirm = isatty(STDIN_FILENO) ? confirm : NULL,
        .confirm_arg = &declined,
    };
    uint64_t t0 = util_now_ms();
    snap_rc rc = rst_revert(&c->ctx, store, &req, &res, &err);

    if (rc != SNAP_OK && declined) /* "revert cancelled; nothing was changed" */
        rc = err.code = CLI_DECLINED;
    free(only);
    if (rc == SNAP_OK && req.dry_run && !c->ctx.json)
        print_plan(res, stdout);
    /* A refused target: the plan shows every target and what each asked for. */
    if (rc == SNAP_EVERIFY && !c->ctx.json && c->ctx.verbosity >= 0 && any_refused(res))
        print_plan(res, stderr);
    if (c->ctx.json && res != NULL) {
        json_object_set_new(res, "format", json_integer(JSON_FORMAT_REVERT));
        if (rc != SNAP_OK)
            cli_add_error(res, &err);
        cli_print_json(res);
    }
    if (rc != SNAP_OK) {
        log_error(&c->ctx, &err);
        code = (int)rc;
        if (!declined && !req.dry_run) {
            json_t *facts = res != NULL ? rst_facts(res, NULL) : hook_facts_new("revert");
            json_object_set_new(facts, "name", json_string(req.name));
            hook_on_failure(&c->ctx, facts, &err);
            json_decref(facts);
        }
    } else if (!req.dry_run && !c->ctx.json && c->ctx.verbosity >= 0) {
        print_done(res, req.name);
    }
    fflush(stdout);
    if (!declined && !req.dry_run && res != NULL)
        record_revert(c, store, req.name, res, rc == SNAP_OK ? NULL : &err, t0);
    json_decref(res);
    return cli_events_end(c, code, &err);
}

int main(int argc, char **argv)
{
    cli c;
    snap_err err;
    stg *store = NULL;
    char *url = NULL;
    int code;
    bool recover, kept;
    snap_rc rc = cli_init(&c, "revert", options, argc, argv, &err);

    if (rc != SNAP_OK)
        goto fail;
    if (opts_has(&c.o, "version")) {
        util_fprintf_esc(stdout, "revert %s\n", SNAP_VERSION);
        cli_free(&c);
        return 0;
    }
    if (opts_has(&c.o, "help")) {
        print_usage(stdout, opts_has(&c.o, "recover")                                  ? "recover"
                            : opts_has(&c.o, "kept") || opts_has(&c.o, "drop-kept") ? "kept"
                            : c.o.nwords > 0                                        ? "revert"
                                                                                    : NULL);
        cli_free(&c);
        return 0;
    }
    recover = opts_has(&c.o, "recover");
    kept = opts_has(&c.o, "kept") || opts_has(&c.o, "drop-kept");
    rc = check_words(&c, recover || kept, &err);
    if (rc != SNAP_OK)
        goto fail;
    pass_engine_options(&c);
    if (!recover) {
        rc = cli_events_open(&c, "revert", &err);
        evt_set_snapshot(c.ctx.events, c.o.words[0]);
        if (rc != SNAP_OK)
            goto fail;
    }
    rc = cli_store_url(&c, &url, &err);
    if (rc == SNAP_OK)
        rc = stg_open(url, false, &c.ctx, &store, &err);
    free(url);
    /* Recovery works from the local journal: an encrypted store whose key is missing
     * (a key command down) must not keep a half-done revert from finishing. */
    if (rc != SNAP_OK && recover && err.kind != NULL &&
        (strcmp(err.kind, "key_unavailable") == 0 || strcmp(err.kind, "denied") == 0)) {
        log_warn(&c.ctx, "recovering without the store: %s", err.msg);
        rc = SNAP_ENOTFOUND;
    }
    if (rc != SNAP_OK && !(recover && rc == SNAP_ENOTFOUND))
        goto fail;
    if (kept) {
        code = run_kept(&c, store);
    } else if (recover) {
        code = run_recover(&c, store);
    } else {
        rc = check_to(opts_get(&c.o, "to"), &err);
        if (rc != SNAP_OK)
            goto fail;
        code = run_revert(&c, store);
    }
    stg_free(store);
    cli_free(&c);
    return code;
fail:
    code = cli_fail(&c, &err);
    stg_free(store);
    cli_free(&c);
    return code;
}
