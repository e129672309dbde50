#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

struct prg_bar {
    pthread_mutex_t mu;
    char *label;
    uint64_t total, done;
    uint64_t start_ms, last_draw_ms;
    bool enabled, drawn;
};

prg_bar *prg_new(const char *label, uint64_t total, bool enabled)
{
    prg_bar *p = xcalloc(1, sizeof *p);

    pthread_mutex_init(&p->mu, NULL);
    p->label = util_escape(label); /* a name or path: shown on the terminal */
    p->total = total;
    p->enabled = enabled;
    p->start_ms = util_now_ms();
    return p;
}

static void draw(prg_bar *p, uint64_t now)
{
    char done[32], rate[32], eta[32] = "";
    double secs = (double)(now - p->start_ms) / 1000.0;
    double bps = secs > 0 ? (double)p->done / secs : 0;

    util_human_bytes(p->done, done);
    util_human_bytes((uint64_t)bps, rate);
    if (p->total > 0 && bps > 0 && p->done <= p->total) {
        unsigned long left = (unsigned long)((double)(p->total - p->done) / bps);
        snprintf(eta, sizeof eta, " ETA %lu:%02lu", left / 60, left % 60);
    }
    if (p->total > 0)
        fprintf(stderr, "\r\033[K%s: %s %3.0f%% %s/s%s", p->label, done,
                100.0 * (double)p->done / (double)p->total, rate, eta);
    else
        fprintf(stderr, "\r\033[K%s: %s %s/s", p->label, done, rate);
    fflush(stderr);
    p->drawn = true;
    p->last_draw_ms = now;
}

void prg_add(prg_bar *p, uint64_t bytes)
{
    uint64_t now;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->done += bytes;
    if (p->enabled) {
        now = util_now_ms();
        if (now - p->last_draw_ms >= 100 && now - p->start_ms >= 500)
            draw(p, now);
    }
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
    if (p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->label);
    free(p);
}
