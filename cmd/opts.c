/* opts.c: option tables to getopt_long, environment fallbacks, --help, and shared CLI set-up. */
#include "opts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "../catalog/history.h"
#include "../common/metrics.h"
#include "../common/notify.h"
#include "../engines/pg_client.h"
#include "../common/util.h"
#include "../engines/my_client.h"

/* The edit distance between a (alen bytes) and b: insertions, deletions, substitutions,
 * and swaps of two neighbours ("hlep" is one edit from "help"). */
static size_t edit_distance(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b), w = blen + 1, *m = xcalloc((alen + 1) * w, sizeof *m), d;

    for (size_t i = 0; i <= alen; i++)
        m[i * w] = i;
    for (size_t j = 0; j <= blen; j++)
        m[j] = j;
    for (size_t i = 1; i <= alen; i++)
        for (size_t j = 1; j <= blen; j++) {
            size_t best = m[(i - 1) * w + j - 1] + (a[i - 1] != b[j - 1]);
            if (m[(i - 1) * w + j] + 1 < best)
                best = m[(i - 1) * w + j] + 1;
            if (m[i * w + j - 1] + 1 < best)
                best = m[i * w + j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && m[(i - 2) * w + j - 2] + 1 < best)
                best = m[(i - 2) * w + j - 2] + 1;
            m[i * w + j] = best;
        }
    d = m[alen * w + blen];
    free(m);
    return d;
}

const char *opts_nearest(const char *word, size_t len, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_score = SIZE_MAX, limit = len < 5 ? 1 : 2;

    if (len == 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        /* a prefix ("--dry" of "--dry-run") is the nearest miss of all */
        size_t score = strncmp(names[i], word, len) == 0 ? 0 : edit_distance(word, len, names[i]);
        if (score < best_score && (score == 0 || score <= limit)) {
            best = names[i];
            best_score = score;
        }
    }
    return best;
}

static const opt_def *find_long(const opt_def *defs, const char *name, size_t len)
{
    for (const opt_def *d = defs; d->name != NULL; d++)
        if (strlen(d->name) == len && strncmp(d->name, name, len) == 0)
            return d;
    return NULL;
}

static const opt_def *find_short(const opt_def *defs, char c)
{
    for (const opt_def *d = defs; d->name != NULL; d++)
        if (d->short_name != 0 && d->short_name == c)
            return d;
    return NULL;
}

/* "unknown option --file", with the nearest long option as a hint. */
static snap_rc unknown_long(const opt_def *defs, const char *name, size_t len, snap_err *err)
{
    size_t n = 0;
    const char **names, *near;

    while (defs[n].name != NULL)
        n++;
    names = xcalloc(n + 1, sizeof *names);
    for (size_t i = 0; i < n; i++)
        names[i] = defs[i].name;
    near = opts_nearest(name, len, names, n);
    err_set(err, SNAP_EUSAGE, 0, "unknown option --%.*s", (int)len, name);
    if (near != NULL)
        err_hint(err, "did you mean --%s? (long options are never abbreviated)", near);
    else
        err_hint(err, "see --help");
    free(names);
    return SNAP_EUSAGE;
}

static void push(opts *out, const opt_def *d, const char *value)
{
    out->vals[out->nvals].def = d;
    out->vals[out->nvals++].value = value;
}

/* One "--name", "--name=value" or "--name value"; *i moves past a separate value. */
static snap_rc parse_long(const opt_def *defs, int argc, char **argv, int *i, opts *out, snap_err *err)
{
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def *d = find_long(defs, name, len);

    if (d == NULL)
        return unknown_long(defs, name, len, err);
    if (d->arg == NULL && eq != NULL) {
        err_set(err, SNAP_EUSAGE, 0, "option --%s takes no value", d->name);
        err_hint(err, "see --help");
        return SNAP_EUSAGE;
    }
    if (d->arg != NULL && eq == NULL && *i + 1 >= argc) {
        err_set(err, SNAP_EUSAGE, 0, "option --%s needs a value", d->name);
        err_hint(err, "see --help");
        return SNAP_EUSAGE;
    }
    push(out, d, d->arg == NULL ? NULL : eq != NULL ? eq + 1 : argv[++*i]);
    return SNAP_OK;
}

/* "-q", "-qv", "-j4", "-j 4". */
static snap_rc parse_short(const opt_def *defs, int argc, char **argv, int *i, opts *out, snap_err *err)
{
    for (const char *p = argv[*i] + 1; *p; p++) {
        const opt_def *d = find_short(defs, *p);
        if (d == NULL) {
            err_set(err, SNAP_EUSAGE, 0, "unknown option -%c", *p);
            err_hint(err, "see --help");
            return SNAP_EUSAGE;
        }
        if (d->arg == NULL) {
            push(out, d, NULL);
            continue;
        }
        if (p[1] == '\0' && *i + 1 >= argc) {
            err_set(err, SNAP_EUSAGE, 0, "option -%c needs a value", *p);
            err_hint(err, "see --help");
            return SNAP_EUSAGE;
        }
        push(out, d, p[1] != '\0' ? p + 1 : argv[++*i]);
        break;
    }
    return SNAP_OK;
}

snap_rc opts_parse(const opt_def *defs, int argc, char **argv, opts *out, snap_err *err)
{
    size_t n = 0;
    bool words_only = false;
    snap_rc rc = SNAP_OK;

    memset(out, 0, sizeof *out);
    while (defs[n].name != NULL)
        n++;
    out->vals = xcalloc((size_t)argc + n + 1, sizeof *out->vals);
    out->words = xcalloc((size_t)argc + 1, sizeof *out->words);
    /* Options may follow words; "--" ends the options; a long option is matched whole. */
    for (int i = 1; i < argc && rc == SNAP_OK; i++) {
        const char *a = argv[i];
        if (words_only || a[0] != '-' || a[1] == '\0')
            out->words[out->nwords++] = argv[i];
        else if (strcmp(a, "--") == 0)
            words_only = true;
        else if (a[1] == '-')
            rc = parse_long(defs, argc, argv, &i, out, err);
        else
            rc = parse_short(defs, argc, argv, &i, out, err);
    }
    if (rc != SNAP_OK)
        return rc;
    /* Environment variables stand in for flags not given. */
    for (size_t i = 0; i < n; i++) {
        const char *v;
        if (defs[i].env == NULL || opts_has(out, defs[i].name) || (v = getenv(defs[i].env)) == NULL || !v[0])
            continue;
        push(out, &defs[i], defs[i].arg ? v : NULL);
    }
    return SNAP_OK;
}

void opts_free(opts *o)
{
    util_strv_free(&o->owned);
    free(o->vals);
    free(o->words);
    memset(o, 0, sizeof *o);
}

const char *opts_get(const opts *o, const char *name)
{
    for (size_t i = o->nvals; i-- > 0;)
        if (strcmp(o->vals[i].def->name, name) == 0)
            return o->vals[i].value ? o->vals[i].value : "";
    return NULL;
}

bool opts_has(const opts *o, const char *name)
{
    return opts_get(o, name) != NULL;
}

void opts_each(const opts *o, const char *name, void (*fn)(const char *, void *), void *arg)
{
    for (size_t i = 0; i < o->nvals; i++)
        if (strcmp(o->vals[i].def->name, name) == 0)
            fn(o->vals[i].value, arg);
}

const char **opts_all(const opts *o, const char *name, size_t *n)
{
    const char **v = xcalloc(o->nvals + 1, sizeof *v);

    *n = 0;
    for (size_t i = 0; i < o->nvals; i++)
        if (strcmp(o->vals[i].def->name, name) == 0)
            v[(*n)++] = o->vals[i].value;
    return v;
}

bool opts_in_scope(const opt_def *d, const char *cmd)
{
    size_t len = strlen(cmd);

    if (d->cmds == NULL)
        return true;
    for (const char *p = d->cmds; (p = strstr(p, cmd)) != NULL; p += len)
        if ((p == d->cmds || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' '))
            return true;
    return false;
}

static void help_line(FILE *f, const opt_def *d, bool scope)
{
    char left[64];

    if (d->short_name)
        snprintf(left, sizeof left, "-%c, --%s%s%s", d->short_name, d->name, d->arg ? " " : "", d->arg ? d->arg : "");
    else
        snprintf(left, sizeof left, "    --%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
    fprintf(f, "  %-30s %s", left, d->help);
    if (d->env)
        fprintf(f, " [$%s]", d->env);
    if (scope && d->cmds)
        fprintf(f, " (%s)", d->cmds);
    fputc('\n', f);
}

void opts_help(FILE *f, const opt_def *defs, const char *cmd)
{
    bool header = false;

    if (cmd == NULL) {
        fputs("Options:\n", f);
        for (const opt_def *d = defs; d->name != NULL; d++)
            help_line(f, d, true);
        return;
    }
    for (const opt_def *d = defs; d->name != NULL; d++)
        if (d->cmds != NULL && opts_in_scope(d, cmd)) {
            if (!header)
                fputs("Options:\n", f);
            header = true;
            help_line(f, d, false);
        }
    fputs("Common options:\n", f);
    for (const opt_def *d = defs; d->name != NULL; d++)
        if (d->cmds == NULL)
            help_line(f, d, false);
}

/* The one flag a signal handler may touch: async-signal-safe by its type. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/*
 * [snap] connect_timeout (a duration: 10s, 2m) for both database engines: libpq reads
 * PGCONNECT_TIMEOUT itself, the MySQL connection SNAP_CONNECT_TIMEOUT. The environment
 * set by the caller wins, and a DSN's own setting wins over both.
 */
static snap_rc export_connect_timeout(const cfg *conf, snap_err *err)
{
    int64_t secs = 0; /* the table: "libpq's and the client's own" */
    char num[24];
    snap_rc rc = cfg_duration(conf, "snap", "connect_timeout", &secs, err);

    if (rc != SNAP_OK || secs == 0)
        return rc;
    snprintf(num, sizeof num, "%lld", (long long)secs);
    setenv("SNAP_CONNECT_TIMEOUT", num, 0);
    setenv("PGCONNECT_TIMEOUT", getenv("SNAP_CONNECT_TIMEOUT"), 0);
    return SNAP_OK;
}

/*
 * The DSN without its password when it has one (caller frees), else NULL. A DSN of --pg or
 * --mysql that its engine cannot parse may still hold a password: it is hidden whole.
 */
static char *dsn_without_secret(const char *v, bool is_dsn)
{
    char *shown = NULL;

    if (strncmp(v, "mysql://", 8) == 0 || strncmp(v, "mariadb://", 10) == 0) {
        my_dsn *d = NULL;
        snap_err ignored;
        if (my_dsn_parse(v, &d, &ignored) != SNAP_OK)
            shown = is_dsn && strchr(v, '@') != NULL ? xstrdup("") : NULL;
        else if (my_dsn_has_password(d))
            shown = my_dsn_redacted(d);
        my_dsn_free(d);
    } else if (pg_dsn_has_secret(v)) {
        shown = pg_redact_dsn(v);
    } else if (is_dsn && strchr(v, '@') != NULL) {
        char *parsed = pg_redact_dsn(v);
        shown = parsed == NULL ? xstrdup("") : NULL;
        free(parsed);
    }
    return shown;
}

/*
 * Overwrites the argv bytes of every DSN that holds a password with its redacted form
 * (NUL-padded), after copying the real value out for the program's own use.
 */
static void hide_secrets(cli *c, int argc, char **argv)
{
    static const char *const names[] = {"pg", "mysql", "to"};
    bool warned = false;

    for (size_t i = 0; i < c->o.nvals; i++) {
        const char *v = c->o.vals[i].value;
        bool named = false, is_dsn;
        char *shown, *copy;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            named = named || strcmp(c->o.vals[i].def->name, names[k]) == 0;
        is_dsn = strcmp(c->o.vals[i].def->name, "to") != 0;
        if (!named || v == NULL || (shown = dsn_without_secret(v, is_dsn)) == NULL)
            continue;
        copy = xstrdup(v);
        util_strv_push(&c->o.owned, copy);
        c->o.vals[i].value = copy;
        for (int a = 1; a < argc; a++) {
            size_t alen = strlen(argv[a]);
            if (v >= argv[a] && v < argv[a] + alen) {
                char *w = argv[a] + (v - argv[a]);
                size_t room = strlen(w), n = strlen(shown) < room ? strlen(shown) : room;
                memcpy(w, shown, n);
                memset(w + n, '\0', room - n);
                break;
            }
        }
        if (!warned && shown[0] != '\0') /* an unparsable DSN, hidden whole, gets its own error */
            log_warn(&c->ctx, "a password given on the command line (--%s) can be read by other local users "
                              "until it is hidden; use ~/.pgpass or PGPASSWORD for PostgreSQL, an option file "
                              "(~/.my.cnf) or MYSQL_PWD for MySQL",
                     c->o.vals[i].def->name);
        warned = warned || shown[0] != '\0';
        free(shown);
    }
}

/* -q, -v, -vv; --log-format; --syslog; the ids of JSON log lines (command, name). */
static snap_rc set_logging(cli *c, snap_err *err)
{
    const char *format = opts_get(&c->o, "log-format"), *command = c->program, *name = NULL;
    size_t nv = 0;

    free(opts_all(&c->o, "verbose", &nv));
    c->ctx.verbosity = opts_has(&c->o, "quiet") ? -1 : nv > 2 ? 2 : (int)nv;
    if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
        err_set(err, SNAP_EUSAGE, 0, "--log-format %s is not text or json", format);
        err_hint(err, "see --help");
        return SNAP_EUSAGE;
    }
    c->ctx.log_json = format != NULL && strcmp(format, "json") == 0;
    c->ctx.log_syslog = opts_has(&c->o, "syslog");
    if (c->ctx.log_syslog)
        openlog(c->program, LOG_PID, LOG_USER);
    if (strcmp(c->program, "snap") == 0) {
        command = c->o.nwords > 0 ? c->o.words[0] : NULL;
        name = c->o.nwords > 1 ? c->o.words[1] : NULL;
    } else {
        command = opts_has(&c->o, "recover") ? "recover" : "revert";
        name = c->o.nwords > 0 ? c->o.words[0] : NULL;
    }
    c->ctx.log_fields = json_object();
    if (command != NULL && util_utf8_valid(command))
        json_object_set_new(c->ctx.log_fields, "command", json_string(command));
    if (name != NULL && util_utf8_valid(name))
        json_object_set_new(c->ctx.log_fields, "name", json_string(name));
    return SNAP_OK;
}

/*
 * Started with stdin, stdout or stderr closed, the next file opened would take that number:
 * a journal or a part would then receive log lines, or a tool run with it kept would read
 * /dev/null. Each closed one is opened on /dev/null first, as OpenSSH and curl do.
 */
static void std_fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
            _exit(1); /* nowhere to say why: not even /dev/null opens */
}

snap_rc cli_init(cli *c, const char *program, const opt_def *defs, int argc, char **argv, snap_err *err)
{
    struct sigaction sa;
    const char *v;
    long jobs = 0;
    snap_rc rc;

    std_fds_open();
    memset(c, 0, sizeof *c);
    c->program = program;
    log_set_program(program);
    c->cfg = cfg_new();
    c->ctx.cfg = c->cfg;
    c->ctx.interrupted = &interrupted;
    rc = opts_parse(defs, argc, argv, &c->o, err);
    if (rc != SNAP_OK) {
        /* the usage error is a JSON document too when --json was among the options */
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
            c->ctx.json = c->ctx.json || strcmp(argv[i], "--json") == 0;
        return rc;
    }
    rc = set_logging(c, err);
    if (rc != SNAP_OK)
        return rc;
    hide_secrets(c, argc, argv);
    if (opts_has(&c->o, "help") || opts_has(&c->o, "version"))
        return SNAP_OK;
    rc = cfg_find_and_load(c->cfg, opts_get(&c->o, "config"), err);
    if (rc == SNAP_ENOTFOUND) /* a config file named but missing is a usage error */
        rc = err->code = SNAP_EUSAGE;
    if (rc == SNAP_OK)
        rc = cfg_apply_env(c->cfg, err);
    if (rc != SNAP_OK)
        return rc;
    for (size_t i = 0; i < cfg_file_count(c->cfg); i++)
        log_verbose(&c->ctx, "config file: %s", cfg_file_name(c->cfg, i));
    if (cfg_file_count(c->cfg) == 0)
        log_verbose(&c->ctx, "config file: none (defaults apply)");
    if ((v = opts_get(&c->o, "store")) != NULL && v != getenv("SNAP_STORE"))
        cfg_set_from(c->cfg, "store", "url", v, "flag --store");
    c->ctx.json = opts_has(&c->o, "json");
    c->ctx.progress = isatty(STDERR_FILENO) && c->ctx.verbosity >= 0 && !opts_has(&c->o, "no-progress");
    c->ctx.assume_yes = opts_has(&c->o, "yes");
    if ((v = opts_get(&c->o, "jobs")) != NULL)
        cfg_set_from(c->cfg, "snap", "jobs", v, v == getenv("SNAP_JOBS") ? "environment $SNAP_JOBS" : "flag --jobs");
    rc = cfg_int(c->cfg, "snap", "jobs", &jobs, err); /* unset: 0, "CPUs, at most 4" */
    if (rc != SNAP_OK)
        return rc;
    if (jobs == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = n < 1 ? 1 : n > 4 ? 4 : n;
    }
    c->ctx.jobs = (int)jobs;
    rc = export_connect_timeout(c->cfg, err);
    if (rc != SNAP_OK)
        return rc;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return SNAP_OK;
}

snap_rc cli_events_open(cli *c, const char *command, snap_err *err)
{
    const char *path = opts_get(&c->o, "events");

    if (path == NULL || c->ctx.events != NULL)
        return SNAP_OK;
    return evt_open(path, command, &c->ctx.events, err);
}

int cli_events_end(const cli *c, int code, const snap_err *err)
{
    if (c->ctx.events != NULL)
        evt_emit(c->ctx.events, "end",
                 json_pack("{s:i, s:s?}", "exit_code", code, "code", code != 0 ? err_json_code(err) : NULL));
    return code;
}

void cli_free(cli *c)
{
    evt_free(c->ctx.events);
    c->ctx.events = NULL;
    if (c->ctx.log_syslog)
        closelog();
    json_decref(c->ctx.log_fields);
    c->ctx.log_fields = NULL;
    opts_free(&c->o);
    cfg_free(c->cfg);
}

snap_rc cli_store_url(const cli *c, char **url, snap_err *err)
{
    const char *v = opts_get(&c->o, "store");
    const char *home;

    *url = NULL;
    if (v == NULL)
        v = cfg_get(c->cfg, "store", "url");
    if (v != NULL)
        *url = xstrdup(v);
    else if (geteuid() == 0)
        *url = xstrdup("/var/lib/snap/store");
    else if ((home = getenv("XDG_DATA_HOME")) != NULL && home[0] == '/')
        *url = xasprintf("%s/snap/store", home);
    else if ((home = getenv("HOME")) != NULL && home[0] == '/')
        *url = xasprintf("%s/.local/share/snap/store", home);
    /* Never a default in a directory that every user may write, such as /tmp. */
    if (*url == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "no store: HOME is not set and no store is configured");
        err_hint(err, "pass --store URL, or set [store] url in the config file");
        return SNAP_EUSAGE;
    }
    /* The library's in-memory store serves its tests; from the tools it would lose everything. */
    if (strncmp(*url, "mem://", 6) == 0) {
        err_set(err, SNAP_EUSAGE, 0, "%s is an in-memory store: nothing written to it outlives the command", *url);
        err_hint(err, "give a directory or an s3:// URL");
        free(*url);
        *url = NULL;
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

void cli_print_json(const json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', stdout);
    fflush(stdout);
}

json_t *cli_error_json(const snap_err *err)
{
    /* A message may quote bytes that are not UTF-8 (a name, a server's text): JSON cannot
     * hold them, so they are written as \xNN rather than losing the whole document. */
    char *msg = util_utf8_lossless(err->msg), *hint = util_utf8_lossless(err->hint);
    json_t *doc = json_pack("{s:i, s:{s:i, s:s, s:s, s:s}}", "format", JSON_FORMAT_ERROR, "error", "exit_code",
                            (int)err->code, "code", err_json_code(err), "message", msg, "hint", hint);

    if (doc == NULL)
        abort(); /* only out of memory: every string above is UTF-8 */
    free(msg);
    free(hint);
    return doc;
}

void cli_add_error(json_t *doc, const snap_err *err)
{
    json_t *e = cli_error_json(err);

    json_object_set(doc, "error", json_object_get(e, "error"));
    json_decref(e);
}

int cli_fail(const cli *c, const snap_err *err)
{
    log_error(&c->ctx, err);
    cli_events_end(c, (int)err->code, err);
    if (c->ctx.json) {
        json_t *doc = cli_error_json(err);
        cli_print_json(doc);
        json_decref(doc);
    }
    return (int)err->code;
}

bool cli_ask(const char *question)
{
    char line[64];

    if (!isatty(STDIN_FILENO))
        return false;
    util_fprintf_esc(stderr, "%s [y/N] ", question);
    fflush(stderr);
    if (fgets(line, sizeof line, stdin) == NULL)
        return false;
    return line[0] == 'y' || line[0] == 'Y';
}

snap_rc cli_confirm(const cli *c, const char *question, const char *action, snap_err *err)
{
    if (c->ctx.assume_yes)
        return SNAP_OK;
    if (!isatty(STDIN_FILENO)) {
        err_set(err, SNAP_EUSAGE, 0, "refusing to %s without confirmation", action);
        err_hint(err, "stdin is not a terminal: pass --yes");
        return SNAP_EUSAGE;
    }
    if (cli_ask(question))
        return SNAP_OK;
    err_set(err, CLI_DECLINED, 0, "%s cancelled; nothing was changed", action);
    err_hint(err, "answer y to go ahead, or pass --yes");
    return CLI_DECLINED;
}

void cli_event(const cli *c, stg *store, const char *event, json_t *rec)
{
    snap_err e;

    cat_history_stamp(rec, event);
    if (store != NULL && cat_history_add(store, rec, &e) != SNAP_OK)
        log_warn(&c->ctx, "could not record the %s in the store's history: %s", event, e.msg);
    metrics_update(&c->ctx, rec);
    notify_send(&c->ctx, rec);
    json_decref(rec);
}
