/* check.c: the facts around a revert's cut-over, its hooks, and the check that may undo it. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/hook.h"
#include "../common/util.h"
#include "check.h"

json_t *rst_facts(const json_t *res, const char *result)
{
    json_t *f = hook_facts_new("revert"), *t;
    util_buf comps = {0};
    size_t i;

    json_object_set(f, "name", json_object_get(res, "snapshot"));
    json_object_set(f, "id", json_object_get(res, "snapshot_id"));
    json_object_set(f, "revert_id", json_object_get(res, "revert_id"));
    json_object_set(f, "store", json_object_get(json_object_get(res, "store"), "url"));
    json_array_foreach(json_object_get(res, "targets"), i, t) {
        const char *c = json_string_value(json_object_get(t, "component"));
        if (c == NULL)
            continue;
        if (comps.len > 0)
            util_buf_addc(&comps, ' ');
        util_buf_adds(&comps, c);
    }
    char *text = util_buf_take(&comps);
    json_object_set_new(f, "components", json_string(text));
    free(text);
    if (result != NULL)
        json_object_set_new(f, "result", json_string(result));
    /* json_object_set with a NULL value fails and sets nothing: a missing fact stays unset */
    return f;
}

snap_rc rst_check_cmd(const snap_ctx *ctx, const char **cmd, snap_err *err)
{
    snap_rc rc = cfg_str(ctx->cfg, "revert", "check", cmd, err);

    if (rc == SNAP_OK && *cmd != NULL && (*cmd)[0] == '\0')
        *cmd = NULL;
    return rc;
}

snap_rc rst_check_run(const snap_ctx *ctx, json_t *res, snap_err *err)
{
    const char *cmd = NULL;
    int64_t timeout = 60, interval = 5;
    long tries = 1, n;
    uint64_t t0 = util_now_ms();
    json_t *facts;
    snap_rc rc;

    if ((rc = rst_check_cmd(ctx, &cmd, err)) != SNAP_OK ||
        (rc = cfg_duration(ctx->cfg, "revert", "check_timeout", &timeout, err)) != SNAP_OK ||
        (rc = cfg_duration(ctx->cfg, "revert", "check_interval", &interval, err)) != SNAP_OK ||
        (rc = cfg_int(ctx->cfg, "revert", "check_tries", &tries, err)) != SNAP_OK || cmd == NULL)
        return rc;
    facts = rst_facts(res, NULL);
    json_object_set_new(facts, "phase", json_string("check"));
    for (n = 1; n <= tries; n++) {
        json_object_set_new(facts, "try", json_integer(n));
        log_info(ctx, "checking the cut-over (try %ld of %ld)", n, tries);
        rc = hook_exec(ctx, "check", cmd, timeout, facts, err);
        if (rc == SNAP_OK || rc == SNAP_EINTR)
            break;
        if (n < tries)
            log_warn(ctx, "try %ld of the check failed: %s", n, err->msg);
        snap_err ie;
        for (int64_t s = 0; n < tries && s < interval * 10 && !ctx_interrupted(ctx, &ie); s++) {
            struct timespec ts = {0, 100000000};
            nanosleep(&ts, NULL);
        }
        if (ctx_interrupted(ctx, err)) {
            rc = SNAP_EINTR;
            break;
        }
    }
    /* not the command: it may hold a credential, and the result is recorded in the store */
    json_object_set_new(res, "check", json_pack("{s:b, s:i, s:f}", "passed", rc == SNAP_OK,
                                                 "tries", (json_int_t)(n > tries ? tries : n),
                                                 "ms", (double)(util_now_ms() - t0)));
    json_decref(facts);
    if (rc == SNAP_OK || rc == SNAP_EINTR)
        return rc;
    err->code = SNAP_ECHECK;
    err->kind = NULL;
    err_prefix(err, "the check failed %ld time%s", tries, tries == 1 ? "" : "s");
    return SNAP_ECHECK;
}

snap_rc rst_hook_before_cutover(const snap_ctx *ctx, const json_t *res, snap_err *err)
{
    json_t *f = rst_facts(res, NULL);
    snap_rc rc = hook_run_before(ctx, "before_cutover", f, err);

    json_decref(f);
    return rc;
}

/* What after_cutover hears: how the cut-over ended. */
static const char *cutover_result(snap_rc rc)
{
    switch (rc) {
    case SNAP_OK: return "reverted";
    case SNAP_EROLLEDBACK: return "rolled-back";
    case SNAP_ECHECK: case SNAP_EINTR: return "switched-back";
    default: return "failed";
    }
}

void rst_hook_after_cutover(const snap_ctx *ctx, const json_t *res, snap_rc rc)
{
    json_t *f = rst_facts(res, cutover_result(rc));

    hook_run_after(ctx, "after_cutover", f);
    json_decref(f);
}
