/*
 * index.c: the entry index of a files component (docs/formats.md, "Entry index"), written
 * a part at a time and read an entry at a time, its text never held whole.
 *
 * Each part's entries are kept as compact JSON text only while that part is being written:
 * once the writer moves to another part, or the text reaches IXW_CHUNK, it is compressed
 * (zstd frames, one after another) and the text is freed. cat_ixw_finish then streams the
 * whole index through one zstd compressor: the header, each part's wrapper and its text
 * decompressed a block at a time. The result is one zstd frame whose header holds the
 * size of its content (the writer knows it before it starts), as every reader requires,
 * earlier versions' included; its text is byte for byte what json_dumps(JSON_COMPACT)
 * makes of the tree {"format": F, "parts": [{"key": K, "entries": [...]}, ...]}.
 */
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "../common/util.h"
#include "arc.h"
#include "catalog.h"

#define IXW_CHUNK (128u << 10) /* text compressed at this size even while its part grows */
#define IXW_LEVEL_CHUNK 1     /* the kept frames: read back once, at the end */
#define IXW_LEVEL 3           /* the stored index, as before */

/* The entries of one part: frames of text already compressed, then the text not yet. */
typedef struct ixpart {
    unsigned no;
    size_t len; /* of its whole text */
    util_buf z, text;
} ixpart;

struct cat_ixw {
    ixpart *parts;
    size_t n, cap;
    size_t last; /* the part added to last, if < n */
    ZSTD_CCtx *zc;
    char *scratch;
    size_t scratch_len;
};

cat_ixw *cat_ixw_new(void)
{
    cat_ixw *w = xcalloc(1, sizeof *w);

    w->zc = ZSTD_createCCtx();
    if (w->zc == NULL)
        abort(); /* out of memory, as xmalloc */
    w->scratch_len = ZSTD_compressBound(IXW_CHUNK + 1);
    w->scratch = xmalloc(w->scratch_len);
    return w;
}

void cat_ixw_free(cat_ixw *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        util_buf_free(&w->parts[i].z);
        util_buf_free(&w->parts[i].text);
    }
    free(w->parts);
    ZSTD_freeCCtx(w->zc);
    free(w->scratch);
    free(w);
}

static ixpart *find(cat_ixw *w, unsigned no)
{
    for (size_t i = w->n; i-- > 0;) /* the writer fills the last part */
        if (w->parts[i].no == no)
            return &w->parts[i];
    return NULL;
}

/* The part's text not yet compressed, compressed now (in chunks of at most IXW_CHUNK). */
static void flush(cat_ixw *w, ixpart *p)
{
    for (size_t at = 0; at < p->text.len;) {
        size_t n = p->text.len - at < IXW_CHUNK ? p->text.len - at : IXW_CHUNK;
        size_t got = ZSTD_compressCCtx(w->zc, w->scratch, w->scratch_len, p->text.p + at, n, IXW_LEVEL_CHUNK);
        if (ZSTD_isError(got))
            abort(); /* the destination is large enough: only out of memory fails */
        util_buf_add(&p->z, w->scratch, got);
        at += n;
    }
    util_buf_free(&p->text);
}

/* Part number no, added (without entries) when first met; the part written before it is
 * compressed. */
static ixpart *part(cat_ixw *w, unsigned no)
{
    ixpart *p = find(w, no);
    size_t prev = w->last, at;

    if (p == NULL) {
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 16;
            w->parts = xrealloc(w->parts, w->cap * sizeof *w->parts);
        }
        w->parts[w->n] = (ixpart){.no = no};
        p = &w->parts[w->n++];
    }
    at = (size_t)(p - w->parts);
    if (prev < w->n && prev != at)
        flush(w, &w->parts[prev]);
    w->last = at;
    return p;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return util_buf_add(data, buf, size) ? 0 : -1;
}

void cat_ixw_part(cat_ixw *w, unsigned no)
{
    part(w, no);
}

void cat_ixw_add(cat_ixw *w, unsigned no, const json_t *entry)
{
    ixpart *p = part(w, no);
    size_t before = p->text.len;

    if (p->len > 0)
        util_buf_addc(&p->text, ',');
    json_dump_callback(entry, dump_cb, &p->text, JSON_COMPACT);
    p->len += p->text.len - before;
    if (p->text.len >= IXW_CHUNK)
        flush(w, p);
}

void cat_ixw_move(cat_ixw *w, unsigned no, cat_ixw *from, unsigned from_no)
{
    ixpart *src = find(from, from_no), *dst;

    if (src == NULL) {
        part(w, no);
        return;
    }
    flush(from, src);
    dst = part(w, no);
    if (dst->len == 0) {
        util_buf_free(&dst->z);
        dst->z = src->z;
        dst->len = src->len;
        memset(&src->z, 0, sizeof src->z);
    } else if (src->len > 0) { /* a part met twice: its texts follow one another */
        flush(w, dst);
        util_buf_addc(&dst->text, ',');
        flush(w, dst);
        util_buf_add(&dst->z, src->z.p, src->z.len);
        dst->len += 1 + src->len;
    }
    cat_ixw_drop(from, from_no);
}

void cat_ixw_drop(cat_ixw *w, unsigned no)
{
    ixpart *p = find(w, no);

    if (p == NULL)
        return;
    util_buf_free(&p->z);
    util_buf_free(&p->text);
    p->len = 0;
}

/* The compressor and what it has written. */
typedef struct packer {
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    util_buf out;
    char *buf; /* ZSTD_CStreamOutSize() */
    size_t buf_len, fed;
} packer;

static bool feed(packer *k, const void *src, size_t n, ZSTD_EndDirective end)
{
    ZSTD_inBuffer in = {src, n, 0};
    size_t left;

    do {
        ZSTD_outBuffer o = {k->buf, k->buf_len, 0};
        left = ZSTD_compressStream2(k->zc, &o, &in, end);
        if (ZSTD_isError(left))
            return false;
        util_buf_add(&k->out, k->buf, o.pos);
    } while (end == ZSTD_e_end ? left != 0 : in.pos < in.size);
    k->fed += n;
    return true;
}

/* A part's compressed frames, decompressed a block at a time into the compressor. */
static bool feed_frames(packer *k, const util_buf *z)
{
    ZSTD_inBuffer in = {z->p, z->len, 0};
    size_t out_len = ZSTD_DStreamOutSize();
    char *out = xmalloc(out_len);
    bool ok = true;

    if (z->len == 0) {
        free(out);
        return true;
    }
    ZSTD_DCtx_reset(k->zd, ZSTD_reset_session_only);
    while (ok) {
        ZSTD_outBuffer o = {out, out_len, 0};
        size_t r = ZSTD_decompressStream(k->zd, &o, &in);
        ok = !ZSTD_isError(r) && feed(k, out, o.pos, ZSTD_e_continue);
        /* the input is used up: at the end of a frame (its last block may fill out whole),
         * or short of it when nothing more came out */
        if (in.pos == in.size && (r == 0 || o.pos < o.size)) {
            ok = ok && r == 0; /* every frame whole */
            break;
        }
    }
    free(out);
    return ok;
}

/* The wrapper of part i that has entries: ",{\"key\":K,\"entries\":[" (no comma first). */
static char *wrapper(const char *key, bool first)
{
    json_t *k = json_string(key);
    char *kj = k != NULL ? json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *s = xasprintf("%s{\"key\":%s,\"entries\":[", first ? "" : ",", kj != NULL ? kj : "null");

    free(kj);
    json_decref(k);
    return s;
}

/* The parts of the index in the component's order: those of w's parts that parts lists. */
static size_t index_order(cat_ixw *w, const arc_parts *parts, ixpart **order, const char **keys)
{
    size_t n = 0;

    for (size_t i = 0; i < arc_parts_count(parts); i++) {
        const char *key, *sha;
        uint64_t size, entries, raw;
        ixpart *p = find(w, arc_parts_no(parts, i));
        if (p == NULL)
            continue;
        arc_parts_get(parts, i, &key, &size, &sha, &entries, &raw);
        order[n] = p;
        keys[n++] = key;
    }
    return n;
}

snap_rc cat_ixw_finish(cat_ixw *w, const arc_parts *parts, char **out, size_t *len, snap_err *err)
{
    char *head = xasprintf("{\"format\":%d,\"parts\":[", CAT_INDEX_FORMAT);
    size_t n, total = strlen(head) + 2;
    ixpart **order = xcalloc(w->n + 1, sizeof *order);
    const char **keys = xcalloc(w->n + 1, sizeof *keys);
    char **wrap;
    packer k = {.zc = w->zc, .zd = ZSTD_createDCtx(), .buf_len = ZSTD_CStreamOutSize()};
    bool ok;

    *out = NULL;
    *len = 0;
    if (w->last < w->n)
        flush(w, &w->parts[w->last]);
    n = index_order(w, parts, order, keys);
    wrap = xcalloc(n + 1, sizeof *wrap);
    for (size_t i = 0; i < n; i++) {
        wrap[i] = wrapper(keys[i], i == 0);
        total += strlen(wrap[i]) + order[i]->len + 2;
    }
    k.buf = xmalloc(k.buf_len);
    ok = k.zd != NULL && !ZSTD_isError(ZSTD_CCtx_reset(k.zc, ZSTD_reset_session_and_parameters)) &&
         !ZSTD_isError(ZSTD_CCtx_setParameter(k.zc, ZSTD_c_compressionLevel, IXW_LEVEL)) &&
         !ZSTD_isError(ZSTD_CCtx_setParameter(k.zc, ZSTD_c_contentSizeFlag, 1)) &&
         !ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(k.zc, total)) && feed(&k, head, strlen(head), ZSTD_e_continue);
    for (size_t i = 0; ok && i < n; i++)
        ok = feed(&k, wrap[i], strlen(wrap[i]), ZSTD_e_continue) && feed_frames(&k, &order[i]->z) &&
             feed(&k, "]}", 2, ZSTD_e_continue);
    ok = ok && feed(&k, "]}", 2, ZSTD_e_end) && k.fed == total;
    for (size_t i = 0; i < n; i++)
        free(wrap[i]);
    free(wrap);
    free(order);
    free(keys);
    free(head);
    free(k.buf);
    ZSTD_freeDCtx(k.zd);
    if (!ok) {
        util_buf_free(&k.out);
        return err_set(err, SNAP_EFAIL, 0, "cannot compress the entry index");
    }
    *len = k.out.len;
    *out = util_buf_take(&k.out);
    return SNAP_OK;
}

/*
 * Reading an index a part and an entry at a time (cat_index_walk). The text is parsed as it
 * is decompressed, from a window of it, never whole: the tree json_loads would make of it
 * costs many times its size. This is the layout every writer of the index uses
 * ({"format":1,"parts":[{"key":K,"entries":[E,...]},...]}, compact); an index laid out
 * otherwise is parsed whole, and only when its text is small.
 */
#define IXR_WINDOW (256u << 10)
#define IXR_AHEAD (64u << 10)     /* refilled when less is left: an entry is at most about 25 KB */
#define IXR_VALUE_MAX (1u << 20)  /* a longer value is not an entry: the index is damaged */
#define IXR_WHOLE_MAX (8u << 20)  /* laid out otherwise: parsed whole up to this (about 50,000 entries) */

typedef struct ixsrc {
    cat_ixr *in;
    char *p;
    size_t len, pos, cap; /* the window p[0, len), read up to pos */
    bool end, bad, stop; /* the text ends at len; it was damaged; a visit ended the walk */
} ixsrc;

/* At least n bytes from pos in the window, unless the text ends before. */
static void ahead(ixsrc *s, size_t n)
{
    snap_err e;
    size_t got;

    if (s->len - s->pos >= n || s->end)
        return;
    if (s->pos > 0) { /* none the first time, when there is no window yet */
        memmove(s->p, s->p + s->pos, s->len - s->pos);
        s->len -= s->pos;
        s->pos = 0;
    }
    if (s->cap < n + 1 || s->cap < IXR_WINDOW + 1) {
        s->cap = n > IXR_WINDOW ? n + 1 : IXR_WINDOW + 1;
        s->p = xrealloc(s->p, s->cap);
    }
    while (!s->end && s->len < n) {
        if (cat_ixr_read(s->in, s->p + s->len, s->cap - 1 - s->len, &got, &e) != SNAP_OK)
            s->bad = s->end = true;
        else if (got == 0)
            s->end = true;
        s->len += got;
    }
    s->p[s->len] = '\0';
}

/* Whether the text at pos starts with t; then pos moves past it. */
static bool lit(ixsrc *s, const char *t)
{
    size_t n = strlen(t);

    ahead(s, n);
    if (s->len - s->pos < n || memcmp(s->p + s->pos, t, n) != 0)
        return false;
    s->pos += n;
    return true;
}

/* The JSON value at pos (flags 0: an array or an object), pos moved past it; or NULL. A
 * value longer than the window is read with a window as long as it. */
static json_t *value(ixsrc *s, size_t flags)
{
    json_error_t je;
    json_t *v = NULL;

    for (size_t want = IXR_AHEAD; v == NULL && want <= IXR_VALUE_MAX; want *= 2) {
        ahead(s, want);
        v = json_loadb(s->p + s->pos, s->len - s->pos, flags | JSON_DISABLE_EOF_CHECK, &je);
        if (v != NULL && (je.position <= 0 || (size_t)je.position > s->len - s->pos)) {
            json_decref(v);
            return NULL;
        }
        if (v == NULL && (s->end || s->len - s->pos < want))
            return NULL;
    }
    if (v == NULL)
        return NULL;
    s->pos += (size_t)je.position;
    return v;
}

/* The entries of one part, after its key: pos past the part's closing brace. */
static bool walk_entries(const cat_ixv *v, ixsrc *s)
{
    json_t *e;

    if (!lit(s, ",\"entries\":["))
        return false;
    if (!lit(s, "]")) {
        do {
            if ((e = value(s, 0)) == NULL)
                return false;
            s->stop = !v->entry(v->arg, e);
            json_decref(e);
            if (s->stop)
                return false;
        } while (lit(s, ","));
        if (!lit(s, "]"))
            return false;
    }
    return lit(s, "}");
}

/* The text as its writers lay it out; false when it is laid out otherwise or damaged. */
static bool walk_text(const cat_ixv *v, ixsrc *s)
{
    char *head = xasprintf("{\"format\":%d,\"parts\":[", CAT_INDEX_FORMAT);
    bool ok = lit(s, head);

    free(head);
    if (ok && !lit(s, "]")) {
        do {
            json_t *k;
            if (!lit(s, "{\"key\":") || (k = value(s, JSON_DECODE_ANY)) == NULL)
                return false;
            s->stop = !v->part(v->arg, json_string_value(k));
            json_decref(k);
            if (s->stop || !walk_entries(v, s))
                return false;
            s->stop = !v->part_end(v->arg);
            if (s->stop)
                return false;
        } while (lit(s, ","));
        ok = lit(s, "]");
    }
    ok = ok && lit(s, "}");
    ahead(s, 1);
    return ok && s->pos == s->len && s->end && !s->bad;
}

/* The walk ended by a visit. */
static snap_rc stopped(const char *key, snap_err *err)
{
    return err_set(err, SNAP_EFAIL, 0, "entry index %s: its reader stopped", key);
}

/* One part of an index parsed whole: false when a visit ends the walk. */
static bool walk_part(const cat_ixv *v, const json_t *part)
{
    const json_t *entries = json_object_get(part, "entries"), *e;
    size_t i;

    if (!v->part(v->arg, json_string_value(json_object_get(part, "key"))))
        return false;
    if (!json_is_array(entries) && !v->entry(v->arg, NULL))
        return false;
    json_array_foreach(entries, i, e)
        if (!v->entry(v->arg, e))
            return false;
    return v->part_end(v->arg);
}

/* The text laid out otherwise, read whole (it is small) and parsed. */
static snap_rc walk_whole(const cat_ixv *v, cat_ixr *in, const char *key, snap_err *err)
{
    size_t len = (size_t)cat_ixr_size(in), at = 0, got = 1;
    char *text = xmalloc(len + 1);
    json_t *doc = NULL, *ip;
    size_t i;
    snap_rc rc = cat_ixr_rewind(in, err);

    while (rc == SNAP_OK && got > 0 && (rc = cat_ixr_read(in, text + at, len + 1 - at, &got, err)) == SNAP_OK)
        at += got;
    if (rc == SNAP_OK && (doc = cat_index_parse(text, at)) == NULL)
        rc = err_set(err, SNAP_EVERIFY, 0, "entry index %s is damaged", key);
    free(text);
    if (rc != SNAP_OK)
        return rc;
    v->reset(v->arg);
    json_array_foreach(json_object_get(doc, "parts"), i, ip)
        if (!walk_part(v, ip)) {
            rc = stopped(key, err);
            break;
        }
    json_decref(doc);
    return rc;
}

snap_rc cat_index_walk(stg *s, cat_component *c, const cat_ixv *v, snap_err *err)
{
    const char *key = json_string_value(json_object_get(json_object_get(cat_component_json(c), "index"), "key"));
    ixsrc src = {0};
    snap_rc rc = cat_index_open(s, c, &src.in, err);

    if (rc != SNAP_OK)
        return rc;
    if (!walk_text(v, &src)) {
        if (src.stop)
            rc = stopped(key, err);
        else if (cat_ixr_size(src.in) > IXR_WHOLE_MAX)
            rc = err_set(err, SNAP_EVERIFY, 0, "entry index %s is damaged or laid out otherwise (%llu bytes)", key,
                         (unsigned long long)cat_ixr_size(src.in));
        else
            rc = walk_whole(v, src.in, key, err);
    }
    cat_ixr_free(src.in);
    free(src.p);
    return rc;
}
