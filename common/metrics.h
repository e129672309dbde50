/* metrics.h: a Prometheus text file ([metrics] textfile_dir) for node_exporter's textfile
 * collector: the last snap and revert of each group, kept up to date as events end. */
#ifndef SNAP_METRICS_H
#define SNAP_METRICS_H

#include <jansson.h>

#include "ctx.h"

/*
 * Folds event (a history record: event, name, labels, outcome, time, seconds, bytes,
 * parts, cutover_ms) into the last values of its group (the snapshot label [metrics]
 * group_by names, else the snapshot name), kept in <state dir>/metrics/state.json under
 * flock, and rewrites <textfile_dir>/snap.prom atomically (a temporary file renamed over
 * it). Nothing happens without [metrics] textfile_dir; a failure is a warning.
 */
void metrics_update(const snap_ctx *ctx, const json_t *event);

#endif
