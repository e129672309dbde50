/* Unit tests of common/pool: every job once, the first error wins, interrupts stop it. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/pool.h"
#include "../../../common/util.h"

typedef struct state {
    pthread_mutex_t mu;
    int seen[1000];
    size_t ran, workers, fail_at;
    volatile sig_atomic_t *flag;
} state;

static snap_rc job(pool *p, void *arg, size_t worker, size_t j, snap_err *err)
{
    state *s = arg;

    (void)p;
    pthread_mutex_lock(&s->mu);
    s->seen[j]++;
    s->ran++;
    if (worker >= s->workers)
        s->workers = worker + 1;
    pthread_mutex_unlock(&s->mu);
    if (s->flag != NULL && j == 3)
        *s->flag = 1;
    if (j == s->fail_at)
        return err_set(err, SNAP_EVERIFY, 0, "job %zu failed", j);
    return SNAP_OK;
}

static void every_job_once(void **unused)
{
    state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_at = SIZE_MAX};
    snap_ctx ctx = {0};
    snap_err err;

    (void)unused;
    assert_int_equal(pool_run(&ctx, 4, 1000, job, &s, &err), SNAP_OK);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(s.seen[i], 1);
    assert_true(s.workers <= 4);
    /* more workers than jobs, and none at all */
    memset(&s.seen, 0, sizeof s.seen);
    assert_int_equal(pool_run(&ctx, 8, 2, job, &s, &err), SNAP_OK);
    assert_int_equal(s.seen[0] + s.seen[1], 2);
    assert_int_equal(pool_run(&ctx, 8, 0, job, &s, &err), SNAP_OK);
}

static void first_error_wins(void **unused)
{
    state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_at = 5};
    snap_err err;

    (void)unused;
    assert_int_equal(pool_run(NULL, 1, 1000, job, &s, &err), SNAP_EVERIFY);
    assert_string_equal(err.msg, "job 5 failed");
    assert_int_equal(s.ran, 6); /* one worker: nothing after the failure starts */
}

static void interrupt_stops_between_jobs(void **unused)
{
    volatile sig_atomic_t flag = 0;
    state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_at = SIZE_MAX, .flag = &flag};
    snap_ctx ctx = {.interrupted = &flag};
    snap_err err;

    (void)unused;
    assert_int_equal(pool_run(&ctx, 1, 1000, job, &s, &err), SNAP_EINTR);
    assert_int_equal(s.ran, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_job_once),
        cmocka_unit_test(first_error_wins),
        cmocka_unit_test(interrupt_stops_between_jobs),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
