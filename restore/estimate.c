/* estimate.c: the plan's time to the cut-over and in all (see estimate.h). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/state.h"
#include "../common/util.h"
#include "estimate.h"

/* Until a revert from this store has run: stored (compressed) bytes per second. */
#define DEFAULT_STAGE_RATE (40.0 * 1048576)
#define DEFAULT_SAFETY_RATE (60.0 * 1048576)

/* <state>/rates/<first 16 hex of sha256(store url)>.json */
static char *rates_path(const snap_ctx *ctx, stg *store)
{
    util_sha256 *h = util_sha256_new();
    char hex[65], *dir = NULL, *path;
    const char *url = stg_url(store);

    util_sha256_update(h, url, strlen(url));
    util_sha256_final(h, hex);
    hex[16] = '\0';
    if (state_subdir(ctx->cfg, "rates", &dir, NULL) != SNAP_OK)
        return NULL;
    path = xasprintf("%s/%s.json", dir, hex);
    free(dir);
    return path;
}

/* A rate read back: a positive number, else 0 (the file is ours, but may be damaged). */
static double rate_of(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    double r = json_is_number(v) ? json_number_value(v) : 0;

    return r > 0 && r < 1e12 ? r : 0;
}

void rst_estimate_plan(const snap_ctx *ctx, stg *store, json_t *res, uint64_t bytes, rst_safety safety)
{
    char *path = rates_path(ctx, store);
    json_t *doc = path != NULL ? json_load_file(path, 0, NULL) : NULL;
    double stage = rate_of(doc, "stage_bytes_per_s"), safe = rate_of(doc, "safety_bytes_per_s");
    bool known = stage > 0 && (safety == RST_SAFETY_NONE || safe > 0);
    double stage_s, safety_s = 0;

    if (stage <= 0)
        stage = DEFAULT_STAGE_RATE;
    if (safe <= 0)
        safe = DEFAULT_SAFETY_RATE;
    stage_s = (double)bytes / stage;
    if (safety != RST_SAFETY_NONE)
        safety_s = (double)bytes / safe;
    json_object_set_new(res, "estimate",
                        json_pack("{s:f, s:f, s:s}", "cutover_at_s", stage_s + (safety == RST_SAFETY_FIRST ? safety_s : 0),
                                  "total_s", stage_s + safety_s, "basis", known ? "last revert" : "default rates"));
    json_decref(doc);
    free(path);
}

void rst_estimate_record(const snap_ctx *ctx, stg *store, const json_t *res, uint64_t bytes, rst_safety safety)
{
    char *path = rates_path(ctx, store), *text;
    snap_err err;
    double at = json_number_value(json_object_get(res, "cutover_at_ms"));
    double safety_ms = json_number_value(json_object_get(res, "safety_ms"));
    double stage_ms = at - (safety == RST_SAFETY_FIRST ? safety_ms : 0);
    json_t *doc;

    if (path == NULL || bytes == 0 || stage_ms <= 0) {
        free(path);
        return;
    }
    doc = json_load_file(path, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    json_object_set_new(doc, "stage_bytes_per_s", json_real((double)bytes / (stage_ms / 1000)));
    if (safety != RST_SAFETY_NONE && safety_ms > 0)
        json_object_set_new(doc, "safety_bytes_per_s", json_real((double)bytes / (safety_ms / 1000)));
    text = json_dumps(doc, JSON_COMPACT);
    if (text != NULL && util_write_file(path, text, strlen(text), 0600, &err) != SNAP_OK)
        log_debug(ctx, "rates of the last revert not kept: %s", err.msg);
    free(text);
    json_decref(doc);
    free(path);
}
