#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

#include "ctx.h"
#include "util.h"

/* The program name is the one process-wide setting: set once in main() before threads start. */
static const char *log_program = "snap";

void log_set_program(const char *name)
{
    log_program = name;
}

/* 2026-11-30T07:33:05.123Z */
static void now_ms(char out[40])
{
    struct timeval tv;
    struct tm tm;
    char secs[32];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%.24s.%03uZ", secs, (unsigned)(tv.tv_usec / 1000) % 1000u);
}

/* Text that JSON can hold: bytes that are not UTF-8 written as \xNN. */
static json_t *json_text(const char *s)
{
    char *t = util_utf8_lossless(s);
    json_t *j = json_string(t);

    free(t);
    return j;
}

/*
 * One log line: text (arguments already escaped) with its level (NULL for plain info) and
 * hint. One write per line so lines of parallel workers do not interleave.
 */
static void emit(const snap_ctx *ctx, const char *level, int prio, const char *text, const char *hint)
{
    if (ctx != NULL && ctx->log_json) {
        char when[40];
        json_t *o = ctx->log_fields != NULL ? json_deep_copy(ctx->log_fields) : json_object();
        now_ms(when);
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "level", json_string(level != NULL ? level : "info"));
        json_object_set_new(o, "program", json_string(log_program));
        json_object_set_new(o, "message", json_text(text));
        if (hint != NULL && hint[0] != '\0')
            json_object_set_new(o, "hint", json_text(hint));
        char *line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
    } else {
        if (level != NULL)
            fprintf(stderr, "%s: %s: %s\n", log_program, level, text);
        else
            fprintf(stderr, "%s: %s\n", log_program, text);
        if (hint != NULL && hint[0] != '\0')
            fprintf(stderr, "hint: %s\n", hint);
    }
    if (ctx != NULL && ctx->log_syslog) {
        if (hint != NULL && hint[0] != '\0')
            syslog(prio, "%s%s%s (hint: %s)", level ? level : "", level ? ": " : "", text, hint);
        else
            syslog(prio, "%s%s%s", level ? level : "", level ? ": " : "", text);
    }
}

static void vlog(const snap_ctx *ctx, const char *level, int prio, const char *fmt, va_list ap)
{
    /* The arguments are data (names, paths, server text): escaped, so that nothing they
     * hold reaches the terminal as a control sequence. */
    char *line = util_vasprintf_esc(fmt, ap);

    emit(ctx, level, prio, line, NULL);
    free(line);
}

void log_error(const snap_ctx *ctx, const snap_err *err)
{
    char *msg = util_escape(err->msg[0] ? err->msg : err_code_name(err->code)), *hint = util_escape(err->hint);

    emit(ctx, "error", LOG_ERR, msg, hint);
    free(msg);
    free(hint);
}

void log_warn(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx != NULL && ctx->verbosity < 0)
        return;
    va_start(ap, fmt);
    vlog(ctx, "warning", LOG_WARNING, fmt, ap);
    va_end(ap);
}

void log_info(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx != NULL && ctx->verbosity < 0)
        return;
    va_start(ap, fmt);
    vlog(ctx, NULL, LOG_INFO, fmt, ap);
    va_end(ap);
}

void log_verbose(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx == NULL || ctx->verbosity < 1)
        return;
    va_start(ap, fmt);
    vlog(ctx, "verbose", LOG_INFO, fmt, ap);
    va_end(ap);
}

void log_debug(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx == NULL || ctx->verbosity < 2)
        return;
    va_start(ap, fmt);
    vlog(ctx, "debug", LOG_DEBUG, fmt, ap);
    va_end(ap);
}

bool ctx_interrupted(const snap_ctx *ctx, snap_err *err)
{
    if (ctx == NULL || ctx->interrupted == NULL || !*ctx->interrupted)
        return false;
    err_set(err, SNAP_EINTR, 0, "interrupted");
    return true;
}
