#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (p == NULL)
        abort();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;

    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0)
        abort();
    va_end(ap);
    return p;
}

bool util_buf_add(util_buf *b, const void *s, size_t n)
{
    if (b->max != 0 && (n > b->max || b->len > b->max - n))
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

bool util_buf_adds(util_buf *b, const char *s)
{
    return util_buf_add(b, s, strlen(s));
}

bool util_buf_addc(util_buf *b, char c)
{
    return util_buf_add(b, &c, 1);
}

char *util_buf_take(util_buf *b)
{
    char *p = b->p != NULL ? b->p : xstrdup("");

    memset(b, 0, sizeof *b);
    return p;
}

void util_buf_free(util_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void util_strv_push(util_strv *s, char *owned)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = owned;
}

bool util_strv_add_words(const char *value, void *strv)
{
    char *copy = xstrdup(value), *save = NULL;

    for (char *tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
        util_strv_push(strv, xstrdup(tok));
    free(copy);
    return true;
}

bool util_strv_add_one(const char *value, void *strv)
{
    util_strv_push(strv, xstrdup(value));
    return true;
}

bool util_strv_add_abs(util_strv *s, const char *path)
{
    char *abs = util_abspath(path);

    if (abs == NULL)
        return false;
    for (size_t j = 0; j < s->n; j++)
        if (strcmp(s->v[j], abs) == 0) {
            free(abs);
            return true;
        }
    util_strv_push(s, abs);
    return true;
}

void util_strv_free(util_strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

snap_rc util_mkdir_p(const char *path, unsigned mode, snap_err *err)
{
    char *p = xstrdup(path);
    snap_rc rc = SNAP_OK;

    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            rc = err_sys(err, err_from_errno(errno), "cannot create directory %s", p);
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

snap_rc util_fsync_dir(const char *dir, snap_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return err_sys(err, err_from_errno(errno), "cannot open directory %s", dir);
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        errno = e;
        return err_sys(err, SNAP_EFAIL, "cannot fsync directory %s", dir);
    }
    close(fd);
    return SNAP_OK;
}

int util_tmpfile(const char *dir, int flags, unsigned mode)
{
    int fd = open(dir, O_TMPFILE | flags | O_CLOEXEC, (mode_t)mode);

    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
        char *p = xasprintf("%s/.snap-tmp.XXXXXX", dir);
        fd = mkostemp(p, O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0 && (unlink(p) != 0 || fchmod(fd, (mode_t)mode) != 0)) {
            int e = errno;
            close(fd);
            errno = e;
            fd = -1;
        }
        free(p);
    }
    return fd;
}

bool util_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

int util_link_fd(int fd, const char *path)
{
    char proc[64];

    /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc's link needs /proc */
    if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno == EEXIST)
        return -1;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

/* A name for the file without one (fd) in dir: .BASE.XXXXXX in tmp; false with errno. */
static bool link_tmpfile(int fd, const char *dir, const char *base, char **tmp)
{
    char hex[17];

    for (int tries = 0; tries < 8; tries++) {
        util_random_hex(hex, 8);
        free(*tmp);
        *tmp = xasprintf("%s/.%s.%.6s", dir, base, hex);
        if (util_link_fd(fd, *tmp) == 0)
            return true;
        if (errno != EEXIST)
            break;
    }
    free(*tmp);
    *tmp = NULL;
    return false;
}

/*
 * One attempt at util_write_file: through a file without a name (anon), else through a
 * name taken from the start. 0 or an errno; *unnamed says that the file without a name
 * could not be made or named (no O_TMPFILE; neither the capability nor /proc to link it),
 * so that an attempt with a name may follow.
 */
static int write_once(const char *path, const char *dir, const char *base, const void *buf, size_t len, unsigned mode,
                      bool anon, bool *unnamed)
{
    char *tmp = anon ? NULL : xasprintf("%s/.%s.XXXXXX", dir, base);
    int fd = anon ? open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, (mode_t)mode) : mkostemp(tmp, O_CLOEXEC | O_NOFOLLOW);
    int e = 0;

    *unnamed = false;
    if (fd < 0) {
        e = errno;
        *unnamed = anon && (e == EOPNOTSUPP || e == EISDIR);
        free(tmp);
        return e;
    }
    if (!util_write_all(fd, buf, len) || fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)
        e = errno;
    if (e == 0)
        util_failpoint("write-file-synced");
    if (e == 0 && anon && !link_tmpfile(fd, dir, base, &tmp)) {
        e = errno;
        *unnamed = true;
    }
    if (e == 0 && rename(tmp, path) != 0)
        e = errno;
    if (e != 0 && tmp != NULL)
        unlink(tmp);
    close(fd);
    free(tmp);
    return e;
}

snap_rc util_write_file(const char *path, const void *buf, size_t len, unsigned mode, snap_err *err)
{
    char *dir = util_dirname(path), *base = util_basename(path);
    bool unnamed;
    int e = write_once(path, dir, base, buf, len, mode, true, &unnamed);
    snap_rc rc;

    if (e != 0 && unnamed)
        e = write_once(path, dir, base, buf, len, mode, false, &unnamed);
    errno = e;
    rc = e == 0 ? util_fsync_dir(dir, err) : err_sys(err, err_from_errno(e), "cannot write %s", path);
    free(base);
    free(dir);
    return rc;
}

/* Empties the directory dfd, descending only through directories opened with O_NOFOLLOW. */
static int rm_contents(int dfd)
{
    int again = 1, dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;

    if (d == NULL) {
        if (dup_fd >= 0)
            close(dup_fd);
        return -1;
    }
    /* Entries removed while reading may hide others from readdir: read again until empty. */
    while (again) {
        again = 0;
        rewinddir(d);
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (util_rm_at(dfd, de->d_name) != 0) {
                closedir(d);
                return -1;
            }
            again = 1;
        }
    }
    closedir(d);
    return 0;
}

int util_rm_at(int dirfd, const char *name)
{
    struct stat st;
    int fd, rc;

    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -1;
    /* A directory, or it was one: whatever is there now is opened without following it. */
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ENOTDIR || errno == ELOOP)
            return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
        return -1;
    }
    /* Directories that we created without write permission would stop the walk. */
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & S_IRWXU) != S_IRWXU)
        fchmod(fd, (st.st_mode & 07777) | S_IRWXU);
    rc = rm_contents(fd);
    close(fd);
    if (rc != 0)
        return -1;
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

snap_rc util_rm_rf(const char *path, snap_err *err)
{
    char *dir = util_dirname(path), *base = util_basename(path);
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    snap_rc rc = SNAP_OK;

    if (dfd < 0) {
        if (errno != ENOENT)
            rc = err_sys(err, SNAP_EFAIL, "cannot remove %s", path);
    } else if (util_rm_at(dfd, base) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot remove %s", path);
    }
    if (dfd >= 0)
        close(dfd);
    free(dir);
    free(base);
    return rc;
}

char *util_abspath(const char *path)
{
    char *buf, *out;
    size_t n = 0;

    if (path[0] == '/') {
        buf = xstrdup(path);
    } else {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd) == NULL || cwd[0] != '/')
            return NULL; /* never relative to "/" or to an unreachable directory */
        buf = xasprintf("%s/%s", cwd, path);
    }
    out = xmalloc(strlen(buf) + 2);
    for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (strcmp(tok, ".") == 0)
            continue;
        if (strcmp(tok, "..") == 0) {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            continue;
        }
        out[n++] = '/';
        size_t l = strlen(tok);
        memcpy(out + n, tok, l);
        n += l;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    free(buf);
    return out;
}

char *util_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return strndup(path, (size_t)(slash - path));
}

char *util_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return xstrdup(slash ? slash + 1 : path);
}

snap_rc util_abspath_err(const char *path, char **out, snap_err *err)
{
    char cwd[4096];

    *out = util_abspath(path);
    if (*out != NULL)
        return SNAP_OK;
    if (getcwd(cwd, sizeof cwd) == NULL)
        err_sys(err, SNAP_EUSAGE, "cannot resolve the relative path %s: the current directory is unknown", path);
    else
        err_set(err, SNAP_EUSAGE, 0, "cannot resolve the relative path %s: the current directory is unreachable", path);
    err_hint(err, "give an absolute path, or run from a directory that exists");
    return SNAP_EUSAGE;
}

bool util_link_inside(const char *root, const char *link_path, const char *target)
{
    char *joined, *norm;
    size_t n = strlen(root);
    bool ok;

    if (target[0] == '/') {
        joined = xstrdup(target);
    } else {
        char *dir = util_dirname(link_path);
        joined = xasprintf("%s/%s", dir, target);
        free(dir);
    }
    norm = util_abspath(joined);
    ok = norm != NULL && strncmp(norm, root, n) == 0 && (norm[n] == '\0' || norm[n] == '/');
    free(norm);
    free(joined);
    return ok;
}

/* One entry of util_check_trusted: owner root or us, no write bit for group or others. */
static snap_rc trusted_entry(const char *path, const char *what, const char *of, bool parent,
                             snap_rc code, snap_err *err)
{
    struct stat st;
    uid_t me = geteuid();

    if (stat(path, &st) != 0)
        return errno == ENOENT ? SNAP_OK : err_sys(err, err_from_errno(errno), "cannot check %s %s", what, path);
    if (st.st_uid != 0 && st.st_uid != me) {
        if (parent)
            err_set(err, code, EPERM, "%s %s is in %s, which is owned by uid %u (neither root nor you)", what, of,
                    path, (unsigned)st.st_uid);
        else
            err_set(err, code, EPERM, "%s %s is owned by uid %u (neither root nor you)", what, path,
                    (unsigned)st.st_uid);
        err_hint(err, "another user could change it: `chown %u %s`, or use one of your own", (unsigned)me, path);
        return code;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(parent && (st.st_mode & S_ISVTX) != 0)) {
        if (parent)
            err_set(err, code, EPERM, "%s %s is in %s, which group or others may write", what, of, path);
        else
            err_set(err, code, EPERM, "%s %s may be written by group or others", what, path);
        err_hint(err, "another user could change it: `chmod go-w %s`", path);
        return code;
    }
    return SNAP_OK;
}

/* Every directory above path, up to /: if another user could rename or replace one, they
 * could swap what the path leads to between our check and our open. */
static snap_rc trusted_place(const char *path, const char *what, const char *of, snap_rc code, snap_err *err)
{
    char *dir = util_dirname(path);
    snap_rc rc = SNAP_OK;

    while (rc == SNAP_OK) {
        char *up;
        rc = trusted_entry(dir, what, of, true, code, err);
        if (strcmp(dir, "/") == 0 || strcmp(dir, ".") == 0)
            break;
        up = util_dirname(dir);
        free(dir);
        dir = up;
    }
    free(dir);
    return rc;
}

snap_rc util_check_trusted(const char *path, const char *what, snap_rc code, snap_err *err)
{
    char *abs = util_abspath(path), *real;
    struct stat st;
    snap_rc rc;

    if (abs == NULL)
        return util_abspath_err(path, &abs, err);
    /* /dev/null reads as nothing whoever may write to it: `--config /dev/null` is no config. */
    if (stat(abs, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)) {
        free(abs);
        return SNAP_OK;
    }
    real = realpath(abs, NULL);
    rc = trusted_place(abs, what, abs, code, err);

    if (rc == SNAP_OK && real != NULL && strcmp(real, abs) != 0)
        rc = trusted_place(real, what, abs, code, err);
    if (rc == SNAP_OK)
        rc = trusted_entry(real ? real : abs, what, abs, false, code, err);
    free(real);
    free(abs);
    return rc;
}

uint64_t util_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t util_now_ms(void)
{
    return util_now_ns() / 1000000u;
}

void util_iso8601(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

time_t util_parse_time(const char *s, const char **rest)
{
    struct tm tm;
    const char *end;
    time_t t;

    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y%m%dT%H%M%S", &tm);
    }
    if (end == NULL)
        return 0;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++)
            ;
    if (*end == 'Z')
        end++;
    t = timegm(&tm);
    if (t == (time_t)-1 && !(tm.tm_year == 69 && tm.tm_sec == 59)) /* -1: out of range */
        return 0;
    if (rest != NULL)
        *rest = end;
    return t;
}

bool util_parse_iso8601(const char *s, time_t *out)
{
    const char *end = NULL;
    time_t t = util_parse_time(s, &end);

    if (end == NULL || end == s || end[-1] != 'Z' || *end != '\0')
        return false;
    *out = t;
    return true;
}

void util_random_hex(char *out, size_t nbytes)
{
    unsigned char b[64];
    size_t got = 0;

    if (nbytes > sizeof b)
        nbytes = sizeof b;
    while (got < nbytes) {
        ssize_t n = getrandom(b + got, nbytes - got, 0);
        if (n < 0 && errno != EINTR)
            abort();
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

struct util_sha256 {
    EVP_MD_CTX *md;
};

util_sha256 *util_sha256_new(void)
{
    util_sha256 *h = xcalloc(1, sizeof *h);
    h->md = EVP_MD_CTX_new();
    if (h->md == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1)
        abort();
    return h;
}

void util_sha256_update(util_sha256 *h, const void *buf, size_t len)
{
    EVP_DigestUpdate(h->md, buf, len);
}

void util_hex(const void *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bytes;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void util_sha256_final(util_sha256 *h, char hex[65])
{
    unsigned char d[32];
    unsigned int n = 0;

    EVP_DigestFinal_ex(h->md, d, &n);
    util_hex(d, 32, hex);
    util_sha256_free(h);
}

void util_sha256_cut(util_sha256 *h, const void *buf, size_t len, void *out, size_t n)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;

    /* NULL: the digest the context holds, fetched once (EVP_Digest fetches it every call) */
    if (n > 32 || EVP_DigestInit_ex2(h->md, NULL, NULL) != 1 || EVP_DigestUpdate(h->md, buf, len) != 1 ||
        EVP_DigestFinal_ex(h->md, d, &dn) != 1)
        abort(); /* out of memory, or n too large: a caller's bug */
    memcpy(out, d, n);
}

void util_sha256_free(util_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
}

void util_human_bytes(uint64_t n, char out[32])
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%llu B", (unsigned long long)n);
    else
        snprintf(out, 32, "%.1f %s", v, unit[u]);
}

bool util_glob_match(const char *pattern, const char *path)
{
    /* A pattern with '/' matches the whole relative path; else any last component. */
    if (strchr(pattern, '/') != NULL)
        return fnmatch(pattern, path, FNM_PATHNAME | FNM_PERIOD) == 0 ||
               fnmatch(pattern, path, 0) == 0;
    const char *base = strrchr(path, '/');
    return fnmatch(pattern, base ? base + 1 : path, 0) == 0;
}

void util_failpoint(const char *name)
{
    static atomic_ulong hits;
    const char *fp = getenv("SNAP_FAILPOINT");
    size_t n = strlen(name);

    if (fp == NULL || strncmp(fp, name, n) != 0 || (fp[n] != '\0' && strchr(":@", fp[n]) == NULL))
        return;
    if (fp[n] == '@') {
        /* "name@K": only the Kth time the process passes here (a test picks one entry). */
        char *end;
        unsigned long want = strtoul(fp + n + 1, &end, 10);
        if (atomic_fetch_add(&hits, 1) + 1 != want)
            return;
        n = (size_t)(end - fp);
    }
    if (fp[n] == '\0') {
        fprintf(stderr, "failpoint %s: killing the process\n", name);
        raise(SIGKILL);
    } else if (strncmp(fp + n, ":pause=", 7) == 0) {
        /* Holds the process here so that a test can act while it waits. */
        unsigned secs = (unsigned)atoi(fp + n + 7);
        fprintf(stderr, "failpoint %s: pausing %u s\n", name, secs);
        while ((secs = sleep(secs)) > 0)
            ;
    } else if (strncmp(fp + n, ":wait=", 6) == 0) {
        /* Holds it until the file named exists (at most two minutes): a test acts while it
         * waits, however slow the machine, then releases it. */
        fprintf(stderr, "failpoint %s: waiting for %s\n", name, fp + n + 6);
        for (int i = 0; i < 2400 && access(fp + n + 6, F_OK) != 0; i++)
            usleep(50000);
    }
}

/* ---- text: UTF-8 and escaping --------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (0 when it is not one) and its code point. */
static size_t utf8_seq(const unsigned char *p, uint32_t *cp)
{
    size_t n;
    uint32_t c;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        c = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        c = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

bool util_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;

    while (*p != '\0') {
        size_t n = utf8_seq(p, &cp);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

static void tb_hex(util_buf *b, unsigned char c)
{
    char x[8];
    snprintf(x, sizeof x, "\\x%02x", c);
    util_buf_add(b, x, 4);
}

char *util_utf8_lossless(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    util_buf b = {0};
    uint32_t cp;

    util_buf_add(&b, "", 0);
    while (*p != '\0') {
        size_t n = utf8_seq(p, &cp);
        if (n == 0) {
            tb_hex(&b, *p++);
            continue;
        }
        util_buf_add(&b, (const char *)p, n);
        p += n;
    }
    return b.p;
}

/* Code points a terminal acts on or that reorder what is shown. */
static bool unsafe_cp(uint32_t c)
{
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || (c >= 0x200b && c <= 0x200f) ||
           (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c == 0xfeff;
}

static void tb_escape(util_buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    uint32_t cp;

    while (p < end) {
        size_t n = utf8_seq(p, &cp);
        if (n == 0 || p + n > end) {
            tb_hex(b, *p++);
        } else if (!unsafe_cp(cp)) {
            util_buf_add(b, (const char *)p, n);
            p += n;
        } else if (cp < 0x80) {
            static const char *const named[] = {['\n'] = "\\n", ['\t'] = "\\t", ['\r'] = "\\r"};
            if (cp < sizeof named / sizeof named[0] && named[cp] != NULL)
                util_buf_add(b, named[cp], 2);
            else
                tb_hex(b, (unsigned char)cp);
            p += n;
        } else {
            char x[16];
            int k = snprintf(x, sizeof x, "\\u{%04x}", (unsigned)cp);
            util_buf_add(b, x, (size_t)k);
            p += n;
        }
    }
}

char *util_escape(const char *s)
{
    util_buf b = {0};

    util_buf_add(&b, "", 0);
    if (s != NULL)
        tb_escape(&b, s, strlen(s));
    return b.p;
}

/* One printf conversion specification, as written and as understood. */
typedef struct conv_spec {
    char text[64];
    size_t n;
    int width, prec;
    bool left;
    enum { L_NONE, L_H, L_HH, L_L, L_LL, L_Z, L_J, L_T, L_BIG } len;
    char conv;
} conv_spec;

/* Reads the specification after a '%' at *p (flags, width, precision, length, conversion),
 * taking the arguments of '*' from ap; false when the format ends inside it. */
static bool read_spec(const char **p, conv_spec *c, va_list *ap)
{
    const char *q = *p;

    memset(c, 0, sizeof *c);
    c->width = c->prec = -1;
    c->text[c->n++] = '%';
    while (*q != '\0' && strchr("-+ #0", *q) != NULL && c->n < 16) {
        c->left = c->left || *q == '-';
        c->text[c->n++] = *q++;
    }
    if (*q == '*') {
        c->width = va_arg(*ap, int);
        q++;
        c->n += (size_t)snprintf(c->text + c->n, sizeof c->text - c->n, "%d", c->width);
        if (c->width < 0) {
            c->left = true;
            c->width = -c->width;
        }
    } else {
        if (*q >= '0' && *q <= '9')
            c->width = 0;
        while (*q >= '0' && *q <= '9' && c->n < 40) {
            c->width = c->width * 10 + (*q - '0');
            c->text[c->n++] = *q++;
        }
    }
    if (*q == '.') {
        c->text[c->n++] = *q++;
        c->prec = 0;
        if (*q == '*') {
            c->prec = va_arg(*ap, int);
            q++;
            c->n += (size_t)snprintf(c->text + c->n, sizeof c->text - c->n, "%d", c->prec < 0 ? 0 : c->prec);
        } else {
            while (*q >= '0' && *q <= '9' && c->n < 50) {
                c->prec = c->prec * 10 + (*q - '0');
                c->text[c->n++] = *q++;
            }
        }
    }
    for (;; q++) {
        if (*q == 'h') c->len = c->len == L_H ? L_HH : L_H;
        else if (*q == 'l') c->len = c->len == L_L ? L_LL : L_L;
        else if (*q == 'z') c->len = L_Z;
        else if (*q == 'j') c->len = L_J;
        else if (*q == 't') c->len = L_T;
        else if (*q == 'L') c->len = L_BIG;
        else break;
        if (c->n < 60)
            c->text[c->n++] = *q;
    }
    c->conv = *q;
    if (c->conv == '\0')
        return false;
    *p = q + 1;
    c->text[c->n++] = c->conv;
    c->text[c->n] = '\0';
    return true;
}

/* %s or %c: the argument escaped, then padded as the specification says (widths count
 * bytes, as printf's do). */
static void put_text_arg(util_buf *b, const conv_spec *c, va_list *ap)
{
    util_buf e = {0};

    util_buf_add(&e, "", 0);
    if (c->conv == 'c') {
        char ch = (char)va_arg(*ap, int);
        tb_escape(&e, &ch, 1);
    } else {
        const char *s = va_arg(*ap, const char *);
        if (s == NULL)
            s = "(null)";
        tb_escape(&e, s, c->prec >= 0 ? strnlen(s, (size_t)c->prec) : strlen(s));
    }
    if (!c->left)
        for (size_t k = e.len; c->width > 0 && k < (size_t)c->width; k++)
            util_buf_add(b, " ", 1);
    util_buf_add(b, e.p, e.len);
    if (c->left)
        for (size_t k = e.len; c->width > 0 && k < (size_t)c->width; k++)
            util_buf_add(b, " ", 1);
    free(e.p);
}

/* Any other conversion, handed to snprintf with its own argument. */
static void put_other_arg(util_buf *b, const conv_spec *c, va_list *ap)
{
    char tmp[512];
    int k;

    switch (c->conv) {
    case 'd': case 'i': case 'u': case 'x': case 'X': case 'o':
        switch (c->len) {
        case L_L: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, long)); break;
        case L_LL: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, long long)); break;
        case L_Z: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, size_t)); break;
        case L_J: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, intmax_t)); break;
        case L_T: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, ptrdiff_t)); break;
        default: k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, int)); break;
        }
        break;
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (c->len == L_BIG)
            k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, long double));
        else
            k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, double));
        break;
    case 'p':
        k = snprintf(tmp, sizeof tmp, c->text, va_arg(*ap, void *));
        break;
    default: /* not a conversion we know: print it as it was written */
        k = snprintf(tmp, sizeof tmp, "%s", c->text);
        break;
    }
    if (k > 0)
        util_buf_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/*
 * printf, one conversion at a time: each conversion specification is copied and handed
 * to snprintf with its own argument, except %s and %c, whose argument is escaped first.
 */
char *util_vasprintf_esc(const char *fmt, va_list ap)
{
    util_buf b = {0};
    const char *p = fmt;
    va_list args;

    va_copy(args, ap);
    util_buf_add(&b, "", 0);
    while (*p != '\0') {
        const char *pct = strchr(p, '%');
        conv_spec c;

        if (pct == NULL) {
            util_buf_add(&b, p, strlen(p));
            break;
        }
        util_buf_add(&b, p, (size_t)(pct - p));
        p = pct + 1;
        if (*p == '%') {
            util_buf_add(&b, "%", 1);
            p++;
        } else if (!read_spec(&p, &c, &args)) {
            break;
        } else if (c.conv == 's' || c.conv == 'c') {
            put_text_arg(&b, &c, &args);
        } else {
            put_other_arg(&b, &c, &args);
        }
    }
    va_end(args);
    return b.p;
}

void util_vfprintf_esc(FILE *f, const char *fmt, va_list ap)
{
    char *text = util_vasprintf_esc(fmt, ap);

    fputs(text, f);
    free(text);
}

void util_fprintf_esc(FILE *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    util_vfprintf_esc(f, fmt, ap);
    va_end(ap);
}
