#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

#define TICK_MS 500 /* events: at most two progress lines a second per bar */

struct prg_bar {
    pthread_mutex_t mu;
    char *label;      /* escaped, for the terminal */
    char *name;       /* as given, for the events */
    evt_sink *events;
    uint64_t total, done;
    uint64_t start_ms, last_draw_ms, last_tick_ms;
    bool enabled, drawn, ticked;
};

prg_bar *prg_new(const snap_ctx *ctx, const char *label, uint64_t total)
{
    prg_bar *p = xcalloc(1, sizeof *p);

    pthread_mutex_init(&p->mu, NULL);
    p->label = util_escape(label); /* a name or path: shown on the terminal */
    p->name = xstrdup(label);
    p->events = ctx != NULL ? ctx->events : NULL;
    p->total = total;
    p->enabled = ctx != NULL && ctx->progress;
    p->start_ms = util_now_ms();
    return p;
}

/* Rate in bytes a second, and seconds left (-1: unknown). */
static double rate_of(const prg_bar *p, uint64_t now, long *eta)
{
    double secs = (double)(now - p->start_ms) / 1000.0;
    double bps = secs > 0 ? (double)p->done / secs : 0;

    *eta = -1;
    if (p->total > 0 && bps > 0 && p->done <= p->total)
        *eta = (long)((double)(p->total - p->done) / bps);
    return bps;
}

static void draw(prg_bar *p, uint64_t now)
{
    char done[32], total[32], rate[32], eta[32] = "";
    long left;
    double bps = rate_of(p, now, &left);

    util_human_bytes(p->done, done);
    util_human_bytes((uint64_t)bps, rate);
    if (left >= 0)
        snprintf(eta, sizeof eta, " ETA %lu:%02lu", (unsigned long)left / 60, (unsigned long)left % 60);
    if (p->total > 0) {
        /* a count made first is an estimate: past it, the line says 99% until the end */
        double pct = p->done >= p->total ? 99.0 : 100.0 * (double)p->done / (double)p->total;
        util_human_bytes(p->total, total);
        fprintf(stderr, "\r\033[K%s: %s of %s %3.0f%% %s/s%s", p->label, done, total, pct, rate, eta);
    } else {
        fprintf(stderr, "\r\033[K%s: %s %s/s", p->label, done, rate);
    }
    fflush(stderr);
    p->drawn = true;
    p->last_draw_ms = now;
}

static void tick(prg_bar *p, uint64_t now)
{
    long left;
    double bps = rate_of(p, now, &left);
    json_t *f = json_pack("{s:s, s:I, s:I, s:f}", "label", p->name, "bytes_done", (json_int_t)p->done,
                          "bytes_total", (json_int_t)p->total, "rate", bps);

    if (f == NULL) /* a label that is not UTF-8 */
        f = json_pack("{s:n, s:I, s:I, s:f}", "label", "bytes_done", (json_int_t)p->done, "bytes_total",
                      (json_int_t)p->total, "rate", bps);
    json_object_set_new(f, "eta_seconds", left >= 0 ? json_integer(left) : json_null());
    evt_emit(p->events, "progress", f);
    p->ticked = true;
    p->last_tick_ms = now;
}

void prg_add(prg_bar *p, uint64_t bytes)
{
    uint64_t now;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->done += bytes;
    if (p->enabled || p->events != NULL) {
        now = util_now_ms();
        if (p->enabled && now - p->last_draw_ms >= 100 && now - p->start_ms >= 500)
            draw(p, now);
        if (p->events != NULL && now - p->last_tick_ms >= TICK_MS)
            tick(p, now);
    }
    pthread_mutex_unlock(&p->mu);
}

void prg_add_total(prg_bar *p, uint64_t bytes)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->total += bytes;
    pthread_mutex_unlock(&p->mu);
}

uint64_t prg_done(const prg_bar *p)
{
    return p ? p->done : 0;
}

void prg_free(prg_bar *p)
{
    if (p == NULL)
        return;
    if (p->events != NULL && p->done > 0)
        tick(p, util_now_ms()); /* the last word: where it ended */
    if (p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->label);
    free(p->name);
    free(p);
}
