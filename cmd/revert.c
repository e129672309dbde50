/* revert: put every captured target back to a named point, atomically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "../restore/restore.h"
#include "opts.h"

static const opt_def options[] = {
    {"store", 0, "URL", "SNAP_STORE", "store: a directory, file://PATH or s3://BUCKET/PREFIX", NULL},
    {"config", 'c', "FILE", "SNAP_CONFIG", "configuration file (else /etc/snap/snap.conf; never ./snap.conf)", NULL},
    {"json", 0, NULL, NULL, "print the plan and the result as JSON on stdout", NULL},
    {"quiet", 'q', NULL, NULL, "print only errors", NULL},
    {"verbose", 'v', NULL, NULL, "print more about each step", NULL},
    {"no-progress", 0, NULL, NULL, "never draw progress, even on a terminal", NULL},
    {"jobs", 'j', "N", "SNAP_JOBS", "parallel workers (default: CPUs, at most 4)", NULL},
    {"only", 'o', "COMPONENT", NULL, "revert only this component (repeatable; `snap show` lists them)", NULL},
    {"to", 0, "TARGET", NULL, "restore into a new path or database beside the original, never touching it", NULL},
    {"dry-run", 'n', NULL, NULL, "print the plan and change nothing", NULL},
    {"yes", 'y', NULL, NULL, "do not ask for confirmation (required without a terminal)", NULL},
    {"no-safety-snapshot", 0, NULL, NULL, "do not capture the current state first", NULL},
    {"drop-old", 0, NULL, NULL, "remove the displaced state after success instead of keeping it", NULL},
    {"mode", 0, "MODE", NULL, "PostgreSQL: swap (default) or transaction", NULL},
    {"pin", 0, NULL, NULL, "images: write every image reference as name@sha256:...", NULL},
    {"images-lock", 0, "FILE", NULL, "images: write the references and digests as JSON to FILE", NULL},
    {"require-images", 0, NULL, NULL, "images: fail when a recorded digest is gone from its registry", NULL},
    {"allow-external-symlinks", 0, NULL, NULL, "files: restore symlinks that point outside the target", NULL},
    {"allow-special-files", 0, NULL, NULL,
     "files: restore device nodes, FIFOs and set-id files from a snapshot that is not authenticated", NULL},
    {"recover", 0, NULL, NULL, "finish or roll back a revert that was interrupted", NULL},
    {"help", 'h', NULL, NULL, "show this help", NULL},
    {"version", 'V', NULL, NULL, "show the version", NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

static const char usage[] =
    "usage: revert NAME [--only COMPONENT]... [--to TARGET] [--dry-run] [--yes] [--no-safety-snapshot]\n"
    "                   [--drop-old] [--json] [--store URL] [--config FILE]\n"
    "       revert --recover [--store URL]\n"
    "Exit codes: 0 reverted, 2 usage, 3 not found, 4 conflict, 5 verification failed (nothing changed),\n"
    "6 unreachable or denied, 7 cut-over failed and rolled back, 8 recovery needed, 130 interrupted.";

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

static bool confirm(const json_t *plan, void *arg)
{
    (void)arg;
    print_plan(plan, stderr);
    return cli_ask("revert these targets now?");
}

static int run_recover(cli *c, stg *store)
{
    json_t *res = NULL;
    snap_err err;
    snap_rc rc = rst_recover(&c->ctx, store, &res, &err);

    if (rc != SNAP_OK && c->ctx.json && res != NULL) {
        /* what was recovered, and the error: one document */
        json_t *e = cli_error_json(&err);
        json_object_set(res, "error", json_object_get(e, "error"));
        json_decref(e);
        log_error(&c->ctx, &err);
        cli_print_json(res);
        json_decref(res);
        return (int)rc;
    }
    if (rc != SNAP_OK) {
        json_decref(res);
        return cli_fail(c, &err);
    }
    if (c->ctx.json)
        cli_print_json(res);
    json_decref(res);
    return 0;
}

int main(int argc, char **argv)
{
    cli c;
    snap_err err;
    stg *store = NULL;
    const char **only = NULL;
    size_t nonly = 0;
    json_t *res = NULL;
    char *url;
    const char *v;
    int code;
    bool recover;
    snap_rc rc = cli_init(&c, "revert", options, argc, argv, &err);

    if (rc != SNAP_OK) {
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    if (opts_has(&c.o, "version")) {
        util_fprintf_esc(stdout, "revert %s\n", SNAP_VERSION);
        cli_free(&c);
        return 0;
    }
    if (opts_has(&c.o, "help")) {
        opts_help(stdout, usage, options);
        cli_free(&c);
        return 0;
    }
    recover = opts_has(&c.o, "recover");
    if ((recover && c.o.nwords != 0) || (!recover && c.o.nwords != 1)) {
        if (recover)
            err_set(&err, SNAP_EUSAGE, 0, "--recover takes no snapshot name");
        else if (c.o.nwords == 0)
            err_set(&err, SNAP_EUSAGE, 0, "revert needs a snapshot name");
        else
            err_set(&err, SNAP_EUSAGE, 0, "unexpected argument '%s'", c.o.words[1]);
        err_hint(&err, "see revert --help");
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    /* Engine options reach the drivers through [revert]. */
    if ((v = opts_get(&c.o, "mode")) != NULL)
        cfg_set_from(c.cfg, "revert", "mode", v, "flag --mode");
    if ((v = opts_get(&c.o, "images-lock")) != NULL)
        cfg_set_from(c.cfg, "revert", "images_lock", v, "flag --images-lock");
    if (opts_has(&c.o, "pin"))
        cfg_set_from(c.cfg, "revert", "pin", "true", "flag --pin");
    if (opts_has(&c.o, "require-images"))
        cfg_set_from(c.cfg, "revert", "require_images", "true", "flag --require-images");
    if (opts_has(&c.o, "allow-external-symlinks"))
        cfg_set_from(c.cfg, "revert", "allow_external_symlinks", "true", "flag --allow-external-symlinks");
    if (opts_has(&c.o, "allow-special-files"))
        cfg_set_from(c.cfg, "revert", "allow_special_files", "true", "flag --allow-special-files");

    rc = cli_store_url(&c, &url, &err);
    if (rc == SNAP_OK)
        rc = stg_open(url, false, &c.ctx, &store, &err);
    free(url);
    if (rc != SNAP_OK && !(recover && rc == SNAP_ENOTFOUND)) {
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    if (recover) {
        code = run_recover(&c, store);
        stg_free(store);
        cli_free(&c);
        return code;
    }
    if ((v = opts_get(&c.o, "to")) != NULL && !util_utf8_valid(v)) {
        /* the journal and the plan record it as a JSON string: it could not be recovered */
        err_set(&err, SNAP_EUSAGE, 0, "--to %s is not valid UTF-8", v);
        err_hint(&err, "restore beside under a name in UTF-8, then rename it");
        code = cli_fail(&c, &err);
        stg_free(store);
        cli_free(&c);
        return code;
    }
    if (v != NULL && v[0] != '/') {
        char *abs;
        /* A relative --to is a path under the current directory, or a database name; when
         * the current directory is gone it cannot be the first, and must not become "/". */
        if (util_abspath_err(v, &abs, &err) != SNAP_OK) {
            err_hint(&err, "give --to as an absolute path, or run from a directory that exists");
            code = cli_fail(&c, &err);
            stg_free(store);
            cli_free(&c);
            return code;
        }
        free(abs);
    }
    only = opts_all(&c.o, "only", &nonly);
    rst_request req = {
        .name = c.o.words[0],
        .only = only,
        .nonly = nonly,
        .to = opts_get(&c.o, "to"),
        .dry_run = opts_has(&c.o, "dry-run"),
        .no_safety_snapshot = opts_has(&c.o, "no-safety-snapshot"),
        .drop_old = opts_has(&c.o, "drop-old"),
        .confirm = isatty(STDIN_FILENO) ? confirm : NULL,
    };
    rc = rst_revert(&c.ctx, store, &req, &res, &err);
    free(only);
    if (rc == SNAP_OK && req.dry_run && !c.ctx.json)
        print_plan(res, stdout);
    /* A refused target: the plan shows every target and what each asked for. */
    if (rc == SNAP_EVERIFY && !c.ctx.json && c.ctx.verbosity >= 0 && any_refused(res))
        print_plan(res, stderr);
    if (c.ctx.json && res != NULL) {
        if (rc != SNAP_OK)
        {
            json_t *e = cli_error_json(&err);
            json_object_set(res, "error", json_object_get(e, "error"));
            json_decref(e);
        }
        cli_print_json(res);
    }
    if (rc != SNAP_OK) {
        log_error(&c.ctx, &err);
        code = (int)rc;
    } else {
        code = 0;
        if (!req.dry_run && !c.ctx.json && c.ctx.verbosity >= 0) {
            json_t *safety = json_object_get(res, "safety_snapshot");
            util_fprintf_esc(stdout, "reverted %zu component%s to %s; cut-over took %.1f ms\n",
                   json_array_size(json_object_get(res, "targets")),
                   json_array_size(json_object_get(res, "targets")) == 1 ? "" : "s", req.name,
                   json_real_value(json_object_get(res, "cutover_ms")));
            if (safety != NULL)
                util_fprintf_esc(stdout, "the state before is snapshot %s: `revert %s` undoes this revert\n", json_string_value(safety),
                       json_string_value(safety));
        }
    }
    json_decref(res);
    stg_free(store);
    cli_free(&c);
    return code;
}
