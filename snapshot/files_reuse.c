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
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zstd.h>

#include "../common/util.h"
#include "files_reuse.h"


/* One entry of a reused part: the walk must meet it, unchanged. */
typedef struct covered {
    char *path; /* stored name: the absolute path without its leading '/' */
    json_t *meta;
    unsigned no; /* the part number in the new snapshot */
    bool seen;
} covered;

struct frs {
    snp_capture *c;
    void *tree; /* tsearch of covered, by path */
    size_t ncovered, nseen;
    json_t *parts; /* the new index: part number (as text) -> entries */
    json_t *parent; /* the parent's index, which covered entries point into */
    uint64_t reused_parts;
};

static int by_path(const void *a, const void *b)
{
    return strcmp(((const covered *)a)->path, ((const covered *)b)->path);
}

static void covered_free(void *p)
{
    covered *v = p;
    free(v->path);
    free(v);
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

/* Unchanged: the same metadata, and not a file with several names (its link group may
 * span parts that changed). */
static bool same_meta(const json_t *old, const char *stored, const struct stat *st)
{
    json_t *now = entry_meta(stored, st, false);
    bool same = json_array_size(old) == CAT_INDEX_FIELDS && !(S_ISREG(st->st_mode) && st->st_nlink > 1);

    for (size_t i = 0; i + 1 < CAT_INDEX_FIELDS && same; i++) /* the ctime covers the capabilities */
        same = json_equal(json_array_get(old, i), json_array_get(now, i));

    json_decref(now);
    return same;
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

/* Reads the parent's index, checked against the size and checksum its manifest holds. */
static json_t *load_index(snp_capture *c, cat_component *p)
{
    json_t *doc = NULL;
    snap_err e;

    if (cat_index_load(snp_store(c), p, &doc, &e) != SNAP_OK)
        log_warn(snp_ctx(c), "%s: storing every entry anew", e.msg);
    return doc;
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

/* Whether every entry of one part of the index is as the tree holds it now. */
static bool part_unchanged(const json_t *entries, uint64_t want, const char *const *roots, size_t nroots)
{
    size_t i;
    json_t *e;

    if (!json_is_array(entries) || json_array_size(entries) != want)
        return false;
    json_array_foreach(entries, i, e) {
        const char *stored = json_string_value(json_array_get(e, 0));
        char *abs;
        struct stat st;
        bool ok;

        if (stored == NULL || stored[0] == '\0')
            return false;
        abs = xasprintf("/%s", stored);
        ok = under_roots(abs, roots, nroots) && lstat(abs, &st) == 0 && same_meta(e, stored, &st);
        free(abs);
        if (!ok)
            return false;
    }
    return true;
}

static void cover_part(frs *r, const json_t *entries, unsigned no)
{
    size_t i;
    json_t *e;

    json_array_foreach(entries, i, e) {
        covered *v = xcalloc(1, sizeof *v), **found;
        v->path = xstrdup(json_string_value(json_array_get(e, 0)));
        v->meta = (json_t *)e;
        v->no = no;
        found = tsearch(v, &r->tree, by_path);
        if (*found != v) /* a name twice: keep the first; the walk meets it once */
            covered_free(v);
        else
            r->ncovered++;
    }
}

/* Adds the parent's unchanged parts to the new snapshot as references. */
static void reuse_parts(frs *r, cat_component *p, json_t *index, const char *const *roots, size_t nroots)
{
    json_t *parts = json_object_get(index, "parts"), *ip;
    size_t i, at;

    json_array_foreach(parts, i, ip) {
        const char *key = json_string_value(json_object_get(ip, "key")), *k, *sha;
        json_t *entries = json_object_get(ip, "entries");
        uint64_t size, nentries, raw;
        unsigned no;

        if (!parent_part(p, key, &at))
            continue;
        cat_component_part_raw(p, at, &k, &size, &sha, &nentries, &raw);
        if (!part_unchanged(entries, nentries, roots, nroots))
            continue;
        no = arc_parts_add_ref(snp_parts(r->c), k, size, sha, nentries, raw);
        cover_part(r, entries, no);
        char *num = xasprintf("%u", no);
        json_object_set_new(r->parts, num, json_deep_copy(entries));
        free(num);
        r->reused_parts++;
    }
}

frs *frs_new(snp_capture *c, const char *source, const json_t *exclude, const char *const *roots, size_t nroots)
{
    frs *r = xcalloc(1, sizeof *r);
    const char *pname = NULL;
    cat_component *p;
    json_t *index;

    r->c = c;
    r->parts = json_object();
    p = find_parent(c, source, exclude, &pname);
    if (p == NULL || (index = load_index(c, p)) == NULL)
        return r;
    reuse_parts(r, p, index, roots, nroots);
    log_verbose(snp_ctx(c), "%s: %llu of %zu parts of %s unchanged, reused", snp_source_name(c),
             (unsigned long long)r->reused_parts, json_array_size(json_object_get(index, "parts")), pname);
    r->parent = index;
    return r;
}

bool frs_covered(frs *r, const char *stored, const struct stat *st, bool *changed)
{
    covered key = {.path = (char *)(uintptr_t)stored}, **found;

    *changed = false;
    found = r->tree != NULL ? tfind(&key, &r->tree, by_path) : NULL;
    if (found == NULL)
        return false;
    if ((*found)->seen) /* a second visit (nested roots): stored again, as before */
        return false;
    if (!same_meta((*found)->meta, stored, st)) {
        *changed = true; /* it changed between the look at the index and the walk */
        return true;
    }
    (*found)->seen = true;
    r->nseen++;
    return true;
}

void frs_record(frs *r, unsigned no, const char *stored, const struct stat *st, bool caps)
{
    char *k = xasprintf("%u", no);
    json_t *a = json_object_get(r->parts, k);

    if (a == NULL) {
        a = json_array();
        json_object_set_new(r->parts, k, a);
    }
    json_array_append_new(a, entry_meta(stored, st, caps));
    free(k);
}

/* The new index: every part of the component, in part order, with its entries. */
static json_t *index_doc(frs *r)
{
    arc_parts *parts = snp_parts(r->c);
    json_t *out = json_array();

    for (size_t i = 0; i < arc_parts_count(parts); i++) {
        const char *key, *sha;
        uint64_t size, entries, raw;
        unsigned no = arc_parts_no(parts, i);
        char *k = xasprintf("%u", no);
        json_t *e = json_object_get(r->parts, k);
        arc_parts_get(parts, i, &key, &size, &sha, &entries, &raw);
        if (e != NULL)
            json_array_append_new(out, json_pack("{s:s, s:O}", "key", key, "entries", e));
        free(k);
    }
    return json_pack("{s:i, s:o}", "format", CAT_INDEX_FORMAT, "parts", out);
}

snap_rc frs_finish(frs *r, snap_err *err)
{
    stg *s = snp_store(r->c);
    json_t *doc, *ix;
    char *text, *key, *packed, sha[65];
    size_t len, plen;
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
    doc = index_doc(r);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    len = strlen(text);
    packed = xmalloc(ZSTD_compressBound(len));
    plen = ZSTD_compress(packed, ZSTD_compressBound(len), text, len, 3);
    free(text);
    if (ZSTD_isError(plen)) {
        free(packed);
        return err_set(err, SNAP_EFAIL, 0, "zstd: %s", ZSTD_getErrorName(plen));
    }
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
    tdestroy(r->tree, covered_free);
    json_decref(r->parts);
    json_decref(r->parent);
    free(r);
}
