/* opts.h: the declared option tables of snap and revert: parsing, environment, --help. */
#ifndef SNAP_OPTS_H
#define SNAP_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "../common/ctx.h"
#include "../common/util.h"
#include "../storage/storage.h"

typedef struct opt_def {
    const char *name; /* long name, without "--" */
    char short_name;  /* or 0 */
    const char *arg;  /* metavar, NULL for a switch */
    const char *env;  /* environment variable used when the flag is absent, or NULL */
    const char *help;
    const char *cmds; /* the commands (or modes) it applies to ("create list"), NULL: every one */
} opt_def;

typedef struct opt_val {
    const opt_def *def;
    const char *value; /* NULL for a switch */
} opt_val;

typedef struct opts {
    opt_val *vals;
    size_t nvals;
    char **words; /* non-option arguments, in order */
    size_t nwords;
    util_strv owned; /* values copied out of argv before it was scrubbed */
} opts;

/*
 * Options may come before or after the words, and "--" ends them. A long option matches
 * only its whole name (never an abbreviation); an unknown one is a usage error whose hint
 * names the nearest option ("did you mean --files?").
 */
snap_rc opts_parse(const opt_def *defs, int argc, char **argv, opts *out, snap_err *err);
void opts_free(opts *o);

/* The last value of an option (flag, else its environment variable), or NULL. */
const char *opts_get(const opts *o, const char *name);
bool opts_has(const opts *o, const char *name);
/* Calls fn for each value of a repeatable option, in order. */
void opts_each(const opts *o, const char *name, void (*fn)(const char *value, void *arg), void *arg);
/* Every value of a repeatable option, in order, as an array the caller frees (not the strings). */
const char **opts_all(const opts *o, const char *name, size_t *n);

/* The nearest of names to word (len bytes): a name it begins, else one within a small edit
 * distance; NULL when none is near. For "did you mean" hints. */
const char *opts_nearest(const char *word, size_t len, const char *const *names, size_t n);
/* Whether an option applies to cmd (a command of snap, a mode of revert). */
bool opts_in_scope(const opt_def *d, const char *cmd);
/* The options of cmd, then the common ones; with cmd NULL, every option and its scope. */
void opts_help(FILE *f, const opt_def *defs, const char *cmd);

/* Shared by both tools: context, config and store from the common options. */
typedef struct cli {
    snap_ctx ctx;
    cfg *cfg;
    opts o;
    const char *program;
} cli;

/*
 * Parses argv, loads the config, sets verbosity, JSON, progress, jobs and signals. A
 * password in a DSN given to --pg, --mysql or --to is copied out and overwritten in argv
 * (so /proc/PID/cmdline no longer shows it), with a warning. [snap] connect_timeout
 * becomes $SNAP_CONNECT_TIMEOUT (and $PGCONNECT_TIMEOUT) unless the environment sets them.
 */
snap_rc cli_init(cli *c, const char *program, const opt_def *defs, int argc, char **argv, snap_err *err);
void cli_free(cli *c);
/* The store URL: --store, $SNAP_STORE, [store] url, else the default local directory
 * (root: /var/lib/snap/store; others: under $XDG_DATA_HOME or $HOME, never /tmp). */
snap_rc cli_store_url(const cli *c, char **url, snap_err *err);
/*
 * The "format" of each --json document (docs/json.md, docs/schema/): a change of shape or
 * meaning gets a new number. create and show print the manifest, whose format is its own.
 * The error document is at 2 since its codes became the underscore names (not_found ...);
 * list and prune at 2 since they became objects (they were bare arrays).
 */
#define JSON_FORMAT_ERROR 2
#define JSON_FORMAT_LIST 2
#define JSON_FORMAT_PRUNE 2
#define JSON_FORMAT_VERIFY 1
#define JSON_FORMAT_DELETE 1
#define JSON_FORMAT_GC 1
#define JSON_FORMAT_CONFIG_CHECK 1
#define JSON_FORMAT_REVERT 1
#define JSON_FORMAT_RECOVER 1
#define JSON_FORMAT_HISTORY 1
#define JSON_FORMAT_KEPT 1

/* Prints a JSON document to stdout. */
void cli_print_json(const json_t *doc);
/* {"error": {exit_code, code, message, hint}}, valid JSON whatever bytes err holds. */
json_t *cli_error_json(const snap_err *err);
/* Sets doc's "error" to the error object of cli_error_json: a result that says why it failed. */
void cli_add_error(json_t *doc, const snap_err *err);
/* Reports err on stderr (and as JSON on stdout with --json, and as the "end" event with
 * --events); returns the exit code. */
int cli_fail(const cli *c, const snap_err *err);
/* --events FILE: opens the sink of command ("snap create", "revert") into c->ctx.events
 * (freed by cli_free); does nothing without the option. */
snap_rc cli_events_open(cli *c, const char *command, snap_err *err);
/* The last event line: {"event": "end", "exit_code", "code": the JSON error code or null};
 * returns code. err is read only when code is not 0. */
int cli_events_end(const cli *c, int code, const snap_err *err);
/* Asks a yes/no question on the terminal; false when there is no terminal. */
bool cli_ask(const char *question);

/*
 * The exit code of every declined prompt (delete, prune, revert): a usage error, like a
 * prompt that cannot be asked because stdin is not a terminal. Nothing was changed.
 */
#define CLI_DECLINED SNAP_EUSAGE

/* SNAP_OK with --yes or when the user answers y; else SNAP_EUSAGE without a terminal,
 * CLI_DECLINED when the answer is no ("ACTION cancelled; nothing was changed"). */
snap_rc cli_confirm(const cli *c, const char *question, const char *action, snap_err *err);

/* An event that ended (snap, revert, check, recover): its record goes into the store's
 * history (a failure is a warning) and to the [notify] webhooks. Frees rec. Called after
 * the result was printed, so that neither holds it up. */
void cli_event(const cli *c, stg *store, const char *event, json_t *rec);

#endif
