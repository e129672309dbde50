/*
 * files_reuse.c: a files snap reuses the parts of its parent whose entries did not change.
 *
 * Every files component stores an entry index beside its parts (docs/formats.md,
 * "Entry index"): for each part, the entries it holds with the metadata that tells a
 * change (mode, size, mtime, ctime, inode, link count), as restic compares them. The next
 * snap of the same source looks at the parent's index before it walks: a part whose
 * entries are all unchanged is added to the new snapshot as a reference, and the walk
 * stores only the entries of the other parts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "files_reuse.h"


/* What tells a change of an entry, as the index holds it (fields 1-8 of its array). */
enum { M_MODE, M_SIZE, M_MTIME, M_MTIME_NS, M_CTIME, M_CTIME_NS, M_INO, M_NLINK, M_COUNT };

/*
 * One entry of a reused part: the walk must meet it, unchanged. 32 bytes, not its name and
 * metadata: the SHA-256 of its stored name cut to 128 bits and of its metadata cut to 64.
 * Two names of one tree share a 128-bit digest with odds of about n^2 / 2^129 (1e-26 for
 * ten million names), and no one, a hostile local user who names files included, can
 * choose two names whose SHA-256 agree there. A collision of metadata digests could only
 * make a changed entry look unchanged if the metadata changed to values that collide
 * with the old ones: odds of 2^-64 per changed entry, by chance only (stat() values are not
 * chosen freely).
 */
typedef struct covered {
    unsigned char path[16];
    uint64_t meta;
    uint32_t no; /* the part number in the new snapshot */
    bool seen;
} covered;

struct frs {
    snp_capture *c;
    covered *cov; /* sorted by path, then part: bsearch */
    size_t ncovered, nseen;
    cat_ixw *index; /* the new index */
    uint64_t reused_parts;
    util_sha256 *h; /* one context for every digest */
};

static int by_path(const void *a, const void *b)
{
    const covered *x = a, *y = b;
    int d = memcmp(x->path, y->path, sizeof x->path);

    return d != 0 ? d : (x->no > y->no) - (x->no < y->no);
}

static int by_path_only(const void *a, const void *b)
{
    return memcmp(((const covered *)a)->path, ((const covered *)b)->path, sizeof ((const covered *)a)->path);
}

/* The metadata the index keeps of an entry, in its order. */
static void stat_meta(const struct stat *st, json_int_t m[M_COUNT])
{
    m[M_MODE] = (json_int_t)st->st_mode;
    m[M_SIZE] = (json_int_t)st->st_size;
    m[M_MTIME] = (json_int_t)st->st_mtim.tv_sec;
    m[M_MTIME_NS] = (json_int_t)st->st_mtim.tv_nsec;
    m[M_CTIME] = (json_int_t)st->st_ctim.tv_sec;
    m[M_CTIME_NS] = (json_int_t)st->st_ctim.tv_nsec;
    m[M_INO] = (json_int_t)st->st_ino;
    m[M_NLINK] = (json_int_t)st->st_nlink;
}

/* An entry of the parent's index: its name and metadata, or false when it is not
 * [string, 8 integers, caps] (such an entry never matches). */
static bool index_meta(const json_t *e, const char **name, json_int_t m[M_COUNT])
{
    *name = json_string_value(json_array_get(e, 0));
    if (json_array_size(e) != CAT_INDEX_FIELDS || *name == NULL)
        return false;
    for (size_t i = 0; i < M_COUNT; i++) {
        const json_t *v = json_array_get(e, i + 1);
        if (!json_is_integer(v))
            return false;
        m[i] = json_integer_value(v);
    }
    return true;
}

/* What the index keeps of an entry. A name JSON cannot hold is null: it never matches.
 * The last field says whether it has file capabilities (for the plan of a revert). */
static json_t *entry_meta(const char *stored, const struct stat *st, bool caps)
{
    json_t *name = json_string(stored);

    return json_pack("[o, I, I, I, I, I, I, I, I, b]", name != NULL ? name : json_null(), (json_int_t)st->st_mode,
                     (json_int_t)st->st_size, (json_int_t)st->st_mtim.tv_sec, (json_int_t)st->st_mtim.tv_nsec,
                     (json_int_t)st->st_ctim.tv_sec, (json_int_t)st->st_ctim.tv_nsec, (json_int_t)st->st_ino,
                     (json_int_t)st->st_nlink, caps);
}

static uint64_t meta_digest(util_sha256 *h, const json_int_t m[M_COUNT])
{
    uint64_t d;

    util_sha256_cut(h, m, M_COUNT * sizeof *m, &d, sizeof d);
    return d;
}

/* Not reusable whatever its metadata: a file with several names (its link group may span
 * parts that changed). */
static bool linked(const struct stat *st)
{
    return S_ISREG(st->st_mode) && st->st_nlink > 1;
}

/* Unchanged: the same metadata, and not linked. The ctime covers the capabilities. */
static bool same_meta(const json_int_t old[M_COUNT], const struct stat *st)
{
    json_int_t now[M_COUNT];

    stat_meta(st, now);
    return !linked(st) && memcmp(old, now, sizeof now) == 0;
}

static bool under_roots(const char *abs, const char *const *roots, size_t nroots)
{
    for (size_t i = 0; i < nroots; i++) {
        size_t n = strlen(roots[i]);
        if (strcmp(roots[i], "/") == 0 ||
            (strncmp(abs, roots[i], n) == 0 && (abs[n] == '\0' || abs[n] == '/')))
            return true;
    }
    return false;
}

/* The parent's component for this source: the one named, or the latest of the same source. */
static cat_component *find_parent(snp_capture *c, const char *source, const json_t *exclude, const char **pname)
{
    size_t n;
    cat_manifest *const *list = snp_catalog(c, &n);
    const char *want = snp_parent(c);

    for (size_t i = n; i-- > 0;) {
        cat_component *p = cat_manifest_find(list[i], snp_source_name(c));
        json_t *index = p != NULL ? json_object_get(cat_component_json(p), "index") : NULL;
        if (want != NULL && strcmp(cat_manifest_name(list[i]), want) != 0)
            continue;
        if (p != NULL && strcmp(cat_component_type(p), "files") == 0 && json_is_object(index) &&
            cat_component_source(p) != NULL && strcmp(cat_component_source(p), source) == 0 &&
            json_equal(json_object_get(cat_component_info(p), "exclude"), exclude)) {
            *pname = cat_manifest_name(list[i]);
            return p;
        }
        if (want != NULL)
            break;
    }
    return NULL;
}

/* The parent's part with this key (the manifest's size and checksum count, not the index's). */
static bool parent_part(cat_component *p, const char *key, size_t *at)
{
    for (size_t i = 0; key != NULL && i < cat_component_nparts(p); i++) {
        const char *k, *sha;
        uint64_t size, entries;
        cat_component_part(p, i, &k, &size, &sha, &entries);
        if (strcmp(k, key) == 0) {
            *at = i;
            return true;
        }
    }
    return false;
}

/* A part of the parent's index as it is read: reused when its key names a part of the
 * parent and it holds as many entries as the manifest says, all as the tree holds them now. */
typedef struct cand {
    bool ok;
    size_t at; /* the parent's part */
    uint64_t want, n; /* entries the manifest says it holds; read so far */
    size_t from, to; /* what the walk must then meet: the reader's v[from, to) */
} cand;

/* The parts read so far: nothing is reused before the whole index is read. Part i's
 * entries, for the new index, are part number i of `index`; those the walk must meet are
 * in one array (they become the frs's), each part's after the one before. */
typedef struct reader {
    cand *c;
    size_t n, cap;
    covered *v;
    size_t nv, vcap;
    cat_ixw *index;
    util_sha256 *h;
    cat_component *p; /* the parent */
    const char *const *roots;
    size_t nroots;
} reader;

/* The part being read (always the last) is not reused: what it added goes. */
static void cand_drop(reader *rd, cand *c)
{
    rd->nv = c->to = c->from;
    c->ok = false;
    cat_ixw_drop(rd->index, (unsigned)(c - rd->c));
}

static void reader_free(reader *rd)
{
    free(rd->v);
    free(rd->c);
    cat_ixw_free(rd->index);
    memset(rd, 0, sizeof *rd);
}

static void cand_begin(reader *rd, const char *key)
{
    cand *c;
    const char *k, *sha;
    uint64_t size, raw;

    if (rd->n == rd->cap) {
        rd->cap = rd->cap ? rd->cap * 2 : 16;
        rd->c = xrealloc(rd->c, rd->cap * sizeof *rd->c);
    }
    c = &rd->c[rd->n++];
    *c = (cand){.from = rd->nv, .to = rd->nv};
    c->ok = parent_part(rd->p, key, &c->at);
    if (c->ok)
        cat_component_part_raw(rd->p, c->at, &k, &size, &sha, &c->want, &raw);
}

/* One entry of the part: kept (its digests and text) while the part may still be reused. */
static void cand_entry(reader *rd, cand *c, const json_t *e)
{
    const char *stored;
    json_int_t m[M_COUNT];
    char *abs;
    struct stat st;
    covered *v;
    bool ok;

    if (!c->ok)
        return;
    if (++c->n > c->want || !index_meta(e, &stored, m) || stored[0] == '\0') {
        cand_drop(rd, c);
        return;
    }
    abs = xasprintf("/%s", stored);
    ok = under_roots(abs, rd->roots, rd->nroots) && lstat(abs, &st) == 0 && same_meta(m, &st);
    free(abs);
    if (!ok) {
        cand_drop(rd, c);
        return;
    }
    if (rd->nv == rd->vcap) {
        rd->vcap = rd->vcap ? rd->vcap + rd->vcap / 2 : 1024;
        rd->v = xrealloc(rd->v, rd->vcap * sizeof *rd->v);
    }
    v = &rd->v[rd->nv++];
    c->to = rd->nv;
    *v = (covered){.meta = meta_digest(rd->h, m)};
    util_sha256_cut(rd->h, stored, strlen(stored), v->path, sizeof v->path);
    cat_ixw_add(rd->index, (unsigned)(c - rd->c), e);
}

static void cand_end(reader *rd, cand *c)
{
    if (c->ok && c->n != c->want)
        cand_drop(rd, c);
}

/* The entries of the reused parts, sorted by name; a name twice: keep the first (the
 * lowest part number), the walk meets it once. */
static void covered_sort(frs *r)
{
    size_t n = 0;

    if (r->ncovered == 0)
        return;
    qsort(r->cov, r->ncovered, sizeof *r->cov, by_path);
    for (size_t i = 0; i < r->ncovered; i++)
        if (n == 0 || by_path_only(&r->cov[n - 1], &r->cov[i]) != 0)
            r->cov[n++] = r->cov[i];
    r->ncovered = n;
}

/* Adds the parts read unchanged to the new snapshot as references; the walk must meet
 * their entries. */
static void reuse_parts(frs *r, reader *rd, cat_component *p)
{
    for (size_t i = 0; i < rd->n; i++) {
        cand *c = &rd->c[i];
        const char *k, *sha;
        uint64_t size, nentries, raw;
        unsigned no;

        if (!c->ok)
            continue;
        cat_component_part_raw(p, c->at, &k, &size, &sha, &nentries, &raw);
        no = arc_parts_add_ref(snp_parts(r->c), k, size, sha, nentries, raw);
        for (size_t j = c->from; j < c->to; j++)
            rd->v[j].no = no;
        cat_ixw_move(r->index, no, rd->index, (unsigned)i); /* listed even without entries */
        r->reused_parts++;
    }
    r->cov = rd->v; /* only reused parts' entries are left in it */
    r->ncovered = rd->nv;
    rd->v = NULL;
    rd->nv = rd->vcap = 0;
    covered_sort(r);
}

/* What cat_index_walk meets, in order: the part being read is always the last. */
static bool on_part(void *arg, const char *key)
{
    reader *rd = arg;

    cand_begin(rd, key);
    return true;
}

static bool on_entry(void *arg, const json_t *e)
{
    reader *rd = arg;
    cand *c = &rd->c[rd->n - 1];

    if (e == NULL)
        cand_drop(rd, c);
    else
        cand_entry(rd, c, e);
    return true;
}

static bool on_part_end(void *arg)
{
    reader *rd = arg;

    cand_end(rd, &rd->c[rd->n - 1]);
    return true;
}

static void on_reset(void *arg)
{
    reader *rd = arg;
    reader fresh = {.index = cat_ixw_new(), .h = rd->h, .p = rd->p, .roots = rd->roots, .nroots = rd->nroots};

    reader_free(rd);
    *rd = fresh;
}

/* Reads the parent's index and reuses its unchanged parts. */
static void read_parent(frs *r, cat_component *p, const char *pname, const char *const *roots, size_t nroots)
{
    reader rd = {.index = cat_ixw_new(), .h = r->h, .p = p, .roots = roots, .nroots = nroots};
    cat_ixv v = {.arg = &rd, .part = on_part, .entry = on_entry, .part_end = on_part_end, .reset = on_reset};
    snap_err e;

    if (cat_index_walk(snp_store(r->c), p, &v, &e) != SNAP_OK) {
        log_warn(snp_ctx(r->c), "%s: storing every entry anew", e.msg);
    } else {
        reuse_parts(r, &rd, p);
        log_verbose(snp_ctx(r->c), "%s: %llu of %zu parts of %s unchanged, reused", snp_source_name(r->c),
                    (unsigned long long)r->reused_parts, rd.n, pname);
    }
    reader_free(&rd);
}

frs *frs_new(snp_capture *c, const char *source, const json_t *exclude, const char *const *roots, size_t nroots)
{
    frs *r = xcalloc(1, sizeof *r);
    const char *pname = NULL;
    cat_component *p;

    r->c = c;
    r->index = cat_ixw_new();
    r->h = util_sha256_new();
    p = find_parent(c, source, exclude, &pname);
    if (p != NULL)
        read_parent(r, p, pname, roots, nroots);
    return r;
}

bool frs_covered(frs *r, const char *stored, const struct stat *st, bool *changed)
{
    covered key = {0}, *found;
    json_int_t now[M_COUNT];

    *changed = false;
    if (r->ncovered == 0)
        return false;
    util_sha256_cut(r->h, stored, strlen(stored), key.path, sizeof key.path);
    found = bsearch(&key, r->cov, r->ncovered, sizeof *r->cov, by_path_only);
    if (found == NULL)
        return false;
    if (found->seen) /* a second visit (nested roots): stored again, as before */
        return false;
    stat_meta(st, now);
    if (linked(st) || meta_digest(r->h, now) != found->meta) {
        *changed = true; /* it changed between the look at the index and the walk */
        return true;
    }
    found->seen = true;
    r->nseen++;
    return true;
}

void frs_record(frs *r, unsigned no, const char *stored, const struct stat *st, bool caps)
{
    json_t *e = entry_meta(stored, st, caps);

    cat_ixw_add(r->index, no, e);
    json_decref(e);
}

snap_rc frs_finish(frs *r, snap_err *err)
{
    stg *s = snp_store(r->c);
    json_t *ix;
    char *key, *packed, sha[65];
    size_t plen;
    util_sha256 *h;
    snap_rc rc;

    if (strcmp(cat_component_type(snp_component(r->c)), "files") != 0)
        return SNAP_OK; /* images keeps its manifests as files: no index */
    if (r->nseen != r->ncovered) {
        err_set(err, SNAP_ECONFLICT, 0, "%zu entries of a reused part went away while snap was reading the tree",
                r->ncovered - r->nseen);
        err_hint(err, "something changed the tree during capture; run snap again (nothing was committed)");
        return SNAP_ECONFLICT;
    }
    rc = cat_ixw_finish(r->index, snp_parts(r->c), &packed, &plen, err);
    if (rc != SNAP_OK)
        return rc;
    key = xasprintf("%s.index.json.zst%s", arc_parts_prefix(snp_parts(r->c)), stg_encrypted(s) ? ".enc" : "");
    rc = stg_put(s, key, packed, plen, STG_CREATE_ONLY, err);
    if (rc == SNAP_OK) {
        h = util_sha256_new();
        util_sha256_update(h, packed, plen);
        util_sha256_final(h, sha);
        ix = json_pack("{s:s, s:I, s:s}", "key", key, "size", (json_int_t)plen, "sha256", sha);
        json_object_set_new(cat_component_json(snp_component(r->c)), "index", ix);
    }
    free(key);
    free(packed);
    return rc;
}

void frs_free(frs *r)
{
    if (r == NULL)
        return;
    free(r->cov);
    cat_ixw_free(r->index);
    util_sha256_free(r->h);
    free(r);
}
