#include <stdarg.h>
#include <stdio.h>

#include "ctx.h"

/* The program name is the one process-wide setting: set once in main() before threads start. */
static const char *log_program = "snap";

void log_set_program(const char *name)
{
    log_program = name;
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
    char line[2048];

    vsnprintf(line, sizeof line, fmt, ap);
    /* One write per line so lines of parallel workers do not interleave. */
    if (level != NULL)
        fprintf(stderr, "%s: %s: %s\n", log_program, level, line);
    else
        fprintf(stderr, "%s: %s\n", log_program, line);
}

void log_error(const snap_ctx *ctx, const snap_err *err)
{
    (void)ctx;
    fprintf(stderr, "%s: error: %s\n", log_program, err->msg[0] ? err->msg : err_code_name(err->code));
    if (err->hint[0])
        fprintf(stderr, "hint: %s\n", err->hint);
}

void log_warn(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx != NULL && ctx->verbosity < 0)
        return;
    va_start(ap, fmt);
    vlog("warning", fmt, ap);
    va_end(ap);
}

void log_info(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx != NULL && ctx->verbosity < 0)
        return;
    va_start(ap, fmt);
    vlog(NULL, fmt, ap);
    va_end(ap);
}

void log_debug(const snap_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx == NULL || ctx->verbosity < 1)
        return;
    va_start(ap, fmt);
    vlog("debug", fmt, ap);
    va_end(ap);
}

bool ctx_interrupted(const snap_ctx *ctx, snap_err *err)
{
    if (ctx == NULL || ctx->interrupted == NULL || !*ctx->interrupted)
        return false;
    err_set(err, SNAP_EINTR, 0, "interrupted");
    return true;
}
