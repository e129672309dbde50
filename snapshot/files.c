/* files.c: the files source: directories and files with their metadata, as tar entries. */
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
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
} fwalk;

static int by_name(const FTSENT **a, const FTSENT **b)
{
    return strcmp((*a)->fts_name, (*b)->fts_name);
}

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

static snap_rc add_entry(fwalk *f, FTSENT *ent, snap_err *err)
{
    const struct stat *st = ent->fts_statp;
    struct archive_entry *e;
    int fd = -1;
    snap_rc rc = SNAP_OK;

    if (S_ISSOCK(st->st_mode)) {
        log_warn(f->ctx, "skipping socket %s: a socket cannot be stored", ent->fts_path);
        return SNAP_OK;
    }
    if (S_ISREG(st->st_mode)) {
        fd = open(ent->fts_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (fd < 0 && errno == EPERM)
            fd = open(ent->fts_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rc = err_sys(err, err_from_errno(errno), "cannot read %s", ent->fts_path);
            if (rc == SNAP_EUNREACH)
                err_hint(err, "run snap as a user that can read every captured file, or exclude it");
            return rc;
        }
    }
    e = archive_entry_new();
    archive_entry_copy_sourcepath(e, ent->fts_path);
    archive_entry_copy_pathname(e, ent->fts_path + 1); /* stored without the leading '/' */
    if (archive_read_disk_entry_from_file(f->disk, e, fd, st) < ARCHIVE_WARN) {
        rc = err_set(err, SNAP_EFAIL, archive_errno(f->disk), "cannot read metadata of %s: %s",
                     ent->fts_path, archive_error_string(f->disk));
        goto out;
    }
    archive_entry_copy_pathname(e, ent->fts_path + 1);
    rc = arc_write_entry(f->w, e, fd, err);
    if (rc != SNAP_OK)
        goto out;
    if (S_ISREG(st->st_mode)) {
        f->files++;
        /* The data of a hard-linked file is stored once, with its first name. */
        if (st->st_nlink <= 1 || first_link(f, st))
            f->bytes += (uint64_t)st->st_size;
    } else if (S_ISDIR(st->st_mode)) {
        f->dirs++;
    } else if (S_ISLNK(st->st_mode)) {
        const char *target = archive_entry_symlink(e);
        f->links++;
        if (target != NULL && !util_link_inside(f->root, ent->fts_path, target)) {
            f->external++;
            log_warn(f->ctx, "symlink %s points outside %s (to %s): revert will need --allow-external-symlinks",
                     ent->fts_path, f->root, target);
        }
    } else {
        f->other++;
    }
out:
    archive_entry_free(e);
    if (fd >= 0)
        close(fd);
    return rc;
}

static snap_rc capture_root(fwalk *f, const char *root, snap_err *err)
{
    char *argv[2] = {(char *)(uintptr_t)root, NULL};
    struct stat st;
    FTS *fts;
    FTSENT *ent;
    size_t rootlen = strlen(root);
    snap_rc rc = SNAP_OK;

    if (lstat(root, &st) != 0) {
        if (errno == ENOENT && snp_allow_missing(f->c)) {
            json_array_append_new(f->roots, json_pack("{s:s, s:s}", "path", root, "type", "absent"));
            return SNAP_OK;
        }
        rc = err_sys(err, err_from_errno(errno), "cannot read %s", root);
        if (rc == SNAP_ENOTFOUND)
            err_hint(err, "check the path; every captured path must exist");
        return rc;
    }
    json_array_append_new(f->roots, json_pack("{s:s, s:s}", "path", root, "type",
                                              S_ISDIR(st.st_mode) ? "dir" : "file"));
    fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, by_name);
    if (fts == NULL)
        return err_sys(err, err_from_errno(errno), "cannot walk %s", root);
    while (rc == SNAP_OK) {
        errno = 0;
        if ((ent = fts_read(fts)) == NULL) {
            if (errno != 0)
                rc = err_sys(err, err_from_errno(errno), "cannot walk %s", root);
            break;
        }
        const char *rel = ent->fts_path + rootlen + (ent->fts_path[rootlen] == '/');

        switch (ent->fts_info) {
        case FTS_DP:
            continue;
        case FTS_DNR:
        case FTS_ERR:
        case FTS_NS:
            errno = ent->fts_errno;
            rc = err_sys(err, err_from_errno(errno), "cannot read %s", ent->fts_path);
            if (rc == SNAP_EUNREACH)
                err_hint(err, "run snap as a user that can read every captured file, or exclude it");
            continue;
        default:
            break;
        }
        if (ent->fts_level > 0 && excluded(f, rel)) {
            if (ent->fts_info == FTS_D)
                fts_set(fts, ent, FTS_SKIP);
            continue;
        }
        rc = add_entry(f, ent, err);
        if (rc == SNAP_OK && ctx_interrupted(f->ctx, err))
            rc = SNAP_EINTR;
    }
    fts_close(fts);
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
    rc = snp_writer_new(c, &f.w, err);
    for (size_t i = 0; rc == SNAP_OK && i < n; i++) {
        char *tmp = xasprintf("%s%s%s", source, i ? " " : "", paths[i]);
        free(source);
        source = tmp;
        f.root = paths[i];
        rc = capture_root(&f, paths[i], err);
    }
    if (rc == SNAP_OK)
        rc = arc_writer_finish(f.w, err);
    arc_writer_free(f.w);
    archive_read_free(f.disk);
    tdestroy(f.seen, free);
    for (size_t i = 0; i < nexclude; i++)
        json_array_append_new(excl, json_string(exclude[i]));
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

/* `paths` and `exclude` hold several, split on white space; `path` holds one, spaces and all. */
static bool split_words(const char *value, void *arg)
{
    char *copy = xstrdup(value), *save = NULL;

    for (char *tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
        util_strv_push(arg, xstrdup(tok));
    free(copy);
    return true;
}

static bool one_value(const char *value, void *arg)
{
    util_strv_push(arg, xstrdup(value));
    return true;
}

static snap_rc files_capture(snp_capture *c, snap_err *err)
{
    util_strv raw = {0}, paths = {0}, exclude = {0};
    snap_rc rc = SNAP_OK;

    snp_source_each(c, "paths", split_words, &raw);
    snp_source_each(c, "path", one_value, &raw);
    snp_source_each(c, "exclude", split_words, &exclude);
    if (raw.n == 0) {
        err_set(err, SNAP_EUSAGE, 0, "[source %s] names no paths", snp_source_name(c));
        err_hint(err, "add `paths = /etc/app /srv/app/config` to the section");
        rc = SNAP_EUSAGE;
    }
    for (size_t i = 0; i < raw.n; i++) {
        char *abs = util_abspath(raw.v[i]);
        for (size_t j = 0; j < paths.n && abs != NULL; j++)
            if (strcmp(paths.v[j], abs) == 0) {
                free(abs);
                abs = NULL;
            }
        if (abs != NULL)
            util_strv_push(&paths, abs);
    }
    if (rc == SNAP_OK)
        rc = snp_files_capture_paths(c, (const char *const *)paths.v, paths.n,
                                     (const char *const *)exclude.v, exclude.n, err);
    util_strv_free(&raw);
    util_strv_free(&paths);
    util_strv_free(&exclude);
    return rc;
}

const snp_driver snp_files_driver = {
    .type = "files",
    .capture = files_capture,
};
