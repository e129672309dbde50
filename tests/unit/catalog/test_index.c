/* Unit tests of the entry index (catalog/index.c): written a part at a time, its text is
 * byte for byte what earlier versions wrote and read (json_dumps, JSON_COMPACT, of the
 * whole tree, in one zstd frame of a known size), and it reads back as a stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "../../../catalog/arc.h"
#include "../../../catalog/catalog.h"
#include "../../../common/util.h"

#define SHA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static json_t *entry(unsigned part, unsigned i)
{
    /* names JSON must escape, and non-ASCII ones, as a tree may hold them */
    char *name = xasprintf("srv/d%u/%s-%05u", part, i % 7 == 0 ? "q\"uo\\te\t\x01" : i % 5 == 0 ? "caf\xc3\xa9" : "f", i);
    json_t *e = json_pack("[s, I, I, I, I, I, I, I, I, b]", name, (json_int_t)0100644, (json_int_t)i * 37,
                          (json_int_t)1764000000 + i, (json_int_t)i * 1000, (json_int_t)1764000000 + i,
                          (json_int_t)999999999, (json_int_t)123456789 + i, (json_int_t)1, i % 11 == 0);

    free(name);
    return e;
}

/* What earlier versions wrote: the whole tree, dumped compact. */
static char *tree_text(json_t *tree)
{
    return json_dumps(tree, JSON_COMPACT);
}

static char *unpack(const char *z, size_t zlen, size_t *len)
{
    unsigned long long n = ZSTD_getFrameContentSize(z, zlen);
    char *t;

    assert_true(n != ZSTD_CONTENTSIZE_ERROR && n != ZSTD_CONTENTSIZE_UNKNOWN);
    assert_int_equal(ZSTD_findFrameCompressedSize(z, zlen), zlen); /* one frame, nothing after it */
    t = xmalloc(n + 1);
    assert_int_equal(ZSTD_decompress(t, n, z, zlen), n);
    t[n] = '\0';
    *len = n;
    return t;
}

/*
 * Parts 0, 2 and 3 of the component (part 1 has no entries and is not in the index, part
 * 9 is the writer's but not the component's); part 2 is large enough to be compressed in
 * several chunks, part 3 comes from another writer (a reused part), part 4 is listed
 * without entries.
 */
static void written_a_part_at_a_time_is_the_tree_dumped(void **state)
{
    arc_parts *parts = arc_parts_new("data/id/app");
    cat_ixw *w = cat_ixw_new(), *from = cat_ixw_new();
    json_t *tree = json_pack("{s:i, s:[]}", "format", CAT_INDEX_FORMAT, "parts"), *e, *list[5];
    char *want, *z, *got;
    size_t zlen, len;
    snap_err err;

    (void)state;
    for (unsigned no = 0; no < 5; no++) {
        char *key = xasprintf("data/id/app.%04u.tar.zst", no);
        assert_int_equal(arc_parts_add_ref(parts, key, 1, SHA, 1, 1), no);
        list[no] = json_pack("{s:s, s:[]}", "key", key, "entries");
        free(key);
    }
    for (unsigned i = 0; i < 300; i++) { /* part 3, read from a parent as part 0 of its reader */
        e = entry(3, i);
        cat_ixw_add(from, 0, e);
        json_array_append_new(json_object_get(list[3], "entries"), e);
    }
    cat_ixw_add(from, 1, e = entry(8, 0)); /* a dropped part: never in the index */
    json_decref(e);
    cat_ixw_drop(from, 1);
    for (unsigned i = 0; i < 1000; i++) {
        e = entry(0, i);
        cat_ixw_add(w, 0, e);
        json_array_append_new(json_object_get(list[0], "entries"), e);
    }
    cat_ixw_move(w, 3, from, 0);
    for (unsigned i = 0; i < 20000; i++) { /* a few MB of text: several chunks */
        e = entry(2, i);
        cat_ixw_add(w, 2, e);
        json_array_append_new(json_object_get(list[2], "entries"), e);
    }
    cat_ixw_add(w, 9, e = entry(9, 0));
    json_decref(e);
    cat_ixw_part(w, 4);
    for (unsigned no = 0; no < 5; no++)
        if (no != 1)
            json_array_append(json_object_get(tree, "parts"), list[no]);
    for (unsigned no = 0; no < 5; no++)
        json_decref(list[no]);

    assert_int_equal(cat_ixw_finish(w, parts, &z, &zlen, &err), SNAP_OK);
    want = tree_text(tree);
    got = unpack(z, zlen, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    assert_true(zlen < len / 4);
    free(got);
    free(want);
    free(z);
    json_decref(tree);
    cat_ixw_free(w);
    cat_ixw_free(from);
    arc_parts_free(parts);
}

/* A part whose text is exactly `total` bytes: entries of 200 bytes, the last padded to fit. */
static json_t *part_of_size(cat_ixw *w, size_t total)
{
    json_t *entries = json_array(), *e;
    size_t len = 0;
    char *t;

    for (unsigned i = 0;; i++) {
        size_t left = total - len - (i ? 1 : 0), base;
        e = json_pack("[s, I, I, I, I, I, I, I, I, b]", "", (json_int_t)0100644, (json_int_t)1, (json_int_t)2,
                      (json_int_t)3, (json_int_t)4, (json_int_t)5, (json_int_t)6, (json_int_t)1, false);
        t = json_dumps(e, JSON_COMPACT);
        base = strlen(t);
        free(t);
        json_decref(e);
        char *name = xmalloc(left < 400 ? left - base + 1 : 200 - base + 1);
        memset(name, 'n', left < 400 ? left - base : 200 - base);
        name[left < 400 ? left - base : 200 - base] = '\0';
        e = json_pack("[s, I, I, I, I, I, I, I, I, b]", name, (json_int_t)0100644, (json_int_t)1, (json_int_t)2,
                      (json_int_t)3, (json_int_t)4, (json_int_t)5, (json_int_t)6, (json_int_t)1, false);
        free(name);
        t = json_dumps(e, JSON_COMPACT);
        len += strlen(t) + (i ? 1 : 0);
        free(t);
        cat_ixw_add(w, 0, e);
        json_array_append_new(entries, e);
        if (len == total)
            return entries;
    }
}

/* A part's text that ends exactly at a compressed chunk's boundary (128 KiB, once or
 * twice) is read back whole, as any other. */
static void a_part_that_fills_its_chunks_exactly(void **state)
{
    static const size_t sizes[] = {128u << 10, 256u << 10, (256u << 10) + 1, (128u << 10) - 1};

    (void)state;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        arc_parts *parts = arc_parts_new("data/id/app");
        cat_ixw *w = cat_ixw_new();
        json_t *tree, *entries = part_of_size(w, sizes[k]);
        char *want, *z, *got;
        size_t zlen, len;
        snap_err err;

        assert_int_equal(arc_parts_add_ref(parts, "data/id/app.0000.tar.zst", 1, SHA, 1, 1), 0);
        tree = json_pack("{s:i, s:[{s:s, s:o}]}", "format", CAT_INDEX_FORMAT, "parts", "key",
                         "data/id/app.0000.tar.zst", "entries", entries);
        assert_int_equal(cat_ixw_finish(w, parts, &z, &zlen, &err), SNAP_OK);
        want = tree_text(tree);
        got = unpack(z, zlen, &len);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(got, want, len);
        free(got);
        free(want);
        free(z);
        json_decref(tree);
        cat_ixw_free(w);
        arc_parts_free(parts);
    }
}

static void an_empty_index_is_the_tree_dumped(void **state)
{
    arc_parts *parts = arc_parts_new("data/id/app");
    cat_ixw *w = cat_ixw_new();
    char *z, *got;
    size_t zlen, len;
    snap_err err;

    (void)state;
    assert_int_equal(cat_ixw_finish(w, parts, &z, &zlen, &err), SNAP_OK);
    got = unpack(z, zlen, &len);
    assert_string_equal(got, "{\"format\":1,\"parts\":[]}");
    free(got);
    free(z);
    cat_ixw_free(w);
    arc_parts_free(parts);
}

/* Puts z as the component's index in the store. */
static void put_index(stg *s, cat_component *c, const char *key, const char *z, size_t zlen)
{
    util_sha256 *h = util_sha256_new();
    char sha[65];
    snap_err err;

    util_sha256_update(h, z, zlen);
    util_sha256_final(h, sha);
    assert_int_equal(stg_put(s, key, z, zlen, 0, &err), SNAP_OK);
    json_object_set_new(cat_component_json(c), "index",
                        json_pack("{s:s, s:I, s:s}", "key", key, "size", (json_int_t)zlen, "sha256", sha));
}

/* The whole text through cat_ixr_read, n bytes at most a call. */
static snap_rc stream(stg *s, cat_component *c, size_t n, util_buf *out)
{
    cat_ixr *r;
    char buf[4096];
    size_t got;
    snap_err err;
    snap_rc rc = cat_index_open(s, c, &r, &err);

    while (rc == SNAP_OK && (rc = cat_ixr_read(r, buf, n, &got, &err)) == SNAP_OK && got > 0)
        util_buf_add(out, buf, got);
    cat_ixr_free(r);
    return rc;
}

static void read_as_a_stream_and_checked(void **state)
{
    snap_ctx ctx = {0};
    stg *s;
    cat_manifest *m = cat_manifest_new("m", "20261126T000000.000Z-00000000");
    cat_component *c = cat_manifest_add_component(m, "app", "files");
    util_buf text = {0}, b = {0};
    char *z, *two;
    size_t zlen;
    snap_err err;

    (void)state;
    assert_int_equal(stg_open("mem://ix", true, &ctx, &s, &err), SNAP_OK);
    for (unsigned i = 0; i < 3000; i++) {
        char *t = xasprintf("%s[\"f%u\",1,2,3,4,5,6,7,8,false]", i ? "," : "{\"format\":1,\"parts\":[{\"key\":\"k\",\"entries\":[", i);
        util_buf_adds(&text, t);
        free(t);
    }
    util_buf_adds(&text, "]}]}");
    zlen = ZSTD_compressBound(text.len);
    z = xmalloc(2 * zlen);
    zlen = ZSTD_compress(z, zlen, text.p, text.len, 3);
    put_index(s, c, "data/a.index.json.zst", z, zlen);
    for (size_t n = 1; n <= 4096; n *= 8) {
        assert_int_equal(stream(s, c, n, &b), SNAP_OK);
        assert_int_equal(b.len, text.len);
        assert_memory_equal(b.p, text.p, text.len);
        util_buf_free(&b);
    }

    /* two frames, or one cut short: damaged, as for earlier versions */
    two = xmalloc(2 * zlen);
    memcpy(two, z, zlen);
    memcpy(two + zlen, z, zlen);
    put_index(s, c, "data/b.index.json.zst", two, 2 * zlen);
    assert_int_equal(stream(s, c, 4096, &b), SNAP_EVERIFY);
    util_buf_free(&b);
    put_index(s, c, "data/c.index.json.zst", z, zlen - 5);
    assert_int_equal(stream(s, c, 4096, &b), SNAP_EVERIFY);
    util_buf_free(&b);
    /* bytes that are not the manifest's */
    put_index(s, c, "data/d.index.json.zst", z, zlen);
    json_object_set_new(json_object_get(cat_component_json(c), "index"), "sha256", json_string(SHA));
    assert_int_equal(stream(s, c, 4096, &b), SNAP_EVERIFY);
    util_buf_free(&b);

    free(two);
    free(z);
    util_buf_free(&text);
    cat_manifest_free(m);
    stg_free(s);
}

/* What cat_index_walk met, as text: P(key), E(name), N for a list of entries that is not
 * one, / at the end of a part, and RESET (a byte no name holds) where it started over. A
 * visit returns false (ends the walk) once the text ends with stop. */
#define RESET "\001"

typedef struct trace {
    util_buf b;
    const char *stop;
} trace;

static bool go_on(const trace *t)
{
    size_t n = t->stop != NULL ? strlen(t->stop) : 0;
    return n == 0 || t->b.len < n || memcmp(t->b.p + t->b.len - n, t->stop, n) != 0;
}

static bool t_part(void *arg, const char *key)
{
    trace *t = arg;

    util_buf_adds(&t->b, "P(");
    util_buf_adds(&t->b, key != NULL ? key : "null");
    util_buf_adds(&t->b, ")");
    return go_on(t);
}

static bool t_entry(void *arg, const json_t *e)
{
    trace *t = arg;

    if (e == NULL) {
        util_buf_adds(&t->b, "N");
    } else {
        util_buf_adds(&t->b, "E(");
        util_buf_adds(&t->b, json_string_value(json_array_get(e, 0)));
        util_buf_adds(&t->b, ")");
    }
    return go_on(t);
}

static bool t_part_end(void *arg)
{
    trace *t = arg;

    util_buf_adds(&t->b, "/");
    return go_on(t);
}

static void t_reset(void *arg)
{
    util_buf_adds(&((trace *)arg)->b, RESET);
}

/* Stores text (compressed, as the index) and walks it, ended by a visit once the trace
 * ends with stop (NULL: never): the trace. */
static char *walk_to(stg *s, cat_component *c, const char *text, size_t len, const char *stop, snap_rc *rc)
{
    trace t = {.stop = stop};
    cat_ixv v = {.arg = &t, .part = t_part, .entry = t_entry, .part_end = t_part_end, .reset = t_reset};
    size_t zlen = ZSTD_compressBound(len);
    char *z = xmalloc(zlen);
    snap_err err;

    zlen = ZSTD_compress(z, zlen, text, len, 1);
    assert_false(ZSTD_isError(zlen));
    put_index(s, c, "data/w.index.json.zst", z, zlen);
    free(z);
    *rc = cat_index_walk(s, c, &v, &err);
    util_buf_addc(&t.b, '\0');
    return util_buf_take(&t.b);
}

static char *walk(stg *s, cat_component *c, const char *text, size_t len, snap_rc *rc)
{
    return walk_to(s, c, text, len, NULL, rc);
}

static void walked_an_entry_at_a_time(void **state)
{
    snap_ctx ctx = {0};
    stg *s;
    cat_manifest *m = cat_manifest_new("m", "20261126T000000.000Z-00000000");
    cat_component *c = cat_manifest_add_component(m, "app", "files");
    const char *compact = "{\"format\":1,\"parts\":[{\"key\":\"k1\",\"entries\":[[\"a\",1,2,3,4,5,6,7,8,false],"
                          "[\"b\\\"q\",1,2,3,4,5,6,7,8,false]]},{\"key\":\"k2\",\"entries\":[]}]}";
    const char *late = "{\"format\":1,\"parts\":[{\"key\":\"k1\",\"entries\":[[\"a\",1,2,3,4,5,6,7,8,false],"
                       "[\"b\\\"q\",1,2,3,4,5,6,7,8,false]]}, {\"key\":\"k2\",\"entries\":[]}]}";
    const char *walked = "P(k1)E(a)E(b\"q)/P(k2)/";
    json_t *doc = json_loads(compact, 0, NULL);
    char *pretty = json_dumps(doc, JSON_INDENT(1)), *t, *want, *big;
    util_buf text = {0};
    snap_rc rc;
    snap_err err;

    (void)state;
    assert_non_null(pretty);
    assert_int_equal(stg_open("mem://walk", true, &ctx, &s, &err), SNAP_OK);
    /* laid out as its writers lay it out: read as a stream, never started over */
    t = walk(s, c, compact, strlen(compact), &rc);
    assert_int_equal(rc, SNAP_OK);
    assert_string_equal(t, walked);
    free(t);
    /* laid out otherwise: parsed whole, the same visits after a reset */
    t = walk(s, c, pretty, strlen(pretty), &rc);
    assert_int_equal(rc, SNAP_OK);
    want = xasprintf(RESET "%s", walked);
    assert_string_equal(t, want);
    free(want);
    free(t);
    /* laid out otherwise only in its second part: the first part's visits, then a reset
     * and every visit again */
    t = walk(s, c, late, strlen(late), &rc);
    assert_int_equal(rc, SNAP_OK);
    want = xasprintf("P(k1)E(a)E(b\"q)/" RESET "%s", walked);
    assert_string_equal(t, want);
    free(want);
    free(t);
    /* a part whose entries are not a list, and a key that is not a string */
    t = walk(s, c, "{\"format\":1, \"parts\":[{\"key\":7,\"entries\":{}}]}", 46, &rc);
    assert_int_equal(rc, SNAP_OK);
    assert_string_equal(t, RESET "P(null)N/");
    free(t);
    /* ended at a list of entries that is not one */
    {
        const char *odd = "{\"format\":1, \"parts\":[{\"key\":7,\"entries\":{}},{\"key\":\"k\",\"entries\":[]}]}";
        t = walk_to(s, c, odd, strlen(odd), "N", &rc);
    }
    assert_int_equal(rc, SNAP_EFAIL);
    assert_string_equal(t, RESET "P(null)N");
    free(t);
    /* cut short, or not an index: damaged */
    t = walk(s, c, compact, strlen(compact) - 2, &rc);
    assert_int_equal(rc, SNAP_EVERIFY);
    free(t);
    t = walk(s, c, "{\"format\":2,\"parts\":[]}", 23, &rc);
    assert_int_equal(rc, SNAP_EVERIFY);
    free(t);
    /* ended by a visit: at an entry, a part, the end of a part; as a stream or parsed
     * whole, never started over */
    {
        static const struct {
            const char *stop, *want;
            bool whole;
        } stops[] = {{"E(a)", "P(k1)E(a)", false},
                     {"P(k2)", "P(k1)E(a)E(b\"q)/P(k2)", false},
                     {"/", "P(k1)E(a)E(b\"q)/", false},
                     {"E(a)", RESET "P(k1)E(a)", true},
                     {"/", RESET "P(k1)E(a)E(b\"q)/", true},
                     {"P(k2)", RESET "P(k1)E(a)E(b\"q)/P(k2)", true}};
        for (size_t i = 0; i < sizeof stops / sizeof *stops; i++) {
            const char *in = stops[i].whole ? pretty : compact;
            t = walk_to(s, c, in, strlen(in), stops[i].stop, &rc);
            assert_int_equal(rc, SNAP_EFAIL);
            assert_string_equal(t, stops[i].want);
            free(t);
        }
    }
    /* laid out otherwise and large: not parsed whole */
    util_buf_adds(&text, pretty);
    big = xcalloc(1, 9u << 20);
    memset(big, ' ', (9u << 20) - 1);
    util_buf_adds(&text, big);
    t = walk(s, c, text.p, text.len, &rc);
    assert_int_equal(rc, SNAP_EVERIFY);
    assert_string_equal(t, "");
    free(t);

    free(big);
    util_buf_free(&text);
    free(pretty);
    json_decref(doc);
    cat_manifest_free(m);
    stg_free(s);
}

/* The index an earlier version wrote (tests/e2e/fixtures/store-early, commit cc1cd39) reads
 * as a stream to the same text as read whole. Run from the top of the repository. */
static void an_index_of_an_earlier_version_reads_as_a_stream(void **state)
{
    snap_ctx ctx = {0};
    stg *s;
    cat_manifest *m = cat_manifest_new("m", "20261126T000000.000Z-00000000");
    cat_component *c = cat_manifest_add_component(m, "conf", "files");
    FILE *f = fopen("tests/e2e/fixtures/store-early/data/20261130T203250.984Z-f954a4e5/conf.index.json.zst", "rb");
    char z[4096], *whole;
    size_t zlen, len;
    util_buf b = {0};
    snap_err err;

    (void)state;
    assert_non_null(f);
    zlen = fread(z, 1, sizeof z, f);
    fclose(f);
    assert_true(zlen > 0 && zlen < sizeof z);
    assert_int_equal(stg_open("mem://early", true, &ctx, &s, &err), SNAP_OK);
    put_index(s, c, "data/early.index.json.zst", z, zlen);
    assert_int_equal(stream(s, c, 100, &b), SNAP_OK);
    whole = unpack(z, zlen, &len);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.p, whole, len);
    util_buf_addc(&b, '\0');
    assert_non_null(strstr(b.p, "/conf/main.conf\","));
    free(whole);
    /* walked an entry at a time, as a stream (no reset) */
    {
        trace t = {0};
        cat_ixv v = {.arg = &t, .part = t_part, .entry = t_entry, .part_end = t_part_end, .reset = t_reset};
        assert_int_equal(cat_index_walk(s, c, &v, &err), SNAP_OK);
        util_buf_addc(&t.b, '\0');
        assert_non_null(strstr(t.b.p, "/conf/main.conf)"));
        assert_null(strstr(t.b.p, RESET));
        util_buf_free(&t.b);
    }
    util_buf_free(&b);
    cat_manifest_free(m);
    stg_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_a_part_at_a_time_is_the_tree_dumped),
        cmocka_unit_test(an_empty_index_is_the_tree_dumped),
        cmocka_unit_test(a_part_that_fills_its_chunks_exactly),
        cmocka_unit_test(read_as_a_stream_and_checked),
        cmocka_unit_test(walked_an_entry_at_a_time),
        cmocka_unit_test(an_index_of_an_earlier_version_reads_as_a_stream),
    };
    return cmocka_run_group_tests_name("catalog index", tests, NULL, NULL);
}
