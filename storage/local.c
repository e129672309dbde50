/* local.c: the local-directory store driver. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/util.h"
#include "storage_int.h"

#define TMP_PREFIX ".tmp."

typedef struct local {
    char *root; /* absolute, no trailing '/' */
    char *url;
    snap_ctx *ctx;
} local;

/*
 * A part is written to a file without a name (O_TMPFILE) in its directory, so that a snap
 * killed half way leaves nothing in the store; it is named only at the commit. tmp is the
 * name it has while it is not yet path: taken from the start where the file system lacks
 * O_TMPFILE, else only for the moment before the rename.
 */
typedef struct local_writer {
    local *l;
    char *path, *dir, *tmp;
    unsigned flags;
    int fd;
} local_writer;

typedef struct local_reader {
    int fd;
    uint64_t left; /* UINT64_MAX: to the end */
} local_reader;

/* Keys are relative and never climb out of the root. */
static snap_rc check_key(const char *key, snap_err *err)
{
    if (key[0] == '/' || strstr(key, "..") != NULL || key[0] == '\0')
        return err_set(err, SNAP_EUSAGE, 0, "invalid store key %s", key);
    return SNAP_OK;
}

static snap_rc local_open(const char *url, bool create, snap_ctx *ctx, void **out, snap_err *err)
{
    const char *path = strncmp(url, "file://", 7) == 0 ? url + 7 : url;
    struct stat st;
    local *l;

    if (path[0] == '\0')
        return err_set(err, SNAP_EUSAGE, 0, "empty store path");
    l = xcalloc(1, sizeof *l);
    l->ctx = ctx;
    if (util_abspath_err(path, &l->root, err) != SNAP_OK) {
        free(l);
        return SNAP_EUSAGE;
    }
    l->url = xstrdup(l->root);
    /* Another user who could write the store could plant parts and manifests in it. */
    if (util_check_trusted(l->root, "store", SNAP_EUNREACH, err) != SNAP_OK)
        goto fail;
    if (stat(l->root, &st) != 0) {
        snap_rc rc;
        if (errno != ENOENT || !create) {
            rc = err_sys(err, err_from_errno(errno), "cannot open store %s", l->root);
            if (errno == ENOENT)
                err_hint(err, "check --store; `snap create` makes a new store on first use");
            goto fail;
        }
        rc = util_mkdir_p(l->root, 0700, err);
        if (rc != SNAP_OK)
            goto fail;
    } else if (!S_ISDIR(st.st_mode)) {
        err_set(err, SNAP_EUSAGE, 0, "store %s is not a directory", l->root);
        goto fail;
    }
    *out = l;
    return SNAP_OK;
fail:
    free(l->root);
    free(l->url);
    free(l);
    return err->code;
}

static void local_free(void *drv)
{
    local *l = drv;
    free(l->root);
    free(l->url);
    free(l);
}

static const char *local_url(void *drv)
{
    return ((local *)drv)->url;
}

static void local_describe(void *drv, void *json_object)
{
    (void)drv;
    json_object_set_new(json_object, "create_only_check", json_string("link"));
}

static char *key_path(const local *l, const char *key)
{
    return xasprintf("%s/%s", l->root, key);
}

/* A new name for the part in its directory, that gc knows as a leftover. */
static char *tmp_name(const local_writer *w)
{
    char rnd[17], *base = util_basename(w->path), *tmp;

    util_random_hex(rnd, 8);
    tmp = xasprintf("%s/" TMP_PREFIX "%s.%s", w->dir, base, rnd);
    free(base);
    return tmp;
}

/* A file named tmp, taken exclusively and never followed. */
static int open_named(local_writer *w)
{
    w->tmp = tmp_name(w);
    return open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

static snap_rc local_writer_open(void *drv, const char *key, unsigned flags, void **out,
                                 snap_err *err)
{
    local *l = drv;
    local_writer *w;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    w = xcalloc(1, sizeof *w);
    w->l = l;
    w->flags = flags;
    w->path = key_path(l, key);
    w->dir = util_dirname(w->path);
    rc = util_mkdir_p(w->dir, 0700, err);
    if (rc == SNAP_OK) {
        /* read too, for the copy that names it where it cannot be linked */
        w->fd = open(w->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR))
            w->fd = open_named(w);
        if (w->fd < 0)
            rc = err_sys(err, err_from_errno(errno) == SNAP_ENOTFOUND ? SNAP_EFAIL : err_from_errno(errno),
                         "cannot write to store %s", l->root);
    }
    if (rc != SNAP_OK) {
        free(w->path);
        free(w->dir);
        free(w->tmp);
        free(w);
        return rc;
    }
    *out = w;
    return SNAP_OK;
}

static snap_rc local_write(void *wp, const void *buf, size_t len, snap_err *err)
{
    local_writer *w = wp;

    return util_write_all(w->fd, buf, len) ? SNAP_OK : err_sys(err, SNAP_EFAIL, "cannot write %s", w->path);
}

static void writer_free(local_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->path);
    free(w->dir);
    free(w->tmp);
    free(w);
}

static void local_abort(void *wp)
{
    local_writer *w = wp;
    if (w->tmp != NULL)
        unlink(w->tmp);
    writer_free(w);
}

/*
 * Names the part written without a name: path itself for a create-only commit (EEXIST when
 * it is taken), else tmp, to be renamed. Where neither the capability nor /proc allows the
 * link, its bytes are copied to a file named tmp. 0 or -1 with errno.
 */
static int name_part(local_writer *w)
{
    const char *to = w->flags & STG_CREATE_ONLY ? w->path : (w->tmp = tmp_name(w));
    int named = -1, e;
    off_t off = 0;
    ssize_t n;

    if (util_link_fd(w->fd, to) == 0)
        return 0;
    e = errno;
    free(w->tmp);
    w->tmp = NULL; /* a name this writer did not make is never removed */
    if (e != EEXIST && (named = open_named(w)) < 0) {
        e = errno;
        free(w->tmp);
        w->tmp = NULL;
    }
    if (e == EEXIST || w->tmp == NULL) {
        errno = e;
        return -1;
    }
    while ((n = copy_file_range(w->fd, &off, named, NULL, (size_t)1 << 30, 0)) > 0)
        ;
    e = n < 0 || fsync(named) != 0 ? errno : 0;
    if (close(named) != 0 && e == 0)
        e = errno;
    errno = e;
    return e == 0 ? 0 : -1;
}

static snap_rc local_commit(void *wp, snap_err *err)
{
    local_writer *w = wp;
    snap_rc rc = SNAP_OK;

    if (fsync(w->fd) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot fsync %s", w->path);
        goto fail;
    }
    if (w->tmp == NULL && name_part(w) != 0) {
        rc = errno == EEXIST && w->flags & STG_CREATE_ONLY ? err_set(err, SNAP_ECONFLICT, EEXIST, "%s exists", w->path)
                                                           : err_sys(err, SNAP_EFAIL, "cannot commit %s", w->path);
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        rc = err_sys(err, SNAP_EFAIL, "cannot close %s", w->path);
        goto fail;
    }
    w->fd = -1;
    if (w->flags & STG_CREATE_ONLY && w->tmp != NULL) {
        /* link() fails with EEXIST when the name is taken: the create-only commit. */
        if (link(w->tmp, w->path) != 0) {
            rc = errno == EEXIST ? err_set(err, SNAP_ECONFLICT, EEXIST, "%s exists", w->path)
                                 : err_sys(err, SNAP_EFAIL, "cannot commit %s", w->path);
            goto fail;
        }
        unlink(w->tmp);
    } else if (w->tmp != NULL && rename(w->tmp, w->path) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot commit %s", w->path);
        goto fail;
    }
    rc = util_fsync_dir(w->dir, err);
    writer_free(w);
    return rc;
fail:
    local_abort(w);
    return rc;
}

static snap_rc local_reader_open(void *drv, const char *key, uint64_t off, uint64_t len,
                                 void **out, snap_err *err)
{
    local *l = drv;
    local_reader *r;
    char *path;
    int fd;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    path = key_path(l, key);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = err_sys(err, err_from_errno(errno), "cannot read %s", path);
        free(path);
        return rc;
    }
    if (off > 0 && lseek(fd, (off_t)off, SEEK_SET) < 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot seek in %s", path);
        close(fd);
        free(path);
        return rc;
    }
    free(path);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r = xcalloc(1, sizeof *r);
    r->fd = fd;
    r->left = len ? len : UINT64_MAX;
    *out = r;
    return SNAP_OK;
}

static snap_rc local_read(void *rp, void *buf, size_t cap, size_t *got, snap_err *err)
{
    local_reader *r = rp;
    ssize_t n;

    if ((uint64_t)cap > r->left)
        cap = (size_t)r->left;
    *got = 0;
    if (cap == 0)
        return SNAP_OK;
    do
        n = read(r->fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_sys(err, SNAP_EFAIL, "cannot read from store");
    *got = (size_t)n;
    if (r->left != UINT64_MAX)
        r->left -= (uint64_t)n;
    return SNAP_OK;
}

static void local_reader_free(void *rp)
{
    local_reader *r = rp;
    close(r->fd);
    free(r);
}

static snap_rc local_stat(void *drv, const char *key, uint64_t *size, snap_err *err)
{
    struct stat st;
    char *path;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    path = key_path(drv, key);
    if (stat(path, &st) != 0)
        rc = err_sys(err, err_from_errno(errno), "cannot stat %s", path);
    else
        *size = (uint64_t)st.st_size;
    free(path);
    return rc;
}

typedef struct walk {
    const local *l;
    const char *prefix;
    stg_list_fn fn;
    void *arg;
    bool stop;
    bool temps; /* list only the temp files (cleanup) */
} walk;

/* Walks dir (relative key rel), calling back for every file whose key starts with prefix. */
static snap_rc walk_dir(walk *w, const char *rel, snap_err *err)
{
    char *path = rel[0] ? xasprintf("%s/%s", w->l->root, rel) : xstrdup(w->l->root);
    DIR *d = opendir(path);
    struct dirent *de;
    snap_rc rc = SNAP_OK;

    if (d == NULL) {
        rc = errno == ENOENT || errno == ENOTDIR ? SNAP_OK : err_sys(err, SNAP_EFAIL, "cannot list %s", path);
        free(path);
        return rc;
    }
    while (!w->stop && rc == SNAP_OK && (de = readdir(d)) != NULL) {
        struct stat st;
        char *key, *full;
        bool tmp;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        key = rel[0] ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        full = xasprintf("%s/%s", path, de->d_name);
        /* Only descend where the prefix can still match. */
        size_t kl = strlen(key), pl = strlen(w->prefix);
        bool could = strncmp(key, w->prefix, kl < pl ? kl : pl) == 0;
        if (could && lstat(full, &st) == 0) {
            tmp = strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;
            if (S_ISDIR(st.st_mode)) {
                rc = walk_dir(w, key, err);
            } else if (S_ISREG(st.st_mode) && tmp == w->temps && kl >= pl) {
                stg_entry e = {key, (uint64_t)st.st_size, st.st_mtime};
                if (!w->fn(&e, w->arg))
                    w->stop = true;
            }
        }
        free(key);
        free(full);
    }
    closedir(d);
    free(path);
    return rc;
}

static snap_rc local_list(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err)
{
    walk w = {drv, prefix, fn, arg, false, false};
    return walk_dir(&w, "", err);
}

static snap_rc local_remove(void *drv, const char *key, snap_err *err)
{
    local *l = drv;
    char *path, *dir;
    snap_rc rc = check_key(key, err);

    if (rc != SNAP_OK)
        return rc;
    path = key_path(l, key);
    if (unlink(path) != 0 && errno != ENOENT) {
        rc = err_sys(err, SNAP_EFAIL, "cannot delete %s", path);
        free(path);
        return rc;
    }
    /* Remove directories left empty, up to the root. */
    dir = util_dirname(path);
    while (strlen(dir) > strlen(l->root) && rmdir(dir) == 0) {
        char *up = util_dirname(dir);
        free(dir);
        dir = up;
    }
    free(dir);
    free(path);
    return SNAP_OK;
}

typedef struct stale {
    const local *l;
    time_t before;
    bool dry_run;
    unsigned n;
} stale;

static bool remove_stale(const stg_entry *e, void *arg)
{
    stale *s = arg;

    if (e->mtime > s->before)
        return true;
    s->n++;
    if (!s->dry_run) {
        char *path = key_path(s->l, e->key);
        unlink(path);
        free(path);
    }
    return true;
}

static snap_rc local_cleanup(void *drv, int64_t max_age, bool dry_run, unsigned *n, snap_err *err)
{
    stale s = {drv, time(NULL) - (time_t)max_age, dry_run, 0};
    walk w = {drv, "", remove_stale, &s, false, true};
    snap_rc rc = walk_dir(&w, "", err);

    *n = s.n;
    return rc;
}

/* Whether the file at key holds exactly old: SNAP_OK, SNAP_ECONFLICT or the error. */
static snap_rc holds(const local *l, const char *key, const void *old, size_t oldlen, snap_err *err)
{
    char *path = key_path(l, key), *cur = xmalloc(oldlen + 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* as stg_get reads it */
    size_t n = 0;
    snap_rc rc = SNAP_OK;

    if (fd < 0)
        rc = err_sys(err, err_from_errno(errno), "cannot read %s", path);
    while (rc == SNAP_OK && n <= oldlen) {
        ssize_t got = read(fd, cur + n, oldlen + 1 - n);
        if (got == 0)
            break;
        if (got < 0 && errno != EINTR)
            rc = err_sys(err, SNAP_EFAIL, "cannot read %s", path);
        n += got > 0 ? (size_t)got : 0;
    }
    if (rc == SNAP_OK && (n != oldlen || memcmp(cur, old, oldlen) != 0))
        rc = err_set(err, SNAP_ECONFLICT, 0, "%s was changed by another writer", path);
    if (fd >= 0)
        close(fd);
    free(cur);
    free(path);
    return rc;
}

/*
 * Compare and swap under an exclusive lock of STORE.lock beside STORE.json, which every
 * replace takes, so that two of them serialise: an open file description lock, which NFS
 * carries to the server, so hosts sharing the store exclude each other too. Where no lock
 * can be had, the comparison alone remains, with a warning.
 */
static snap_rc local_replace(void *drv, const char *key, const void *old, size_t oldlen, const void *buf, size_t len,
                             snap_err *err)
{
    local *l = drv;
    void *w = NULL;
    char *lock_path = key_path(l, "STORE.lock");
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int fd = -1, lk = -1;
    snap_rc rc = check_key(key, err);

    if (rc == SNAP_OK) {
        fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        while (fd >= 0 && (lk = fcntl(fd, F_OFD_SETLKW, &fl)) != 0 && errno == EINTR)
            ;
        if (fd < 0 || lk != 0)
            log_warn(l->ctx, "cannot lock %s (%s): STORE.json is rewritten without the lock", lock_path,
                     strerror(errno));
    }
    if (rc == SNAP_OK)
        rc = holds(l, key, old, oldlen, err);
    if (rc == SNAP_OK)
        rc = local_writer_open(l, key, 0, &w, err);
    if (rc == SNAP_OK && (rc = local_write(w, buf, len, err)) != SNAP_OK)
        local_abort(w);
    else if (rc == SNAP_OK)
        rc = local_commit(w, err);
    if (fd >= 0)
        close(fd);
    free(lock_path);
    return rc;
}

const stg_driver stg_local_driver = {
    .scheme = "file",
    .features = STG_FEAT_RANGE | STG_FEAT_CREATE_ONLY | STG_FEAT_LOCAL,
    .open = local_open,
    .free = local_free,
    .url = local_url,
    .describe = local_describe,
    .writer_open = local_writer_open,
    .write = local_write,
    .commit = local_commit,
    .abort = local_abort,
    .reader_open = local_reader_open,
    .read = local_read,
    .reader_free = local_reader_free,
    .stat = local_stat,
    .list = local_list,
    .remove = local_remove,
    .remove_many = NULL,
    .cleanup = local_cleanup,
    .replace = local_replace,
};
