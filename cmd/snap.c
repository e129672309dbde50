/* snap: capture named points and manage the catalog. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../catalog/catalog.h"
#include "../catalog/history.h"
#include "../engines/pg_client.h"
#include "../common/hook.h"
#include "../common/util.h"
#include "../engines/my_client.h"
#include "../snapshot/snapshot.h"
#include "opts.h"

static const opt_def options[] = {
    {"store", 0, "URL", "SNAP_STORE", "store: a directory, file://PATH or s3://BUCKET/PREFIX", NULL},
    {"config", 'c', "FILE", "SNAP_CONFIG", "configuration file (else /etc/snap/snap.conf; never ./snap.conf)", NULL},
    {"json", 0, NULL, NULL, "print the result as JSON on stdout", NULL},
    {"quiet", 'q', NULL, NULL, "print only errors", NULL},
    {"verbose", 'v', NULL, NULL, "print more about each step; twice (-vv): debug messages too", NULL},
    {"log-format", 0, "FORMAT", NULL, "text (default) or json: one JSON object per log line on stderr", NULL},
    {"syslog", 0, NULL, NULL, "send every log line to syslog as well", NULL},
    {"no-progress", 0, NULL, NULL, "never draw progress, even on a terminal", "create verify"},
    {"jobs", 'j', "N", "SNAP_JOBS", "parallel workers (default: CPUs, at most 4)", "create"},
    {"files", 0, "PATH", NULL, "capture a file or directory (repeatable)", "create"},
    {"pg", 0, "DSN", NULL, "capture a PostgreSQL database (repeatable)", "create"},
    {"mysql", 0, "DSN", NULL, "capture a MySQL or MariaDB database (repeatable)", "create"},
    {"images", 0, "PATH", NULL, "capture deployment manifests and pin their images (repeatable)", "create"},
    {"pg-schema", 0, "PATTERN", NULL, "capture only these PostgreSQL schemas (repeatable)", "create"},
    {"pg-exclude-table", 0, "PATTERN", NULL, "leave out these PostgreSQL tables (repeatable)", "create"},
    {"allow-unresolved", 0, NULL, NULL, "record an image tag without digest when its registry fails", "create"},
    {"zstd-level", 0, "N", NULL, "zstd compression level, 1-19 (default 3)", "create"},
    {"part-size", 0, "SIZE", NULL, "close a part after this many bytes (default 256M)", "create"},
    {"label", 'l', "KEY=VALUE", NULL, "set a label; with list, prune and history, select by label (repeatable)",
     "create list prune history"},
    {"since", 0, "WHEN", NULL, "only events since WHEN: a duration ago (7d, 12h) or a UTC time (2026-11-30T08:00:00Z)",
     "history"},
    {"note", 0, "TEXT", NULL, "a free-form note kept in the manifest", "create"},
    {"parent", 0, "NAME", NULL, "reuse the unchanged files parts of this snapshot (else the latest of the same source)", "create"},
    {"if-absent", 0, NULL, NULL, "when NAME exists with the same sources, print it and exit 0 (a retry)", "create"},
    {"events", 0, "FILE", NULL, "write progress events as JSON lines to FILE (- for stderr)", "create"},
    {"yes", 'y', NULL, NULL, "do not ask for confirmation", "delete prune"},
    {"dry-run", 'n', NULL, NULL, "say what would be removed, remove nothing", "prune gc"},
    {"keep-last", 0, "N", NULL, "keep the N newest snapshots", "prune"},
    {"keep-within", 0, "DURATION", NULL, "keep snapshots younger than DURATION (90m, 12h, 7d, 2w)", "prune"},
    {"min-age", 0, "DURATION", NULL, "leave data younger than DURATION alone (default 6h)", "gc"},
    {"part", 0, "N", NULL, "only part N of the component (counted from 0)", "cat"},
    {"new-key-file", 0, "FILE", NULL, "the key to add, or to rotate to (32 random bytes, or a passphrase; mode 0600)", "key"},
    {"help", 'h', NULL, NULL, "show this help", NULL},
    {"version", 'V', NULL, NULL, "show the version", NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

/* The commands: the words that follow each, and its synopsis for usage and help. */
typedef struct command {
    const char *name;
    size_t nargs;
    const char *synopsis;
} command;

static const command commands[] = {
    {"create", 1,
     "NAME [--files PATH]... [--pg DSN]... [--mysql DSN]... [--images PATH]...\n"
     "                        [--label KEY=VALUE]... [--note TEXT] [--parent NAME] [--if-absent] [--events FILE] [--json]"},
    {"list", 0, "[--label KEY=VALUE]... [--json]"},
    {"show", 1, "NAME [--json]"},
    {"verify", 1, "NAME [--json]"},
    {"delete", 1, "NAME [--yes]"},
    {"prune", 0, "(--keep-last N | --keep-within DURATION) [--label KEY=VALUE]... [--dry-run] [--yes]"},
    {"gc", 0, "[--dry-run] [--min-age DURATION]"},
    {"cat", 2, "NAME COMPONENT [--part N] | tar -x"},
    {"key", 1, "(list | add --new-key-file FILE | remove KEY_ID | rotate --new-key-file FILE) [--json]"},
    {"history", 0, "[--since WHEN] [--label KEY=VALUE]... [--json]"},
    {"config", 1, "(check | show [--json])"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static snap_rc unknown_command(const char *word, snap_err *err)
{
    const char *names[NCOMMANDS + 1], *near;

    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    names[NCOMMANDS] = "help";
    near = opts_nearest(word, strlen(word), names, NCOMMANDS + 1);
    err_set(err, SNAP_EUSAGE, 0, "unknown command '%s'", word);
    if (near != NULL)
        err_hint(err, "did you mean '%s'?", near);
    else
        err_hint(err, "see snap --help");
    return SNAP_EUSAGE;
}

/* The usage of one command with its options alone, or (k NULL) of every command and option. */
static void print_usage(FILE *f, const command *k)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (k == NULL || k == &commands[i])
            fprintf(f, "%s snap %-*s %s\n", k != NULL || i == 0 ? "usage:" : "      ", k != NULL ? 0 : 6,
                   commands[i].name, commands[i].synopsis);
    fputs("Every command takes --store URL and --config FILE. Exit codes: see snap(1).\n", f);
    opts_help(f, options, k != NULL ? k->name : NULL);
}

/* snap --help, snap help [COMMAND], snap COMMAND --help; bare `snap` is a usage error. */
static int cmd_help(cli *c)
{
    const char *topic = c->o.nwords > 0 ? c->o.words[0] : NULL;
    const command *k = NULL;
    snap_err err;

    if (topic == NULL && !opts_has(&c->o, "help")) {
        print_usage(stderr, NULL);
        return SNAP_EUSAGE;
    }
    if (topic != NULL && strcmp(topic, "help") == 0)
        topic = c->o.nwords > 1 ? c->o.words[1] : NULL;
    if (topic != NULL && (k = find_command(topic)) == NULL) {
        unknown_command(topic, &err);
        return cli_fail(c, &err);
    }
    print_usage(stdout, k);
    return 0;
}

/* An ad-hoc source is named after its path or database; a taken name gets -2, -3 ... */
static void add_source(cfg *c, const char *type, const char *key, const char *value, const char *base)
{
    char name[CAT_NAME_MAX + 1];
    size_t n = 0;

    for (const char *p = base; *p && n < 100; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  (n > 0 && (ch == '.' || ch == '_' || ch == '-'));
        name[n] = ok ? ch : (n > 0 ? '_' : 'x');
        n++;
    }
    if (n == 0)
        name[n++] = 'x';
    name[n] = '\0';
    for (int i = 2;; i++) {
        char *section = xasprintf("source %s", name);
        bool taken = cfg_get(c, section, "type") != NULL;
        if (!taken) {
            cfg_set(c, section, "type", type);
            cfg_add(c, section, key, value);
            free(section);
            return;
        }
        free(section);
        snprintf(name + n, sizeof name - n, "-%d", i);
    }
}

typedef struct adhoc {
    cfg *c;
    const char *type, *key;
    snap_rc rc; /* the first path that could not be resolved */
    snap_err err;
} adhoc;

static void add_path_source(const char *value, void *arg)
{
    adhoc *a = arg;
    char *abs, *base;

    if (a->rc != SNAP_OK)
        return;
    a->rc = util_abspath_err(value, &abs, &a->err);
    if (a->rc != SNAP_OK)
        return;
    base = util_basename(abs);
    add_source(a->c, a->type, a->key, abs, strcmp(abs, "/") ? base : "root");
    free(base);
    free(abs);
}

/*
 * Databases are named after the database of the DSN as the engine's own parser reads it,
 * never by cutting the text (a '/' in a password would put a piece of it in the name).
 */
static void add_dsn_source(const char *value, void *arg)
{
    adhoc *a = arg;
    char *db = NULL;

    if (strcmp(a->type, "mysql") == 0) {
        my_dsn *d = NULL;
        snap_err ignored;
        if (my_dsn_parse(value, &d, &ignored) == SNAP_OK)
            db = xstrdup(my_dsn_db(d));
        my_dsn_free(d);
    } else {
        db = pg_dsn_dbname(value);
    }
    add_source(a->c, a->type, "dsn", value, db && db[0] ? db : a->type);
    free(db);
}

typedef struct each_source {
    cfg *c;
    const char *type, *key, *value;
} each_source;

/* Scope flags of an engine apply to every source of that engine. */
static void apply_to_type(const char *value, void *arg)
{
    each_source *e = arg;

    for (size_t i = 0; i < cfg_source_count(e->c); i++) {
        char *section = xasprintf("source %s", cfg_source_name(e->c, i));
        const char *type = cfg_get(e->c, section, "type");
        if (type != NULL && strcmp(type, e->type) == 0)
            cfg_add(e->c, section, e->key, value ? value : e->value);
        free(section);
    }
}

/* A relative path of a source, while the current directory is gone: the first one found. */
typedef struct rel_check {
    snap_rc rc;
    snap_err *err;
    bool words; /* "paths": several, separated by white space */
} rel_check;

static bool check_rel(const char *value, void *arg)
{
    rel_check *r = arg;
    char *copy = xstrdup(value), *save = NULL, *abs;

    for (char *w = r->words ? strtok_r(copy, " \t", &save) : copy; w != NULL && r->rc == SNAP_OK;
         w = r->words ? strtok_r(NULL, " \t", &save) : NULL) {
        r->rc = util_abspath_err(w, &abs, r->err);
        free(abs);
    }
    free(copy);
    return r->rc == SNAP_OK;
}

/* Relative paths in the configuration cannot be resolved without a current directory:
 * refused before any capture, so that no source loses a root or reads one under "/". */
static snap_rc check_relative_paths(const cfg *c, snap_err *err)
{
    static const char *const keys[] = {"path", "paths", "manifests"};
    rel_check r = {SNAP_OK, err, false};

    for (size_t i = 0; i < cfg_source_count(c) && r.rc == SNAP_OK; i++) {
        char *section = xasprintf("source %s", cfg_source_name(c, i));
        for (size_t k = 0; k < sizeof keys / sizeof keys[0] && r.rc == SNAP_OK; k++) {
            r.words = strcmp(keys[k], "paths") == 0;
            cfg_each(c, section, keys[k], check_rel, &r);
        }
        if (r.rc != SNAP_OK)
            err_prefix(err, "[%s]", section);
        free(section);
    }
    return r.rc;
}

static void print_summary(const cat_manifest *m, double secs)
{
    char size[32], fresh[32], reused[64] = "";
    uint64_t own = cat_manifest_own_bytes(m);

    util_human_bytes(cat_manifest_bytes(m), size);
    util_human_bytes(own, fresh);
    if (own < cat_manifest_bytes(m))
        snprintf(reused, sizeof reused, " (%s new, the rest reused)", fresh);
    util_fprintf_esc(stdout, "snapshot %s (%s): %zu component%s, %s stored%s, in %.1f s\n", cat_manifest_name(m),
                     cat_manifest_id(m), cat_manifest_ncomponents(m), cat_manifest_ncomponents(m) == 1 ? "" : "s",
                     size, reused, secs);
}

/* What create prints: the manifest with the store, the time taken and whether it existed
 * (--if-absent found it committed with the same sources); the document's format is the
 * manifest's. */
static void print_created(const cli *c, stg *store, const cat_manifest *m, uint64_t t0, bool existed)
{
    if (c->ctx.json) {
        json_t *doc = json_deep_copy(cat_manifest_json(m));
        json_t *desc = json_object();
        stg_describe(store, desc); /* url, driver, store id, the create-only check in force */
        json_object_set_new(doc, "store", desc);
        json_object_set_new(doc, "seconds", json_real((double)(util_now_ms() - t0) / 1000.0));
        json_object_set_new(doc, "existed", json_boolean(existed));
        cli_print_json(doc);
        json_decref(doc);
    } else if (c->ctx.verbosity >= 0) {
        if (existed)
            util_fprintf_esc(stdout, "snapshot %s exists with the same sources; nothing was captured\n",
                             cat_manifest_name(m));
        print_summary(m, (double)(util_now_ms() - t0) / 1000.0);
    }
}

/* The history record of a snap: what was taken (m) or why it failed (err). A store that
 * cannot take it is a warning. */
static void record_snap(const cli *c, stg *store, const char *name, const cat_manifest *m, const snap_err *err,
                        uint64_t t0)
{
    json_t *rec = json_pack("{s:s?, s:f}", "name", name, "seconds", (double)(util_now_ms() - t0) / 1000.0);

    if (m != NULL) {
        json_t *comps = json_array();
        size_t parts = 0;
        for (size_t k = 0; k < cat_manifest_ncomponents(m); k++) {
            json_array_append_new(comps, json_string(cat_component_name(cat_manifest_component(m, k))));
            parts += cat_component_nparts(cat_manifest_component(m, k));
        }
        json_object_set_new(rec, "id", json_string(cat_manifest_id(m)));
        json_object_set_new(rec, "outcome", json_string("taken"));
        json_object_set_new(rec, "bytes", json_integer((json_int_t)cat_manifest_bytes(m)));
        json_object_set_new(rec, "parts", json_integer((json_int_t)parts));
        json_object_set_new(rec, "components", comps);
        json_object_set(rec, "labels", cat_manifest_labels(m));
    } else {
        size_t n;
        const char **labels = opts_all(&c->o, "label", &n);
        json_t *lo = json_object();
        for (size_t i = 0; i < n; i++) {
            const char *eq = strchr(labels[i], '=');
            char *k = eq ? xasprintf("%.*s", (int)(eq - labels[i]), labels[i]) : NULL;
            if (k != NULL)
                json_object_set_new(lo, k, json_string(eq + 1));
            free(k);
        }
        free(labels);
        json_object_set_new(rec, "labels", lo);
        json_object_set_new(rec, "outcome", json_string("failed"));
        json_object_set_new(rec, "error", json_pack("{s:i, s:s, s:s?}", "exit_code", (int)err->code, "code",
                                                    err_json_code(err), "message", util_utf8_valid(err->msg) ?
                                                    err->msg : NULL));
    }
    cli_event(c, store, "snap", rec);
}

/* What the snap hooks see: command, name, store and the sources' names. */
static json_t *snap_facts(const cli *c, const stg *store, const char *name)
{
    json_t *f = hook_facts_new("snap");
    util_buf comps = {0};

    for (size_t i = 0; i < cfg_source_count(c->cfg); i++) {
        if (i > 0)
            util_buf_addc(&comps, ' ');
        util_buf_adds(&comps, cfg_source_name(c->cfg, i));
    }
    char *text = util_buf_take(&comps);
    json_object_set_new(f, "name", json_string(name));
    json_object_set_new(f, "store", json_string(stg_url(store)));
    json_object_set_new(f, "components", json_string(text));
    free(text);
    return f;
}

static int cmd_create(cli *c, stg *store, const char *name)
{
    bool existed = false;
    size_t nlabels;
    const char **labels;
    adhoc a = {.c = c->cfg};
    cat_manifest *m = NULL;
    snap_err err;
    uint64_t t0 = util_now_ms();
    const char *v;
    snap_rc rc;

    a.type = "files", a.key = "path";
    opts_each(&c->o, "files", add_path_source, &a);
    a.type = "images", a.key = "manifests";
    opts_each(&c->o, "images", add_path_source, &a);
    if (a.rc == SNAP_OK)
        a.rc = check_relative_paths(c->cfg, &a.err);
    if (a.rc != SNAP_OK)
        return cli_fail(c, &a.err);
    a.type = "postgres";
    opts_each(&c->o, "pg", add_dsn_source, &a);
    a.type = "mysql";
    opts_each(&c->o, "mysql", add_dsn_source, &a);
    each_source e = {c->cfg, "postgres", "schema", NULL};
    opts_each(&c->o, "pg-schema", apply_to_type, &e);
    e.key = "exclude_table";
    opts_each(&c->o, "pg-exclude-table", apply_to_type, &e);
    if (opts_has(&c->o, "allow-unresolved")) {
        each_source u = {c->cfg, "images", "allow_unresolved", "true"};
        apply_to_type(NULL, &u);
    }
    if ((v = opts_get(&c->o, "zstd-level")) != NULL)
        cfg_set_from(c->cfg, "snap", "zstd_level", v, "flag --zstd-level");
    if ((v = opts_get(&c->o, "part-size")) != NULL)
        cfg_set_from(c->cfg, "snap", "part_size", v, "flag --part-size");
    labels = opts_all(&c->o, "label", &nlabels);
    snp_request req = {.name = name, .note = opts_get(&c->o, "note"), .labels = labels, .nlabels = nlabels,
                       .parent = opts_get(&c->o, "parent")};
    json_t *facts = snap_facts(c, store, name);
    rc = hook_run_before(&c->ctx, "before_snap", facts, &err);
    if (rc == SNAP_OK)
        rc = opts_has(&c->o, "if-absent") ? snp_create_if_absent(&c->ctx, store, &req, &m, &existed, &err)
                                          : snp_create(&c->ctx, store, &req, &m, &err);
    free(labels);
    if (rc != SNAP_OK) {
        int code = cli_fail(c, &err);
        hook_on_failure(&c->ctx, facts, &err);
        json_decref(facts);
        record_snap(c, store, name, NULL, &err, t0);
        return code;
    }
    json_object_set_new(facts, "id", json_string(cat_manifest_id(m)));
    json_object_set_new(facts, "result", json_string(existed ? "existed" : "taken"));
    hook_run_after(&c->ctx, "after_snap", facts);
    json_decref(facts);
    print_created(c, store, m, t0, existed);
    fflush(stdout);
    if (!existed)
        record_snap(c, store, name, m, NULL, t0);
    cat_manifest_free(m);
    return cli_events_end(c, 0, NULL);
}

static void print_labels(const cat_manifest *m)
{
    const char *k;
    json_t *v;
    bool first = true;

    json_object_foreach(cat_manifest_labels(m), k, v) {
        util_fprintf_esc(stdout, "%s%s=%s", first ? "" : ",", k, json_string_value(v));
        first = false;
    }
}

static int cmd_list(cli *c, stg *store)
{
    cat_manifest **list;
    size_t n;
    size_t nlabels;
    const char **labels;
    json_t *arr = json_array();
    snap_err err;
    snap_rc rc = cat_list(store, &list, &n, &err);

    if (rc != SNAP_OK)
        return cli_fail(c, &err);
    labels = opts_all(&c->o, "label", &nlabels);
    if (!c->ctx.json && c->ctx.verbosity > 0) {
        json_t *desc = json_object();
        char *text;
        stg_describe(store, desc);
        text = json_dumps(desc, JSON_COMPACT | JSON_SORT_KEYS);
        util_fprintf_esc(stdout, "store %s\n", text);
        free(text);
        json_decref(desc);
    }
    if (!c->ctx.json && c->ctx.verbosity >= 0)
        util_fprintf_esc(stdout, "%-32s %-20s %10s  %s\n", "NAME", "CREATED", "SIZE", "COMPONENTS / LABELS");
    for (size_t i = 0; i < n; i++) {
        const cat_manifest *m = list[i];
        char when[32], size[32];
        if (!cat_manifest_match_labels(m, labels, nlabels))
            continue;
        util_iso8601(cat_manifest_created(m), when);
        util_human_bytes(cat_manifest_bytes(m), size);
        if (c->ctx.json) {
            json_t *comps = json_array();
            for (size_t k = 0; k < cat_manifest_ncomponents(m); k++)
                json_array_append_new(comps, json_string(cat_component_name(cat_manifest_component(m, k))));
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:O, s:o}", "name", cat_manifest_name(m),
                                                 "id", cat_manifest_id(m), "created", when, "bytes",
                                                 (json_int_t)cat_manifest_bytes(m), "labels", cat_manifest_labels(m),
                                                 "components", comps));
            continue;
        }
        util_fprintf_esc(stdout, "%-32s %-20s %10s  ", cat_manifest_name(m), when, size);
        for (size_t k = 0; k < cat_manifest_ncomponents(m); k++)
            util_fprintf_esc(stdout, "%s%s", k ? "," : "", cat_component_name(cat_manifest_component(m, k)));
        if (json_object_size(cat_manifest_labels(m)) > 0) {
            util_fprintf_esc(stdout, " / ");
            print_labels(m);
        }
        putchar('\n');
    }
    if (c->ctx.json) {
        json_t *doc = json_pack("{s:i, s:o}", "format", JSON_FORMAT_LIST, "snapshots", arr);
        cli_print_json(doc);
        json_decref(doc);
    } else {
        json_decref(arr);
    }
    free(labels);
    cat_list_free(list, n);
    return 0;
}

/* --since: a duration ago, or a UTC time; 0 when not given. */
static snap_rc parse_since(const char *v, time_t *since, snap_err *err)
{
    int64_t ago;

    *since = 0;
    if (v == NULL)
        return SNAP_OK;
    if (cfg_parse_duration(v, &ago)) {
        *since = time(NULL) - (time_t)ago;
        return SNAP_OK;
    }
    if (util_parse_iso8601(v, since))
        return SNAP_OK;
    err_set(err, SNAP_EUSAGE, 0, "--since %s is neither a duration nor a UTC time", v);
    err_hint(err, "give 7d, 12h, 90m, or a time such as 2026-11-30T08:00:00Z");
    return SNAP_EUSAGE;
}

/* One line of `snap history`: time, event, snapshot, outcome, host, and what applies. */
static void print_event(const json_t *r)
{
    const json_t *v;
    const char *name = json_string_value(json_object_get(r, "name"));
    const char *outcome = json_string_value(json_object_get(r, "outcome"));
    const char *host = json_string_value(json_object_get(r, "host"));

    util_fprintf_esc(stdout, "%-20s %-8s %-24s %-14s %s", json_string_value(json_object_get(r, "time")),
                     json_string_value(json_object_get(r, "event")), name ? name : "-", outcome ? outcome : "-",
                     host ? host : "-");
    if (json_is_number(v = json_object_get(r, "seconds")))
        util_fprintf_esc(stdout, " %.1fs", json_number_value(v));
    if (json_is_integer(v = json_object_get(r, "bytes"))) {
        char size[32];
        util_human_bytes((uint64_t)json_integer_value(v), size);
        util_fprintf_esc(stdout, " %s", size);
    }
    if (json_is_number(v = json_object_get(r, "cutover_ms")))
        util_fprintf_esc(stdout, " cut-over %.1f ms", json_number_value(v));
    if (json_is_string(v = json_object_get(r, "revert_id")))
        util_fprintf_esc(stdout, " revert %s", json_string_value(v));
    if (json_is_string(v = json_object_get(json_object_get(r, "error"), "message")))
        util_fprintf_esc(stdout, ": %s", json_string_value(v));
    putchar('\n');
}

static int cmd_history(cli *c, stg *store)
{
    size_t nlabels, skipped = 0, i;
    const char **labels = opts_all(&c->o, "label", &nlabels);
    json_t *list = NULL, *r;
    time_t since;
    snap_err err;
    snap_rc rc = parse_since(opts_get(&c->o, "since"), &since, &err);

    if (rc == SNAP_OK)
        rc = cat_history_list(store, since, labels, nlabels, &list, &skipped, &err);
    free(labels);
    if (rc != SNAP_OK) {
        json_decref(list);
        return cli_fail(c, &err);
    }
    if (skipped > 0)
        log_warn(&c->ctx, "%zu history record%s could not be read and %s left out", skipped, skipped == 1 ? "" : "s",
                 skipped == 1 ? "is" : "are");
    if (c->ctx.json) {
        json_t *doc = json_pack("{s:i, s:O}", "format", JSON_FORMAT_HISTORY, "records", list);
        cli_print_json(doc);
        json_decref(doc);
    } else if (c->ctx.verbosity >= 0) {
        util_fprintf_esc(stdout, "%-20s %-8s %-24s %-14s %s\n", "TIME", "EVENT", "SNAPSHOT", "OUTCOME", "HOST ...");
        json_array_foreach(list, i, r) print_event(r);
    }
    json_decref(list);
    return 0;
}

static int cmd_show(cli *c, stg *store, const char *name)
{
    cat_manifest *m;
    snap_err err;
    snap_rc rc = cat_load(store, name, &m, &err);
    char size[32];

    if (rc != SNAP_OK)
        return cli_fail(c, &err);
    if (c->ctx.json) {
        cli_print_json(cat_manifest_json(m));
        cat_manifest_free(m);
        return 0;
    }
    json_t *doc = cat_manifest_json(m);
    util_human_bytes(cat_manifest_bytes(m), size);
    util_fprintf_esc(stdout, "snapshot  %s\nid        %s\ncreated   %s\nhost      %s\ntool      %s\nsize      %s\n", cat_manifest_name(m),
           cat_manifest_id(m), json_string_value(json_object_get(doc, "created")),
           json_string_value(json_object_get(doc, "host")), json_string_value(json_object_get(doc, "tool")), size);
    if (cat_manifest_note(m))
        util_fprintf_esc(stdout, "note      %s\n", cat_manifest_note(m));
    if (json_object_size(cat_manifest_labels(m)) > 0) {
        util_fprintf_esc(stdout, "labels    ");
        print_labels(m);
        putchar('\n');
    }
    util_fprintf_esc(stdout, "components (names for revert --only):\n");
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *k = cat_manifest_component(m, i);
        const char *key;
        json_t *v;
        util_human_bytes(cat_component_bytes(k), size);
        util_fprintf_esc(stdout, "  %-20s %-9s %zu part%s, %s  %s\n", cat_component_name(k), cat_component_type(k),
               cat_component_nparts(k), cat_component_nparts(k) == 1 ? "" : "s", size,
               cat_component_source(k) ? cat_component_source(k) : "");
        json_object_foreach(cat_component_stats(k), key, v) {
            if (json_is_integer(v))
                util_fprintf_esc(stdout, "      %s: %lld\n", key, (long long)json_integer_value(v));
            else if (json_is_string(v))
                util_fprintf_esc(stdout, "      %s: %s\n", key, json_string_value(v));
        }
        /* Engines may list what a DBA wants to see at a glance (tables, images ...). */
        json_t *lines = json_object_get(cat_component_info(k), "summary");
        size_t j;
        json_array_foreach(lines, j, v) util_fprintf_esc(stdout, "      %s\n", json_string_value(v));
    }
    cat_manifest_free(m);
    return 0;
}

static int cmd_verify(cli *c, stg *store, const char *name)
{
    cat_manifest *m;
    json_t *report = json_array(), *r;
    snap_err err;
    size_t i;
    snap_rc rc = cat_load(store, name, &m, &err);

    if (rc != SNAP_OK) {
        json_decref(report);
        return cli_fail(c, &err);
    }
    rc = cat_verify(store, m, &c->ctx, report, &err);
    if (c->ctx.json) {
        json_t *doc = json_pack("{s:i, s:s, s:b, s:O}", "format", JSON_FORMAT_VERIFY, "snapshot", name, "intact",
                                rc == SNAP_OK, "parts", report);
        if (rc != SNAP_OK) /* why it is not intact, as an error document says it */
            cli_add_error(doc, &err);
        cli_print_json(doc);
        json_decref(doc);
    } else {
        json_array_foreach(report, i, r) {
            if (strcmp(json_string_value(json_object_get(r, "status")), "ok") != 0)
                util_fprintf_esc(stdout, "DAMAGED %s: %s\n", json_string_value(json_object_get(r, "key")),
                       json_string_value(json_object_get(r, "error")));
        }
        if (rc == SNAP_OK && c->ctx.verbosity >= 0)
            util_fprintf_esc(stdout, "snapshot %s: %zu parts verified, all intact\n", name, json_array_size(report));
    }
    json_decref(report);
    cat_manifest_free(m);
    if (rc != SNAP_OK) {
        log_error(&c->ctx, &err);
        return (int)rc;
    }
    return 0;
}

static int cmd_delete(cli *c, stg *store, const char *name)
{
    cat_manifest *m;
    snap_err err;
    snap_rc rc = cat_load(store, name, &m, &err);

    if (rc != SNAP_OK)
        return cli_fail(c, &err);
    char *q = xasprintf("delete snapshot %s?", name), *action = xasprintf("delete snapshot %s", name);
    rc = cli_confirm(c, q, action, &err);
    free(q);
    free(action);
    if (rc != SNAP_OK) {
        cat_manifest_free(m);
        return cli_fail(c, &err);
    }
    rc = cat_delete(store, m, &err);
    cat_manifest_free(m);
    if (rc != SNAP_OK)
        return cli_fail(c, &err);
    if (c->ctx.json) {
        json_t *doc = json_pack("{s:i, s:s, s:b}", "format", JSON_FORMAT_DELETE, "snapshot", name, "deleted", 1);
        cli_print_json(doc);
        json_decref(doc);
    } else if (c->ctx.verbosity >= 0) {
        util_fprintf_esc(stdout, "deleted snapshot %s\n", name);
    }
    return 0;
}

static int cmd_prune(cli *c, stg *store)
{
    cat_retention policy = {0};
    size_t nlabels;
    const char **labels;
    json_t *report, *r;
    bool dry = opts_has(&c->o, "dry-run");
    const char *v;
    snap_err err;
    size_t i;
    snap_rc rc;

    if ((v = opts_get(&c->o, "keep-last")) != NULL) {
        char *end;
        errno = 0;
        policy.keep_last = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || policy.keep_last < 1) {
            err_set(&err, SNAP_EUSAGE, 0, "--keep-last %s: expected a whole number of at least 1", v);
            return cli_fail(c, &err);
        }
    }
    if ((v = opts_get(&c->o, "keep-within")) != NULL &&
        (!cfg_parse_duration(v, &policy.keep_within) || policy.keep_within <= 0)) {
        err_set(&err, SNAP_EUSAGE, 0, "--keep-within %s: expected a duration such as 12h or 7d", v);
        err_hint(&err, "durations are whole numbers of s, m, h, d or w, up to a thousand years");
        return cli_fail(c, &err);
    }
    if (policy.keep_last == 0 && policy.keep_within == 0) {
        err_set(&err, SNAP_EUSAGE, 0, "prune needs a policy");
        err_hint(&err, "give --keep-last N or --keep-within DURATION");
        return cli_fail(c, &err);
    }
    if (!dry && cli_confirm(c, "delete the snapshots the policy does not keep?", "prune", &err) != SNAP_OK) {
        if (!isatty(STDIN_FILENO)) /* not asked, rather than declined */
            err_hint(&err, "stdin is not a terminal: pass --yes, or --dry-run to see what would go");
        return cli_fail(c, &err);
    }
    labels = opts_all(&c->o, "label", &nlabels);
    report = json_array();
    rc = cat_prune(store, &policy, labels, nlabels, dry, &c->ctx, report, &err);
    free(labels);
    if (c->ctx.json) {
        json_t *doc = json_pack("{s:i, s:b, s:O}", "format", JSON_FORMAT_PRUNE, "dry_run", dry, "snapshots", report);
        if (rc != SNAP_OK)
            cli_add_error(doc, &err);
        cli_print_json(doc);
        json_decref(doc);
    } else if (c->ctx.verbosity >= 0) {
        json_array_foreach(report, i, r)
            util_fprintf_esc(stdout, "%-14s %s\n", json_string_value(json_object_get(r, "action")),
                   json_string_value(json_object_get(r, "name")));
    }
    json_decref(report);
    if (rc != SNAP_OK) {
        log_error(&c->ctx, &err);
        return (int)rc;
    }
    return 0;
}

static int cmd_gc(cli *c, stg *store)
{
    int64_t min_age = 6 * 3600;
    const char *v = opts_get(&c->o, "min-age");
    json_t *report = json_object();
    snap_err err;
    snap_rc rc;

    if (v != NULL && !cfg_parse_duration(v, &min_age)) {
        json_decref(report);
        err_set(&err, SNAP_EUSAGE, 0, "--min-age %s: expected a duration such as 0, 30m or 6h", v);
        err_hint(&err, "durations are whole numbers of s, m, h, d or w, up to a thousand years");
        return cli_fail(c, &err);
    }
    rc = cat_gc(store, min_age, opts_has(&c->o, "dry-run"), &c->ctx, report, &err);
    json_t *desc = json_object();
    stg_describe(store, desc);
    json_object_set_new(report, "store", desc);
    if (rc != SNAP_OK) {
        json_decref(report);
        return cli_fail(c, &err);
    }
    if (c->ctx.json) {
        json_object_set_new(report, "format", json_integer(JSON_FORMAT_GC));
        cli_print_json(report);
    } else if (c->ctx.verbosity >= 0) {
        json_t *ids = json_object_get(report, "orphaned_snapshots"), *id;
        size_t i;
        const char *verb = opts_has(&c->o, "dry-run") ? "would remove" : "removed";
        json_array_foreach(ids, i, id) util_fprintf_esc(stdout, "%s orphaned data %s\n", verb, json_string_value(id));
        util_fprintf_esc(stdout, "%s %zu orphaned snapshot%s and %lld unfinished upload%s\n", verb, json_array_size(ids),
               json_array_size(ids) == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(report, "unfinished_uploads")),
               json_integer_value(json_object_get(report, "unfinished_uploads")) == 1 ? "" : "s");
    }
    json_decref(report);
    return 0;
}

/* snap cat NAME COMPONENT: the component's tar on stdout, for `| tar -x` by hand. */
static int cmd_cat(cli *c, stg *store, const char *name, const char *component)
{
    cat_manifest *m = NULL;
    const char *v = opts_get(&c->o, "part");
    char *end = NULL;
    long part = -1;
    snap_err err;
    snap_rc rc = SNAP_OK;

    if (v != NULL) {
        errno = 0;
        part = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || part < 0) {
            err_set(&err, SNAP_EUSAGE, 0, "--part wants a part number, not '%s'", v);
            err_hint(&err, "parts count from 0; `snap show %s --json` lists them", name);
            return cli_fail(c, &err);
        }
    }
    if (isatty(STDOUT_FILENO)) {
        err_set(&err, SNAP_EUSAGE, 0, "snap cat writes a tar archive, and standard output is a terminal");
        err_hint(&err, "pipe it: snap cat %s %s | tar -xf - -C DIR", name, component);
        return cli_fail(c, &err);
    }
    rc = cat_load(store, name, &m, &err);
    if (rc == SNAP_OK)
        rc = cat_cat(store, m, component, part, STDOUT_FILENO, &c->ctx, &err);
    cat_manifest_free(m);
    return rc == SNAP_OK ? 0 : cli_fail(c, &err);
}

/* snap key list | add | remove ID | rotate: the key-encryption keys of an encrypted store. */
static int cmd_key(cli *c, stg *store)
{
    const char *sub = c->o.words[1], *file = opts_get(&c->o, "new-key-file");
    json_t *doc = NULL;
    snap_err err;
    snap_rc rc;

    if (strcmp(sub, "list") == 0) {
        doc = json_array();
        rc = stg_key_list(store, doc, &err);
    } else if (strcmp(sub, "remove") == 0) {
        if (c->o.nwords != 3) {
            err_set(&err, SNAP_EUSAGE, 0, "snap key remove needs a key id");
            err_hint(&err, "`snap key list` shows the store's keys");
            return cli_fail(c, &err);
        }
        doc = json_pack("{s:s}", "removed", c->o.words[2]);
        rc = stg_key_remove(store, c->o.words[2], &err);
    } else if (strcmp(sub, "add") == 0 || strcmp(sub, "rotate") == 0) {
        if (file == NULL) {
            err_set(&err, SNAP_EUSAGE, 0, "snap key %s needs --new-key-file FILE", sub);
            err_hint(&err, "make one with `head -c 32 /dev/urandom > FILE && chmod 600 FILE`");
            return cli_fail(c, &err);
        }
        doc = json_object();
        rc = sub[0] == 'a' ? stg_key_add(store, file, doc, &err) : stg_key_rotate(store, file, doc, &err);
    } else {
        err_set(&err, SNAP_EUSAGE, 0, "unknown key command '%s'", sub);
        err_hint(&err, "snap key list | add --new-key-file FILE | remove KEY_ID | rotate --new-key-file FILE");
        return cli_fail(c, &err);
    }
    if (rc != SNAP_OK) {
        json_decref(doc);
        return cli_fail(c, &err);
    }
    if (c->ctx.json) {
        cli_print_json(doc);
    } else if (c->ctx.verbosity >= 0 && json_is_array(doc)) {
        size_t i;
        json_t *k;
        util_fprintf_esc(stdout, "%-18s %-8s %-22s %s\n", "KEY ID", "KDF", "ADDED", "IN USE");
        json_array_foreach(doc, i, k)
            util_fprintf_esc(stdout, "%-18s %-8s %-22s %s\n", json_string_value(json_object_get(k, "key_id")),
                             json_string_value(json_object_get(k, "kdf")), json_string_value(json_object_get(k, "added")),
                             json_is_true(json_object_get(k, "in_use")) ? "yes" : "");
    } else if (c->ctx.verbosity >= 0) {
        char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        util_fprintf_esc(stdout, "key %s: %s\n", sub, text);
        free(text);
    }
    json_decref(doc);
    return 0;
}

/*
 * snap config check: the files in force load and pass the declared keys (cli_init has
 * refused them otherwise, exit 2); no store is opened. snap config show: every setting
 * and where it came from. snap config keys: the declared table, for the docs check.
 */
static int cmd_config(cli *c)
{
    const char *sub = c->o.nwords > 1 ? c->o.words[1] : "";
    snap_err err;

    if (c->o.nwords > 2) {
        err_set(&err, SNAP_EUSAGE, 0, "unexpected argument '%s'", c->o.words[2]);
        err_hint(&err, "see snap --help");
        return cli_fail(c, &err);
    }
    if (strcmp(sub, "check") == 0) {
        if (c->ctx.json) {
            json_t *files = json_array();
            for (size_t i = 0; i < cfg_file_count(c->cfg); i++)
                json_array_append_new(files, json_string(cfg_file_name(c->cfg, i)));
            json_t *doc = json_pack("{s:i, s:b, s:o}", "format", JSON_FORMAT_CONFIG_CHECK, "ok", 1, "files", files);
            cli_print_json(doc);
            json_decref(doc);
        } else if (c->ctx.verbosity >= 0) {
            for (size_t i = 0; i < cfg_file_count(c->cfg); i++)
                util_fprintf_esc(stdout, "%s: ok\n", cfg_file_name(c->cfg, i));
            if (cfg_file_count(c->cfg) == 0)
                util_fprintf_esc(stdout, "no config file: the defaults apply\n");
        }
        return 0;
    }
    if (strcmp(sub, "show") == 0) {
        cfg_show(c->cfg, c->ctx.json, stdout);
        return 0;
    }
    if (strcmp(sub, "keys") == 0) { /* not in --help: for the documentation check */
        cfg_print_keys(stdout);
        return 0;
    }
    err_set(&err, SNAP_EUSAGE, 0, sub[0] ? "unknown config command '%s'" : "snap config needs a command%s", sub);
    err_hint(&err, "snap config check [--config FILE], or snap config show [--json]");
    return cli_fail(c, &err);
}

int main(int argc, char **argv)
{
    cli c;
    snap_err err;
    stg *store = NULL;
    char *url = NULL;
    const char *cmd, *name = NULL;
    int code;
    snap_rc rc = cli_init(&c, "snap", options, argc, argv, &err);

    if (rc != SNAP_OK) {
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    if (opts_has(&c.o, "version")) {
        util_fprintf_esc(stdout, "snap %s\n", SNAP_VERSION);
        cli_free(&c);
        return 0;
    }
    cmd = c.o.nwords > 0 ? c.o.words[0] : NULL;
    if (cmd == NULL || opts_has(&c.o, "help") || strcmp(cmd, "help") == 0) {
        code = cmd_help(&c);
        cli_free(&c);
        return code;
    }
    if (strcmp(cmd, "config") == 0) {
        code = cmd_config(&c);
        cli_free(&c);
        return code;
    }
    const command *k = find_command(cmd);
    bool key_remove = k != NULL && strcmp(cmd, "key") == 0 && c.o.nwords == 3 && strcmp(c.o.words[1], "remove") == 0;
    if (k == NULL || (c.o.nwords != k->nargs + 1 && !key_remove)) {
        if (k == NULL)
            unknown_command(cmd, &err);
        else if (c.o.nwords < k->nargs + 1)
            err_set(&err, SNAP_EUSAGE, 0, "snap %s needs %s", cmd,
                    strcmp(cmd, "key") == 0 ? "a command" : strcmp(cmd, "cat") == 0 ? "a snapshot and a component" : "a snapshot name");
        else
            err_set(&err, SNAP_EUSAGE, 0, "unexpected argument '%s'", c.o.words[k->nargs + 1]);
        if (k != NULL)
            err_hint(&err, "see snap help %s", cmd);
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    if (k->nargs > 0)
        name = c.o.words[1];
    rc = strcmp(cmd, "create") == 0 ? cli_events_open(&c, "snap create", &err) : SNAP_OK;
    evt_set_snapshot(c.ctx.events, name);
    if (rc == SNAP_OK)
        rc = cli_store_url(&c, &url, &err);
    if (rc == SNAP_OK)
        rc = stg_open(url, strcmp(cmd, "create") == 0, &c.ctx, &store, &err);
    free(url);
    if (rc != SNAP_OK) {
        code = cli_fail(&c, &err);
        cli_free(&c);
        return code;
    }
    if (!strcmp(cmd, "create"))
        code = cmd_create(&c, store, name);
    else if (!strcmp(cmd, "list"))
        code = cmd_list(&c, store);
    else if (!strcmp(cmd, "show"))
        code = cmd_show(&c, store, name);
    else if (!strcmp(cmd, "verify"))
        code = cmd_verify(&c, store, name);
    else if (!strcmp(cmd, "delete"))
        code = cmd_delete(&c, store, name);
    else if (!strcmp(cmd, "history"))
        code = cmd_history(&c, store);
    else if (!strcmp(cmd, "prune"))
        code = cmd_prune(&c, store);
    else if (!strcmp(cmd, "cat"))
        code = cmd_cat(&c, store, name, c.o.words[2]);
    else if (!strcmp(cmd, "key"))
        code = cmd_key(&c, store);
    else
        code = cmd_gc(&c, store);
    stg_free(store);
    cli_free(&c);
    return code;
}
