/* Unit tests of the archive stream: parts, checksums, damage detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../catalog/arc.h"
#include "../../../common/util.h"

typedef struct fixture {
    char dir[64];
    snap_ctx ctx;
    stg *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snap_err err;

    strcpy(f->dir, "/tmp/snap-arc-XXXXXX");
    if (mkdtemp(f->dir) == NULL || stg_open(f->dir, true, &f->ctx, &f->s, &err) != SNAP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    stg_free(f->s);
    util_rm_rf(f->dir, NULL);
    free(f);
    return 0;
}

/* Writes n entries of 10 KiB of incompressible bytes with a small part size. */
static arc_parts *write_entries(fixture *f, int n, uint64_t part_size)
{
    arc_opts o = {.part_size = part_size, .zstd_threads = 1};
    arc_parts *p = arc_parts_new("data/id/c");
    arc_writer *w;
    snap_err err;
    char buf[10240], name[32];

    assert_int_equal(arc_writer_new(f->s, p, &o, &f->ctx, &w, &err), SNAP_OK);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof buf; k++)
            buf[k] = (char)(rand() & 0xff);
        snprintf(name, sizeof name, "chunk-%03d", i);
        assert_int_equal(arc_write_buffer(w, name, buf, sizeof buf, 0644, 0, &err), SNAP_OK);
    }
    assert_int_equal(arc_writer_finish(w, &err), SNAP_OK);
    arc_writer_free(w);
    return p;
}

static void parts_are_bounded_and_verify(void **state)
{
    fixture *f = *state;
    arc_parts *p = write_entries(f, 60, 32 * 1024);
    uint64_t total = 0;

    assert_true(arc_parts_count(p) >= 4);
    for (size_t i = 0; i < arc_parts_count(p); i++) {
        const char *key, *sha;
        uint64_t size, entries, raw, seen;
        snap_err err;
        arc_parts_get(p, i, &key, &size, &sha, &entries, &raw);
        /* a part closes at the first entry boundary past the size */
        assert_true(raw <= 32 * 1024 * 4 + 10240);
        assert_int_equal(arc_verify_part(f->s, key, size, sha, &f->ctx, NULL, &seen, &err), SNAP_OK);
        assert_int_equal(seen, entries);
        total += entries;
    }
    assert_int_equal(total, 60);
    arc_parts_free(p);
}

static void damage_is_a_verify_error(void **state)
{
    fixture *f = *state;
    arc_parts *p = write_entries(f, 3, 1 << 20);
    const char *key, *sha;
    uint64_t size, entries, raw, seen;
    snap_err err;
    char *path;
    FILE *fp;

    arc_parts_get(p, 0, &key, &size, &sha, &entries, &raw);
    assert_int_equal(arc_verify_part(f->s, key, size - 1, sha, &f->ctx, NULL, &seen, &err), SNAP_EVERIFY);
    assert_non_null(strstr(err.msg, "bytes"));
    path = xasprintf("%s/%s", f->dir, key);
    fp = fopen(path, "r+b");
    fseek(fp, (long)size / 2, SEEK_SET);
    fputc(0x5a ^ fgetc(fp), fp);
    fclose(fp);
    assert_int_equal(arc_verify_part(f->s, key, size, sha, &f->ctx, NULL, &seen, &err), SNAP_EVERIFY);
    unlink(path);
    assert_int_equal(arc_verify_part(f->s, key, size, sha, &f->ctx, NULL, &seen, &err), SNAP_EVERIFY);
    assert_non_null(strstr(err.msg, "missing"));
    free(path);
    arc_parts_free(p);
}

static void aborted_writer_leaves_no_part(void **state)
{
    fixture *f = *state;
    arc_opts o = {0};
    arc_parts *p = arc_parts_new("data/id/d");
    arc_writer *w;
    snap_err err;
    uint64_t size;

    assert_int_equal(arc_writer_new(f->s, p, &o, &f->ctx, &w, &err), SNAP_OK);
    assert_int_equal(arc_write_buffer(w, "x", "abc", 3, 0644, 0, &err), SNAP_OK);
    arc_writer_free(w); /* never finished */
    assert_int_equal(arc_parts_count(p), 0);
    assert_int_equal(stg_stat(f->s, "data/id/d.0000.tar.zst", &size, &err), SNAP_ENOTFOUND);
    arc_parts_free(p);
}

/* Rows of a database table: compressible text, several zstd jobs (2 MiB each) long. */
static arc_parts *write_rows(fixture *f, const char *prefix, int threads)
{
    arc_opts o = {.zstd_threads = threads};
    arc_parts *p = arc_parts_new(prefix);
    arc_writer *w;
    snap_err err;
    size_t len = 9u << 20, at = 0;
    char *buf = malloc(len), name[32];

    for (unsigned i = 0; at + 64 < len; i++)
        at += (size_t)snprintf(buf + at, 64, "%u\trow %u of the table\t%u\n", i, i * 7919u % 100003u, i % 97);
    assert_int_equal(arc_writer_new(f->s, p, &o, &f->ctx, &w, &err), SNAP_OK);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "data/000001/%06d.copy", i);
        assert_int_equal(arc_write_buffer(w, name, buf, at, 0644, 0, &err), SNAP_OK);
    }
    assert_int_equal(arc_writer_finish(w, &err), SNAP_OK);
    arc_writer_free(w);
    free(buf);
    return p;
}

/* The same entries give the same stored bytes, whatever the compression workers' timing:
 * a second snap of an unchanged database is recognised by the parts' SHA-256. */
static void same_input_same_bytes(void **state)
{
    fixture *f = *state;
    const char *k1, *k2, *s1, *s2;
    uint64_t z1, z2, e1, e2, r1, r2;

    for (int threads = 1; threads <= 2; threads++) {
        arc_parts *a = write_rows(f, "data/a/c", threads), *b = write_rows(f, "data/b/c", threads);
        assert_int_equal(arc_parts_count(a), 1);
        assert_int_equal(arc_parts_count(b), 1);
        arc_parts_get(a, 0, &k1, &z1, &s1, &e1, &r1);
        arc_parts_get(b, 0, &k2, &z2, &s2, &e2, &r2);
        assert_string_not_equal(k1, k2);
        assert_int_equal(z1, z2);
        assert_string_equal(s1, s2);
        arc_parts_free(a);
        arc_parts_free(b);
    }
    /* two compression workers or four: the same frame (not so one, which compresses alone) */
    arc_parts *a = write_rows(f, "data/a/c", 2), *b = write_rows(f, "data/b/c", 4);
    arc_parts_get(a, 0, &k1, &z1, &s1, &e1, &r1);
    arc_parts_get(b, 0, &k2, &z2, &s2, &e2, &r2);
    assert_string_equal(s1, s2);
    arc_parts_free(a);
    arc_parts_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parts_are_bounded_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(damage_is_a_verify_error, setup, teardown),
        cmocka_unit_test_setup_teardown(aborted_writer_leaves_no_part, setup, teardown),
        cmocka_unit_test_setup_teardown(same_input_same_bytes, setup, teardown),
    };
    return cmocka_run_group_tests_name("archive", tests, NULL, NULL);
}
