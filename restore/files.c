/* files.c: the files target: stage a sibling tree, verify it, swap it in with RENAME_EXCHANGE. */
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../common/archive.h"
#include "../common/util.h"
#include "restore.h"
#include "restore_int.h"

#define SAMPLE_MAX 20

/* ---- roots and paths -------------------------------------------------------------- */

static json_t *roots(rst_target *t)
{
    return json_object_get(rst_state(t), "roots");
}

static const char *rget(const json_t *r, const char *key)
{
    return json_string_value(json_object_get(r, key));
}

/* A stored name is relative, without "." or ".." components. */
static bool safe_name(const char *p)
{
    if (p[0] == '/' || p[0] == '\0')
        return false;
    for (const char *s = p; s != NULL; s = strchr(s, '/')) {
        if (*s == '/')
            s++;
        if (strncmp(s, "..", 2) == 0 && (s[2] == '/' || s[2] == '\0'))
            return false;
    }
    return true;
}

/* The root an archive name belongs to, and the rest of the name after it ("" for the root). */
static const json_t *root_of(const json_t *rts, const char *name, const char **rest)
{
    const json_t *r;
    size_t i;

    json_array_foreach(rts, i, r) {
        const char *s = rget(r, "stored");
        size_t n = strlen(s);
        if (strncmp(name, s, n) == 0 && (name[n] == '\0' || name[n] == '/')) {
            *rest = name + n;
            return r;
        }
    }
    return NULL;
}

/* ---- plan ------------------------------------------------------------------------- */

typedef struct name_set {
    char **v;
    size_t n, cap;
} name_set;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sample(json_t *plan, const char *kind, const char *path)
{
    json_t *a = json_object_get(plan, kind);
    json_t *counts = json_object_get(plan, "changes");
    json_int_t c = json_integer_value(json_object_get(counts, kind));

    json_object_set_new(counts, kind, json_integer(c + 1));
    if (a == NULL) {
        a = json_array();
        json_object_set_new(plan, kind, a);
    }
    if (json_array_size(a) < SAMPLE_MAX)
        json_array_append_new(a, json_string(path));
}

/*
 * What the revert changes, for --dry-run and the prompt: names in the snapshot (read from
 * its parts, verifying them) against the live tree. Entries that differ in type, size,
 * mode or mtime are "replace".
 */
static snap_rc plan_diff(rst_target *t, snap_err *err)
{
    const cat_component *c = rst_component(t);
    name_set set = {0};
    json_t *plan = rst_plan(t), *r;
    snap_rc rc = SNAP_OK;
    size_t i;

    json_object_set_new(plan, "changes", json_pack("{s:i, s:i, s:i, s:i}", "replace", 0, "add", 0, "remove", 0,
                                                   "unchanged", 0));
    for (size_t p = 0; p < cat_component_nparts(c) && rc == SNAP_OK; p++) {
        const char *key, *sha;
        uint64_t size, entries;
        arc_reader *ar;
        struct archive_entry *e;

        cat_component_part(c, p, &key, &size, &sha, &entries);
        rc = arc_reader_open(rst_store(t), key, size, sha, rst_ctx(t), NULL, &ar, err);
        while (rc == SNAP_OK && (rc = arc_reader_next(ar, &e, err)) == SNAP_OK && e != NULL) {
            const char *rest, *name = archive_entry_pathname(e);
            const json_t *root = name != NULL ? root_of(roots(t), name, &rest) : NULL;
            char *live;
            struct stat st;
            if (root == NULL)
                continue; /* staging refuses it, with the reason */
            live = xasprintf("%s%s", rget(root, "path"), rest);
            if (strlen(live) > 1 && live[strlen(live) - 1] == '/')
                live[strlen(live) - 1] = '\0';
            if (set.n == set.cap) {
                set.cap = set.cap ? set.cap * 2 : 1024;
                set.v = xrealloc(set.v, set.cap * sizeof *set.v);
            }
            set.v[set.n++] = xstrdup(live);
            if (lstat(live, &st) != 0)
                sample(plan, "add", live);
            else if ((st.st_mode & S_IFMT) != archive_entry_filetype(e) ||
                     (st.st_mode & 07777) != (archive_entry_perm(e) & 07777) ||
                     (S_ISREG(st.st_mode) && (st.st_size != archive_entry_size(e) ||
                                              st.st_mtime != archive_entry_mtime(e))))
                sample(plan, "replace", live);
            else
                sample(plan, "unchanged", live);
            free(live);
        }
        if (rc == SNAP_OK)
            rc = arc_reader_close(ar, err);
        else if (ar != NULL)
            arc_reader_close(ar, NULL);
    }
    qsort(set.v, set.n, sizeof *set.v, cmp_str);
    json_array_foreach(roots(t), i, r) {
        char *argv[2] = {(char *)(uintptr_t)rget(r, "path"), NULL};
        FTS *fts;
        FTSENT *ent;
        if (rc != SNAP_OK || !json_is_true(json_object_get(r, "existed")))
            continue;
        fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, NULL);
        while (fts != NULL && (ent = fts_read(fts)) != NULL) {
            const char *p = ent->fts_path;
            if (ent->fts_info == FTS_DP)
                continue;
            if (bsearch(&p, set.v, set.n, sizeof *set.v, cmp_str) == NULL)
                sample(plan, "remove", p);
        }
        if (fts != NULL)
            fts_close(fts);
    }
    for (i = 0; i < set.n; i++)
        free(set.v[i]);
    free(set.v);
    json_object_del(plan, "unchanged");
    return rc;
}

static snap_rc check_space(rst_target *t, const char *dir, snap_err *err)
{
    struct statvfs vfs;
    bool check = true;
    uint64_t need = (uint64_t)json_integer_value(
        json_object_get(cat_component_stats((cat_component *)(uintptr_t)rst_component(t)), "bytes"));
    const char *opt = rst_option(t, "check_free_space");

    if (opt != NULL && (strcmp(opt, "false") == 0 || strcmp(opt, "no") == 0 || strcmp(opt, "0") == 0))
        check = false;
    if (!check || statvfs(dir, &vfs) != 0)
        return SNAP_OK;
    uint64_t have = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (have < need + need / 50) {
        char h[32], n[32];
        util_human_bytes(have, h);
        util_human_bytes(need, n);
        err_set(err, SNAP_EFAIL, ENOSPC, "not enough free space to stage %s in %s: %s free, %s needed",
                rst_component_name(t), dir, h, n);
        err_hint(err, "free space on that filesystem; nothing was changed");
        return SNAP_EFAIL;
    }
    return SNAP_OK;
}

static snap_rc files_plan(rst_target *t, snap_err *err)
{
    json_t *info = cat_component_info((cat_component *)(uintptr_t)rst_component(t));
    json_t *src = json_object_get(info, "roots"), *r, *out = json_array();
    json_t *plan = rst_plan(t);
    const char *to = rst_to(t);
    const char *id = rst_revert_id(t);
    snap_rc rc = SNAP_OK;
    size_t i;

    json_object_set_new(rst_state(t), "roots", out);
    json_array_foreach(src, i, r) {
        const char *path = rget(r, "path"), *type = rget(r, "type");
        char *live, *parent, *real, *base;
        struct stat st;

        if (to == NULL)
            live = xstrdup(path);
        else if (json_array_size(src) == 1)
            live = util_abspath(to);
        else {
            char *tmp = xasprintf("%s/%s", to, path);
            live = util_abspath(tmp);
            free(tmp);
        }
        parent = util_dirname(live);
        base = util_basename(live);
        real = realpath(parent, NULL);
        if (real == NULL) {
            rc = err_sys(err, err_from_errno(errno), "cannot restore to %s: its directory %s is not there", live, parent);
            err_hint(err, to ? "create the parent directory first" : "create the parent directory, then revert again");
        } else if (access(real, W_OK) != 0) {
            rc = err_sys(err, SNAP_EUNREACH, "cannot write in %s", real);
            err_hint(err, "revert as a user that may write there");
        }
        if (rc == SNAP_OK) {
            char *full = xasprintf("%s/%s", strcmp(real, "/") ? real : "", base);
            bool existed = lstat(full, &st) == 0;
            json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "path", full, "type", type, "stored", path + 1,
                                  "existed", existed, "staged", "", "displaced", "");
            char *staged = xasprintf("%s/.%s.snap-stage-%s", strcmp(real, "/") ? real : "", base, id);
            char *displaced = xasprintf("%s/.%s.pre-revert-%s", strcmp(real, "/") ? real : "", base, id);
            json_object_set_new(o, "staged", json_string(staged));
            json_object_set_new(o, "displaced", json_string(displaced));
            free(staged);
            free(displaced);
            json_array_append_new(out, o);
            if (to != NULL && existed) {
                rc = err_set(err, SNAP_ECONFLICT, EEXIST, "%s exists; --to restores into a new path only", full);
                err_hint(err, "choose a path that does not exist yet");
            }
            if (rc == SNAP_OK && strcmp(type, "absent") != 0)
                rc = check_space(t, real, err);
            if (i == 0)
                rst_set_lock_key(t, full);
            free(full);
        }
        free(real);
        free(parent);
        free(base);
        free(live);
        if (rc != SNAP_OK)
            return rc;
    }
    json_object_set_new(plan, "paths", json_deep_copy(out));
    json_object_set_new(plan, "action", json_string(to ? "restore-beside" : "swap"));
    json_object_set_new(plan, "files", json_deep_copy(json_object_get(
        cat_component_stats((cat_component *)(uintptr_t)rst_component(t)), "files")));
    if (rst_plan_detail(t))
        rc = plan_diff(t, err);
    return rc;
}

static snap_rc files_safety_source(rst_target *t, cfg *c, const char *section, snap_err *err)
{
    const json_t *r;
    size_t i;

    (void)err;
    cfg_set(c, section, "type", "files");
    json_array_foreach(roots(t), i, r)
        cfg_add(c, section, "path", rget(r, "path"));
    return SNAP_OK;
}

/* ---- stage ------------------------------------------------------------------------ */

typedef struct link_todo {
    char *path, *target;
} link_todo;

typedef struct dir_meta {
    char *path;
    struct timespec times[2];
    mode_t mode;
} dir_meta;

typedef struct stage {
    rst_target *t;
    snap_ctx *ctx;
    int flags;
    bool allow_external;
    bool parallel;
    prg_bar *bar;
    pthread_mutex_t mu;
    size_t next_part;
    bool failed;
    snap_err err;
    uint64_t files, dirs, links, bytes;
    link_todo *todo;
    size_t ntodo;
    dir_meta *dirs_meta;
    size_t ndirs;
    struct archive_entry **symlinks; /* created last, so nothing is written through them */
    size_t nsymlinks;
} stage;

static void stage_fail(stage *s, const snap_err *e)
{
    pthread_mutex_lock(&s->mu);
    if (!s->failed) {
        s->failed = true;
        s->err = *e;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Rewrites an entry's names into the staging tree; refuses what would escape it. */
snap_rc rst_files_map_entry_int(const json_t *rts, bool allow_external, struct archive_entry *e,
                                bool *defer, snap_err *err)
{
    const char *name = archive_entry_pathname(e), *rest;
    const char *hl = archive_entry_hardlink(e);
    const json_t *root;
    char *staged;

    *defer = false;
    if (name == NULL || !safe_name(name)) {
        err_set(err, SNAP_EVERIFY, 0, "refusing archive entry '%s': it escapes the target", name ? name : "");
        err_hint(err, "the snapshot was altered or is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    root = root_of(rts, name, &rest);
    if (root == NULL) {
        err_set(err, SNAP_EVERIFY, 0, "refusing archive entry '%s': it is outside the captured paths", name);
        err_hint(err, "the snapshot was altered or is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (archive_entry_filetype(e) == AE_IFLNK && !allow_external) {
        const char *target = archive_entry_symlink(e);
        char *live = xasprintf("%s%s", rget(root, "path"), rest);
        bool inside = target != NULL && util_link_inside(rget(root, "path"), live, target);
        free(live);
        if (!inside) {
            err_set(err, SNAP_EVERIFY, 0, "refusing symlink /%s -> %s: it points outside %s", name,
                    target ? target : "", rget(root, "path"));
            err_hint(err, "pass --allow-external-symlinks if the snapshot is trusted and such links are expected");
            return SNAP_EVERIFY;
        }
    }
    /* name stays the entry's own until the hard link is judged: the message shows it. */
    char *staged_name = xasprintf("%s%s", rget(root, "staged"), rest);
    if (hl != NULL) {
        const json_t *hroot;
        struct stat st;
        if (!safe_name(hl) || (hroot = root_of(rts, hl, &rest)) == NULL) {
            err_set(err, SNAP_EVERIFY, 0, "refusing hard link %s -> %s: it escapes the target", name, hl);
            free(staged_name);
            return SNAP_EVERIFY;
        }
        staged = xasprintf("%s%s", rget(hroot, "staged"), rest);
        archive_entry_copy_hardlink(e, staged);
        /* The first name of a link group may sit in a part another worker has not reached. */
        *defer = lstat(staged, &st) != 0;
        free(staged);
    }
    archive_entry_copy_pathname(e, staged_name);
    free(staged_name);
    return SNAP_OK;
}

static snap_rc extract_part(stage *s, size_t p, snap_err *err)
{
    const char *key, *sha;
    uint64_t size, entries, seen = 0;
    struct archive *disk = archive_write_disk_new();
    struct archive_entry *e;
    arc_reader *ar;
    snap_rc rc;

    archive_write_disk_set_options(disk, s->flags);
    archive_write_disk_set_standard_lookup(disk);
    cat_component_part(rst_component(s->t), p, &key, &size, &sha, &entries);
    rc = arc_reader_open(rst_store(s->t), key, size, sha, s->ctx, s->bar, &ar, err);
    while (rc == SNAP_OK && !s->failed) {
        bool defer;
        rc = arc_reader_next(ar, &e, err);
        if (rc != SNAP_OK || e == NULL)
            break;
        seen++;
        const char *name = archive_entry_pathname(e);
        if (name != NULL && strncmp(name, ARC_META_PREFIX, strlen(ARC_META_PREFIX)) == 0)
            continue; /* a driver's own records, not files */
        rc = rst_files_map_entry_int(roots(s->t), s->allow_external, e, &defer, err);
        if (rc != SNAP_OK)
            break;
        if (defer) {
            pthread_mutex_lock(&s->mu);
            s->todo = xrealloc(s->todo, (s->ntodo + 1) * sizeof *s->todo);
            s->todo[s->ntodo].path = xstrdup(archive_entry_pathname(e));
            s->todo[s->ntodo++].target = xstrdup(archive_entry_hardlink(e));
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_hardlink(e) == NULL) {
            pthread_mutex_lock(&s->mu);
            s->symlinks = xrealloc(s->symlinks, (s->nsymlinks + 1) * sizeof *s->symlinks);
            s->symlinks[s->nsymlinks++] = archive_entry_clone(e);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (s->parallel && archive_entry_filetype(e) == AE_IFDIR) {
            pthread_mutex_lock(&s->mu);
            s->dirs_meta = xrealloc(s->dirs_meta, (s->ndirs + 1) * sizeof *s->dirs_meta);
            dir_meta *d = &s->dirs_meta[s->ndirs++];
            d->path = xstrdup(archive_entry_pathname(e));
            d->times[0].tv_sec = archive_entry_atime(e);
            d->times[0].tv_nsec = archive_entry_atime_nsec(e);
            d->times[1].tv_sec = archive_entry_mtime(e);
            d->times[1].tv_nsec = archive_entry_mtime_nsec(e);
            d->mode = archive_entry_perm(e);
            pthread_mutex_unlock(&s->mu);
        }
        uint64_t bytes = 0;
        rc = arc_reader_extract(ar, disk, e, &bytes, err);
        if (rc == SNAP_OK) {
            pthread_mutex_lock(&s->mu);
            s->bytes += bytes;
            if (archive_entry_hardlink(e) != NULL)
                s->files++;
            else switch (archive_entry_filetype(e)) {
            case AE_IFREG: s->files++; break;
            case AE_IFDIR: s->dirs++; break;
            case AE_IFLNK: s->links++; break;
            default: break;
            }
            pthread_mutex_unlock(&s->mu);
        }
        if (rc == SNAP_OK)
            util_failpoint("stage-entry");
    }
    /* Directory times and modes are set when the disk writer closes. */
    if (archive_write_close(disk) != ARCHIVE_OK && rc == SNAP_OK)
        rc = err_set(err, SNAP_EFAIL, archive_errno(disk), "cannot finish restoring %s: %s", key,
                     archive_error_string(disk));
    archive_write_free(disk);
    if (ar != NULL) {
        if (rc == SNAP_OK)
            rc = arc_reader_close(ar, err);
        else
            arc_reader_close(ar, NULL);
    }
    if (rc == SNAP_OK && seen != entries)
        rc = err_set(err, SNAP_EVERIFY, 0, "part %s has %llu entries, the manifest says %llu", key,
                     (unsigned long long)seen, (unsigned long long)entries);
    return rc;
}

static void *stage_worker(void *arg)
{
    stage *s = arg;
    size_t nparts = cat_component_nparts(rst_component(s->t));

    for (;;) {
        size_t p;
        snap_err e;
        pthread_mutex_lock(&s->mu);
        p = s->next_part++;
        pthread_mutex_unlock(&s->mu);
        if (p >= nparts || s->failed)
            break;
        if (extract_part(s, p, &e) != SNAP_OK)
            stage_fail(s, &e);
    }
    return NULL;
}

static snap_rc check_stats(stage *s, snap_err *err)
{
    json_t *stats = cat_component_stats((cat_component *)(uintptr_t)rst_component(s->t));
    static const char *const keys[] = {"files", "directories", "symlinks", "bytes"};
    uint64_t have[] = {s->files, s->dirs, s->links, s->bytes};

    for (size_t i = 0; i < 4; i++) {
        json_int_t want = json_integer_value(json_object_get(stats, keys[i]));
        if ((uint64_t)want != have[i]) {
            err_set(err, SNAP_EVERIFY, 0, "%s: restored %llu %s, the manifest says %lld", rst_component_name(s->t),
                    (unsigned long long)have[i], keys[i], (long long)want);
            err_hint(err, "the snapshot is damaged; nothing was changed");
            return SNAP_EVERIFY;
        }
    }
    return SNAP_OK;
}

static snap_rc files_stage(rst_target *t, snap_err *err)
{
    const cat_component *c = rst_component(t);
    size_t nparts = cat_component_nparts(c), nthreads;
    int jobs = rst_ctx(t)->jobs > 0 ? rst_ctx(t)->jobs : 1;
    const char *ext = rst_option(t, "allow_external_symlinks");
    stage s = {0};
    pthread_t th[64];
    const json_t *r;
    uint64_t raw = 0;
    snap_rc rc = SNAP_OK;
    size_t i;

    s.t = t;
    s.ctx = rst_ctx(t);
    s.allow_external = ext != NULL && strcmp(ext, "true") == 0;
    /*
     * Names were checked (no "..", nothing absolute, inside a root) and the staging tree is
     * new, so the only symlinks in it are the archive's own: they are created after
     * everything else, as GNU tar delays them, and no entry can be written through one.
     * That replaces ARCHIVE_EXTRACT_SECURE_SYMLINKS, which walks every component of every
     * absolute name.
     */
    s.flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_XATTR |
              ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_NO_OVERWRITE;
    if (geteuid() == 0)
        s.flags |= ARCHIVE_EXTRACT_OWNER;
    pthread_mutex_init(&s.mu, NULL);
    for (i = 0; i < nparts; i++) {
        const char *key, *sha;
        uint64_t size, entries;
        cat_component_part(c, i, &key, &size, &sha, &entries);
        raw += size;
    }
    s.bar = prg_new(rst_component_name(t), raw, s.ctx->progress);
    json_array_foreach(roots(t), i, r) {
        if (util_rm_rf(rget(r, "staged"), err) != SNAP_OK)
            return err->code;
    }
    nthreads = nparts < (size_t)jobs ? nparts : (size_t)jobs;
    if (nthreads > sizeof th / sizeof th[0])
        nthreads = sizeof th / sizeof th[0];
    s.parallel = nthreads > 1;
    if (nthreads <= 1) {
        stage_worker(&s);
    } else {
        for (i = 0; i < nthreads; i++)
            pthread_create(&th[i], NULL, stage_worker, &s);
        for (i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
    }
    prg_free(s.bar);
    if (s.failed) {
        *err = s.err;
        rc = err->code;
    }
    if (s.nsymlinks > 0) {
        struct archive *disk = archive_write_disk_new();
        archive_write_disk_set_options(disk, s.flags);
        archive_write_disk_set_standard_lookup(disk);
        for (i = 0; i < s.nsymlinks; i++) {
            if (rc == SNAP_OK) {
                if (archive_write_header(disk, s.symlinks[i]) < ARCHIVE_WARN ||
                    archive_write_finish_entry(disk) < ARCHIVE_WARN)
                    rc = err_set(err, SNAP_EFAIL, archive_errno(disk), "cannot create symlink %s: %s",
                                 archive_entry_pathname(s.symlinks[i]), archive_error_string(disk));
                else
                    s.links++;
            }
            archive_entry_free(s.symlinks[i]);
        }
        archive_write_free(disk);
        free(s.symlinks);
    }
    for (i = 0; i < s.ntodo; i++) {
        if (rc == SNAP_OK && link(s.todo[i].target, s.todo[i].path) != 0)
            rc = err_sys(err, SNAP_EFAIL, "cannot link %s to %s", s.todo[i].path, s.todo[i].target);
        if (rc == SNAP_OK)
            s.files++;
        free(s.todo[i].path);
        free(s.todo[i].target);
    }
    /* Several writers each fixed their own directories up; set them all once more at the end. */
    for (i = s.ndirs; i-- > 0;) {
        if (rc == SNAP_OK) {
            chmod(s.dirs_meta[i].path, s.dirs_meta[i].mode);
            utimensat(AT_FDCWD, s.dirs_meta[i].path, s.dirs_meta[i].times, AT_SYMLINK_NOFOLLOW);
        }
        free(s.dirs_meta[i].path);
    }
    free(s.todo);
    free(s.dirs_meta);
    pthread_mutex_destroy(&s.mu);
    if (rc == SNAP_OK)
        rc = check_stats(&s, err);
    /* The staged data must be on disk before it can become live. */
    json_array_foreach(roots(t), i, r) {
        struct stat st;
        int fd;
        if (rc != SNAP_OK || strcmp(rget(r, "type"), "absent") == 0)
            continue;
        if (lstat(rget(r, "staged"), &st) != 0) {
            rc = err_set(err, SNAP_EVERIFY, 0, "%s: the snapshot holds nothing for %s", rst_component_name(t),
                         rget(r, "path"));
            break;
        }
        json_object_set_new((json_t *)(uintptr_t)r, "ino", json_integer((json_int_t)st.st_ino));
        json_object_set_new((json_t *)(uintptr_t)r, "dev", json_integer((json_int_t)st.st_dev));
        fd = open(rget(r, "staged"), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            fd = open(rget(r, "path"), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (syncfs(fd) != 0)
                rc = err_sys(err, SNAP_EFAIL, "cannot sync the staged copy of %s", rget(r, "path"));
            close(fd);
        }
    }
    if (rc != SNAP_OK)
        err_prefix(err, "stage %s", rst_component_name(t));
    return rc;
}

/* ---- cut-over --------------------------------------------------------------------- */

static bool same_inode(const char *path, const json_t *r)
{
    struct stat st;

    return lstat(path, &st) == 0 && (json_int_t)st.st_ino == json_integer_value(json_object_get(r, "ino")) &&
           (json_int_t)st.st_dev == json_integer_value(json_object_get(r, "dev"));
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static snap_rc sync_parent(const char *path, snap_err *err)
{
    char *dir = util_dirname(path);
    snap_rc rc = util_fsync_dir(dir, err);
    free(dir);
    return rc;
}

/* Puts one root at the point. Every step checks where things are, so it can run again. */
static snap_rc switch_root(const json_t *r, snap_err *err)
{
    const char *live = rget(r, "path"), *staged = rget(r, "staged"), *old = rget(r, "displaced");

    if (strcmp(rget(r, "type"), "absent") == 0) {
        /* The path did not exist at the point: move the live one aside. */
        if (exists(live) && rename(live, old) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot move %s aside", live);
        return sync_parent(live, err);
    }
    if (!same_inode(live, r)) {
        if (!exists(staged))
            return err_set(err, SNAP_EFAIL, ENOENT, "the staged copy %s is gone", staged);
        if (exists(live)) {
            if (renameat2(AT_FDCWD, staged, AT_FDCWD, live, RENAME_EXCHANGE) != 0)
                return err_sys(err, SNAP_EFAIL, "cannot swap %s into place", live);
        } else if (renameat2(AT_FDCWD, staged, AT_FDCWD, live, RENAME_NOREPLACE) != 0) {
            return err_sys(err, SNAP_EFAIL, "cannot move %s into place", live);
        }
    }
    /* After the exchange the staging name holds the old state: keep it as the undo. */
    if (exists(staged) && rename(staged, old) != 0)
        return err_sys(err, SNAP_EFAIL, "cannot keep the old %s", live);
    return sync_parent(live, err);
}

static snap_rc unswitch_root(const json_t *r, snap_err *err)
{
    const char *live = rget(r, "path"), *staged = rget(r, "staged"), *old = rget(r, "displaced");
    bool existed = json_is_true(json_object_get(r, "existed"));

    if (strcmp(rget(r, "type"), "absent") == 0) {
        if (exists(old) && !exists(live) && rename(old, live) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot move %s back", live);
        return sync_parent(live, err);
    }
    if (!same_inode(live, r))
        return SNAP_OK; /* never switched */
    if (!existed) {
        if (rename(live, staged) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot move %s back out", live);
    } else {
        const char *holder = exists(old) ? old : staged;
        if (renameat2(AT_FDCWD, holder, AT_FDCWD, live, RENAME_EXCHANGE) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot swap the old %s back", live);
        if (holder == old && rename(old, staged) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot move the staged copy of %s aside", live);
    }
    return sync_parent(live, err);
}

static snap_rc files_cutover(rst_target *t, snap_err *err)
{
    const json_t *r;
    size_t i;

    json_array_foreach(roots(t), i, r) {
        snap_rc rc = switch_root(r, err);
        if (rc != SNAP_OK) {
            /* Put back the roots of this component already switched. */
            for (size_t k = i; k-- > 0;) {
                snap_err e;
                if (unswitch_root(json_array_get(roots(t), k), &e) != SNAP_OK)
                    log_warn(rst_ctx(t), "%s", e.msg);
            }
            return rc;
        }
    }
    return SNAP_OK;
}

static snap_rc files_rollback(rst_target *t, snap_err *err)
{
    size_t n = json_array_size(roots(t));

    for (size_t i = n; i-- > 0;) {
        snap_rc rc = unswitch_root(json_array_get(roots(t), i), err);
        if (rc != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

static snap_rc files_discard(rst_target *t, snap_err *err)
{
    const json_t *r;
    size_t i;

    json_array_foreach(roots(t), i, r) {
        const char *staged = rget(r, "staged");
        if (staged[0] == '\0' || same_inode(rget(r, "path"), r))
            continue; /* switched: not ours to remove */
        snap_rc rc = util_rm_rf(staged, err);
        if (rc != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

static snap_rc files_finish(rst_target *t, bool drop_old, snap_err *err)
{
    const json_t *r;
    size_t i;

    json_array_foreach(roots(t), i, r) {
        const char *old = rget(r, "displaced");
        if (drop_old) {
            snap_rc rc = util_rm_rf(old, err);
            if (rc != SNAP_OK)
                return rc;
        } else if (exists(old)) {
            log_info(rst_ctx(t), "kept the displaced %s as %s", rget(r, "path"), old);
        }
    }
    return SNAP_OK;
}

const rst_driver rst_files_driver = {
    .type = "files",
    .plan = files_plan,
    .safety_source = files_safety_source,
    .stage = files_stage,
    .cutover = files_cutover,
    .rollback = files_rollback,
    .discard = files_discard,
    .finish = files_finish,
};
