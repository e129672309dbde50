/* Unit tests of common/events, common/progress and the JSON error codes: whole lines
 * from many threads, the fields every line carries, ticks at a bounded pace, the codes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../../common/events.h"
#include "../../../common/progress.h"
#include "../../../common/util.h"

/* Every line of path, parsed; fails on a line that is not one JSON object. */
static json_t *read_lines(const char *path)
{
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen(path, "r");

    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (j == NULL || !json_is_object(j))
            fail_msg("not one JSON object: %s", line);
        json_array_append_new(all, j);
    }
    free(line);
    fclose(f);
    return all;
}

static char *temp_path(void)
{
    char *p = xstrdup("/tmp/test_events.XXXXXX");
    int fd = mkstemp(p);

    assert_true(fd >= 0);
    close(fd);
    return p;
}

static void every_line_has_the_common_fields(void **state)
{
    char *path = temp_path();
    evt_sink *s;
    snap_err err;
    json_t *lines, *l;
    size_t i;

    (void)state;
    assert_int_equal(evt_open(path, "revert", &s, &err), SNAP_OK);
    evt_phase(s, "plan");
    evt_set_snapshot(s, "p1");
    evt_set_revert_id(s, "20261130T000000.000Z-0000abcd");
    evt_emit(s, "component_start", json_pack("{s:s}", "component", "app"));
    evt_set_snapshot(s, "bad\xff");
    evt_phase(s, "stage");
    evt_free(s);
    lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 3);
    json_array_foreach(lines, i, l) {
        assert_int_equal(json_integer_value(json_object_get(l, "format")), EVT_FORMAT);
        assert_string_equal(json_string_value(json_object_get(l, "command")), "revert");
        assert_int_equal(strlen(json_string_value(json_object_get(l, "time"))), strlen("2026-11-30T07:01:45.581Z"));
        assert_non_null(json_object_get(l, "snapshot"));
        assert_non_null(json_object_get(l, "revert_id"));
    }
    l = json_array_get(lines, 0);
    assert_true(json_is_null(json_object_get(l, "snapshot")));
    assert_true(json_is_null(json_object_get(l, "revert_id")));
    assert_string_equal(json_string_value(json_object_get(l, "phase")), "plan");
    l = json_array_get(lines, 1);
    assert_string_equal(json_string_value(json_object_get(l, "event")), "component_start");
    assert_string_equal(json_string_value(json_object_get(l, "component")), "app");
    assert_string_equal(json_string_value(json_object_get(l, "snapshot")), "p1");
    /* a name that is not UTF-8 is escaped, never a broken line */
    assert_string_equal(json_string_value(json_object_get(json_array_get(lines, 2), "snapshot")), "bad\\xff");
    json_decref(lines);
    unlink(path);
    free(path);
}

static void a_symlink_is_not_followed(void **state)
{
    char *path = temp_path(), *link = xasprintf("%s.link", path);
    evt_sink *s = NULL;
    snap_err err;

    (void)state;
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(evt_open(link, "snap create", &s, &err), SNAP_EUSAGE);
    assert_null(s);
    assert_non_null(strstr(err.msg, "cannot open the events file"));
    unlink(link);
    unlink(path);
    free(link);
    free(path);
}

typedef struct writer {
    evt_sink *s;
    int id;
} writer;

static void *write_many(void *arg)
{
    writer *w = arg;

    for (int i = 0; i < 500; i++)
        evt_emit(w->s, "component_end", json_pack("{s:i, s:i, s:s}", "writer", w->id, "n", i, "pad",
                                                  "................................................................"));
    return NULL;
}

static void lines_from_many_threads_stay_whole(void **state)
{
    char *path = temp_path();
    pthread_t th[4];
    writer w[4];
    snap_err err;
    evt_sink *s;
    json_t *lines;
    int next[4] = {0};
    json_t *l;
    size_t i;

    (void)state;
    assert_int_equal(evt_open(path, "snap create", &s, &err), SNAP_OK);
    for (int k = 0; k < 4; k++) {
        w[k] = (writer){s, k};
        pthread_create(&th[k], NULL, write_many, &w[k]);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(th[k], NULL);
    evt_free(s);
    lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 2000);
    json_array_foreach(lines, i, l) { /* each writer's lines in its own order */
        int k = (int)json_integer_value(json_object_get(l, "writer"));
        assert_int_equal(json_integer_value(json_object_get(l, "n")), next[k]++);
    }
    json_decref(lines);
    unlink(path);
    free(path);
}

static void progress_ticks_are_paced_and_end_at_the_total(void **state)
{
    char *path = temp_path();
    snap_ctx ctx = {0};
    snap_err err;
    json_t *lines, *last;
    prg_bar *bar;
    size_t ticks;

    (void)state;
    assert_int_equal(evt_open(path, "revert", &ctx.events, &err), SNAP_OK);
    bar = prg_new(&ctx, "app", 0);
    prg_add_total(bar, 3000);
    for (int i = 0; i < 3000; i++)
        prg_add(bar, 1); /* far faster than two a second */
    prg_free(bar);
    evt_free(ctx.events);
    lines = read_lines(path);
    ticks = json_array_size(lines);
    assert_true(ticks >= 1 && ticks <= 3);
    last = json_array_get(lines, ticks - 1);
    assert_string_equal(json_string_value(json_object_get(last, "event")), "progress");
    assert_string_equal(json_string_value(json_object_get(last, "label")), "app");
    assert_int_equal(json_integer_value(json_object_get(last, "bytes_done")), 3000);
    assert_int_equal(json_integer_value(json_object_get(last, "bytes_total")), 3000);
    assert_true(json_is_number(json_object_get(last, "rate")));
    assert_non_null(json_object_get(last, "eta_seconds"));
    json_decref(lines);
    unlink(path);
    free(path);
}

static void error_codes_are_distinct_names(void **state)
{
    snap_err err;

    (void)state;
    err_set(&err, SNAP_ENOTFOUND, 0, "x");
    assert_string_equal(err_json_code(&err), "not_found");
    err_set(&err, SNAP_EVERIFY, 0, "x");
    assert_string_equal(err_json_code(&err), "verify_failed");
    err_set(&err, SNAP_EROLLEDBACK, 0, "x");
    assert_string_equal(err_json_code(&err), "rolled_back");
    err_set(&err, SNAP_ERECOVER, 0, "x");
    assert_string_equal(err_json_code(&err), "recovery_needed");
    err_set(&err, SNAP_ECONFLICT, 0, "x");
    assert_string_equal(err_json_code(&err), "conflict");
    assert_int_equal(err_kind(&err, "locked"), SNAP_ECONFLICT);
    assert_string_equal(err_json_code(&err), "locked");
    err_set(&err, SNAP_ECONFLICT, 0, "a new error forgets the old kind");
    assert_string_equal(err_json_code(&err), "conflict");
    /* a refused permission is "denied" within the unreachable class, wherever it was set */
    errno = EACCES;
    err_sys(&err, SNAP_EUNREACH, "open /x");
    assert_string_equal(err_json_code(&err), "denied");
    err_set(&err, SNAP_EUNREACH, ECONNREFUSED, "x");
    assert_string_equal(err_json_code(&err), "unreachable");
    errno = EACCES;
    err_sys(&err, SNAP_EFAIL, "open /x");
    assert_string_equal(err_json_code(&err), "failed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_line_has_the_common_fields),
        cmocka_unit_test(a_symlink_is_not_followed),
        cmocka_unit_test(lines_from_many_threads_stay_whole),
        cmocka_unit_test(progress_ticks_are_paced_and_end_at_the_total),
        cmocka_unit_test(error_codes_are_distinct_names),
    };
    return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
