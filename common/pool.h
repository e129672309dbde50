/* pool.h: the one worker pool. A fixed number of threads take jobs 0..n-1 in order; the
 * first error wins, no job starts after an error or an interrupt, and every thread is
 * joined before pool_run returns. */
#ifndef SNAP_POOL_H
#define SNAP_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "ctx.h"

typedef struct pool pool;

/* One job: worker is the index (0..workers-1) of the thread that runs it, so that a
 * caller can keep one connection or buffer per worker; job is the job's index. */
typedef snap_rc (*pool_job_fn)(pool *p, void *arg, size_t worker, size_t job, snap_err *err);

/*
 * Runs fn over jobs 0..njobs-1 on min(workers, njobs) threads (at least one; the calling
 * thread works too when no thread can be started). Returns SNAP_OK, or the first error
 * in *err: a job's, or SNAP_EINTR when ctx is interrupted between jobs.
 */
snap_rc pool_run(const snap_ctx *ctx, size_t workers, size_t njobs, pool_job_fn fn, void *arg, snap_err *err);

/* A pool with a leader and a last step per worker (see pool_run_spec). */
typedef struct pool_spec {
    size_t workers, njobs;
    pool_job_fn job;
    /* Optional: on each worker's thread after its last job, also when the pool is
     * stopping (pool_stopping tells); its error counts as a job's. Ends what a worker
     * kept for its jobs: its last archive part, its connection. */
    snap_rc (*done)(pool *p, void *arg, size_t worker, snap_err *err);
    /* Optional: the leader's own work, on the calling thread while the workers run (all
     * of them on threads of their own); its error stops the pool as a job's does. */
    snap_rc (*lead)(pool *p, void *arg, snap_err *err);
    void *arg;
} pool_spec;

/* pool_run with a leader and a last step per worker; the same rules otherwise. */
snap_rc pool_run_spec(const snap_ctx *ctx, const pool_spec *spec, snap_err *err);

/* True once a job failed or the command was interrupted: a long job may stop early. */
bool pool_stopping(const pool *p);

#endif
