/* state.c: the state directory kept between runs (journals, locks, undo records, the host
 * key), trusted only when no other user can write it, and the locks kept in it. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "state.h"
#include "util.h"

char *state_dir(const cfg *c)
{
    /* Precedence as everywhere: the environment, then the file (see docs/config.md). */
    const char *s = getenv("SNAP_STATE_DIR");
    const char *home;

    if ((s == NULL || s[0] == '\0') && c != NULL)
        s = cfg_get(c, "revert", "state_dir");
    if (s != NULL && s[0] != '\0')
        return util_abspath(s);
    if (geteuid() == 0)
        return xstrdup("/var/lib/snap");
    if ((s = getenv("XDG_STATE_HOME")) != NULL && s[0] == '/')
        return xasprintf("%s/snap", s);
    home = getenv("HOME");
    if (home == NULL || home[0] != '/') {
        struct passwd *pw = getpwuid(geteuid());
        home = pw ? pw->pw_dir : NULL;
    }
    /* Never a default in a directory that every user may write, such as /tmp. */
    if (home == NULL || home[0] != '/')
        return NULL;
    return xasprintf("%s/.local/state/snap", home);
}

snap_rc state_subdir(const cfg *c, const char *sub, char **out, snap_err *err)
{
    char *dir = state_dir(c);
    snap_rc rc;

    *out = NULL;
    if (dir == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "no state directory: HOME is not set, or the one configured is relative and the current directory is unknown");
        err_hint(err, "set [revert] state_dir or $SNAP_STATE_DIR to an absolute path of your own");
        return SNAP_EUSAGE;
    }
    /* Journals and locks decide what a revert does: no other user may plant or swap them. */
    rc = util_check_trusted(dir, "state directory", SNAP_EUNREACH, err);
    if (rc == SNAP_OK) {
        *out = sub != NULL ? xasprintf("%s/%s", dir, sub) : xstrdup(dir);
        rc = util_mkdir_p(*out, 0700, err);
        if (rc != SNAP_OK)
            err_hint(err, "set [revert] state_dir or $SNAP_STATE_DIR to a writable directory");
    }
    if (rc == SNAP_OK)
        rc = util_check_trusted(*out, "state directory", SNAP_EUNREACH, err);
    if (rc != SNAP_OK) {
        free(*out);
        *out = NULL;
    }
    free(dir);
    return rc;
}

/* The holder of a lock, written into its file when taken: "pid PID on host HOST since
 * SINCE" (a revert then writes its id in front, restore.c), or "a snap, pid ..." for a
 * shared lock; any one of several snaps is named. */
static void holder_write(int fd, bool shared)
{
    char host[256] = "", since[32], line[400];
    int n;

    gethostname(host, sizeof host - 1);
    for (char *p = host; *p; p++)
        if (*p <= ' ' || *p > '~')
            *p = '?';
    util_iso8601(time(NULL), since);
    n = snprintf(line, sizeof line, "%spid %d on host %s since %s", shared ? "a snap, " : "", (int)getpid(),
                 host[0] ? host : "?", since);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n)
        return; /* the lock holds without it; only the message loses the holder */
}

/* What the holder wrote into a lock file (revert id, host, since when), printable only. */
static void holder_note(int fd, char *out, size_t cap)
{
    ssize_t n = pread(fd, out, cap - 1, 0);

    out[n > 0 ? n : 0] = '\0';
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

snap_rc state_lock(const cfg *c, const char *key, bool shared, int *fd, snap_err *err)
{
    char *dir, *path, hex[65];
    util_sha256 *h;
    snap_rc rc;

    *fd = -1;
    rc = state_subdir(c, "locks", &dir, err);
    if (rc != SNAP_OK)
        return rc;
    h = util_sha256_new();
    util_sha256_update(h, key, strlen(key));
    util_sha256_final(h, hex);
    hex[32] = '\0';
    path = xasprintf("%s/%s.lock", dir, hex);
    *fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*fd < 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot open lock %s", path);
    } else if (flock(*fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
        int e = errno;
        char note[256];
        holder_note(*fd, note, sizeof note);
        if (shared) {
            rc = err_set(err, SNAP_ECONFLICT, e, "a revert of %s is running%s%s", key, note[0] ? ": held by " : "", note);
            err_hint(err, "snap it again when the revert has finished; nothing was captured");
        } else if (note[0] != '\0') {
            rc = err_set(err, SNAP_ECONFLICT, e, "target %s is locked by %s", key, note);
            err_hint(err, "wait for it to finish (--lock-wait DURATION waits), then run the command again");
        } else {
            rc = err_set(err, SNAP_ECONFLICT, e, "another revert of %s is running (or a snap of it)", key);
            err_hint(err, "wait for it to finish (--lock-wait DURATION waits), then run the command again");
        }
        err_kind(err, "locked");
        close(*fd);
        *fd = -1;
    } else {
        holder_write(*fd, shared);
    }
    free(path);
    free(dir);
    return rc;
}

char *state_host(const cfg *c)
{
    const char *v = NULL;
    char host[256] = "";
    snap_err e;

    if (cfg_str(c, "revert", "host", &v, &e) == SNAP_OK && v != NULL && v[0] != '\0')
        return xstrdup(v);
    gethostname(host, sizeof host - 1);
    return xstrdup(host);
}
