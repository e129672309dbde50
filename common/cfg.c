#include "cfg.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

typedef struct cfg_item {
    char *section;
    char *key;
    char *value;
} cfg_item;

struct cfg {
    cfg_item *items;
    size_t n, cap;
    char **sources;
    size_t nsources, capsources;
};

cfg *cfg_new(void)
{
    return calloc(1, sizeof(cfg));
}

void cfg_free(cfg *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->items[i].section);
        free(c->items[i].key);
        free(c->items[i].value);
    }
    for (size_t i = 0; i < c->nsources; i++)
        free(c->sources[i]);
    free(c->items);
    free(c->sources);
    free(c);
}

static void note_source(cfg *c, const char *section)
{
    const char *name;

    if (strncmp(section, "source ", 7) != 0)
        return;
    name = section + 7;
    for (size_t i = 0; i < c->nsources; i++)
        if (strcmp(c->sources[i], name) == 0)
            return;
    if (c->nsources == c->capsources) {
        size_t cap = c->capsources ? c->capsources * 2 : 8;
        char **p = realloc(c->sources, cap * sizeof *p);
        if (p == NULL)
            abort();
        c->sources = p;
        c->capsources = cap;
    }
    c->sources[c->nsources++] = strdup(name);
}

void cfg_add(cfg *c, const char *section, const char *key, const char *value)
{
    cfg_item *it;

    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        cfg_item *p = realloc(c->items, cap * sizeof *p);
        if (p == NULL)
            abort();
        c->items = p;
        c->cap = cap;
    }
    it = &c->items[c->n++];
    it->section = strdup(section);
    it->key = strdup(key);
    it->value = strdup(value);
    if (it->section == NULL || it->key == NULL || it->value == NULL)
        abort();
    note_source(c, section);
}

void cfg_set(cfg *c, const char *section, const char *key, const char *value)
{
    size_t j = 0;

    for (size_t i = 0; i < c->n; i++) {
        cfg_item *it = &c->items[i];
        if (strcmp(it->section, section) == 0 && strcmp(it->key, key) == 0) {
            free(it->section);
            free(it->key);
            free(it->value);
            continue;
        }
        c->items[j++] = *it;
    }
    c->n = j;
    cfg_add(c, section, key, value);
}

const char *cfg_get(const cfg *c, const char *section, const char *key)
{
    if (c == NULL)
        return NULL;
    for (size_t i = c->n; i-- > 0;)
        if (strcmp(c->items[i].section, section) == 0 && strcmp(c->items[i].key, key) == 0)
            return c->items[i].value;
    return NULL;
}

void cfg_each(const cfg *c, const char *section, const char *key,
              bool (*fn)(const char *value, void *arg), void *arg)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].section, section) == 0 && strcmp(c->items[i].key, key) == 0)
            if (!fn(c->items[i].value, arg))
                return;
}

size_t cfg_source_count(const cfg *c)
{
    return c ? c->nsources : 0;
}

const char *cfg_source_name(const cfg *c, size_t i)
{
    return i < c->nsources ? c->sources[i] : NULL;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    cfg *c = user;

    if (name == NULL) /* a section header without keys */
        return 1;
    cfg_add(c, section, name, value);
    return 1;
}

/*
 * inih reads lines into a buffer of its own size and parses what does not fit as a line
 * of its own, so a long value would end up as a second key. This reader hands it whole
 * lines only, and stops at the first one that does not fit, so the file is refused.
 */
typedef struct line_reader {
    FILE *f;
    char *buf;
    size_t cap;
    int line;
    int too_long; /* the line number of the first line that does not fit, or 0 */
    int max;
} line_reader;

static char *read_line(char *str, int num, void *stream)
{
    line_reader *r = stream;
    ssize_t n = getline(&r->buf, &r->cap, r->f);

    if (n < 0)
        return NULL;
    r->line++;
    /* inih needs room for the text, its newline and the terminating NUL. */
    if (n >= num - 1 && !(n == num - 1 && r->buf[n - 1] == '\n')) {
        r->too_long = r->line;
        r->max = num - 2;
        return NULL;
    }
    memcpy(str, r->buf, (size_t)n + 1);
    return str;
}

snap_rc cfg_load_file(cfg *c, const char *path, snap_err *err)
{
    line_reader r = {.f = fopen(path, "re")};
    int rc = -1;

    if (r.f != NULL) {
        rc = ini_parse_stream(read_line, &r, ini_cb, c);
        fclose(r.f);
        free(r.buf);
    }
    if (rc == -1)
        return err_set(err, errno == ENOENT ? SNAP_ENOTFOUND : SNAP_EUSAGE, errno,
                       "cannot open config file %s: %s", path, strerror(errno));
    if (rc == -2)
        return err_set(err, SNAP_EFAIL, ENOMEM, "out of memory reading config file %s", path);
    if (r.too_long > 0) {
        err_set(err, SNAP_EUSAGE, 0, "config file %s:%d: the line is longer than %d characters", path,
                r.too_long, r.max);
        err_hint(err, "shorten the value: list paths on several `path =` lines, or keep long values in a file");
        return SNAP_EUSAGE;
    }
    if (rc > 0) {
        err_set(err, SNAP_EUSAGE, 0, "config file %s: syntax error on line %d", path, rc);
        err_hint(err, "lines are `key = value` under `[section]` headers");
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

/*
 * A config file names stores, sources and credentials: one that another local user
 * could have written is refused rather than obeyed (see util_check_trusted).
 */
static snap_rc load_trusted(cfg *c, const char *path, snap_err *err)
{
    snap_rc rc = util_check_trusted(path, "config file", SNAP_EUSAGE, err);

    return rc == SNAP_OK ? cfg_load_file(c, path, err) : rc;
}

snap_rc cfg_find_and_load(cfg *c, const char *explicit_path, snap_err *err)
{
    const char *env = getenv("SNAP_CONFIG");

    /* Never the current directory: it may belong to anyone. */
    if (explicit_path != NULL)
        return load_trusted(c, explicit_path, err);
    if (env != NULL && env[0] != '\0')
        return load_trusted(c, env, err);
    if (access(CFG_DEFAULT_PATH, F_OK) == 0)
        return load_trusted(c, CFG_DEFAULT_PATH, err);
    return SNAP_OK;
}

bool cfg_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1;

    if (s == NULL || *s < '0' || *s > '9') /* strtoull takes " -1" as a huge number */
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': mul = 1ULL << 10; end++; break;
    case 'm': case 'M': mul = 1ULL << 20; end++; break;
    case 'g': case 'G': mul = 1ULL << 30; end++; break;
    case 't': case 'T': mul = 1ULL << 40; end++; break;
    default: return false;
    }
    if (*end == 'i' && mul > 1)
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || (v != 0 && mul > UINT64_MAX / v))
        return false;
    *out = (uint64_t)v * mul;
    return true;
}

bool cfg_parse_duration(const char *s, int64_t *seconds)
{
    char *end;
    long long v;
    int64_t mul;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mul = 60;
    else if (strcmp(end, "h") == 0)
        mul = 3600;
    else if (strcmp(end, "d") == 0)
        mul = 86400;
    else if (strcmp(end, "w") == 0)
        mul = 7 * 86400;
    else
        return false;
    if (v > CFG_DURATION_MAX / mul) /* also keeps now - duration and now + duration in range */
        return false;
    *seconds = (int64_t)v * mul;
    return true;
}

snap_rc cfg_get_int(const cfg *c, const char *section, const char *key, long def, long min,
                    long max, long *out, snap_err *err)
{
    const char *s = cfg_get(c, section, key);
    char *end;
    long v;

    if (s == NULL) {
        *out = def;
        return SNAP_OK;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return err_set(err, SNAP_EUSAGE, 0, "[%s] %s = %s: expected a whole number from %ld to %ld",
                       section, key, s, min, max);
    *out = v;
    return SNAP_OK;
}

snap_rc cfg_get_size(const cfg *c, const char *section, const char *key, uint64_t def,
                     uint64_t *out, snap_err *err)
{
    const char *s = cfg_get(c, section, key);

    if (s == NULL) {
        *out = def;
        return SNAP_OK;
    }
    if (!cfg_parse_size(s, out))
        return err_set(err, SNAP_EUSAGE, 0, "[%s] %s = %s: expected a size such as 64M or 1G",
                       section, key, s);
    return SNAP_OK;
}

snap_rc cfg_get_bool(const cfg *c, const char *section, const char *key, bool def, bool *out,
                     snap_err *err)
{
    const char *s = cfg_get(c, section, key);

    if (s == NULL) {
        *out = def;
        return SNAP_OK;
    }
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1"))
        *out = true;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") ||
             !strcmp(s, "0"))
        *out = false;
    else
        return err_set(err, SNAP_EUSAGE, 0, "[%s] %s = %s: expected true or false", section, key, s);
    return SNAP_OK;
}

