#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
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

void util_strv_push(util_strv *s, char *owned)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = owned;
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
        if (getcwd(cwd, sizeof cwd) == NULL)
            strcpy(cwd, "/");
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
    ok = strncmp(norm, root, n) == 0 && (norm[n] == '\0' || norm[n] == '/');
    free(norm);
    free(joined);
    return ok;
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

bool util_parse_iso8601(const char *s, time_t *out)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0')
        return false;
    *out = timegm(&tm);
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

void util_sha256_final(util_sha256 *h, char hex[65])
{
    unsigned char d[32];
    unsigned int n = 0;

    EVP_DigestFinal_ex(h->md, d, &n);
    for (unsigned i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
    util_sha256_free(h);
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
    const char *fp = getenv("SNAP_FAILPOINT");
    size_t n = strlen(name);

    if (fp == NULL || strncmp(fp, name, n) != 0)
        return;
    if (fp[n] == '\0') {
        fprintf(stderr, "failpoint %s: killing the process\n", name);
        raise(SIGKILL);
    } else if (strncmp(fp + n, ":pause=", 7) == 0) {
        /* Holds the process here so that a test can act while it waits. */
        unsigned secs = (unsigned)atoi(fp + n + 7);
        fprintf(stderr, "failpoint %s: pausing %u s\n", name, secs);
        while ((secs = sleep(secs)) > 0)
            ;
    }
}
