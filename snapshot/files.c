/* files.c: the files source: directories and files with their metadata, as tar entries. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <fts.h>
#include <limits.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "../common/state.h"
#include "files_reuse.h"
#include "snapshot.h"

typedef struct fwalk {
    snp_capture *c;
    snap_ctx *ctx;
    arc_writer *w;
    struct archive *disk; /* metadata reader: xattrs, ACLs, owner names */
    const char *const *exclude;
    size_t nexclude;
    uint64_t files, dirs, links, other, bytes, external;
    const char *root; /* the root being walked */
    void *seen;       /* tsearch tree of (dev, ino) of files with several links */
    json_t *roots;
    int *locks; /* shared locks of the roots (see lock_roots) */
    size_t nlocks;
    bool proc;  /* /proc/self/fd is there to name what was opened */
    frs *reuse; /* the entry index, and the parent's parts reused */
} fwalk;

static bool excluded(const fwalk *f, const char *rel)
{
    for (size_t i = 0; i < f->nexclude; i++)
        if (util_glob_match(f->exclude[i], rel))
            return true;
    return false;
}

typedef struct inode {
    dev_t dev;
    ino_t ino;
} inode;

static int inode_cmp(const void *a, const void *b)
{
    const inode *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static bool first_link(fwalk *f, const struct stat *st)
{
    inode *k = xmalloc(sizeof *k), **found;

    k->dev = st->st_dev;
    k->ino = st->st_ino;
    found = tsearch(k, &f->seen, inode_cmp);
    if (*found != k) {
        free(k);
        return false;
    }
    return true;
}

static snap_rc changed(const char *path, snap_err *err)
{
    err_set(err, SNAP_ECONFLICT, 0, "%s changed while snap was reading it", path);
    err_hint(err, "something changed the tree during capture; run snap again (nothing was committed)");
    return SNAP_ECONFLICT;
}

static snap_rc unreadable(const char *path, int e, snap_err *err)
{
    snap_rc rc;

    errno = e;
    rc = err_sys(err, err_from_errno(e), "cannot read %s", path);
    if (rc == SNAP_EUNREACH)
        err_hint(err, "run snap as a user that can read every captured file, or exclude it");
    else if (e == EMFILE)
        err_hint(err, "the walk holds one descriptor per directory level: raise the limit (ulimit -n)");
    return rc;
}

/*
 * Opens the directory or regular file that the walk saw as dirfd/name, never through a
 * symlink, and checks that it is the very file the walk saw: one swapped in between
 * (say for a symlink to a directory only root may read) fails the snap rather than
 * having its data stored under this name.
 */
static snap_rc open_seen(int dirfd, const char *name, const char *path, const struct stat *seen, int *out,
                         snap_err *err)
{
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (S_ISDIR(seen->st_mode) ? O_DIRECTORY : 0);
    struct stat st;
    int fd;

    fd = openat(dirfd, name, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, flags);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR || errno == ENXIO)
            return changed(path, err);
        return unreadable(path, errno, err);
    }
    if (fstat(fd, &st) != 0 || st.st_dev != seen->st_dev || st.st_ino != seen->st_ino ||
        (st.st_mode & S_IFMT) != (seen->st_mode & S_IFMT)) {
        close(fd);
        return changed(path, err);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *out = fd;
    return SNAP_OK;
}

/* Whether the entry carries file capabilities (the index keeps it for the plan of a revert). */
/* Counts what a file adds to the stats; a symlink pointing out of its root is warned of. */
static void count_entry(fwalk *f, const char *path, const struct stat *st, const char *target)
{
    if (S_ISREG(st->st_mode)) {
        f->files++;
        /* The data of a hard-linked file is stored once, with its first name. */
        if (st->st_nlink <= 1 || first_link(f, st))
            f->bytes += (uint64_t)st->st_size;
    } else if (S_ISDIR(st->st_mode)) {
        f->dirs++;
    } else if (S_ISLNK(st->st_mode)) {
        f->links++;
        if (target != NULL && !util_link_inside(f->root, path, target)) {
            f->external++;
            log_warn(f->ctx, "symlink %s points outside %s (to %s): revert will need --allow-external-symlinks",
                     path, f->root, target);
        }
    } else {
        f->other++;
    }
}

/*
 * An entry that a reused part of the parent holds: counted, and walked into when a
 * directory, but not stored again.
 */
static snap_rc reuse_entry(fwalk *f, int dirfd, const char *name, const char *path, const struct stat *st,
                           int *dir_out, snap_err *err)
{
    char target[PATH_MAX + 1];
    ssize_t n = 0;

    if (S_ISDIR(st->st_mode)) {
        snap_rc rc = open_seen(dirfd, name, path, st, dir_out, err);
        if (rc != SNAP_OK)
            return rc;
    } else if (S_ISLNK(st->st_mode)) {
        n = readlinkat(dirfd, name, target, sizeof target - 1);
        if (n < 0)
            return errno == ENOENT ? changed(path, err) : unreadable(path, errno, err);
        target[n] = '\0';
    }
    count_entry(f, path, st, S_ISLNK(st->st_mode) ? target : NULL);
    return SNAP_OK;
}

/*
 * Stores dirfd/name, which the walk saw as st, under path. A directory's open fd is
 * handed to *dir_out for the walk beneath it; everything else is closed here.
 */
static snap_rc add_entry(fwalk *f, int dirfd, const char *name, const char *path, const struct stat *st,
                         int *dir_out, snap_err *err)
{
    struct archive_entry *e;
    char *source;
    int fd = -1;
    bool moved;
    snap_rc rc = SNAP_OK;

    if (S_ISSOCK(st->st_mode)) {
        log_warn(f->ctx, "skipping socket %s: a socket cannot be stored", path);
        return SNAP_OK;
    }
    if (frs_covered(f->reuse, path + 1, st, &moved))
        return moved ? changed(path, err) : reuse_entry(f, dirfd, name, path, st, dir_out, err);
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) {
        rc = open_seen(dirfd, name, path, st, &fd, err);
        if (rc != SNAP_OK)
            return rc;
    }
    /* libarchive reads what it needs by this name (link targets, ACLs, xattrs): through
     * /proc it resolves to what was opened and checked, not to what the path names now. */
    if (!f->proc)
        source = xstrdup(path);
    else if (fd >= 0)
        source = xasprintf("/proc/self/fd/%d", fd);
    else
        source = xasprintf("/proc/self/fd/%d/%s", dirfd, name);
    e = archive_entry_new();
    archive_entry_copy_sourcepath(e, source);
    archive_entry_copy_pathname(e, path + 1); /* stored without the leading '/' */
    if (archive_read_disk_entry_from_file(f->disk, e, fd, st) < ARCHIVE_WARN) {
        rc = err_set(err, SNAP_EFAIL, archive_errno(f->disk), "cannot read metadata of %s: %s", path,
                     archive_error_string(f->disk));
        goto out;
    }
    archive_entry_copy_pathname(e, path + 1);
    archive_entry_copy_sourcepath(e, path);
    rc = arc_write_entry(f->w, e, S_ISREG(st->st_mode) ? fd : -1, err);
    if (rc != SNAP_OK)
        goto out;
    frs_record(f->reuse, arc_writer_part_no(f->w), path + 1, st, arc_entry_has_caps(e));
    count_entry(f, path, st, S_ISLNK(st->st_mode) ? archive_entry_symlink(e) : NULL);
    if (S_ISDIR(st->st_mode)) {
        *dir_out = fd;
        fd = -1;
    }
out:
    archive_entry_free(e);
    free(source);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in an open directory, sorted (a snapshot of the same tree is the same tar). */
static snap_rc list_dir(int dirfd, const char *path, util_strv *names, snap_err *err)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (d == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return unreadable(path, e, err);
    }
    rewinddir(d);
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            util_strv_push(names, xstrdup(de->d_name));
    if (errno != 0) {
        int e = errno;
        closedir(d);
        return unreadable(path, e, err);
    }
    closedir(d);
    if (names->n > 1)
        qsort(names->v, names->n, sizeof *names->v, by_name);
    return SNAP_OK;
}

/* Stores what is beneath the directory open as dirfd (path), each entry relative to it. */
static snap_rc walk_dir(fwalk *f, int dirfd, const char *path, size_t rootlen, snap_err *err)
{
    util_strv names = {0};
    snap_rc rc = list_dir(dirfd, path, &names, err);

    for (size_t i = 0; i < names.n && rc == SNAP_OK; i++) {
        char *child = xasprintf("%s/%s", strcmp(path, "/") ? path : "", names.v[i]);
        const char *rel = child + rootlen + (child[rootlen] == '/');
        struct stat st;
        int sub = -1;

        if (excluded(f, rel)) {
            free(child);
            continue;
        }
        if (fstatat(dirfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) != 0)
            rc = errno == ENOENT ? changed(child, err) : unreadable(child, errno, err);
        if (rc == SNAP_OK) {
            util_failpoint("snap-files-open"); /* between the walk's look and the open */
            rc = add_entry(f, dirfd, names.v[i], child, &st, &sub, err);
        }
        if (rc == SNAP_OK && sub >= 0)
            rc = walk_dir(f, sub, child, rootlen, err);
        if (sub >= 0)
            close(sub);
        if (rc == SNAP_OK && ctx_interrupted(f->ctx, err))
            rc = SNAP_EINTR;
        free(child);
    }
    util_strv_free(&names);
    return rc;
}

static snap_rc capture_root(fwalk *f, const char *root, snap_err *err)
{
    /* A deferred safety snapshot reads the displaced copy, named as the root it was. */
    const snp_redirect *rd = snp_redirect_of(f->c, root);
    const char *from = rd != NULL ? rd->from : root;
    char *parent = util_dirname(from), *base = util_basename(from);
    const char *name = base[0] != '\0' ? base : "."; /* the root "/" */
    json_t *jpath = json_string(root);
    struct stat st;
    int pfd = -1, dfd = -1;
    snap_rc rc = SNAP_OK;

    if (rd != NULL && !f->proc) {
        rc = err_set(err, SNAP_EFAIL, 0, "cannot capture %s from %s without /proc", root, from);
        goto out;
    }
    if (jpath == NULL) {
        /* The manifest is JSON: a root it cannot name could never be reverted. */
        rc = err_set(err, SNAP_EUSAGE, EILSEQ, "cannot capture %s: its name is not valid UTF-8", root);
        err_hint(err, "rename it, or capture the directory that holds it (names beneath a root may be any bytes)");
        goto out;
    }
    pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0 || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT && snp_allow_missing(f->c)) {
            json_array_append_new(f->roots, json_pack("{s:O, s:s}", "path", jpath, "type", "absent"));
            goto out;
        }
        rc = err_sys(err, err_from_errno(errno), "cannot read %s", root);
        if (rc == SNAP_ENOTFOUND)
            err_hint(err, "check the path; every captured path must exist");
        else if (rc == SNAP_EUNREACH)
            err_hint(err, "run snap as a user that can read every captured file, or exclude it");
        goto out;
    }
    json_array_append_new(f->roots, json_pack("{s:O, s:s}", "path", jpath, "type",
                                              S_ISDIR(st.st_mode) ? "dir" : "file"));
    rc = add_entry(f, pfd, name, root, &st, &dfd, err);
    if (rc == SNAP_OK && dfd >= 0)
        rc = walk_dir(f, dfd, root, strlen(root), err);
    if (rc == SNAP_OK && ctx_interrupted(f->ctx, err))
        rc = SNAP_EINTR;
out:
    if (dfd >= 0)
        close(dfd);
    if (pfd >= 0)
        close(pfd);
    json_decref(jpath);
    free(parent);
    free(base);
    return rc;
}

/* The key a revert of root locks (restore/files.c): its real parent and its name. */
static char *lock_key(const char *root)
{
    char *parent = util_dirname(root), *base = util_basename(root), *real = realpath(parent, NULL);
    char *key = real ? xasprintf("%s/%s", strcmp(real, "/") ? real : "", base) : xstrdup(root);

    free(real);
    free(parent);
    free(base);
    return key;
}

/*
 * Shared locks on every root, taken before the first is read and held until the last
 * is: a revert holds them exclusively, so a snap never reads a tree half reverted.
 */
static snap_rc lock_roots(fwalk *f, const char *const *paths, size_t n, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    f->locks = xcalloc(n, sizeof *f->locks);
    for (size_t i = 0; i < n; i++)
        f->locks[i] = -1;
    f->nlocks = n;
    for (size_t i = 0; i < n && rc == SNAP_OK && !snp_locks_held(f->c); i++) {
        char *key = lock_key(paths[i]);
        rc = state_lock(f->ctx->cfg, key, true, &f->locks[i], err);
        free(key);
    }
    return rc;
}

snap_rc snp_files_capture_paths(snp_capture *c, const char *const *paths, size_t n,
                                const char *const *exclude, size_t nexclude, snap_err *err)
{
    fwalk f = {0};
    cat_component *comp = snp_component(c);
    json_t *excl = json_array();
    snap_rc rc;
    char *source = xstrdup("files:");

    f.c = c;
    f.ctx = snp_ctx(c);
    f.exclude = exclude;
    f.nexclude = nexclude;
    f.roots = json_array();
    f.disk = archive_read_disk_new();
    archive_read_disk_set_standard_lookup(f.disk);
    f.proc = access("/proc/self/fd", X_OK) == 0;
    for (size_t i = 0; i < n; i++) {
        char *tmp = xasprintf("%s%s%s", source, i ? " " : "", paths[i]);
        free(source);
        source = tmp;
    }
    for (size_t i = 0; i < nexclude; i++)
        json_array_append_new(excl, json_string(exclude[i]));
    rc = lock_roots(&f, paths, n, err);
    if (rc == SNAP_OK)
        f.reuse = frs_new(c, source, excl, paths, n);
    if (rc == SNAP_OK)
        rc = snp_writer_new(c, &f.w, err);
    for (size_t i = 0; rc == SNAP_OK && i < n; i++) {
        f.root = paths[i];
        rc = capture_root(&f, paths[i], err);
    }
    if (rc == SNAP_OK)
        rc = arc_writer_finish(f.w, err);
    if (rc == SNAP_OK)
        rc = frs_finish(f.reuse, err);
    frs_free(f.reuse);
    arc_writer_free(f.w);
    for (size_t i = 0; i < f.nlocks; i++)
        if (f.locks[i] >= 0)
            close(f.locks[i]);
    free(f.locks);
    archive_read_free(f.disk);
    tdestroy(f.seen, free);
    json_object_set_new(cat_component_info(comp), "roots", f.roots);
    json_object_set_new(cat_component_info(comp), "exclude", excl);
    json_object_set_new(cat_component_stats(comp), "files", json_integer((json_int_t)f.files));
    json_object_set_new(cat_component_stats(comp), "directories", json_integer((json_int_t)f.dirs));
    json_object_set_new(cat_component_stats(comp), "symlinks", json_integer((json_int_t)f.links));
    json_object_set_new(cat_component_stats(comp), "bytes", json_integer((json_int_t)f.bytes));
    json_object_set_new(cat_component_info(comp), "external_symlinks", json_integer((json_int_t)f.external));
    cat_component_set_source(comp, source);
    free(source);
    return rc;
}

static snap_rc files_capture(snp_capture *c, snap_err *err)
{
    const src_opts *so = snp_opts(c);
    const util_strv *raw = &so->paths, *exclude = &so->exclude;
    util_strv paths = {0};
    snap_rc rc = SNAP_OK;

    if (raw->n == 0) {
        err_set(err, SNAP_EUSAGE, 0, "[source %s] names no paths", snp_source_name(c));
        err_hint(err, "add `paths = /etc/app /srv/app/config` to the section");
        rc = SNAP_EUSAGE;
    }
    for (size_t i = 0; i < raw->n; i++)
        (void)util_strv_add_abs(&paths, raw->v[i]);
    if (rc == SNAP_OK)
        rc = snp_files_capture_paths(c, (const char *const *)paths.v, paths.n,
                                     (const char *const *)exclude->v, exclude->n, err);
    util_strv_free(&paths);
    return rc;
}

/* The sizes of the regular files under the source's paths: a walk that only stats. */
static uint64_t files_estimate(snp_capture *c)
{
    const util_strv *paths = &snp_opts(c)->paths;
    util_strv raw = {0};
    uint64_t total = 0;
    FTS *fts;
    FTSENT *e;

    for (size_t i = 0; i < paths->n; i++)
        util_strv_add_one(paths->v[i], &raw);
    util_strv_push(&raw, NULL); /* fts wants a NULL-terminated list */
    raw.n--;
    fts = raw.n > 0 ? fts_open(raw.v, FTS_PHYSICAL | FTS_NOCHDIR, NULL) : NULL;
    while (fts != NULL && (e = fts_read(fts)) != NULL && !ctx_interrupted(snp_ctx(c), NULL))
        if (e->fts_info == FTS_F)
            total += (uint64_t)e->fts_statp->st_size;
    if (fts != NULL)
        fts_close(fts);
    util_strv_free(&raw);
    return total;
}

const snp_driver snp_files_driver = {
    .type = "files",
    .capture = files_capture,
    .estimate = files_estimate,
};
