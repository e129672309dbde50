/* progress.h: a progress line on stderr (bytes, rate, ETA), drawn only on a TTY. */
#ifndef SNAP_PROGRESS_H
#define SNAP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct prg_bar prg_bar;

/* enabled false gives a bar that counts but never draws. total 0: unknown. */
prg_bar *prg_new(const char *label, uint64_t total, bool enabled);
void prg_free(prg_bar *p); /* clears the line */
/* Thread-safe; redraws at most ten times a second. */
void prg_add(prg_bar *p, uint64_t bytes);
uint64_t prg_done(const prg_bar *p);

#endif
