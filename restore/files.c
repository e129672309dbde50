/* files.c: the files target: stage a sibling tree, verify it, swap it in with RENAME_EXCHANGE. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../catalog/arc.h"
#include "../common/pool.h"
#include "../common/state.h"
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


/* Device nodes, FIFOs, sockets, set-user/group-ID files and files with capabilities
 * (security.capability makes a program as powerful as set-user-ID root): restored only
 * when trusted. mode: type and permissions. */
static bool special_mode(mode_t mode, bool caps)
{
    mode_t type = mode & S_IFMT;
    return type == S_IFCHR || type == S_IFBLK || type == S_IFIFO || type == S_IFSOCK ||
           (type == S_IFREG && (mode & (S_ISUID | S_ISGID)) != 0) || caps;
}

/* The same of an entry read from a part. */
static bool is_special(struct archive_entry *e)
{
    return special_mode(archive_entry_mode(e), arc_entry_has_caps(e));
}

static bool special_allowed(rst_target *t)
{
    return rst_trusted(t) || rst_options(t)->allow_special_files;
}

/* The plan warns about special files, and says whether they would be restored. */
static void special_note(rst_target *t, json_t *plan)
{
    json_t *a = json_object_get(plan, "special"), *notes;
    json_int_t n = json_integer_value(json_object_get(json_object_get(plan, "changes"), "special"));

    json_object_del(json_object_get(plan, "changes"), "special");
    if (a == NULL)
        return;
    json_object_set_new(plan, "special_files", json_integer(n));
    notes = json_object_get(plan, "notes");
    if (notes == NULL) {
        notes = json_array();
        json_object_set_new(plan, "notes", notes);
    }
    json_array_append_new(notes, json_sprintf("warning: %lld device nodes, FIFOs or set-id files (first %s)%s",
                                              (long long)n, json_string_value(json_array_get(a, 0)),
                                              special_allowed(t) ? ""
                                                                 : "; the revert refuses them without "
                                                                   "--allow-special-files"));
}

/* The live paths the snapshot names, as the SHA-256 of each cut to 128 bits: 16 bytes a
 * name, whatever its length. Two names share one with odds of about n^2 / 2^129; then a
 * name to remove would be left out of the plan, which only shows it. */
typedef struct name_set {
    unsigned char (*v)[16];
    size_t n, cap;
    util_sha256 *h;
} name_set;

static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, 16);
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

/* What the plan compares of an entry, from a part or from the entry index. */
typedef struct plan_name {
    const char *name;
    mode_t mode; /* type and permissions */
    int64_t size;
    time_t mtime;
    bool caps; /* file capabilities */
} plan_name;

/* One name of the snapshot against the live tree. */
static void plan_entry(rst_target *t, json_t *plan, name_set *set, const plan_name *e)
{
    const char *rest, *name = e->name;
    const json_t *root = name != NULL ? root_of(roots(t), name, &rest) : NULL;
    char *live;
    struct stat st;

    if (root == NULL || !safe_name(name))
        return; /* staging refuses it, with the reason */
    live = xasprintf("%s%s", rget(root, "path"), rest);
    if (strlen(live) > 1 && live[strlen(live) - 1] == '/')
        live[strlen(live) - 1] = '\0';
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap + set->cap / 2 : 1024;
        set->v = xrealloc(set->v, set->cap * sizeof *set->v);
    }
    util_sha256_cut(set->h, live, strlen(live), set->v[set->n++], sizeof *set->v);
    if (special_mode(e->mode, e->caps))
        sample(plan, "special", live);
    if (lstat(live, &st) != 0)
        sample(plan, "add", live);
    else if ((st.st_mode & S_IFMT) != (e->mode & S_IFMT) || (st.st_mode & 07777) != (e->mode & 07777) ||
             (S_ISREG(st.st_mode) && (st.st_size != e->size || st.st_mtime != e->mtime)))
        sample(plan, "replace", live);
    else
        sample(plan, "unchanged", live);
    free(live);
}

/* The names from the parts themselves (read and verified). */
static snap_rc plan_from_parts(rst_target *t, json_t *plan, name_set *set, snap_err *err)
{
    const cat_component *c = rst_component(t);
    snap_rc rc = SNAP_OK;

    for (size_t p = 0; p < cat_component_nparts(c) && rc == SNAP_OK; p++) {
        const char *key, *sha;
        uint64_t size, entries;
        arc_reader *ar;
        struct archive_entry *e;

        cat_component_part(c, p, &key, &size, &sha, &entries);
        rc = arc_reader_open(rst_store(t), key, size, sha, rst_ctx(t), NULL, &ar, err);
        while (rc == SNAP_OK && (rc = arc_reader_next(ar, &e, err)) == SNAP_OK && e != NULL) {
            plan_name n = {archive_entry_pathname(e), archive_entry_mode(e), archive_entry_size(e),
                           archive_entry_mtime(e), arc_entry_has_caps(e)};
            plan_entry(t, plan, set, &n);
        }
        if (rc == SNAP_OK)
            rc = arc_reader_close(ar, err);
        else if (ar != NULL)
            arc_reader_close(ar, NULL);
    }
    return rc;
}

/* The plan counts nothing yet, and the set holds no name. */
static void plan_start(json_t *plan, name_set *set)
{
    static const char *const kinds[] = {"replace", "add", "unchanged", "special"};

    json_object_set_new(plan, "changes", json_pack("{s:i, s:i, s:i, s:i}", "replace", 0, "add", 0, "remove", 0,
                                                   "unchanged", 0));
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        json_object_del(plan, kinds[i]);
    set->n = 0;
}

/* The index as cat_index_walk reads it: used only when it names every part of the
 * component, in order, with as many entries as each holds, every one by its name. */
typedef struct plan_walk {
    rst_target *t;
    json_t *plan;
    name_set *set;
    size_t parts; /* met so far */
    uint64_t want, n; /* the entries of the part being read: its manifest's count; met */
    bool bad;
} plan_walk;

/* Each visit ends the walk at the first thing that does not match: the parts are read. */
static bool plan_part(void *arg, const char *key)
{
    plan_walk *w = arg;
    const cat_component *c = rst_component(w->t);
    const char *k, *sha;
    uint64_t size;

    if (w->parts >= cat_component_nparts(c)) {
        w->bad = true;
        return false;
    }
    cat_component_part(c, w->parts++, &k, &size, &sha, &w->want);
    w->n = 0;
    w->bad = key == NULL || strcmp(key, k) != 0;
    return !w->bad;
}

static bool plan_index_entry(void *arg, const json_t *ie)
{
    plan_walk *w = arg;
    plan_name n = {json_string_value(json_array_get(ie, 0)), (mode_t)json_integer_value(json_array_get(ie, 1)),
                   json_integer_value(json_array_get(ie, 2)), (time_t)json_integer_value(json_array_get(ie, 3)),
                   json_is_true(json_array_get(ie, CAT_INDEX_FIELDS - 1))};

    /* a name JSON cannot hold (not UTF-8) is null there: only the parts have it */
    if (n.name == NULL || json_array_size(ie) != CAT_INDEX_FIELDS || ++w->n > w->want) {
        w->bad = true;
        return false;
    }
    plan_entry(w->t, w->plan, w->set, &n);
    return true;
}

static bool plan_part_end(void *arg)
{
    plan_walk *w = arg;

    w->bad = w->n != w->want;
    return !w->bad;
}

static void plan_reset(void *arg)
{
    plan_walk *w = arg;

    plan_start(w->plan, w->set);
    w->parts = 0;
    w->bad = false;
}

/*
 * The names from the snapshot's entry index (docs/formats.md), read an entry at a time: no
 * part is read. Only for an authenticated manifest, and an index that names every part;
 * else false, nothing counted, and the parts are read.
 */
static bool plan_from_index(rst_target *t, json_t *plan, name_set *set)
{
    cat_component *c = (cat_component *)(uintptr_t)rst_component(t);
    plan_walk w = {.t = t, .plan = plan, .set = set};
    cat_ixv v = {.arg = &w, .part = plan_part, .entry = plan_index_entry, .part_end = plan_part_end,
                 .reset = plan_reset};
    snap_err e;
    bool read;

    if (!rst_trusted(t) || json_object_get(cat_component_json(c), "index") == NULL)
        return false;
    read = cat_index_walk(rst_store(t), c, &v, &e) == SNAP_OK;
    if (!read || w.bad || w.parts != cat_component_nparts(c)) {
        log_verbose(rst_ctx(t), "listing the changes from the parts: %s",
                    read || w.bad ? "the entry index does not name every part" : e.msg);
        plan_start(plan, set);
        return false;
    }
    return true;
}

/*
 * What the revert changes, for --dry-run and the prompt: names in the snapshot (from its
 * entry index, else read from its parts, verifying them) against the live tree. Entries
 * that differ in type, size, mode or mtime are "replace".
 */
static snap_rc plan_diff(rst_target *t, snap_err *err)
{
    name_set set = {.h = util_sha256_new()};
    json_t *plan = rst_plan(t), *r;
    snap_rc rc = SNAP_OK;
    size_t i;

    plan_start(plan, &set);
    if (!plan_from_index(t, plan, &set))
        rc = plan_from_parts(t, plan, &set, err);
    if (set.n > 0) /* no entry may name a root (a manifest edited by hand): v is NULL then */
        qsort(set.v, set.n, sizeof *set.v, cmp_digest);
    json_array_foreach(roots(t), i, r) {
        char *argv[2] = {(char *)(uintptr_t)rget(r, "path"), NULL};
        FTS *fts;
        FTSENT *ent;
        if (rc != SNAP_OK || !json_is_true(json_object_get(r, "existed")))
            continue;
        fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, NULL);
        while (fts != NULL && (ent = fts_read(fts)) != NULL) {
            unsigned char d[16];
            if (ent->fts_info == FTS_DP)
                continue;
            util_sha256_cut(set.h, ent->fts_path, strlen(ent->fts_path), d, sizeof d);
            if (set.n == 0 || bsearch(d, set.v, set.n, sizeof *set.v, cmp_digest) == NULL)
                sample(plan, "remove", ent->fts_path);
        }
        if (fts != NULL)
            fts_close(fts);
    }
    free(set.v);
    util_sha256_free(set.h);
    json_object_del(plan, "unchanged");
    special_note(t, plan);
    return rc;
}

static snap_rc check_space(rst_target *t, const char *dir, snap_err *err)
{
    struct statvfs vfs;
    bool check = rst_options(t)->check_free_space;
    uint64_t need = (uint64_t)json_integer_value(
        json_object_get(cat_component_stats((cat_component *)(uintptr_t)rst_component(t)), "bytes"));

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

static snap_rc bad_info(const rst_target *t, snap_err *err, size_t i, const char *what)
{
    err_set(err, SNAP_EVERIFY, 0, "%s: the manifest's roots[%zu] %s", rst_component_name(t), i, what);
    err_hint(err, "the snapshot's manifest is damaged or was altered; nothing was changed");
    return SNAP_EVERIFY;
}

/* The component's info before anything reads it: a non-empty list of distinct roots, each
 * an absolute, normalised path with a known type. */
static snap_rc check_info(const rst_target *t, const json_t *src, snap_err *err)
{
    const json_t *r;
    size_t i, k;

    if (!json_is_array(src) || json_array_size(src) == 0) {
        err_set(err, SNAP_EVERIFY, 0, "%s: the manifest lists no roots for this files component",
                rst_component_name(t));
        err_hint(err, "the snapshot's manifest is damaged or was altered; nothing was changed");
        return SNAP_EVERIFY;
    }
    json_array_foreach(src, i, r) {
        const char *path = rget(r, "path"), *type = rget(r, "type");
        char *norm;
        bool ok;
        if (!json_is_object(r))
            return bad_info(t, err, i, "is not an object");
        if (path == NULL)
            return bad_info(t, err, i, "has no \"path\" string");
        if (type == NULL)
            return bad_info(t, err, i, "has no \"type\" string");
        if (strcmp(type, "dir") != 0 && strcmp(type, "file") != 0 && strcmp(type, "absent") != 0)
            return bad_info(t, err, i, "has an unknown \"type\"");
        norm = path[0] == '/' ? util_abspath(path) : NULL;
        ok = norm != NULL && strcmp(norm, path) == 0 && strcmp(path, "/") != 0 && strlen(path) < PATH_MAX;
        free(norm);
        if (!ok)
            return bad_info(t, err, i, "\"path\" is not an absolute, normalised path below /");
        for (k = 0; k < i; k++) {
            const char *other = rget(json_array_get(src, k), "path");
            size_t a = strlen(other), b = strlen(path);
            if ((strncmp(other, path, a) == 0 && (path[a] == '/' || path[a] == '\0')) ||
                (strncmp(other, path, b) == 0 && other[b] == '/'))
                return bad_info(t, err, i, "overlaps another root");
        }
    }
    return SNAP_OK;
}

snap_rc rst_files_check_roots(const rst_target *t, snap_err *err)
{
    json_t *info = cat_component_info((cat_component *)(uintptr_t)rst_component(t));
    return check_info(t, json_object_get(info, "roots"), err);
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
    if ((rc = check_info(t, src, err)) != SNAP_OK)
        return rc;
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
            rst_set_lock_key(t, full); /* every root: no snap reads any of them meanwhile */
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

/* Every root is swapped, and the state it displaces stays whole beside it. */
static bool files_safety_deferrable(rst_target *t)
{
    return rst_to(t) == NULL;
}

/* The displaced roots, named as the live paths they were (an absent one: recorded absent). */
static snap_rc files_displaced_source(rst_target *t, cfg *c, const char *section, snp_redirect **rd, size_t *nrd,
                                      snap_err *err)
{
    const json_t *r;
    size_t i;

    (void)err;
    cfg_set(c, section, "type", "files");
    json_array_foreach(roots(t), i, r) {
        cfg_add(c, section, "path", rget(r, "path"));
        *rd = xrealloc(*rd, (*nrd + 1) * sizeof **rd);
        (*rd)[(*nrd)++] = (snp_redirect){rst_component_name(t), rget(r, "path"), rget(r, "displaced")};
    }
    return SNAP_OK;
}

/* ---- stage ------------------------------------------------------------------------ */

/*
 * Every entry is created relative to directory descriptors: the parent of each root,
 * opened once, and below it a walk that opens each component with O_NOFOLLOW. A name
 * that goes through a symlink (the archive's own included) or a non-directory is refused,
 * so no entry is ever written through a link, whatever order the archive has.
 */

typedef struct sroot {
    int parentfd;      /* O_PATH of the directory that holds the root */
    char *stage_base;  /* the staged root's name in it */
    const char *live;  /* the root's path once live, for judging symlink targets */
    bool is_dir;
} sroot;

typedef struct link_todo {
    size_t root, troot;
    char *rel, *trel;
    char *name, *target; /* as the archive names them, for messages */
} link_todo;

typedef struct sym_todo {
    size_t root;
    char *rel, *target, *name;
    uid_t uid;
    gid_t gid;
    struct timespec times[2];
} sym_todo;

typedef struct dir_meta {
    size_t root;
    char *rel;
    struct timespec times[2];
    mode_t mode;
    uid_t uid;
    gid_t gid;
    unsigned long fset, fclear;
} dir_meta;

typedef struct stage {
    rst_target *t;
    snap_ctx *ctx;
    bool allow_external, allow_special, owner;
    prg_bar *bar;
    pthread_mutex_t mu;
    uint64_t files, dirs, links, bytes;
    sroot *roots;
    size_t nroots;
    link_todo *todo;
    size_t ntodo;
    dir_meta *dirs_meta;
    size_t ndirs;
    sym_todo *syms; /* created last, after they are all judged */
    size_t nsyms;
    pthread_mutex_t idmu; /* the owner names last looked up */
    char *uname, *gname;
    uid_t uid;
    gid_t gid;
} stage;

static snap_rc refuse(snap_err *err, const char *name, const char *why)
{
    err_set(err, SNAP_EVERIFY, 0, "refusing archive entry '%s': %s", name, why);
    err_hint(err, "the snapshot was altered or is damaged; nothing was changed");
    return SNAP_EVERIFY;
}

/*
 * Opens the directory that holds rel (root-relative, "" for the root itself) and sets
 * *base to the last name; missing directories on the way are created when create is set.
 * Returns the descriptor, or -1 with err set.
 */
static int open_parent(stage *s, size_t root, const char *rel, bool create, const char *entry, char **base,
                       snap_err *err)
{
    const sroot *r = &s->roots[root];
    char *copy, *save = NULL, *comp, *next;
    int fd;

    *base = NULL;
    if (rel[0] == '\0') {
        *base = xstrdup(r->stage_base);
        if ((fd = fcntl(r->parentfd, F_DUPFD_CLOEXEC, 0)) < 0)
            err_sys(err, SNAP_EFAIL, "cannot open the directory of %s", r->live);
        return fd;
    }
    if (!r->is_dir) {
        refuse(err, entry, "its root was captured as a file");
        return -1;
    }
    fd = openat(r->parentfd, r->stage_base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        err_sys(err, SNAP_EFAIL, "cannot open the staging directory of %s", r->live);
        return -1;
    }
    copy = xstrdup(rel);
    comp = strtok_r(copy, "/", &save);
    while (comp != NULL) {
        struct stat st;
        int nfd;
        next = strtok_r(NULL, "/", &save);
        if (next == NULL)
            break;
        if (strcmp(comp, ".") == 0) {
            comp = next;
            continue;
        }
        if (strcmp(comp, "..") == 0) {
            refuse(err, entry, "it names a parent directory");
            goto fail;
        }
        nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0700) != 0 && errno != EEXIST) {
                err_sys(err, SNAP_EFAIL, "cannot create a directory for %s", entry);
                goto fail;
            }
            nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (nfd >= 0 && (fstat(nfd, &st) != 0 || !S_ISDIR(st.st_mode))) {
            close(nfd);
            nfd = -1;
            errno = ENOTDIR;
        }
        if (nfd < 0) {
            if (errno == ENOTDIR || errno == ELOOP)
                refuse(err, entry, "its path goes through a symlink or a file");
            else if (errno == ENOENT)
                err_set(err, SNAP_EVERIFY, ENOENT, "archive entry '%s': its directory is missing", entry);
            else
                err_sys(err, SNAP_EFAIL, "cannot open the directory of %s", entry);
            goto fail;
        }
        close(fd);
        fd = nfd;
        comp = next;
    }
    if (comp == NULL || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
        refuse(err, entry, "it has no name of its own");
        goto fail;
    }
    *base = xstrdup(comp);
    free(copy);
    return fd;
fail:
    free(copy);
    close(fd);
    return -1;
}

/* The owner by name when this host knows the name, else by number (as tar does); the last
 * name looked up is remembered, since most entries share one owner. */
static uid_t entry_uid(stage *s, struct archive_entry *e)
{
    const char *n = archive_entry_uname(e);
    uid_t id = (uid_t)archive_entry_uid(e);
    struct passwd pw, *res = NULL;
    char buf[1024];

    if (n == NULL || n[0] == '\0')
        return id;
    pthread_mutex_lock(&s->idmu);
    if (s->uname != NULL && strcmp(s->uname, n) == 0) {
        id = s->uid;
    } else {
        if (getpwnam_r(n, &pw, buf, sizeof buf, &res) == 0 && res != NULL)
            id = res->pw_uid;
        free(s->uname);
        s->uname = xstrdup(n);
        s->uid = id;
    }
    pthread_mutex_unlock(&s->idmu);
    return id;
}

static gid_t entry_gid(stage *s, struct archive_entry *e)
{
    const char *n = archive_entry_gname(e);
    gid_t id = (gid_t)archive_entry_gid(e);
    struct group gr, *res = NULL;
    char buf[4096];

    if (n == NULL || n[0] == '\0')
        return id;
    pthread_mutex_lock(&s->idmu);
    if (s->gname != NULL && strcmp(s->gname, n) == 0) {
        id = s->gid;
    } else {
        if (getgrnam_r(n, &gr, buf, sizeof buf, &res) == 0 && res != NULL)
            id = res->gr_gid;
        free(s->gname);
        s->gname = xstrdup(n);
        s->gid = id;
    }
    pthread_mutex_unlock(&s->idmu);
    return id;
}

/* chattr flags (SCHILY.fflags): libarchive gives them as this platform's bits. */
static void set_fflags(stage *s, int fd, const char *name, unsigned long set, unsigned long clear)
{
    int flags = 0;

    /* Immutable and append-only would stop the cut-over and the removal of what this
     * revert stages or displaces: only a trusted snapshot may ask for them. */
    if (!s->allow_special && (set & (FS_IMMUTABLE_FL | FS_APPEND_FL)) != 0) {
        log_warn(s->ctx, "%s: not restoring its immutable or append-only flag (the snapshot is not authenticated; "
                         "--allow-special-files restores it)", name);
        set &= ~(unsigned long)(FS_IMMUTABLE_FL | FS_APPEND_FL);
    }
    if (set == 0 && clear == 0)
        return;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0)
        flags = 0;
    flags = (int)(((unsigned long)flags & ~clear) | set);
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0)
        log_warn(s->ctx, "cannot set the file flags of %s: %s", name, strerror(errno));
}

/* POSIX ACL xattr layout (linux/posix_acl_xattr.h). */
typedef struct acl_ent {
    uint16_t tag, perm;
    uint32_t id;
} acl_ent;

static int acl_cmp(const void *a, const void *b)
{
    const acl_ent *x = a, *y = b;
    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void set_acl(stage *s, int fd, struct archive_entry *e, int type, const char *xname)
{
    int n = archive_entry_acl_reset(e, type), atype, perm, tag, qual;
    const char *name;
    acl_ent *v;
    size_t k = 0;

    if (n <= 0)
        return;
    v = xcalloc((size_t)n, sizeof *v);
    while (k < (size_t)n && archive_entry_acl_next(e, type, &atype, &perm, &tag, &qual, &name) == ARCHIVE_OK) {
        acl_ent a = {0, (uint16_t)(perm & 7), 0xffffffffu};
        switch (tag) {
        case ARCHIVE_ENTRY_ACL_USER_OBJ: a.tag = 0x01; break;
        case ARCHIVE_ENTRY_ACL_USER: a.tag = 0x02; a.id = (uint32_t)qual; break;
        case ARCHIVE_ENTRY_ACL_GROUP_OBJ: a.tag = 0x04; break;
        case ARCHIVE_ENTRY_ACL_GROUP: a.tag = 0x08; a.id = (uint32_t)qual; break;
        case ARCHIVE_ENTRY_ACL_MASK: a.tag = 0x10; break;
        case ARCHIVE_ENTRY_ACL_OTHER: a.tag = 0x20; break;
        default: continue;
        }
        v[k++] = a;
    }
    qsort(v, k, sizeof *v, acl_cmp);
    size_t len = 4 + k * 8;
    unsigned char *buf = xmalloc(len);
    uint32_t ver = 2;
    memcpy(buf, &ver, 4);
    for (size_t i = 0; i < k; i++) {
        memcpy(buf + 4 + i * 8, &v[i].tag, 2);
        memcpy(buf + 6 + i * 8, &v[i].perm, 2);
        memcpy(buf + 8 + i * 8, &v[i].id, 4);
    }
    if (k > 0 && fsetxattr(fd, xname, buf, len, 0) != 0)
        log_warn(s->ctx, "cannot restore the ACL of %s: %s", archive_entry_pathname(e), strerror(errno));
    free(buf);
    free(v);
}

/* ACLs, extended attributes and, for a file (a directory's wait for the end), owner,
 * mode and times, on an open file. */
static void set_meta(stage *s, int fd, struct archive_entry *e)
{
    bool dir = archive_entry_filetype(e) == AE_IFDIR;
    const char *xname;
    const void *value;
    size_t size;

    if (!dir && s->owner && fchown(fd, entry_uid(s, e), entry_gid(s, e)) != 0)
        log_warn(s->ctx, "cannot set the owner of %s: %s", archive_entry_pathname(e), strerror(errno));
    if (!dir && fchmod(fd, archive_entry_perm(e) & 07777) != 0)
        log_warn(s->ctx, "cannot set the mode of %s: %s", archive_entry_pathname(e), strerror(errno));
    set_acl(s, fd, e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, "system.posix_acl_access");
    if (archive_entry_filetype(e) == AE_IFDIR)
        set_acl(s, fd, e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, "system.posix_acl_default");
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK) {
        if (xname != NULL && fsetxattr(fd, xname, value, size, 0) != 0)
            log_warn(s->ctx, "cannot restore the attribute %s of %s: %s", xname, archive_entry_pathname(e),
                     strerror(errno));
    }
    if (!dir) {
        struct timespec ts[2] = {{archive_entry_atime(e), archive_entry_atime_nsec(e)},
                                 {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
        unsigned long set, clear;
        futimens(fd, ts);
        archive_entry_fflags(e, &set, &clear);
        set_fflags(s, fd, archive_entry_pathname(e), set, clear);
    }
}

/* Writes the entry's data block by block at their offsets, so holes stay holes. */
static snap_rc write_data(arc_reader *ar, int fd, struct archive_entry *e, uint64_t *bytes, snap_err *err)
{
    const char *name = archive_entry_pathname(e);
    const void *buf;
    size_t len;
    int64_t off;
    snap_rc rc;

    while ((rc = arc_reader_data_block(ar, &buf, &len, &off, err)) == SNAP_OK && len > 0) {
        for (size_t done = 0; done < len;) {
            ssize_t w = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + (int64_t)done));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return err_sys(err, SNAP_EFAIL, "cannot write %s", name);
            }
            done += (size_t)w;
        }
        *bytes += len;
    }
    /* The size counts the holes of a sparse file, as the capture counted it. */
    if (rc == SNAP_OK && archive_entry_size_is_set(e) && archive_entry_size(e) >= 0) {
        if (ftruncate(fd, (off_t)archive_entry_size(e)) != 0)
            rc = err_sys(err, SNAP_EFAIL, "cannot write %s", name);
        *bytes = (uint64_t)archive_entry_size(e);
    }
    return rc;
}

/*
 * Where a name of the archive goes: its root and the rest without the leading '/'. The
 * rest must be written one way only (no "." or empty components; a trailing '/' only on
 * a directory), so that symlinks are judged by the names they really have.
 */
snap_rc rst_files_locate_int(const json_t *rts, const char *name, bool dir, size_t *root, const char **rel,
                             snap_err *err)
{
    const json_t *r;
    const char *rest;
    size_t n;

    if (name == NULL || !safe_name(name))
        return refuse(err, name ? name : "", "it escapes the target");
    r = root_of(rts, name, &rest);
    if (r == NULL)
        return refuse(err, name, "it is outside the captured paths");
    if (rget(r, "type") != NULL && strcmp(rget(r, "type"), "absent") == 0)
        return refuse(err, name, "the manifest says its root did not exist");
    for (*root = 0; json_array_get(rts, *root) != r; (*root)++)
        ;
    if (*rest == '/')
        rest++;
    n = strlen(rest);
    if (strstr(rest, "//") != NULL || strcmp(rest, ".") == 0 || strncmp(rest, "./", 2) == 0 ||
        strstr(rest, "/./") != NULL || (n >= 2 && strcmp(rest + n - 2, "/.") == 0) ||
        (n > 0 && rest[0] == '/') || (n > 0 && rest[n - 1] == '/' && !dir))
        return refuse(err, name, "its name is not in normal form");
    *rel = rest;
    return SNAP_OK;
}

static snap_rc locate(stage *s, const char *name, bool dir, size_t *root, const char **rel, snap_err *err)
{
    return rst_files_locate_int(roots(s->t), name, dir, root, rel, err);
}

/* A symlink waits until every one is judged, from where it is (see files_stage). */
static snap_rc defer_symlink(stage *s, struct archive_entry *e, size_t root, const char *rel, const char *name,
                             snap_err *err)
{
    const char *target = archive_entry_symlink(e);
    uid_t uid;
    gid_t gid;

    if (target == NULL || target[0] == '\0')
        return refuse(err, name, "a symlink without a target");
    uid = entry_uid(s, e);
    gid = entry_gid(s, e);
    pthread_mutex_lock(&s->mu);
    s->syms = xrealloc(s->syms, (s->nsyms + 1) * sizeof *s->syms);
    s->syms[s->nsyms++] = (sym_todo){root, xstrdup(rel), xstrdup(target), xstrdup(name), uid, gid,
                                    {{archive_entry_atime(e), archive_entry_atime_nsec(e)},
                                     {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}}};
    s->links++;
    pthread_mutex_unlock(&s->mu);
    return SNAP_OK;
}

/* A directory (or the one already there). Owner, mode and times wait for the end: until
 * then the staged tree is root's alone, and entries created inside would change the times. */
static snap_rc make_dir(stage *s, int dfd, const char *base, struct archive_entry *e, size_t root, const char *rel,
                        const char *name, snap_err *err)
{
    struct stat st;
    uid_t uid;
    gid_t gid;
    int fd;

    if (mkdirat(dfd, base, 0700) != 0 &&
        !(errno == EEXIST && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)))
        return err_sys(err, SNAP_EFAIL, "cannot create directory %s", name);
    if ((fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return err_sys(err, SNAP_EFAIL, "cannot open directory %s", name);
    uid = entry_uid(s, e);
    gid = entry_gid(s, e);
    set_meta(s, fd, e);
    close(fd);
    pthread_mutex_lock(&s->mu);
    s->dirs_meta = xrealloc(s->dirs_meta, (s->ndirs + 1) * sizeof *s->dirs_meta);
    s->dirs_meta[s->ndirs++] = (dir_meta){root, xstrdup(rel),
                                          {{archive_entry_atime(e), archive_entry_atime_nsec(e)},
                                           {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}},
                                          archive_entry_perm(e) & 07777, uid, gid, 0, 0};
    archive_entry_fflags(e, &s->dirs_meta[s->ndirs - 1].fset, &s->dirs_meta[s->ndirs - 1].fclear);
    pthread_mutex_unlock(&s->mu);
    return SNAP_OK;
}

/* A device node, FIFO or socket (allowed by the caller), with its owner, mode and times. */
static snap_rc make_node(stage *s, int dfd, const char *base, struct archive_entry *e, const char *name,
                         snap_err *err)
{
    struct timespec ts[2] = {{archive_entry_atime(e), archive_entry_atime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};

    if (mknodat(dfd, base, archive_entry_filetype(e) | 0600, archive_entry_rdev(e)) != 0)
        return err_sys(err, SNAP_EFAIL, "cannot create %s", name);
    if (s->owner && fchownat(dfd, base, entry_uid(s, e), entry_gid(s, e), AT_SYMLINK_NOFOLLOW) != 0)
        return err_sys(err, SNAP_EFAIL, "cannot set the owner of %s", name);
    if (fchmodat(dfd, base, archive_entry_perm(e) & 07777, AT_SYMLINK_NOFOLLOW) != 0) /* never through a link */
        return err_sys(err, SNAP_EFAIL, "cannot set the mode of %s", name);
    utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW);
    return SNAP_OK;
}

/* Creates one entry of a part beneath its root. */
static snap_rc create_entry(stage *s, arc_reader *ar, struct archive_entry *e, snap_err *err)
{
    const char *name = archive_entry_pathname(e), *hl = archive_entry_hardlink(e), *rel, *hrel;
    mode_t type = archive_entry_filetype(e);
    size_t root, hroot;
    char *base = NULL, *hbase = NULL;
    int dfd = -1, hfd = -1, fd = -1;
    uint64_t bytes = 0;
    snap_rc rc;

    if ((rc = locate(s, name, type == AE_IFDIR && hl == NULL, &root, &rel, err)) != SNAP_OK)
        return rc;
    if (is_special(e) && !s->allow_special) {
        err_set(err, SNAP_EVERIFY, 0, "refusing archive entry '%s': %s", name,
                type != AE_IFREG       ? "a device node, FIFO or socket"
                : arc_entry_has_caps(e)  ? "a file with capabilities (security.capability)"
                                       : "a set-user-ID or set-group-ID file");
        err_hint(err, "the snapshot is not authenticated; pass --allow-special-files if it is trusted and "
                      "such files are expected; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (hl != NULL) {
        struct stat st;
        if ((rc = locate(s, hl, false, &hroot, &hrel, err)) != SNAP_OK) {
            err_set(err, SNAP_EVERIFY, 0, "refusing hard link '%s' -> '%s': it escapes the target", name, hl);
            err_hint(err, "the snapshot was altered or is damaged; nothing was changed");
            return SNAP_EVERIFY;
        }
        hfd = open_parent(s, hroot, hrel, false, hl, &hbase, err);
        if (hfd < 0 && err->code == SNAP_EVERIFY && err->sys_errno == ENOENT)
            hfd = -2; /* its directory comes later */
        else if (hfd < 0)
            return err->code;
        if (hfd == -2 || fstatat(hfd, hbase, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            /* The first name of a link group may sit in a part another worker has not reached. */
            pthread_mutex_lock(&s->mu);
            s->todo = xrealloc(s->todo, (s->ntodo + 1) * sizeof *s->todo);
            s->todo[s->ntodo++] = (link_todo){root, hroot, xstrdup(rel), xstrdup(hrel), xstrdup(name), xstrdup(hl)};
            s->files++;
            pthread_mutex_unlock(&s->mu);
            goto out;
        }
    }
    if (type == AE_IFLNK && hl == NULL) {
        rc = defer_symlink(s, e, root, rel, name, err);
        goto out;
    }
    if ((dfd = open_parent(s, root, rel, true, name, &base, err)) < 0) {
        rc = err->code;
        goto out;
    }
    if (hl != NULL) {
        if (linkat(hfd, hbase, dfd, base, 0) != 0)
            rc = err_sys(err, SNAP_EFAIL, "cannot link %s to %s", name, hl);
    } else if (type == AE_IFREG) {
        fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            rc = err_sys(err, SNAP_EFAIL, "cannot create %s", name);
        else if ((rc = write_data(ar, fd, e, &bytes, err)) == SNAP_OK)
            set_meta(s, fd, e);
    } else if (type == AE_IFDIR) {
        rc = make_dir(s, dfd, base, e, root, rel, name, err);
    } else if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK) {
        rc = make_node(s, dfd, base, e, name, err);
    } else {
        rc = refuse(err, name, "an entry of an unknown type");
    }
    if (rc == SNAP_OK) {
        pthread_mutex_lock(&s->mu);
        s->bytes += bytes;
        if (hl != NULL || type == AE_IFREG)
            s->files++;
        else if (type == AE_IFDIR)
            s->dirs++;
        pthread_mutex_unlock(&s->mu);
    }
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (hfd >= 0)
        close(hfd);
    free(base);
    free(hbase);
    return rc;
}

/* Extracts one part, on a worker of the stage's pool. */
static snap_rc extract_part(pool *pl, void *arg, size_t worker, size_t p, snap_err *err)
{
    stage *s = arg;
    const char *key, *sha;
    uint64_t size, entries, seen = 0;
    struct archive_entry *e;
    arc_reader *ar;
    snap_rc rc;

    cat_component_part(rst_component(s->t), p, &key, &size, &sha, &entries);
    rc = arc_reader_open(rst_store(s->t), key, size, sha, s->ctx, s->bar, &ar, err);
    (void)worker;
    while (rc == SNAP_OK && !pool_stopping(pl)) {
        rc = arc_reader_next(ar, &e, err);
        if (rc != SNAP_OK || e == NULL)
            break;
        seen++;
        const char *name = archive_entry_pathname(e);
        if (name != NULL && strncmp(name, ARC_META_PREFIX, strlen(ARC_META_PREFIX)) == 0)
            continue; /* a driver's own records, not files */
        rc = create_entry(s, ar, e, err);
        if (rc == SNAP_OK)
            util_failpoint("stage-entry");
    }
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

static int sym_cmp(const void *a, const void *b)
{
    const sym_todo *x = a, *y = b;
    if (x->root != y->root)
        return x->root < y->root ? -1 : 1;
    return strcmp(x->rel, y->rel);
}

static const sym_todo *sym_get(const stage *s, size_t root, const char *rel)
{
    sym_todo key = {.root = root, .rel = (char *)(uintptr_t)rel};
    if (s->nsyms == 0)
        return NULL;
    return bsearch(&key, s->syms, s->nsyms, sizeof *s->syms, sym_cmp);
}

static const char *sym_find(const stage *s, size_t root, const char *rel)
{
    const sym_todo *f = sym_get(s, root, rel);
    return f ? f->target : NULL;
}

/*
 * Does the symlink at rel land inside its root once live? Resolved as the kernel would,
 * from the directory the link is really in, through every other symlink of the archive
 * (the only ones the staged tree holds), so a chain of links that each look inside but
 * end outside is caught. s->syms must be sorted.
 */
static bool sym_inside(const stage *s, size_t root, const char *rel)
{
    const char *live = s->roots[root].live;
    size_t livelen = strlen(live), hops = 0;
    char *cur, *todo = xstrdup(sym_find(s, root, rel)), *slash;

    if (todo == NULL)
        return false;
    bool ok = true;

    if (rel[0] == '\0') {
        free(todo);
        return false; /* a root that is itself a symlink points out of it by definition */
    }
    cur = xstrdup(rel);
    slash = strrchr(cur, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        cur[0] = '\0';
    while (ok && todo != NULL) {
        char *p = todo, *next_todo = NULL;
        if (p[0] == '/') {
            if (strcmp(live, "/") != 0 &&
                !(strncmp(p, live, livelen) == 0 && (p[livelen] == '\0' || p[livelen] == '/'))) {
                ok = false;
                break;
            }
            p += strcmp(live, "/") != 0 ? livelen : 0;
            cur[0] = '\0';
        }
        while (*p != '\0') {
            char *end = strchr(p, '/'), *comp;
            size_t n = end ? (size_t)(end - p) : strlen(p);
            comp = strndup(p, n);
            p += n;
            while (*p == '/')
                p++;
            if (comp[0] == '\0' || strcmp(comp, ".") == 0) {
                free(comp);
                continue;
            }
            if (strcmp(comp, "..") == 0) {
                free(comp);
                if (cur[0] == '\0') {
                    ok = false;
                    break;
                }
                slash = strrchr(cur, '/');
                if (slash != NULL)
                    *slash = '\0';
                else
                    cur[0] = '\0';
                continue;
            }
            char *cand = cur[0] ? xasprintf("%s/%s", cur, comp) : xstrdup(comp);
            const char *t = sym_find(s, root, cand);
            free(comp);
            if (t != NULL) {
                free(cand);
                if (++hops > 40) {
                    ok = false;
                    break;
                }
                next_todo = *p ? xasprintf("%s/%s", t, p) : xstrdup(t);
                break;
            }
            free(cur);
            cur = cand;
        }
        free(todo);
        todo = next_todo;
    }
    free(todo);
    free(cur);
    return ok;
}

static snap_rc make_symlinks(stage *s, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < s->nsyms && rc == SNAP_OK; i++) {
        const sym_todo *y = &s->syms[i];
        char *base;
        int dfd = open_parent(s, y->root, y->rel, true, y->name, &base, err);
        if (dfd < 0)
            return err->code;
        if (symlinkat(y->target, dfd, base) != 0) {
            rc = err_sys(err, SNAP_EFAIL, "cannot create symlink %s", y->name);
        } else if (s->owner && fchownat(dfd, base, y->uid, y->gid, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = err_sys(err, SNAP_EFAIL, "cannot set the owner of symlink %s", y->name);
        } else {
            utimensat(dfd, base, y->times, AT_SYMLINK_NOFOLLOW);
        }
        close(dfd);
        free(base);
    }
    return rc;
}

static snap_rc make_links(stage *s, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < s->ntodo && rc == SNAP_OK; i++) {
        const link_todo *l = &s->todo[i];
        char *base = NULL, *tbase = NULL;
        if (l->rel == NULL)
            continue; /* made as a symlink */
        int tfd = open_parent(s, l->troot, l->trel, false, l->target, &tbase, err);
        int dfd = tfd >= 0 ? open_parent(s, l->root, l->rel, true, l->name, &base, err) : -1;
        struct stat st;
        if (tfd < 0 || dfd < 0)
            rc = err->code;
        else if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            rc = refuse(err, l->name, "a hard link to a symlink that was not judged"); /* never: they are made as symlinks */
        else if (linkat(tfd, tbase, dfd, base, 0) != 0)
            rc = err_sys(err, errno == ENOENT ? SNAP_EVERIFY : SNAP_EFAIL, "cannot link %s to %s", l->name,
                         l->target);
        if (tfd >= 0)
            close(tfd);
        if (dfd >= 0)
            close(dfd);
        free(base);
        free(tbase);
    }
    return rc;
}

static void fix_dirs(stage *s)
{
    for (size_t i = s->ndirs; i-- > 0;) {
        const dir_meta *d = &s->dirs_meta[i];
        char *base;
        snap_err e;
        int dfd = open_parent(s, d->root, d->rel, false, d->rel, &base, &e), fd;
        if (dfd < 0)
            continue;
        fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            if (s->owner && fchown(fd, d->uid, d->gid) != 0)
                log_warn(s->ctx, "cannot set the owner of %s: %s", d->rel, strerror(errno));
            fchmod(fd, d->mode);
            futimens(fd, d->times);
            set_fflags(s, fd, d->rel, d->fset, d->fclear);
            close(fd);
        }
        close(dfd);
        free(base);
    }
}

static void stage_free(stage *s)
{
    for (size_t i = 0; i < s->nroots; i++) {
        if (s->roots[i].parentfd >= 0)
            close(s->roots[i].parentfd);
        free(s->roots[i].stage_base);
    }
    free(s->roots);
    for (size_t i = 0; i < s->ntodo; i++) {
        free(s->todo[i].rel);
        free(s->todo[i].trel);
        free(s->todo[i].name);
        free(s->todo[i].target);
    }
    free(s->todo);
    for (size_t i = 0; i < s->nsyms; i++) {
        free(s->syms[i].rel);
        free(s->syms[i].target);
        free(s->syms[i].name);
    }
    free(s->syms);
    for (size_t i = 0; i < s->ndirs; i++)
        free(s->dirs_meta[i].rel);
    free(s->dirs_meta);
    free(s->uname);
    free(s->gname);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->idmu);
}

/* ---- markers ---- */

/*
 * Beside the staging name .<base>.snap-stage-<id> of a root, a revert writes the marker
 * .<base>.snap-mark-<id> (JSON: revert_id, snapshot, created, host, path) before it creates
 * the staging, and removes it with the staging or the displaced state: how `revert
 * --recover` tells its own leftovers from look-alikes when no journal names them.
 */
#define STAGE_INFIX ".snap-stage-"
#define MARK_INFIX ".snap-mark-"
#define OLD_INFIX ".pre-revert-"

/* The marker of a root's staged path; NULL when the name is not of that form. */
static char *marker_path(const char *staged)
{
    const char *p = NULL, *q = staged;

    while ((q = strstr(q, STAGE_INFIX)) != NULL)
        p = q++;
    if (p == NULL)
        return NULL;
    return xasprintf("%.*s" MARK_INFIX "%s", (int)(p - staged), staged, p + strlen(STAGE_INFIX));
}

static void remove_marker(const rst_target *t, const json_t *r)
{
    const char *staged = rget(r, "staged");
    char *m = staged ? marker_path(staged) : NULL;

    if (m != NULL && unlink(m) != 0 && errno != ENOENT)
        log_warn(rst_ctx(t), "cannot remove the marker %s: %s", m, strerror(errno));
    free(m);
}

/* Written (fsync'd) in the root's directory before its staging exists. */
static snap_rc write_marker(const stage *s, int parentfd, const json_t *r, snap_err *err)
{
    char *m = marker_path(rget(r, "staged")), *base = m ? util_basename(m) : NULL, *text = NULL;
    const cat_manifest *man = rst_manifest(s->t);
    json_t *doc;
    int fd = -1;
    size_t len;
    snap_rc rc = SNAP_OK;

    if (m == NULL)
        return SNAP_OK;
    doc = json_pack("{s:i, s:s, s:s?, s:I, s:s, s:s}", "format", 1, "revert_id", rst_revert_id(s->t), "snapshot",
                    man ? cat_manifest_name(man) : NULL, "created", (json_int_t)time(NULL), "host",
                    rst_host(s->t), "path", rget(r, "path"));
    text = json_dumps(doc, JSON_COMPACT);
    len = strlen(text);
    (void)util_rm_at(parentfd, base);
    fd = openat(parentfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
        rc = err_sys(err, SNAP_EFAIL, "cannot write the marker %s", m);
    if (fd >= 0)
        close(fd);
    json_decref(doc);
    free(text);
    free(base);
    free(m);
    return rc;
}


/* Opens the parent of every root and creates the staged directory of each directory root. */
static snap_rc open_roots(stage *s, snap_err *err)
{
    const json_t *r;
    size_t i;

    s->nroots = json_array_size(roots(s->t));
    s->roots = xcalloc(s->nroots ? s->nroots : 1, sizeof *s->roots);
    for (i = 0; i < s->nroots; i++)
        s->roots[i].parentfd = -1;
    json_array_foreach(roots(s->t), i, r) {
        sroot *x = &s->roots[i];
        char *dir = util_dirname(rget(r, "staged"));
        x->stage_base = util_basename(rget(r, "staged"));
        x->live = rget(r, "path");
        x->is_dir = strcmp(rget(r, "type"), "dir") == 0;
        x->parentfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        free(dir);
        if (x->parentfd < 0)
            return err_sys(err, SNAP_EFAIL, "cannot open the directory of %s", x->live);
        if (util_rm_at(x->parentfd, x->stage_base) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot remove %s", rget(r, "staged"));
        if (write_marker(s, x->parentfd, r, err) != SNAP_OK)
            return err->code;
        if (x->is_dir && mkdirat(x->parentfd, x->stage_base, 0700) != 0)
            return err_sys(err, SNAP_EFAIL, "cannot create %s", rget(r, "staged"));
    }
    return SNAP_OK;
}

static snap_rc files_stage(rst_target *t, snap_err *err)
{
    const cat_component *c = rst_component(t);
    size_t nparts = cat_component_nparts(c), nthreads;
    int jobs = rst_ctx(t)->jobs > 0 ? rst_ctx(t)->jobs : 1;
    stage s = {0};
    const json_t *r;
    uint64_t raw = 0;
    snap_rc rc = SNAP_OK;
    size_t i;

    s.t = t;
    s.ctx = rst_ctx(t);
    s.allow_external = rst_options(t)->allow_external_symlinks;
    s.allow_special = special_allowed(t);
    s.owner = geteuid() == 0;
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.idmu, NULL);
    for (i = 0; i < nparts; i++) {
        const char *key, *sha;
        uint64_t size, entries;
        cat_component_part(c, i, &key, &size, &sha, &entries);
        raw += size;
    }
    rc = open_roots(&s, err);
    if (rc != SNAP_OK)
        goto out;
    s.bar = prg_new(s.ctx, rst_component_name(t), raw);
    nthreads = (size_t)jobs > 64 ? 64 : (size_t)jobs;
    rc = pool_run(s.ctx, nthreads, nparts, extract_part, &s, err);
    prg_free(s.bar);
    /*
     * A later name of a symlink is made as a symlink of its own, so that it is judged
     * from where it is. Then every symlink is judged, and the counts checked, before
     * any link is made.
     */
    /* Until none is left: a link to a link to a symlink is a symlink too. */
    for (size_t nmore = 1; nmore > 0 && rc == SNAP_OK;) {
        sym_todo *more = xcalloc(s.ntodo + 1, sizeof *more);
        if (s.nsyms > 0)
            qsort(s.syms, s.nsyms, sizeof *s.syms, sym_cmp);
        nmore = 0;
        for (i = 0; i < s.ntodo; i++) {
            link_todo *l = &s.todo[i];
            const sym_todo *first = l->rel != NULL ? sym_get(&s, l->troot, l->trel) : NULL;
            if (first == NULL)
                continue;
            more[nmore] = *first;
            more[nmore].root = l->root;
            more[nmore].rel = l->rel;
            more[nmore].name = l->name;
            more[nmore++].target = xstrdup(first->target);
            l->rel = l->name = NULL; /* now the symlink's */
        }
        s.syms = xrealloc(s.syms, (s.nsyms + nmore + 1) * sizeof *s.syms);
        if (nmore > 0)
            memcpy(s.syms + s.nsyms, more, nmore * sizeof *more);
        s.nsyms += nmore;
        free(more);
    }
    if (s.nsyms > 0)
        qsort(s.syms, s.nsyms, sizeof *s.syms, sym_cmp);
    for (i = 0; i < s.nsyms && rc == SNAP_OK && !s.allow_external; i++) {
        if (!sym_inside(&s, s.syms[i].root, s.syms[i].rel)) {
            rc = err_set(err, SNAP_EVERIFY, 0, "refusing symlink /%s -> %s: it points outside %s", s.syms[i].name,
                         s.syms[i].target, s.roots[s.syms[i].root].live);
            err_hint(err, "pass --allow-external-symlinks if the snapshot is trusted and such links are expected");
        }
    }
    if (rc == SNAP_OK)
        rc = check_stats(&s, err);
    if (rc == SNAP_OK)
        rc = make_symlinks(&s, err);
    if (rc == SNAP_OK)
        rc = make_links(&s, err);
    if (rc == SNAP_OK)
        fix_dirs(&s);
    /* The staged data must be on disk before it can become live. */
    json_array_foreach(roots(t), i, r) {
        struct stat st;
        int fd;
        if (rc != SNAP_OK || strcmp(rget(r, "type"), "absent") == 0)
            continue;
        if (fstatat(s.roots[i].parentfd, s.roots[i].stage_base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = err_set(err, SNAP_EVERIFY, 0, "%s: the snapshot holds nothing for %s", rst_component_name(t),
                         rget(r, "path"));
            break;
        }
        json_object_set_new((json_t *)(uintptr_t)r, "ino", json_integer((json_int_t)st.st_ino));
        json_object_set_new((json_t *)(uintptr_t)r, "dev", json_integer((json_int_t)st.st_dev));
        fd = openat(s.roots[i].parentfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            if (syncfs(fd) != 0)
                rc = err_sys(err, SNAP_EFAIL, "cannot sync the staged copy of %s", rget(r, "path"));
            close(fd);
        }
    }
out:
    stage_free(&s);
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
        if (staged == NULL || staged[0] == '\0' || rget(r, "path") == NULL || same_inode(rget(r, "path"), r))
            continue; /* switched: not ours to remove */
        util_failpoint("files-before-remove");
        snap_rc rc = util_rm_rf(staged, err);
        if (rc != SNAP_OK)
            return rc;
        remove_marker(t, r);
    }
    return SNAP_OK;
}

static snap_rc files_finish(rst_target *t, bool drop_old, snap_err *err)
{
    const json_t *r;
    size_t i;

    json_array_foreach(roots(t), i, r) {
        const char *old = rget(r, "displaced");
        if (old == NULL || old[0] != '/')
            continue;
        if (drop_old) {
            util_failpoint("files-before-remove");
            snap_rc rc = util_rm_rf(old, err);
            if (rc != SNAP_OK)
                return rc;
            remove_marker(t, r);
        } else if (exists(old)) {
            log_info(rst_ctx(t), "kept the displaced %s as %s", rget(r, "path"), old);
        } else {
            remove_marker(t, r); /* nothing was displaced: the marker marks nothing */
        }
    }
    return SNAP_OK;
}

/* ---- orphans: what a revert left beside a configured path when its journal is lost ---- */

/* The marker's document when it is a regular file of ours naming revert id and path. */
static json_t *read_marker(int dfd, const char *name, const char *id, const char *path)
{
    char buf[4096];
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    ssize_t n = -1;
    json_t *doc = NULL;

    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid())
        n = read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n > 0) {
        buf[n] = '\0';
        doc = json_loads(buf, 0, NULL);
    }
    if (doc != NULL && (!json_is_string(json_object_get(doc, "revert_id")) ||
                        strcmp(json_string_value(json_object_get(doc, "revert_id")), id) != 0 ||
                        !json_is_string(json_object_get(doc, "path")) ||
                        strcmp(json_string_value(json_object_get(doc, "path")), path) != 0)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

/* One marker .<base>.snap-mark-<id> in dir: its staging removed when no revert holds path,
 * its displaced state reported. */
static snap_rc orphan_one(snap_ctx *ctx, int dfd, const char *dir, const char *base, const char *path,
                          const char *mark, json_t *report, snap_err *err)
{
    const char *id = mark + 1 + strlen(base) + strlen(MARK_INFIX);
    char *sname = xasprintf(".%s" STAGE_INFIX "%s", base, id), *old = xasprintf(".%s" OLD_INFIX "%s", base, id);
    char *full = NULL;
    json_t *doc = read_marker(dfd, mark, id, path), *e;
    struct stat st;
    bool has_stg = fstatat(dfd, sname, &st, AT_SYMLINK_NOFOLLOW) == 0, has_old;
    int lk = -1;
    snap_rc rc = SNAP_OK;

    if (doc == NULL || strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(id)) {
        log_warn(ctx, "%s/%s is not a marker of a revert of %s: left alone", dir, mark, path);
        goto out;
    }
    has_old = fstatat(dfd, old, &st, AT_SYMLINK_NOFOLLOW) == 0;
    e = json_pack("{s:s, s:O, s:s}", "path", path, "revert_id", json_object_get(doc, "revert_id"), "outcome", "");
    if (json_is_string(json_object_get(doc, "snapshot")))
        json_object_set(e, "snapshot", json_object_get(doc, "snapshot"));
    if (json_is_integer(json_object_get(doc, "created")))
        json_object_set(e, "created", json_object_get(doc, "created"));
    json_array_append_new(report, e);
    if (has_old) {
        full = xasprintf("%s/%s", dir, old);
        json_object_set_new(e, "displaced", json_string(full));
        log_info(ctx, "revert %s of %s kept the displaced %s as %s: `revert --drop-kept` owns it", id, path, path, full);
        free(full);
    }
    if (state_lock(ctx->cfg, path, false, &lk, err) != SNAP_OK) {
        log_warn(ctx, "%s: %s; its staging is left alone", path, err->msg);
        json_object_set_new(e, "outcome", json_string(err->code == SNAP_ECONFLICT ? "locked" : "failed"));
        rc = err->code == SNAP_ECONFLICT ? SNAP_OK : err->code;
        goto out;
    }
    full = xasprintf("%s/%s", dir, sname);
    if (has_stg && util_rm_rf(full, err) != SNAP_OK) {
        json_object_set_new(e, "outcome", json_string("failed"));
        rc = err->code;
        goto out;
    }
    if (has_stg)
        log_info(ctx, "removed the staging %s that revert %s of %s left", full, id, path);
    json_object_set_new(e, "outcome", json_string(has_stg ? "removed" : has_old ? "kept" : "marker-removed"));
    if (has_stg)
        json_object_set_new(e, "staging", json_string(full));
    if (!has_old && util_rm_at(dfd, mark) != 0)
        log_warn(ctx, "cannot remove the marker %s/%s: %s", dir, mark, strerror(errno));
out:
    if (lk >= 0)
        close(lk);
    json_decref(doc);
    free(full);
    free(sname);
    free(old);
    return rc;
}

/* Every marker beside one configured path. */
static snap_rc orphans_of(snap_ctx *ctx, const char *given, json_t *report, snap_err *err)
{
    char *abs = util_abspath(given), *parent = util_dirname(abs), *base = util_basename(abs);
    char *dir = realpath(parent, NULL), *path = NULL, *prefix = xasprintf(".%s" MARK_INFIX, base);
    DIR *d = NULL;
    struct dirent *de;
    snap_rc rc = SNAP_OK;

    if (dir == NULL || (d = opendir(dir)) == NULL)
        goto out; /* no directory: nothing was left in it */
    path = xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", base);
    while (rc == SNAP_OK && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && de->d_name[strlen(prefix)] != '\0')
            rc = orphan_one(ctx, dirfd(d), dir, base, path, de->d_name, report, err);
out:
    if (d != NULL)
        closedir(d);
    free(abs);
    free(parent);
    free(base);
    free(dir);
    free(path);
    free(prefix);
    return rc;
}

static snap_rc files_orphans(snap_ctx *ctx, const char *section, json_t *report, snap_err *err)
{
    struct util_strv paths = {0};
    snap_rc rc = SNAP_OK;

    cfg_list(ctx->cfg, section, "paths", &paths);
    for (size_t k = 0; rc == SNAP_OK && k < paths.n; k++)
        rc = orphans_of(ctx, paths.v[k], report, err);
    util_strv_free(&paths);
    return rc;
}

const rst_driver rst_files_driver = {
    .type = "files",
    .plan = files_plan,
    .safety_source = files_safety_source,
    .safety_deferrable = files_safety_deferrable,
    .displaced_source = files_displaced_source,
    .stage = files_stage,
    .cutover = files_cutover,
    .rollback = files_rollback,
    .discard = files_discard,
    .finish = files_finish,
    .orphans = files_orphans,
};
