/* estimate.h: how long a revert will take, to the cut-over and in all, from the stored
 * size and the rates the last revert from the same store reached (kept in the state
 * directory); plain defaults until one has run. */
#ifndef SNAP_RESTORE_ESTIMATE_H
#define SNAP_RESTORE_ESTIMATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/ctx.h"
#include "../storage/storage.h"

typedef enum rst_safety { RST_SAFETY_NONE, RST_SAFETY_FIRST, RST_SAFETY_DEFERRED } rst_safety;

/* Puts "estimate": {cutover_at_s, total_s, basis} in the plan res, for bytes stored. */
void rst_estimate_plan(const snap_ctx *ctx, stg *store, json_t *res, uint64_t bytes, rst_safety safety);

/* After a revert that succeeded: keeps the rates its result res shows (cutover_at_ms,
 * safety_ms, and whether the safety snapshot came first) for the next estimate. */
void rst_estimate_record(const snap_ctx *ctx, stg *store, const json_t *res, uint64_t bytes, rst_safety safety);

#endif
