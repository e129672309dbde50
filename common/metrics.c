/* metrics.c: the Prometheus text file of the last snap and revert per group. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "metrics.h"
#include "state.h"
#include "util.h"

#define METRICS_FILE "snap.prom"
#define METRICS_STATE_MAX (4u << 20)

static const char *const outcomes[] = {"reverted", "rolled-back", "switched-back", "failed"};

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void put_label(util_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            util_buf_addc(b, '\\');
        if (*v == '\n') {
            util_buf_adds(b, "\\n");
            continue;
        }
        util_buf_addc(b, *v);
    }
}

typedef struct metric {
    const char *name, *help, *event, *field;
} metric;

/* Each gauge: the field of the group's last snap or revert state it shows. */
static const metric gauges[] = {
    {"snap_last_success_timestamp_seconds", "time of the last snapshot taken", "snap", "success"},
    {"snap_last_failure_timestamp_seconds", "time of the last snapshot that failed", "snap", "failure"},
    {"snap_last_duration_seconds", "duration of the last snap", "snap", "seconds"},
    {"snap_last_stored_bytes", "bytes stored by the last snapshot taken", "snap", "bytes"},
    {"snap_last_parts", "archive parts of the last snapshot taken", "snap", "parts"},
    {"snap_revert_last_success_timestamp_seconds", "time of the last revert that was kept", "revert", "success"},
    {"snap_revert_last_failure_timestamp_seconds", "time of the last revert that was not", "revert", "failure"},
    {"snap_revert_last_duration_seconds", "duration of the last revert", "revert", "seconds"},
    {"snap_revert_last_cutover_seconds", "cut-over time of the last revert that switched", "revert", "cutover"},
};

static void render(const json_t *state, util_buf *b)
{
    const char *group;
    json_t *g;

    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        util_buf_adds(b, "# HELP ");
        util_buf_adds(b, gauges[i].name);
        util_buf_addc(b, ' ');
        util_buf_adds(b, gauges[i].help);
        util_buf_adds(b, "\n# TYPE ");
        util_buf_adds(b, gauges[i].name);
        util_buf_adds(b, " gauge\n");
        json_object_foreach((json_t *)(uintptr_t)state, group, g) {
            json_t *v = json_object_get(json_object_get(g, gauges[i].event), gauges[i].field);
            char num[64];
            if (!json_is_number(v))
                continue;
            util_buf_adds(b, gauges[i].name);
            util_buf_adds(b, "{group=\"");
            put_label(b, group);
            snprintf(num, sizeof num, "\"} %.17g\n", json_number_value(v));
            util_buf_adds(b, num);
        }
    }
    util_buf_adds(b, "# HELP snap_revert_last_outcome how the last revert ended (1 for its outcome)\n"
                     "# TYPE snap_revert_last_outcome gauge\n");
    json_object_foreach((json_t *)(uintptr_t)state, group, g) {
        const char *last = json_string_value(json_object_get(json_object_get(g, "revert"), "outcome"));
        if (last == NULL)
            continue;
        for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++) {
            util_buf_adds(b, "snap_revert_last_outcome{group=\"");
            put_label(b, group);
            util_buf_adds(b, "\",outcome=\"");
            util_buf_adds(b, outcomes[k]);
            util_buf_adds(b, strcmp(last, outcomes[k]) == 0 ? "\"} 1\n" : "\"} 0\n");
        }
    }
}

/* The event's group: the value of the label group_by names, else the snapshot name. */
static const char *group_of(const json_t *event, const char *group_by)
{
    const char *v = group_by != NULL && group_by[0] != '\0'
                        ? json_string_value(json_object_get(json_object_get(event, "labels"), group_by))
                        : NULL;

    return v != NULL ? v : json_string_value(json_object_get(event, "name"));
}

/* Folds the event into state; false when it says nothing the file shows. */
static bool fold(json_t *state, const json_t *event, const char *group_by)
{
    const char *kind = json_string_value(json_object_get(event, "event"));
    const char *outcome = json_string_value(json_object_get(event, "outcome"));
    const char *group = group_of(event, group_by), *when = json_string_value(json_object_get(event, "time"));
    time_t t = 0;
    json_t *g, *e;

    if (kind == NULL || outcome == NULL || group == NULL || (strcmp(kind, "snap") != 0 && strcmp(kind, "revert") != 0))
        return false;
    if (when == NULL || !util_parse_iso8601(when, &t))
        t = time(NULL);
    if ((g = json_object_get(state, group)) == NULL)
        json_object_set_new(state, group, g = json_object());
    if ((e = json_object_get(g, kind)) == NULL)
        json_object_set_new(g, kind, e = json_object());
    bool ok = strcmp(outcome, "taken") == 0 || strcmp(outcome, "reverted") == 0;
    json_object_set_new(e, ok ? "success" : "failure", json_integer((json_int_t)t));
    json_object_set_new(e, "outcome", json_string(outcome));
    static const char *const copied[] = {"seconds", "bytes", "parts"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        json_t *v = json_object_get(event, copied[i]);
        if (json_is_number(v) && (ok || strcmp(copied[i], "seconds") == 0))
            json_object_set(e, copied[i], v);
    }
    if (json_is_number(json_object_get(event, "cutover_ms")))
        json_object_set_new(e, "cutover", json_real(json_number_value(json_object_get(event, "cutover_ms")) / 1000.0));
    return true;
}

/* Writes text to dir/METRICS_FILE whole or not at all (util_write_file). */
static snap_rc write_atomic(const char *dir, const char *text, snap_err *err)
{
    char *path = xasprintf("%s/%s", dir, METRICS_FILE);
    snap_err e;
    snap_rc rc = util_write_file(path, text, strlen(text), 0644, &e);

    if (rc != SNAP_OK) {
        errno = e.sys_errno;
        rc = err_sys(err, SNAP_EUNREACH, "cannot write the metrics file in %s", dir);
    }
    free(path);
    return rc;
}

static snap_rc update(const snap_ctx *ctx, const char *dir, const json_t *event, snap_err *err)
{
    const char *group_by = NULL;
    char *sdir = NULL, *spath = NULL;
    json_t *state = NULL;
    util_buf text = {0};
    int fd = -1;
    snap_rc rc = cfg_str(ctx->cfg, "metrics", "group_by", &group_by, err);

    if (rc == SNAP_OK)
        rc = state_subdir(ctx->cfg, "metrics", &sdir, err);
    if (rc != SNAP_OK)
        goto out;
    spath = xasprintf("%s/state.json", sdir);
    fd = open(spath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot open %s", spath);
        goto out;
    }
    state = json_loadfd(fd, JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(state)) { /* new, or damaged: start again */
        json_decref(state);
        state = json_object();
    }
    if (!fold(state, event, group_by))
        goto out;
    render(state, &text);
    char *doc = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
    if (strlen(doc) <= METRICS_STATE_MAX && (ftruncate(fd, 0) != 0 || pwrite(fd, doc, strlen(doc), 0) < 0))
        rc = err_sys(err, SNAP_EFAIL, "cannot write %s", spath);
    free(doc);
    if (rc == SNAP_OK)
        rc = write_atomic(dir, text.p, err);
out:
    if (fd >= 0)
        close(fd);
    util_buf_free(&text);
    json_decref(state);
    free(spath);
    free(sdir);
    return rc;
}

void metrics_update(const snap_ctx *ctx, const json_t *event)
{
    const char *dir = NULL;
    snap_err err;

    if (cfg_str(ctx->cfg, "metrics", "textfile_dir", &dir, &err) != SNAP_OK) {
        log_warn(ctx, "metrics not written: %s", err.msg);
        return;
    }
    if (dir == NULL || dir[0] == '\0')
        return;
    if (update(ctx, dir, event, &err) != SNAP_OK)
        log_warn(ctx, "metrics not written: %s", err.msg);
}
