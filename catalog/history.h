/* history.h: the timeline of a store: one small record per snap, revert, recovery and
 * check, kept as history/<id>.json, for the review after a migration (`snap history`). */
#ifndef SNAP_CATALOG_HISTORY_H
#define SNAP_CATALOG_HISTORY_H

#include <jansson.h>
#include <time.h>

#include "../storage/storage.h"

#define CAT_HISTORY_MAX (64u << 10) /* a record larger than this is not read */

/* Adds "format", "event", "time" and "host" to rec; event is snap, revert, check or recover. */
void cat_history_stamp(json_t *rec, const char *event);
/* Stores rec (stamped; the caller keeps it) as history/<id>.json, create-only. */
snap_rc cat_history_add(stg *s, const json_t *rec, snap_err *err);

/*
 * Every record at or after since (0: all), oldest first, whose "labels" match every
 * "k=v" of labels, as a new array in *out. Records are read from the store and not
 * authenticated: one that is not a JSON object with string "event" and "time" is skipped
 * (and counted in *skipped).
 */
snap_rc cat_history_list(stg *s, time_t since, const char *const *labels, size_t nlabels, json_t **out,
                         size_t *skipped, snap_err *err);

#endif
