/* util.h: small helpers several layers share: paths, time, randomness, hashing. */
#ifndef SNAP_UTIL_H
#define SNAP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "errors.h"

/* malloc/strdup that abort on exhaustion: out of memory is not recoverable here. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable list of strings it owns. */
/* The one growable buffer: bytes, always NUL-terminated, with a hard limit per use
 * (max, 0 for none) beyond which util_buf_add refuses and appends nothing. */
typedef struct util_buf {
    char *p;
    size_t len, cap, max;
} util_buf;

bool util_buf_add(util_buf *b, const void *s, size_t n);
bool util_buf_adds(util_buf *b, const char *s);
bool util_buf_addc(util_buf *b, char c);
/* The text (caller frees; "" when nothing was added); the buffer is empty again. */
char *util_buf_take(util_buf *b);
void util_buf_free(util_buf *b);

typedef struct util_strv {
    char **v;
    size_t n, cap;
} util_strv;
void util_strv_push(util_strv *s, char *owned);
/* Callbacks for cfg_each and friends, arg a util_strv: every word of value, split on white
 * space (the one list rule of the configuration), or value whole (a key of one path). */
bool util_strv_add_words(const char *value, void *strv);
bool util_strv_add_one(const char *value, void *strv);
void util_strv_free(util_strv *s);
/* Adds path made absolute unless the list holds it already; false when it cannot be made
 * absolute (no current directory), and then nothing is added. */
bool util_strv_add_abs(util_strv *s, const char *path); /* frees the strings too; leaves an empty list */

/* mkdir -p with mode for created directories. */
snap_rc util_mkdir_p(const char *path, unsigned mode, snap_err *err);
/* fsync of the directory holding path (or of path itself when it is a directory). */
snap_rc util_fsync_dir(const char *dir, snap_err *err);
/* Writes all len bytes to fd, again after EINTR and short writes; false with errno. */
bool util_write_all(int fd, const void *buf, size_t len);
/*
 * A file in dir that has no name (O_TMPFILE), opened with flags (O_RDWR or O_WRONLY,
 * O_CLOEXEC is added) and mode; where the file system lacks O_TMPFILE, a name is taken
 * exclusively (0600, never followed) and removed at once. -1 with errno on failure.
 */
int util_tmpfile(const char *dir, int flags, unsigned mode);
/*
 * Gives the open file without a name (fd, from O_TMPFILE) the name path, which must not
 * exist (EEXIST). -1 with errno when neither CAP_DAC_READ_SEARCH nor /proc allows it.
 */
int util_link_fd(int fd, const char *path);
/*
 * Replaces the file at path (absolute) whole or not at all, with len bytes and mode: they
 * go to a file without a name beside it, are fsynced, and get a name (.BASE.XXXXXX) only to
 * be renamed over path; then the directory is fsynced. A kill leaves path as it was and no
 * temporary file beside it, but in the moment between that link and the rename.
 */
snap_rc util_write_file(const char *path, const void *buf, size_t len, unsigned mode, snap_err *err);
/*
 * rm -rf; a missing path succeeds. The walk holds a descriptor of each directory, opened
 * with O_NOFOLLOW, and removes with unlinkat under it: a directory swapped for a symlink
 * meanwhile loses the symlink, never what it points to.
 */
snap_rc util_rm_rf(const char *path, snap_err *err);
/* The same for name under the directory dirfd; -1 with errno on failure. */
int util_rm_at(int dirfd, const char *name);
/* Parent directory and last component of an absolute, normalised path (caller frees). */
char *util_dirname(const char *path);
char *util_basename(const char *path);
/*
 * Absolute, without "." , ".." or duplicate '/' (lexically; symlinks are not resolved).
 * NULL when path is relative and the current directory cannot be known (getcwd failed):
 * a relative path is never resolved against anything else. util_abspath_err says why.
 */
char *util_abspath(const char *path);
snap_rc util_abspath_err(const char *path, char **out, snap_err *err);

/*
 * Refuses what another local user could have written or could replace, as ssh's
 * StrictModes does: the file or directory at path must be owned by root or by the
 * caller and not writable by group or others, and so must the directory that holds it
 * (a sticky one, like /tmp, may be writable by others). A symlink is checked where it is
 * and where it leads. A path that does not exist passes: the caller creates it.
 * `what` names it in the message ("config file", "store"); code is the rc on refusal.
 */
snap_rc util_check_trusted(const char *path, const char *what, snap_rc code, snap_err *err);

/* Does a symlink at link_path (inside root) with this target resolve inside root? Lexical. */
bool util_link_inside(const char *root, const char *link_path, const char *target);

/* Monotonic milliseconds / nanoseconds, for durations. */
uint64_t util_now_ms(void);
uint64_t util_now_ns(void);
/* 2026-11-26T05:41:28Z */
void util_iso8601(time_t t, char out[32]);
/* The one time parser: a UTC time at the start of s, in ISO 8601's extended form
 * (2026-11-26T05:41:28, as S3 and our manifests write it) or basic form (20261126T054128,
 * as snapshot ids begin), with optional fractional seconds and a final Z. Returns 0 when s
 * starts with no such time; *rest (may be NULL) is what follows it. */
time_t util_parse_time(const char *s, const char **rest);
/* The whole of s is such a time, ending in Z. */
bool util_parse_iso8601(const char *s, time_t *out);

/* n bytes as 2n lowercase hex digits; out holds 2n+1. */
void util_hex(const void *bytes, size_t n, char *out);
/* n random bytes as 2n lowercase hex digits (out holds 2n+1). */
void util_random_hex(char *out, size_t nbytes);

/* SHA-256 over a stream, hex output of 65 bytes (OpenSSL EVP). */
typedef struct util_sha256 util_sha256;
util_sha256 *util_sha256_new(void);
void util_sha256_update(util_sha256 *h, const void *buf, size_t len);
void util_sha256_final(util_sha256 *h, char hex[65]); /* also frees */
void util_sha256_free(util_sha256 *h);
/* The SHA-256 of buf cut to its first n bytes (n <= 32), h started anew: one context
 * serves many short buffers. */
void util_sha256_cut(util_sha256 *h, const void *buf, size_t len, void *out, size_t n);

/* "1.2 GiB", "512 B" */
void util_human_bytes(uint64_t n, char out[32]);

/* Is s valid UTF-8 (no overlong forms, no surrogates)? */
bool util_utf8_valid(const char *s);
/* s with every byte that is not part of valid UTF-8 written as the text \xNN (caller frees). */
char *util_utf8_lossless(const char *s);
/*
 * Text for a terminal: control characters (C0, DEL, C1), bytes that are not UTF-8 and
 * the bidirectional overrides are written as \xNN or \u{NNNN}, so that nothing read from
 * a store, a file or a server can move the cursor, recolour or hide what is printed.
 * util_escape returns a copy (caller frees). util_fprintf_esc is fprintf whose %s and %c
 * arguments are escaped (the format itself is trusted and printed as it is); it supports
 * the flags, widths, precisions and length modifiers of ordinary printf.
 */
char *util_escape(const char *s);
void util_fprintf_esc(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void util_vfprintf_esc(FILE *f, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char *util_vasprintf_esc(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* fnmatch-style glob against a path and each of its trailing sub-paths (for exclude). */
bool util_glob_match(const char *pattern, const char *path);

/*
 * Named fail points for the crash tests: when $SNAP_FAILPOINT equals name, the process
 * kills itself (SIGKILL); "name:pause=N" holds it there N seconds instead;
 * "name:wait=PATH" holds it until PATH exists (at most two minutes). "name@K..." acts
 * only the Kth time the process passes the point.
 */
void util_failpoint(const char *name);

#endif
