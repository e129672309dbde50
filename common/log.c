#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctx.h"
#include "util.h"

/* The program name is the one process-wide setting: set once in main() before threads start. */
static const char *log_program = "snap";

void log_set_program(const char *name)
{
    log_program = name;
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
    /* The arguments are data (names, paths, server text): escaped, so that nothing they
     * hold reaches the terminal as a control sequence. */
    char *line = util_vasprintf_esc(fmt, ap);

    /* One write per line so lines of parallel workers do not interleave. */
    if (level != NULL)
        fprintf(stderr, "%s: %s: %s\n", log_program, level, line);
    else
        fprintf(stderr, "%s: %s\n", log_program, line);
    free(line);
}

void log_error(const snap_ctx *ctx, const snap_err *err)
{
    char *msg = util_escape(err->msg[0] ? err->msg : err_code_name(err->code)), *hint = util_escape(err->hint);

    (void)ctx;
    fprintf(stderr, "%s: error: %s\n", log_program, msg);
    if (hint[0])
        fprintf(stderr, "hint: %s\n", hint);
    free(msg);
    free(hint);
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
