/* check.h: what runs around a revert's cut-over: the hooks' facts and the check
 * ([revert] check, `revert --check`) whose failure switches every target back. */
#ifndef SNAP_RESTORE_CHECK_H
#define SNAP_RESTORE_CHECK_H

#include <jansson.h>
#include <stdbool.h>

#include "../common/ctx.h"

/* The facts of a revert, from its result document (snapshot, snapshot_id, revert_id,
 * targets, store): command, name, id, revert_id, components, store, and result when set.
 * The caller frees it. */
json_t *rst_facts(const json_t *res, const char *result);

/* The check command ([revert] check, which --check sets), or NULL when none is set. */
snap_rc rst_check_cmd(const snap_ctx *ctx, const char **cmd, snap_err *err);

/*
 * Runs the check after the cut-over: up to [revert] check_tries times, each within
 * [revert] check_timeout, [revert] check_interval apart, with the revert's facts and
 * SNAP_PHASE=check, SNAP_TRY=n. SNAP_OK when a run exits 0; SNAP_ECHECK ("check_failed")
 * naming the last failure; SNAP_EINTR when interrupted. Records "check" in res.
 */
snap_rc rst_check_run(const snap_ctx *ctx, json_t *res, snap_err *err);

/* A before_cutover hook that fails stops the revert with SNAP_EHOOK; after_cutover
 * reports how the cut-over ended (rc: SNAP_OK reverted, SNAP_EROLLEDBACK rolled-back,
 * SNAP_ECHECK or SNAP_EINTR switched-back, else failed) and only warns. */
snap_rc rst_hook_before_cutover(const snap_ctx *ctx, const json_t *res, snap_err *err);
void rst_hook_after_cutover(const snap_ctx *ctx, const json_t *res, snap_rc rc);

#endif
