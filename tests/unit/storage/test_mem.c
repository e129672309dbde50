/* Unit tests of the in-memory store driver (mem://NAME) through the store interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../storage/storage_int.h"

typedef struct fixture {
    snap_ctx ctx;
    stg *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snap_err err;

    if (stg_open("mem://t", true, &f->ctx, &f->s, &err) != SNAP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    stg_free(f->s);
    free(f);
    return 0;
}

static bool count_entry(const stg_entry *e, void *arg)
{
    (void)e;
    (*(unsigned *)arg)++;
    return true;
}

static unsigned count(stg *s, const char *prefix)
{
    unsigned n = 0;
    snap_err err;

    assert_int_equal(stg_list(s, prefix, count_entry, &n, &err), SNAP_OK);
    return n;
}

static void test_open_needs_create(void **state)
{
    fixture *f = *state;
    stg *s = NULL;
    snap_err err;

    /* Every open starts empty: without create there is no store. */
    assert_int_equal(stg_open("mem://other", false, &f->ctx, &s, &err), SNAP_ENOTFOUND);
    assert_null(s);
    assert_non_null(strstr(err.msg, "no snap store at mem://other"));
    assert_int_equal(stg_open("mem://", true, &f->ctx, &s, &err), SNAP_EUSAGE);
    assert_string_equal(stg_url(f->s), "mem://t");
    assert_non_null(stg_id(f->s));
}

static void test_put_get_range(void **state)
{
    fixture *f = *state;
    stg_reader *r;
    char *buf, part[16];
    size_t len, got;
    uint64_t size;
    snap_err err;

    assert_int_equal(stg_put(f->s, "a/b", "hello world", 11, 0, &err), SNAP_OK);
    assert_int_equal(stg_get(f->s, "a/b", 100, &buf, &len, &err), SNAP_OK);
    assert_int_equal(len, 11);
    assert_string_equal(buf, "hello world");
    free(buf);
    assert_int_equal(stg_stat(f->s, "a/b", &size, &err), SNAP_OK);
    assert_int_equal(size, 11);
    assert_int_equal(stg_reader_open(f->s, "a/b", 6, 3, &r, &err), SNAP_OK);
    assert_int_equal(stg_read(r, part, sizeof part, &got, &err), SNAP_OK);
    assert_int_equal(got, 3);
    assert_memory_equal(part, "wor", 3);
    assert_int_equal(stg_read(r, part, sizeof part, &got, &err), SNAP_OK);
    assert_int_equal(got, 0);
    stg_reader_free(r);
    /* A plain put replaces. */
    assert_int_equal(stg_put(f->s, "a/b", "x", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_stat(f->s, "a/b", &size, &err), SNAP_OK);
    assert_int_equal(size, 1);
    assert_int_equal(stg_get(f->s, "a/missing", 100, &buf, &len, &err), SNAP_ENOTFOUND);
    assert_int_equal(stg_stat(f->s, "a/missing", &size, &err), SNAP_ENOTFOUND);
    assert_int_equal(stg_put(f->s, "/abs", "x", 1, 0, &err), SNAP_EUSAGE);
}

static void test_create_only(void **state)
{
    fixture *f = *state;
    char *buf;
    size_t len;
    snap_err err;

    assert_int_equal(stg_put(f->s, "k", "first", 5, STG_CREATE_ONLY, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "k", "second", 6, STG_CREATE_ONLY, &err), SNAP_ECONFLICT);
    assert_non_null(strstr(err.msg, "already exists"));
    assert_int_equal(stg_get(f->s, "k", 100, &buf, &len, &err), SNAP_OK);
    assert_string_equal(buf, "first");
    free(buf);
}

static void test_abort_leaves_nothing(void **state)
{
    fixture *f = *state;
    stg_writer *w;
    uint64_t size;
    unsigned before = count(f->s, "");
    snap_err err;

    assert_int_equal(stg_writer_open(f->s, "x/y", 0, &w, &err), SNAP_OK);
    assert_int_equal(stg_write(w, "data", 4, &err), SNAP_OK);
    /* Not visible before the commit, and never after an abort. */
    assert_int_equal(stg_stat(f->s, "x/y", &size, &err), SNAP_ENOTFOUND);
    stg_abort(w);
    assert_int_equal(stg_stat(f->s, "x/y", &size, &err), SNAP_ENOTFOUND);
    assert_int_equal(count(f->s, ""), before);
    unsigned n = 99;
    assert_int_equal(stg_cleanup(f->s, 0, false, &n, &err), SNAP_OK);
    assert_int_equal(n, 0);
}

static void test_list_delete(void **state)
{
    fixture *f = *state;
    snap_err err;

    assert_int_equal(stg_put(f->s, "d/1", "a", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "d/2", "bb", 2, 0, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "e/1", "c", 1, 0, &err), SNAP_OK);
    assert_int_equal(count(f->s, "d/"), 2);
    assert_int_equal(count(f->s, "e/"), 1);
    assert_int_equal(stg_delete(f->s, "d/1", &err), SNAP_OK);
    assert_int_equal(stg_delete(f->s, "d/1", &err), SNAP_OK); /* missing: fine */
    assert_int_equal(count(f->s, "d/"), 1);
    assert_int_equal(stg_delete_prefix(f->s, "d/", &err), SNAP_OK);
    assert_int_equal(count(f->s, "d/"), 0);
    assert_int_equal(count(f->s, "e/"), 1);
}

static void test_fail_nth_commit(void **state)
{
    fixture *f = *state;
    uint64_t size;
    snap_err err;

    assert_int_equal(stg_mem_fail(f->s, "commit", "data/", 2, SNAP_EUNREACH, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "other", "x", 1, 0, &err), SNAP_OK); /* not under data/ */
    assert_int_equal(stg_put(f->s, "data/1", "x", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "data/2", "x", 1, 0, &err), SNAP_EUNREACH);
    assert_int_equal(err.code, SNAP_EUNREACH);
    assert_non_null(strstr(err.msg, "injected failure of commit data/2"));
    assert_int_equal(stg_stat(f->s, "data/2", &size, &err), SNAP_ENOTFOUND); /* nothing stored */
    /* Only the nth fails. */
    assert_int_equal(stg_put(f->s, "data/3", "x", 1, 0, &err), SNAP_OK);
    assert_int_equal(count(f->s, "data/"), 2);
}

static void test_fail_nth_other_ops(void **state)
{
    fixture *f = *state;
    stg_writer *w;
    char *buf;
    size_t len;
    unsigned n = 0;
    snap_err err;

    assert_int_equal(stg_put(f->s, "k", "v", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_mem_fail(f->s, "read", NULL, 1, SNAP_EFAIL, &err), SNAP_OK);
    assert_int_equal(stg_get(f->s, "k", 100, &buf, &len, &err), SNAP_EFAIL);
    assert_int_equal(stg_get(f->s, "k", 100, &buf, &len, &err), SNAP_OK);
    free(buf);

    assert_int_equal(stg_mem_fail(f->s, "list", NULL, 1, SNAP_EUNREACH, &err), SNAP_OK);
    assert_int_equal(stg_list(f->s, "", count_entry, &n, &err), SNAP_EUNREACH);
    assert_int_equal(n, 0);

    assert_int_equal(stg_mem_fail(f->s, "remove", NULL, 1, SNAP_EFAIL, &err), SNAP_OK);
    assert_int_equal(stg_delete(f->s, "k", &err), SNAP_EFAIL);
    assert_int_equal(count(f->s, "k"), 1);

    assert_int_equal(stg_mem_fail(f->s, "write", NULL, 2, SNAP_EFAIL, &err), SNAP_OK);
    assert_int_equal(stg_writer_open(f->s, "w", 0, &w, &err), SNAP_OK);
    assert_int_equal(stg_write(w, "a", 1, &err), SNAP_OK);
    assert_int_equal(stg_write(w, "b", 1, &err), SNAP_EFAIL);
    stg_abort(w);
    assert_int_equal(count(f->s, "w"), 0);

    /* Disarmed with nth 0; an unknown operation is refused. */
    assert_int_equal(stg_mem_fail(f->s, "commit", NULL, 1, SNAP_EFAIL, &err), SNAP_OK);
    assert_int_equal(stg_mem_fail(f->s, "commit", NULL, 0, SNAP_EFAIL, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "z", "v", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_mem_fail(f->s, "rename", NULL, 1, SNAP_EFAIL, &err), SNAP_EUSAGE);
}

/* A replace writes only over the copy it read: a stale copy is a conflict that changes nothing. */
static void test_replace_is_compare_and_swap(void **state)
{
    fixture *f = *state;
    snap_err err;
    char *buf = NULL;
    size_t len;

    assert_int_equal(stg_put(f->s, "k", "one", 3, 0, &err), SNAP_OK);
    assert_int_equal(stg_replace(f->s, "k", "one", 3, "two!", 4, &err), SNAP_OK);
    assert_int_equal(stg_replace(f->s, "k", "one", 3, "three", 5, &err), SNAP_ECONFLICT);
    assert_int_equal(stg_replace(f->s, "none", "", 0, "x", 1, &err), SNAP_ENOTFOUND);
    assert_int_equal(stg_get(f->s, "k", 64, &buf, &len, &err), SNAP_OK);
    assert_string_equal(buf, "two!");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_needs_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_is_compare_and_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_nth_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_nth_other_ops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
