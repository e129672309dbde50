/* Unit tests of common/pool: every job once, the first error wins, interrupts stop it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
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

typedef struct led {
    state s;
    int done[8];
    bool lead_fails, lead_ran, lead_saw_pool;
} led;

static snap_rc led_job(pool *p, void *arg, size_t worker, size_t j, snap_err *err)
{
    return job(p, &((led *)arg)->s, worker, j, err);
}

static snap_rc led_done(pool *p, void *arg, size_t worker, snap_err *err)
{
    led *l = arg;

    (void)p;
    pthread_mutex_lock(&l->s.mu);
    l->done[worker]++;
    pthread_mutex_unlock(&l->s.mu);
    if (worker == 1)
        return err_set(err, SNAP_EFAIL, 0, "worker %zu could not finish", worker);
    return SNAP_OK;
}

static snap_rc led_lead(pool *p, void *arg, snap_err *err)
{
    led *l = arg;

    l->lead_ran = true;
    l->lead_saw_pool = p != NULL;
    if (l->lead_fails)
        return err_set(err, SNAP_EUNREACH, 0, "the leader failed");
    return SNAP_OK;
}

/* The leader works beside the workers; every worker that ran ends with done, whose error
 * counts as a job's; the leader's error stops the pool. */
static void leader_and_done(void **unused)
{
    led l = {.s = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_at = SIZE_MAX}};
    pool_spec spec = {.workers = 3, .njobs = 100, .job = led_job, .done = led_done, .lead = led_lead, .arg = &l};
    snap_ctx ctx = {0};
    snap_err err;

    (void)unused;
    assert_int_equal(pool_run_spec(&ctx, &spec, &err), SNAP_EFAIL);
    assert_string_equal(err.msg, "worker 1 could not finish");
    assert_true(l.lead_ran && l.lead_saw_pool);
    assert_int_equal(l.s.ran, 100);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(l.done[i], 1);
    assert_int_equal(l.done[3], 0);

    /* the leader's error wins over nothing, and a leader runs with no jobs at all */
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.s.mu, NULL);
    l.s.fail_at = SIZE_MAX;
    l.lead_fails = true;
    spec.workers = 1;
    spec.njobs = 0;
    assert_int_equal(pool_run_spec(&ctx, &spec, &err), SNAP_EUNREACH);
    assert_string_equal(err.msg, "the leader failed");
    assert_true(l.lead_ran);
    assert_int_equal(l.done[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_job_once),
        cmocka_unit_test(first_error_wins),
        cmocka_unit_test(interrupt_stops_between_jobs),
        cmocka_unit_test(leader_and_done),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
