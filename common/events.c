/* events.c: JSON lines on a file or stderr, written whole, one at a time. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "util.h"

struct evt_sink {
    pthread_mutex_t mu;
    int fd;
    bool own_fd, failed;
    char *command, *snapshot, *revert_id;
};

snap_rc evt_open(const char *path, const char *command, evt_sink **out, snap_err *err)
{
    evt_sink *s;
    int fd = STDERR_FILENO;

    *out = NULL;
    if (strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            err_sys(err, SNAP_EUSAGE, "cannot open the events file %s", path);
            err_hint(err, "give --events a writable path, or - for stderr");
            return SNAP_EUSAGE;
        }
    }
    s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->fd = fd;
    s->own_fd = fd != STDERR_FILENO;
    s->command = xstrdup(command);
    *out = s;
    return SNAP_OK;
}

void evt_free(evt_sink *s)
{
    if (s == NULL)
        return;
    if (s->own_fd)
        close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s->command);
    free(s->snapshot);
    free(s->revert_id);
    free(s);
}

static void set_text(evt_sink *s, char **slot, const char *v)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    free(*slot);
    *slot = v != NULL ? xstrdup(v) : NULL;
    pthread_mutex_unlock(&s->mu);
}

void evt_set_snapshot(evt_sink *s, const char *name)
{
    set_text(s, s ? &s->snapshot : NULL, name);
}

void evt_set_revert_id(evt_sink *s, const char *id)
{
    set_text(s, s ? &s->revert_id : NULL, id);
}

/* UTC with milliseconds: 2026-11-30T07:01:45.581Z. */
static void now_text(char out[40])
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000L) % 1000);
}

/* A name given by the user may not be UTF-8: JSON holds it as \xNN text. */
static json_t *text_or_null(const char *v)
{
    char *safe;
    json_t *j;

    if (v == NULL)
        return json_null();
    safe = util_utf8_lossless(v);
    j = json_string(safe);
    free(safe);
    return j != NULL ? j : json_null();
}

void evt_emit(evt_sink *s, const char *event, json_t *fields)
{
    char when[40], *line;
    json_t *doc;

    if (s == NULL) {
        json_decref(fields);
        return;
    }
    now_text(when);
    doc = fields != NULL ? fields : json_object();
    pthread_mutex_lock(&s->mu);
    json_object_set_new(doc, "format", json_integer(EVT_FORMAT));
    json_object_set_new(doc, "time", json_string(when));
    json_object_set_new(doc, "command", json_string(s->command));
    json_object_set_new(doc, "snapshot", text_or_null(s->snapshot));
    json_object_set_new(doc, "revert_id", text_or_null(s->revert_id));
    json_object_set_new(doc, "event", json_string(event));
    line = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (line != NULL && !s->failed) {
        size_t n = strlen(line);
        line[n] = '\n'; /* one write for the whole line: readers never see half of one */
        if (write(s->fd, line, n + 1) != (ssize_t)(n + 1))
            s->failed = true;
    }
    pthread_mutex_unlock(&s->mu);
    free(line);
    json_decref(doc);
}

void evt_phase(evt_sink *s, const char *phase)
{
    if (s != NULL)
        evt_emit(s, "phase", json_pack("{s:s}", "phase", phase));
}
