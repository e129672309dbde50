/* progress.h: progress (bytes, total, percentage, rate, ETA): a line on stderr drawn only on
 * a TTY, and "progress" lines on the --events sink at most twice a second. */
#ifndef SNAP_PROGRESS_H
#define SNAP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"

typedef struct prg_bar prg_bar;

/* Draws when ctx->progress, ticks on ctx->events; else only counts. total 0: unknown.
 * label names what moves (a component, "snap", "verify"). */
prg_bar *prg_new(const snap_ctx *ctx, const char *label, uint64_t total);
void prg_free(prg_bar *p); /* clears the line; a last tick when anything moved */
/* Thread-safe; redraws at most ten times a second. */
void prg_add(prg_bar *p, uint64_t bytes);
/* Adds to the total (a count made before the work, source by source). */
void prg_add_total(prg_bar *p, uint64_t bytes);
uint64_t prg_done(const prg_bar *p);

#endif
