#include "errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vset(snap_err *err, snap_rc code, int sys_errno, const char *fmt, va_list ap)
{
    err->code = code;
    err->sys_errno = sys_errno;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->hint[0] = '\0';
    err->kind = NULL;
}

snap_rc err_set(snap_err *err, snap_rc code, int sys_errno, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    vset(err, code, sys_errno, fmt, ap);
    va_end(ap);
    return code;
}

snap_rc err_sys(snap_err *err, snap_rc code, const char *fmt, ...)
{
    int e = errno;
    size_t n;
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    vset(err, code, e, fmt, ap);
    va_end(ap);
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(e));
    if (e == ENOSPC)
        err_hint(err, "free space on that filesystem and run the command again");
    else if (e == EACCES || e == EPERM)
        err_hint(err, "check the permissions, or run as a user that has them");
    else if (e == EROFS)
        err_hint(err, "the filesystem is mounted read-only; use a writable location");
    return code;
}

void err_hint(snap_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof err->hint, fmt, ap);
    va_end(ap);
}

void err_prefix(snap_err *err, const char *fmt, ...)
{
    char pre[256], old[sizeof err->msg];
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    if (snprintf(err->msg, sizeof err->msg, "%s: %s", pre, old) >= (int)sizeof err->msg)
        memcpy(err->msg + sizeof err->msg - 4, "...", 4); /* cut, and says so */
}

void err_clear(snap_err *err)
{
    memset(err, 0, sizeof *err);
}

snap_rc err_kind(snap_err *err, const char *kind)
{
    if (err == NULL)
        return SNAP_EFAIL;
    err->kind = kind;
    return err->code;
}

const char *err_json_code(const snap_err *err)
{
    if (err->kind != NULL)
        return err->kind;
    /* A refused permission is "denied" wherever it was set (err_sys, or errno passed on). */
    if (err->code == SNAP_EUNREACH && (err->sys_errno == EACCES || err->sys_errno == EPERM))
        return "denied";
    return err_code_name(err->code);
}

snap_rc err_from_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return SNAP_ENOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ETIMEDOUT:
        return SNAP_EUNREACH;
    case EEXIST:
    case EBUSY:
    case EWOULDBLOCK:
        return SNAP_ECONFLICT;
    case EINTR:
        return SNAP_EINTR;
    default:
        return SNAP_EFAIL;
    }
}

const char *err_code_name(snap_rc code)
{
    switch (code) {
    case SNAP_OK: return "ok";
    case SNAP_EFAIL: return "failed";
    case SNAP_EUSAGE: return "usage";
    case SNAP_ENOTFOUND: return "not_found";
    case SNAP_ECONFLICT: return "conflict";
    case SNAP_EVERIFY: return "verify_failed";
    case SNAP_EUNREACH: return "unreachable";
    case SNAP_EROLLEDBACK: return "rolled_back";
    case SNAP_ERECOVER: return "recovery_needed";
    case SNAP_ECHECK: return "check_failed";
    case SNAP_EHOOK: return "hook_failed";
    case SNAP_EINTR: return "interrupted";
    }
    return "failed";
}
