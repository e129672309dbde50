/* err.h: the one result code and error record every fallible function uses. */
#ifndef SNAP_ERR_H
#define SNAP_ERR_H

#include <stddef.h>

/*
 * Result codes are the tools' exit codes: cmd/ returns them as they are.
 * They are documented in snap(1) and revert(1) and stay stable.
 */
typedef enum snap_rc {
    SNAP_OK = 0,
    SNAP_EFAIL = 1,       /* failure not covered below */
    SNAP_EUSAGE = 2,      /* bad arguments, bad config, invalid name */
    SNAP_ENOTFOUND = 3,   /* snapshot, component or object does not exist */
    SNAP_ECONFLICT = 4,   /* name exists, lock held */
    SNAP_EVERIFY = 5,     /* checksum or stats mismatch; nothing changed */
    SNAP_EUNREACH = 6,    /* source/target/store unreachable or permission denied */
    SNAP_EROLLEDBACK = 7, /* cut-over failed and was rolled back */
    SNAP_ERECOVER = 8,    /* a journal is pending: run revert --recover */
    SNAP_ECHECK = 9,      /* reverted, the check failed, every target was switched back */
    SNAP_EHOOK = 10,      /* a before-hook failed; nothing was changed */
    SNAP_EINTR = 130      /* interrupted by a signal */
} snap_rc;

typedef struct snap_err {
    snap_rc code;
    int sys_errno;  /* errno at the failure, 0 if none */
    char msg[768];  /* lowercase, no final period, no secrets */
    char hint[384]; /* what to do next, or empty */
    const char *kind; /* a finer, documented JSON code within the class (static string), or NULL */
} snap_err;

/* Sets code, errno and message; returns code so callers can `return err_set(...)`. */
snap_rc err_set(snap_err *err, snap_rc code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like err_set with errno's text appended: "open /x: Permission denied". */
snap_rc err_sys(snap_err *err, snap_rc code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the hint line shown after the message. */
void err_hint(snap_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context to the message: "stage app-config: <old message>". */
void err_prefix(snap_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(snap_err *err);

/*
 * Names what went wrong more finely than the exit code does ("name_exists" and "locked"
 * both exit 4). kind must be a string literal; it is the JSON error code (docs/json.md).
 * Returns err->code so callers can `return err_kind(err, "locked")` after err_set.
 */
snap_rc err_kind(snap_err *err, const char *kind);

/*
 * The JSON error code (docs/json.md): the kind when one was set; else "denied" for an
 * unreachable-class error whose errno is EACCES or EPERM; else the class of the exit code
 * (err_code_name). Kinds in use: name_exists, locked (4); credentials, denied (6).
 */
const char *err_json_code(const snap_err *err);

/* The result class an errno value maps to (EACCES -> SNAP_EUNREACH, ENOENT -> SNAP_ENOTFOUND ...). */
snap_rc err_from_errno(int e);

/* The class name of an exit code, as JSON error codes spell it: "not_found", "conflict" ... */
const char *err_code_name(snap_rc code);

#endif
