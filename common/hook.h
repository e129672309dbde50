/* hook.h: runs the commands the local configuration names around snap and revert
 * ([hooks] before_snap ... on_failure, [revert] check), with the facts in their environment. */
#ifndef SNAP_HOOK_H
#define SNAP_HOOK_H

#include <jansson.h>
#include <stdint.h>

#include "ctx.h"

/*
 * The facts a hook sees: an object of strings (or numbers) whose keys become environment
 * variables SNAP_<KEY> in capitals: {"command": "revert", "name": "pre-v42"} gives
 * SNAP_COMMAND=revert and SNAP_NAME=pre-v42. Other values are left out.
 */
json_t *hook_facts_new(const char *command);

/*
 * Runs cmd, a command line of the local configuration: split on white space into argv,
 * with '...' and "..." quoting and no other shell syntax; no shell runs unless cmd asks
 * for one (`sh -c '...'`). argv[0] is looked up in $PATH. stdin is /dev/null; every line
 * the command writes to stdout or stderr is logged on stderr as "hook NAME: line". It
 * runs in a process group of its own, which is killed (SIGTERM, then SIGKILL after two
 * seconds) after timeout_s seconds or when the command is interrupted.
 *
 * SNAP_OK when it exits 0. Otherwise SNAP_EFAIL with a message naming the hook and what
 * happened (kind "hook_missing", "hook_not_executable", "hook_exit", "hook_timeout"),
 * or SNAP_EINTR when interrupted. The caller gives the error its class.
 */
snap_rc hook_exec(const snap_ctx *ctx, const char *name, const char *cmd, int64_t timeout_s, const json_t *facts,
                  snap_err *err);

/*
 * Runs the hook [hooks] <moment> when the configuration sets one, with SNAP_PHASE=moment
 * and the [hooks] timeout; SNAP_OK when none is set. Errors as hook_exec.
 */
snap_rc hook_run(const snap_ctx *ctx, const char *moment, json_t *facts, snap_err *err);

/* Runs an after-hook ([hooks] after_snap, after_cutover, on_failure): a failure is a
 * warning naming the hook, and never changes the result. */
void hook_run_after(const snap_ctx *ctx, const char *moment, json_t *facts);

/* Runs a before-hook: a failure becomes SNAP_EHOOK ("hook_failed"), its message naming
 * the hook, with a hint that nothing was changed. */
snap_rc hook_run_before(const snap_ctx *ctx, const char *moment, json_t *facts, snap_err *err);

/* Runs [hooks] on_failure with result=failed, exit_code and error_code of err added to
 * facts; a failure of the hook itself is a warning. */
void hook_on_failure(const snap_ctx *ctx, json_t *facts, const snap_err *err);

#endif
