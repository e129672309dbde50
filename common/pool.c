/* pool.c: the one worker pool (see pool.h). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"
#include "util.h"

struct pool {
    const snap_ctx *ctx;
    const pool_spec *spec;
    void *arg;
    size_t njobs, next;
    bool failed;
    snap_err first;
    pthread_mutex_t mu;
};

typedef struct pool_worker {
    pool *p;
    size_t index;
    pthread_t th;
    bool started;
} pool_worker;

bool pool_stopping(const pool *p)
{
    pool *q = (pool *)(uintptr_t)p;
    bool stop;

    pthread_mutex_lock(&q->mu);
    stop = q->failed;
    pthread_mutex_unlock(&q->mu);
    return stop || (p->ctx != NULL && p->ctx->interrupted != NULL && *p->ctx->interrupted);
}

/* The next job to run, or false when there is none or the pool is stopping. */
static bool take(pool *p, size_t *job)
{
    bool ok;
    snap_err e;

    if (p->ctx != NULL && ctx_interrupted(p->ctx, &e)) {
        pthread_mutex_lock(&p->mu);
        if (!p->failed) {
            p->failed = true;
            p->first = e;
        }
        pthread_mutex_unlock(&p->mu);
        return false;
    }
    pthread_mutex_lock(&p->mu);
    ok = !p->failed && p->next < p->njobs;
    if (ok)
        *job = p->next++;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* The first error wins: the pool stops taking jobs. */
static void fail(pool *p, const snap_err *e)
{
    pthread_mutex_lock(&p->mu);
    if (!p->failed) {
        p->failed = true;
        p->first = *e;
    }
    pthread_mutex_unlock(&p->mu);
}

static void *work(void *arg)
{
    pool_worker *w = arg;
    pool *p = w->p;
    size_t job;
    snap_err e;

    while (take(p, &job)) {
        err_clear(&e);
        if (p->spec->job(p, p->arg, w->index, job, &e) != SNAP_OK)
            fail(p, &e);
    }
    err_clear(&e);
    if (p->spec->done != NULL && p->spec->done(p, p->arg, w->index, &e) != SNAP_OK)
        fail(p, &e);
    return NULL;
}

snap_rc pool_run(const snap_ctx *ctx, size_t workers, size_t njobs, pool_job_fn fn, void *arg, snap_err *err)
{
    pool_spec spec = {.workers = workers, .njobs = njobs, .job = fn, .arg = arg};

    return pool_run_spec(ctx, &spec, err);
}

snap_rc pool_run_spec(const snap_ctx *ctx, const pool_spec *spec, snap_err *err)
{
    pool p = {.ctx = ctx, .spec = spec, .arg = spec->arg, .njobs = spec->njobs};
    size_t workers = spec->workers, first = spec->lead != NULL ? 0 : 1, started = 0;
    pool_worker *w;

    if (spec->njobs == 0 && spec->lead == NULL)
        return SNAP_OK;
    if (workers == 0)
        workers = 1;
    if (workers > spec->njobs)
        workers = spec->njobs;
    pthread_mutex_init(&p.mu, NULL);
    w = xcalloc(workers ? workers : 1, sizeof *w);
    for (size_t i = 0; i < workers; i++) {
        w[i].p = &p;
        w[i].index = i;
        w[i].started = i >= first && pthread_create(&w[i].th, NULL, work, &w[i]) == 0;
        started += w[i].started;
    }
    if (spec->lead != NULL) {
        snap_err e;
        err_clear(&e);
        if (spec->lead(&p, p.arg, &e) != SNAP_OK)
            fail(&p, &e);
    }
    if (workers > 0 && (spec->lead == NULL || started == 0))
        work(&w[0]); /* the calling thread is worker 0, or takes over when no thread started */
    for (size_t i = 0; i < workers; i++)
        if (w[i].started)
            pthread_join(w[i].th, NULL);
    free(w);
    pthread_mutex_destroy(&p.mu);
    if (p.failed) {
        *err = p.first;
        return p.first.code;
    }
    return SNAP_OK;
}
