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


/* What tells a change of an entry, as the index holds it (fields 1-8 of its array). */
enum { M_MODE, M_SIZE, M_MTIME, M_MTIME_NS, M_CTIME, M_CTIME_NS, M_INO, M_NLINK, M_COUNT };

/* One entry of a reused part: the walk must meet it, unchanged. Kept as this struct (about
 * a hundred bytes with its name), not as the parent's JSON, which is never held whole. */
typedef struct covered {
    const char *path; /* stored name, the absolute path without its leading '/'; right after the struct */
    json_int_t meta[M_COUNT];
    unsigned no; /* the part number in the new snapshot */
    bool seen;
} covered;

/* The entries of one part of the new index, as compact JSON text ("[...],[...]"). */
typedef struct ipart {
    unsigned no;
    util_buf text;
} ipart;

struct frs {
    snp_capture *c;
    void *tree; /* tsearch of covered, by path */
    size_t ncovered, nseen;
    ipart *parts; /* the new index, in the order the parts were first met */
    size_t nparts, cap;
    uint64_t reused_parts;
};

static int by_path(const void *a, const void *b)
{
    return strcmp(((const covered *)a)->path, ((const covered *)b)->path);
}

static void covered_free(void *p)
{
    free(p);
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

/* Unchanged: the same metadata, and not a file with several names (its link group may
 * span parts that changed). The ctime covers the capabilities. */
static bool same_meta(const json_int_t old[M_COUNT], const struct stat *st)
{
    json_int_t now[M_COUNT];

    stat_meta(st, now);
    return !(S_ISREG(st->st_mode) && st->st_nlink > 1) && memcmp(old, now, sizeof now) == 0;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return util_buf_add(data, buf, size) ? 0 : -1;
}

/* The text of part number no of the new index, added when first met. */
static util_buf *index_part(frs *r, unsigned no)
{
    for (size_t i = r->nparts; i-- > 0;) /* the walk fills the last part */
        if (r->parts[i].no == no)
            return &r->parts[i].text;
    if (r->nparts == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->parts = xrealloc(r->parts, r->cap * sizeof *r->parts);
    }
    r->parts[r->nparts] = (ipart){.no = no};
    return &r->parts[r->nparts++].text;
}

/* Appends one entry to a part's text, as compact JSON. */
static void text_add(util_buf *b, const json_t *entry)
{
    if (b->len > 0)
        util_buf_addc(b, ',');
    json_dump_callback(entry, dump_cb, b, JSON_COMPACT);
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

/* Reads the parent's index, checked against the size and checksum its manifest holds:
 * its text, not yet parsed. */
static char *load_index(snp_capture *c, cat_component *p, size_t *len)
{
    char *text = NULL;
    snap_err e;

    if (cat_index_text(snp_store(c), p, &text, len, &e) != SNAP_OK)
        log_warn(snp_ctx(c), "%s: storing every entry anew", e.msg);
    return text;
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
    covered **v; /* what the walk must then meet */
    size_t nv, cap;
    util_buf text; /* its entries, for the new index */
} cand;

/* The parts read so far: nothing is reused before the whole index is read. */
typedef struct reader {
    cand *c;
    size_t n, cap;
} reader;

static void cand_drop(cand *c)
{
    for (size_t i = 0; i < c->nv; i++)
        covered_free(c->v[i]);
    free(c->v);
    util_buf_free(&c->text);
    c->v = NULL;
    c->nv = c->cap = 0;
    c->ok = false;
}

static void reader_free(reader *rd)
{
    for (size_t i = 0; i < rd->n; i++)
        cand_drop(&rd->c[i]);
    free(rd->c);
    memset(rd, 0, sizeof *rd);
}

static cand *cand_begin(reader *rd, cat_component *p, const char *key)
{
    cand *c;
    const char *k, *sha;
    uint64_t size, raw;

    if (rd->n == rd->cap) {
        rd->cap = rd->cap ? rd->cap * 2 : 16;
        rd->c = xrealloc(rd->c, rd->cap * sizeof *rd->c);
    }
    c = &rd->c[rd->n++];
    *c = (cand){0};
    c->ok = parent_part(p, key, &c->at);
    if (c->ok)
        cat_component_part_raw(p, c->at, &k, &size, &sha, &c->want, &raw);
    return c;
}

/* One entry of the part: kept (its metadata and text) while the part may still be reused. */
static void cand_entry(cand *c, const json_t *e, const char *const *roots, size_t nroots)
{
    const char *stored;
    json_int_t m[M_COUNT];
    char *abs;
    struct stat st;
    covered *v;
    size_t n;
    bool ok;

    if (!c->ok)
        return;
    if (++c->n > c->want || !index_meta(e, &stored, m) || stored[0] == '\0') {
        cand_drop(c);
        return;
    }
    abs = xasprintf("/%s", stored);
    ok = under_roots(abs, roots, nroots) && lstat(abs, &st) == 0 && same_meta(m, &st);
    free(abs);
    if (!ok) {
        cand_drop(c);
        return;
    }
    n = strlen(stored) + 1;
    v = xcalloc(1, sizeof *v + n);
    memcpy(v + 1, stored, n);
    v->path = (const char *)(v + 1);
    memcpy(v->meta, m, sizeof m);
    if (c->nv == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->nv++] = v;
    text_add(&c->text, e);
}

static void cand_end(cand *c)
{
    if (c->ok && c->n != c->want)
        cand_drop(c);
}

/* Adds the parts read unchanged to the new snapshot as references. */
static void reuse_parts(frs *r, reader *rd, cat_component *p)
{
    for (size_t i = 0; i < rd->n; i++) {
        cand *c = &rd->c[i];
        const char *k, *sha;
        uint64_t size, nentries, raw;
        unsigned no;
        util_buf *text;

        if (!c->ok)
            continue;
        cat_component_part_raw(p, c->at, &k, &size, &sha, &nentries, &raw);
        no = arc_parts_add_ref(snp_parts(r->c), k, size, sha, nentries, raw);
        for (size_t j = 0; j < c->nv; j++) {
            covered *v = c->v[j], **found;
            v->no = no;
            found = tsearch(v, &r->tree, by_path);
            if (*found != v) /* a name twice: keep the first; the walk meets it once */
                covered_free(v);
            else
                r->ncovered++;
        }
        c->nv = 0;
        text = index_part(r, no); /* listed even without entries */
        if (text->p == NULL) { /* a new part number: the text moves */
            *text = c->text;
            memset(&c->text, 0, sizeof c->text);
        }
        util_buf_add(text, c->text.p, c->text.len);
        util_buf_free(&c->text);
        r->reused_parts++;
    }
}

/* The parsed index (laid out otherwise than read_text expects), part by part. */
static void read_tree(reader *rd, cat_component *p, const json_t *index, const char *const *roots, size_t nroots)
{
    json_t *ip, *e;
    size_t i, j;

    json_array_foreach(json_object_get(index, "parts"), i, ip) {
        const json_t *entries = json_object_get(ip, "entries");
        cand *c = cand_begin(rd, p, json_string_value(json_object_get(ip, "key")));
        if (!json_is_array(entries))
            cand_drop(c);
        json_array_foreach(entries, j, e)
            cand_entry(c, e, roots, nroots);
        cand_end(c);
    }
}

/* Whether the text at *pos starts with s; then *pos moves past it. */
static bool lit(const char *t, size_t len, size_t *pos, const char *s)
{
    size_t n = strlen(s);

    if (len - *pos < n || memcmp(t + *pos, s, n) != 0)
        return false;
    *pos += n;
    return true;
}

/* The JSON value at *pos (flags 0: an array or an object), *pos moved past it; or NULL. */
static json_t *value(const char *t, size_t len, size_t *pos, size_t flags)
{
    json_error_t je;
    json_t *v = json_loadb(t + *pos, len - *pos, flags | JSON_DISABLE_EOF_CHECK, &je);

    if (v != NULL && (je.position <= 0 || (size_t)je.position > len - *pos)) {
        json_decref(v);
        return NULL;
    }
    if (v != NULL)
        *pos += (size_t)je.position;
    return v;
}

/*
 * The parent's index as its writer lays it out ({"format":1,"parts":[{"key":K,"entries":
 * [E,...]},...]}, compact), parsed one entry at a time: its parsed tree would be many times
 * the size of the text. False when the text is laid out otherwise: the caller parses it whole.
 */
static bool read_text(reader *rd, cat_component *p, const char *t, size_t len, const char *const *roots,
                      size_t nroots)
{
    char *head = xasprintf("{\"format\":%d,\"parts\":[", CAT_INDEX_FORMAT);
    size_t pos = 0;
    bool ok = lit(t, len, &pos, head);

    free(head);
    if (!ok || lit(t, len, &pos, "]"))
        return ok && lit(t, len, &pos, "}") && pos == len;
    do {
        json_t *k, *e;
        cand *c;
        if (!lit(t, len, &pos, "{\"key\":") || (k = value(t, len, &pos, JSON_DECODE_ANY)) == NULL)
            return false;
        c = cand_begin(rd, p, json_string_value(k));
        json_decref(k);
        if (!lit(t, len, &pos, ",\"entries\":["))
            return false;
        if (!lit(t, len, &pos, "]")) {
            do {
                if ((e = value(t, len, &pos, 0)) == NULL)
                    return false;
                cand_entry(c, e, roots, nroots);
                json_decref(e);
            } while (lit(t, len, &pos, ","));
            if (!lit(t, len, &pos, "]"))
                return false;
        }
        if (!lit(t, len, &pos, "}"))
            return false;
        cand_end(c);
    } while (lit(t, len, &pos, ","));
    return lit(t, len, &pos, "]}") && pos == len;
}

/* Reads the parent's index and reuses its unchanged parts. */
static void read_parent(frs *r, cat_component *p, const char *pname, const char *const *roots, size_t nroots)
{
    reader rd = {0};
    size_t len = 0;
    char *text = load_index(r->c, p, &len);
    json_t *doc;

    if (text == NULL)
        return;
    if (!read_text(&rd, p, text, len, roots, nroots)) {
        reader_free(&rd);
        doc = cat_index_parse(text, len);
        if (doc == NULL) {
            log_warn(snp_ctx(r->c), "entry index %s is damaged: storing every entry anew",
                     json_string_value(json_object_get(json_object_get(cat_component_json(p), "index"), "key")));
            free(text);
            return;
        }
        read_tree(&rd, p, doc, roots, nroots);
        json_decref(doc);
    }
    free(text);
    reuse_parts(r, &rd, p);
    log_verbose(snp_ctx(r->c), "%s: %llu of %zu parts of %s unchanged, reused", snp_source_name(r->c),
                (unsigned long long)r->reused_parts, rd.n, pname);
    reader_free(&rd);
}

frs *frs_new(snp_capture *c, const char *source, const json_t *exclude, const char *const *roots, size_t nroots)
{
    frs *r = xcalloc(1, sizeof *r);
    const char *pname = NULL;
    cat_component *p;

    r->c = c;
    p = find_parent(c, source, exclude, &pname);
    if (p != NULL)
        read_parent(r, p, pname, roots, nroots);
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
    if (!same_meta((*found)->meta, st)) {
        *changed = true; /* it changed between the look at the index and the walk */
        return true;
    }
    (*found)->seen = true;
    r->nseen++;
    return true;
}

void frs_record(frs *r, unsigned no, const char *stored, const struct stat *st, bool caps)
{
    json_t *e = entry_meta(stored, st, caps);

    text_add(index_part(r, no), e);
    json_decref(e);
}

/* The new index as text: every part of the component that has entries, in part order.
 * Built by concatenation, byte for byte what json_dumps(JSON_COMPACT) makes of the tree
 * {"format": F, "parts": [{"key": K, "entries": [...]}, ...]}; each part's text is freed
 * once copied. */
static char *index_text(frs *r, size_t *len)
{
    arc_parts *parts = snp_parts(r->c);
    util_buf b = {0};
    char *head = xasprintf("{\"format\":%d,\"parts\":[", CAT_INDEX_FORMAT);
    bool first = true;

    util_buf_adds(&b, head);
    free(head);
    for (size_t i = 0; i < arc_parts_count(parts); i++) {
        const char *key, *sha;
        uint64_t size, entries, raw;
        unsigned no = arc_parts_no(parts, i);
        json_t *k;

        arc_parts_get(parts, i, &key, &size, &sha, &entries, &raw);
        for (size_t j = 0; j < r->nparts; j++) {
            if (r->parts[j].no != no)
                continue;
            util_buf_adds(&b, first ? "{\"key\":" : ",{\"key\":");
            k = json_string(key);
            json_dump_callback(k, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(k);
            util_buf_adds(&b, ",\"entries\":[");
            util_buf_add(&b, r->parts[j].text.p, r->parts[j].text.len);
            util_buf_adds(&b, "]}");
            util_buf_free(&r->parts[j].text);
            first = false;
            break;
        }
    }
    util_buf_adds(&b, "]}");
    *len = b.len;
    return util_buf_take(&b);
}

snap_rc frs_finish(frs *r, snap_err *err)
{
    stg *s = snp_store(r->c);
    json_t *ix;
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
    text = index_text(r, &len);
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
    for (size_t i = 0; i < r->nparts; i++)
        util_buf_free(&r->parts[i].text);
    free(r->parts);
    free(r);
}
