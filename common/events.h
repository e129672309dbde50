/* events.h: --events FILE: one JSON object per line while a command runs (docs/json.md). */
#ifndef SNAP_EVENTS_H
#define SNAP_EVENTS_H

#include <jansson.h>

#include "errors.h"

/* The "format" of every event line; a change of shape or meaning gets a new number. */
#define EVT_FORMAT 1

typedef struct evt_sink evt_sink;

/*
 * Opens the events file of a command ("snap create", "revert"): "-" is stderr; any other
 * path is created (0600) or truncated, never followed when it is a symbolic link.
 */
snap_rc evt_open(const char *path, const char *command, evt_sink **out, snap_err *err);
void evt_free(evt_sink *s);

/* What every later line carries: the snapshot's name, the revert's id (copied). */
void evt_set_snapshot(evt_sink *s, const char *name);
void evt_set_revert_id(evt_sink *s, const char *id);

/*
 * Writes one line {"format", "time", "command", "snapshot", "revert_id", "event", ...fields}
 * at once (thread-safe). fields (stolen, may be NULL) adds to it. s NULL: does nothing.
 * A write that fails is not an error of the command: later lines are dropped.
 */
void evt_emit(evt_sink *s, const char *event, json_t *fields);
/* {"event": "phase", "phase": phase}. */
void evt_phase(evt_sink *s, const char *phase);

#endif
