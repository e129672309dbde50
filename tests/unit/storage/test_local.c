/* Unit tests of the local store driver through the store interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../storage/storage.h"
#include "../../../storage/storage_int.h"

typedef struct fixture {
    char dir[64];
    snap_ctx ctx;
    stg *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snap_err err;

    strcpy(f->dir, "/tmp/snap-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    strcat(f->dir, "/s");
    if (stg_open(f->dir, true, &f->ctx, &f->s, &err) != SNAP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char *parent = util_dirname(f->dir);
    stg_free(f->s);
    util_rm_rf(parent, NULL);
    free(parent);
    free(f);
    return 0;
}

static unsigned count_files(const char *dir)
{
    char cmd[256];
    unsigned n = 0;
    FILE *p;

    snprintf(cmd, sizeof cmd, "find %s -type f | wc -l", dir);
    p = popen(cmd, "r");
    if (fscanf(p, "%u", &n) != 1)
        n = 0;
    pclose(p);
    return n;
}

static void put_get_and_ranges(void **state)
{
    fixture *f = *state;
    snap_err err;
    char *buf, part[8];
    size_t len, got;
    stg_reader *r;

    assert_int_equal(stg_put(f->s, "a/b/c.txt", "0123456789", 10, 0, &err), SNAP_OK);
    assert_int_equal(stg_get(f->s, "a/b/c.txt", 100, &buf, &len, &err), SNAP_OK);
    assert_int_equal(len, 10);
    assert_string_equal(buf, "0123456789");
    free(buf);
    assert_int_equal(stg_reader_open(f->s, "a/b/c.txt", 3, 4, &r, &err), SNAP_OK);
    assert_int_equal(stg_read(r, part, sizeof part, &got, &err), SNAP_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(part, "3456", 4);
    assert_int_equal(stg_read(r, part, sizeof part, &got, &err), SNAP_OK);
    assert_int_equal(got, 0);
    stg_reader_free(r);
    assert_int_equal(stg_get(f->s, "nope", 100, &buf, &len, &err), SNAP_ENOTFOUND);
    assert_int_equal(stg_get(f->s, "../escape", 100, &buf, &len, &err), SNAP_EUSAGE);
}

static void create_only_conflicts(void **state)
{
    fixture *f = *state;
    snap_err err;
    char *buf;
    size_t len;

    assert_int_equal(stg_put(f->s, "catalog/x.json", "first", 5, STG_CREATE_ONLY, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, "catalog/x.json", "second", 6, STG_CREATE_ONLY, &err), SNAP_ECONFLICT);
    assert_int_equal(stg_get(f->s, "catalog/x.json", 100, &buf, &len, &err), SNAP_OK);
    assert_string_equal(buf, "first");
    free(buf);
    /* the loser left no temp file */
    assert_int_equal(count_files(f->dir), 2); /* STORE.json and x.json */
}

static void abort_leaves_nothing(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg_writer *w;
    uint64_t size;

    assert_int_equal(stg_writer_open(f->s, "data/id/p.0000.tar.zst", 0, &w, &err), SNAP_OK);
    assert_int_equal(stg_write(w, "partial", 7, &err), SNAP_OK);
    /* while it is written the part has no name: a kill here leaves nothing */
    assert_int_equal(count_files(f->dir), 1);
    stg_abort(w);
    assert_int_equal(stg_stat(f->s, "data/id/p.0000.tar.zst", &size, &err), SNAP_ENOTFOUND);
    assert_int_equal(count_files(f->dir), 1);
}

static void commit_names_the_part(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg_writer *w;
    char *buf;
    size_t len;

    /* a replacing commit and a create-only one, each named only when it commits */
    for (unsigned flags = 0; flags <= STG_CREATE_ONLY; flags += STG_CREATE_ONLY) {
        const char *key = flags ? "data/id/new.tar.zst" : "data/id/p.tar.zst";
        assert_int_equal(stg_put(f->s, "data/id/p.tar.zst", "old", 3, 0, &err), SNAP_OK);
        assert_int_equal(stg_writer_open(f->s, key, flags, &w, &err), SNAP_OK);
        assert_int_equal(stg_write(w, "whole part", 10, &err), SNAP_OK);
        assert_int_equal(count_files(f->dir), 2);
        assert_int_equal(stg_commit(w, &err), SNAP_OK);
        assert_int_equal(stg_get(f->s, key, 100, &buf, &len, &err), SNAP_OK);
        assert_int_equal(len, 10);
        assert_memory_equal(buf, "whole part", 10);
        free(buf);
    }
    assert_int_equal(count_files(f->dir), 3); /* STORE.json and the two parts */
}

static bool collect(const stg_entry *e, void *arg)
{
    (*(int *)arg)++;
    return strcmp(e->key, "stop") != 0;
}

static void list_delete_and_cleanup(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg_writer *w;
    unsigned n;
    int seen = 0;

    for (int i = 0; i < 5; i++) {
        char key[64];
        snprintf(key, sizeof key, "data/id1/c.%04d.tar.zst", i);
        assert_int_equal(stg_put(f->s, key, "x", 1, 0, &err), SNAP_OK);
    }
    assert_int_equal(stg_put(f->s, "data/id2/c.0000.tar.zst", "x", 1, 0, &err), SNAP_OK);
    assert_int_equal(stg_list(f->s, "data/id1/", collect, &seen, &err), SNAP_OK);
    assert_int_equal(seen, 5);
    assert_int_equal(stg_delete_prefix(f->s, "data/id1/", &err), SNAP_OK);
    seen = 0;
    assert_int_equal(stg_list(f->s, "data/", collect, &seen, &err), SNAP_OK);
    assert_int_equal(seen, 1);
    /*
     * A named upload that never committed (left by an earlier version, or where O_TMPFILE
     * is missing) is found by cleanup, not by list; one being written has no name at all.
     */
    assert_int_equal(stg_writer_open(f->s, "data/id3/c.0000.tar.zst", 0, &w, &err), SNAP_OK);
    char *left = xasprintf("%s/data/id3/.tmp.c.0001.tar.zst.0123456789abcdef", f->dir);
    FILE *fp = fopen(left, "w");
    assert_non_null(fp);
    fclose(fp);
    free(left);
    seen = 0;
    assert_int_equal(stg_list(f->s, "data/id3/", collect, &seen, &err), SNAP_OK);
    assert_int_equal(seen, 0);
    assert_int_equal(stg_cleanup(f->s, 0, true, &n, &err), SNAP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(stg_cleanup(f->s, 0, false, &n, &err), SNAP_OK);
    assert_int_equal(stg_cleanup(f->s, 0, true, &n, &err), SNAP_OK);
    assert_int_equal(n, 0);
    stg_abort(w);
}

static void store_json_is_checked(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg *again;
    char *path = xasprintf("%s/STORE.json", f->dir);
    FILE *fp;

    assert_int_equal(stg_open(f->dir, false, &f->ctx, &again, &err), SNAP_OK);
    assert_string_equal(stg_id(again), stg_id(f->s));
    stg_free(again);
    fp = fopen(path, "w");
    fputs("{\"format\": 4, \"store_id\": \"x\"}", fp);
    fclose(fp);
    assert_int_equal(stg_open(f->dir, false, &f->ctx, &again, &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "format 4"));
    free(path);
}

/* A format another process raised since this one opened the store is never lowered. */
static void store_format_only_rises(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg *other;
    char *buf = NULL;
    size_t len;

    assert_int_equal(stg_open(f->dir, false, &f->ctx, &other, &err), SNAP_OK);
    assert_int_equal(stg_require_format(other, 3, &err), SNAP_OK);
    stg_free(other);
    /* f->s still holds format 1 from when it opened the store */
    assert_int_equal(stg_require_format(f->s, 2, &err), SNAP_OK);
    assert_int_equal(stg_get(f->s, "STORE.json", 65536, &buf, &len, &err), SNAP_OK);
    assert_non_null(strstr(buf, "\"format\": 3"));
    free(buf);
    assert_int_equal(stg_require_format(f->s, 4, &err), SNAP_EFAIL);
}

/* A replace writes only over the copy it read: a stale copy is a conflict that changes nothing. */
static void replace_is_compare_and_swap(void **state)
{
    fixture *f = *state;
    snap_err err;
    char *buf = NULL;
    size_t len;

    assert_int_equal(stg_put(f->s, "k.json", "one", 3, 0, &err), SNAP_OK);
    assert_int_equal(stg_replace(f->s, "k.json", "one", 3, "two!", 4, &err), SNAP_OK);
    assert_int_equal(stg_replace(f->s, "k.json", "one", 3, "three", 5, &err), SNAP_ECONFLICT);
    assert_non_null(strstr(err.msg, "changed by another writer"));
    assert_int_equal(stg_replace(f->s, "k.json", "two", 3, "three", 5, &err), SNAP_ECONFLICT);
    assert_int_equal(stg_get(f->s, "k.json", 64, &buf, &len, &err), SNAP_OK);
    assert_string_equal(buf, "two!");
    free(buf);
    assert_int_equal(stg_replace(f->s, "none.json", "", 0, "x", 1, &err), SNAP_ENOTFOUND);
    assert_int_equal(count_files(f->dir), 3); /* STORE.json, STORE.lock and k.json: no temp file left */
}

/* Processes raising the format of one store at once to 2 and to 3: it ends at 3, every time. */
static void concurrent_raises_keep_the_highest(void **state)
{
    fixture *f = *state;
    snap_err err;

    for (int round = 0; round < 20; round++) {
        char *buf = NULL, *path = xasprintf("%s/STORE.json", f->dir);
        size_t len;
        pid_t kids[6];
        FILE *fp = fopen(path, "r+");

        /* back to format 1, as a store written by an earlier version */
        assert_int_equal(stg_get(f->s, "STORE.json", 65536, &buf, &len, &err), SNAP_OK);
        for (char *p = strstr(buf, "\"format\": "); p != NULL; p = NULL)
            p[10] = '1';
        assert_non_null(fp);
        fputs(buf, fp);
        fclose(fp);
        free(buf);
        for (int i = 0; i < 6; i++) {
            kids[i] = fork();
            if (kids[i] == 0) {
                stg *s;
                snap_err e;
                if (stg_open(f->dir, false, &f->ctx, &s, &e) != SNAP_OK || stg_require_format(s, 2 + i % 2, &e) != SNAP_OK)
                    _exit(1);
                stg_free(s);
                _exit(0);
            }
        }
        for (int i = 0; i < 6; i++) {
            int st;
            assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        assert_int_equal(stg_get(f->s, "STORE.json", 65536, &buf, &len, &err), SNAP_OK);
        assert_non_null(strstr(buf, "\"format\": 3"));
        free(buf);
        free(path);
    }
}

/* The description written back from an older copy (snap key add while a snap raised the
 * format) is refused: the newer copy stays. */
static void meta_put_never_writes_over_a_newer_copy(void **state)
{
    fixture *f = *state;
    snap_err err;
    stg *other;
    char *buf = NULL;
    size_t len;

    assert_int_equal(stg_meta_put(f->s, &err), SNAP_OK); /* over its own copy: fine */
    assert_int_equal(stg_open(f->dir, false, &f->ctx, &other, &err), SNAP_OK);
    assert_int_equal(stg_require_format(other, 3, &err), SNAP_OK);
    json_object_set_new(stg_meta_get(f->s), "note", json_string("older copy"));
    assert_int_equal(stg_meta_put(f->s, &err), SNAP_ECONFLICT);
    assert_non_null(strstr(err.msg, "changed by another process"));
    assert_int_equal(stg_get(f->s, "STORE.json", 65536, &buf, &len, &err), SNAP_OK);
    assert_non_null(strstr(buf, "\"format\": 3"));
    assert_null(strstr(buf, "older copy"));
    free(buf);
    stg_free(other);
    /* a copy read after the raise is written, and keeps the raised format */
    assert_int_equal(stg_open(f->dir, false, &f->ctx, &other, &err), SNAP_OK);
    json_object_set_new(stg_meta_get(other), "note", json_string("newer copy"));
    assert_int_equal(stg_meta_put(other, &err), SNAP_OK);
    stg_free(other);
    assert_int_equal(stg_get(f->s, "STORE.json", 65536, &buf, &len, &err), SNAP_OK);
    assert_non_null(strstr(buf, "\"format\": 3"));
    assert_non_null(strstr(buf, "newer copy"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_get_and_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(create_only_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_names_the_part, setup, teardown),
        cmocka_unit_test_setup_teardown(list_delete_and_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(store_json_is_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(store_format_only_rises, setup, teardown),
        cmocka_unit_test_setup_teardown(replace_is_compare_and_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_raises_keep_the_highest, setup, teardown),
        cmocka_unit_test_setup_teardown(meta_put_never_writes_over_a_newer_copy, setup, teardown),
    };
    return cmocka_run_group_tests_name("storage/local", tests, NULL, NULL);
}
