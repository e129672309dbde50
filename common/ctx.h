/* ctx.h: the one context passed down from cmd/ through every layer, and logging. */
#ifndef SNAP_CTX_H
#define SNAP_CTX_H

#include <signal.h>
#include <stdbool.h>

#include "cfg.h"
#include "errors.h"
#include "events.h"

typedef struct snap_ctx {
    int verbosity;   /* -1 quiet, 0 normal, 1 verbose, 2 debug */
    bool json;       /* stdout carries one JSON document; human text goes to stderr */
    bool progress;   /* draw progress on stderr (a TTY and not quiet) */
    bool assume_yes; /* --yes */
    int jobs;        /* parallel workers for capture and restore, >= 1 */
    const cfg *cfg;  /* merged configuration (file, environment, flags) */
    evt_sink *events; /* --events: JSON lines while the command runs, or NULL */
    /* Set by the command's signal handler (SIGINT/SIGTERM); the library polls it. */
    volatile sig_atomic_t *interrupted;
    bool log_json;   /* --log-format json: each log line is one JSON object on stderr */
    bool log_syslog; /* --syslog: each log line goes to syslog(3) as well */
    /* The ids every JSON log line carries (command, name, revert_id): an object the
     * command owns; the library may add the ids it makes. NULL: none. */
    struct json_t *log_fields;
} snap_ctx;

/* Logs go to stderr, one line each, "snap: " or "revert: " first (see log_set_program), or
 * as JSON objects ({time, level, program, message, hint, and ctx->log_fields}); with
 * ctx->log_syslog to syslog too. log_info and log_warn are silent with -q (verbosity -1),
 * log_verbose needs -v (1), log_debug -vv (2). */
void log_set_program(const char *name);
void log_error(const snap_ctx *ctx, const snap_err *err);
void log_warn(const snap_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_info(const snap_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_verbose(const snap_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_debug(const snap_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True once SIGINT/SIGTERM arrived; sets err to SNAP_EINTR when it returns true. */
bool ctx_interrupted(const snap_ctx *ctx, snap_err *err);

#endif
