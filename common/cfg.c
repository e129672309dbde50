#include "cfg.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <jansson.h>
#include <limits.h>
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
    char *origin;
} cfg_item;

struct cfg {
    cfg_item *items;
    size_t n, cap;
    char **sources;
    size_t nsources, capsources;
    util_strv files;
};

cfg *cfg_new(void)
{
    return calloc(1, sizeof(cfg));
}

static void item_free(cfg_item *it)
{
    free(it->section);
    free(it->key);
    free(it->value);
    free(it->origin);
}

void cfg_free(cfg *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        item_free(&c->items[i]);
    for (size_t i = 0; i < c->nsources; i++)
        free(c->sources[i]);
    free(c->items);
    free(c->sources);
    util_strv_free(&c->files);
    free(c);
}

/* ---- the declared keys ------------------------------------------------------------ */

const char *cfg_type_name(cfg_type t)
{
    static const char *const names[] = {"string", "bool", "int", "size", "duration", "list", "enum"};
    return (size_t)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static bool section_matches(const char *pattern, const char *section)
{
    if (strcmp(pattern, "source *") == 0)
        return strncmp(section, "source ", 7) == 0 && section[7] != '\0';
    return strcmp(pattern, section) == 0;
}

const cfg_key *cfg_key_find(const char *section, const char *key)
{
    size_t n;
    const cfg_key *k = cfg_keys(&n);

    for (size_t i = 0; i < n; i++)
        if (strcmp(k[i].name, key) == 0 && section_matches(k[i].section, section))
            return &k[i];
    return NULL;
}

/* A read of a key nobody declared is a bug in the program, not in the file. */
static void must_be_declared(const char *section, const char *key)
{
    if (cfg_key_find(section, key) == NULL) {
        fprintf(stderr, "internal error: configuration key [%s] %s is not declared in common/cfg_keys.c\n",
                section, key);
        abort();
    }
}

static bool word_in(const char *words, const char *w)
{
    size_t l = strlen(w);

    for (const char *p = words; p != NULL && *p; p += strcspn(p, " "), p += strspn(p, " "))
        if (strncmp(p, w, l) == 0 && (p[l] == ' ' || p[l] == '\0'))
            return true;
    return false;
}

bool cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; s != NULL && i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, true;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, true;
    }
    return false;
}

/* "expected a, b or c" from the values "a b c". */
static snap_rc enum_error(const cfg_key *k, const char *v, snap_err *err)
{
    char list[256] = "";
    const char *last = strrchr(k->values, ' ');
    size_t n = last ? (size_t)(last - k->values) : 0;

    for (const char *p = k->values; last != NULL && p < k->values + n;) {
        size_t w = strcspn(p, " ");
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%.*s", list[0] ? ", " : "", (int)w, p);
        p += w + 1;
    }
    return err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected %s%s%s", k->name, v, list, last ? " or " : "",
                   last ? last + 1 : k->values);
}

snap_rc cfg_check_value(const cfg_key *k, const char *v, snap_err *err)
{
    bool b;
    char *end;
    long long n;
    uint64_t size;
    int64_t secs;

    switch (k->type) {
    case CFG_STRING:
        return SNAP_OK;
    case CFG_BOOL:
        if (cfg_parse_bool(v, &b))
            return SNAP_OK;
        err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected a boolean", k->name, v);
        err_hint(err, "write true or false (yes/no, on/off and 1/0 work too)");
        return SNAP_EUSAGE;
    case CFG_INT:
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno == 0 && end != v && *end == '\0' && n >= k->min && n <= k->max)
            return SNAP_OK;
        return err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected a whole number from %lld to %lld", k->name, v,
                       k->min, k->max);
    case CFG_SIZE:
        if (cfg_parse_size(v, &size) && size >= (uint64_t)k->min && (k->max == 0 || size <= (uint64_t)k->max))
            return SNAP_OK;
        if (k->max != 0)
            err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected a size from %lld to %lld bytes", k->name, v, k->min,
                    k->max);
        else
            err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected a size of at least %lld bytes", k->name, v, k->min);
        err_hint(err, "write a size such as 4096, 64K, 64M or 1G");
        return SNAP_EUSAGE;
    case CFG_DURATION:
        if (cfg_parse_duration(v, &secs) && secs >= k->min && (k->max == 0 || secs <= k->max))
            return SNAP_OK;
        err_set(err, SNAP_EUSAGE, 0, "%s = %s: expected a duration%s", k->name, v,
                k->min > 0 ? " of at least 1s" : "");
        err_hint(err, "write a duration such as 90s, 15m, 12h, 7d or 2w");
        return SNAP_EUSAGE;
    case CFG_LIST:
        if (strchr(v, ',') == NULL)
            return SNAP_OK;
        err_set(err, SNAP_EUSAGE, 0, "%s = %s: list items are separated by spaces, not commas", k->name, v);
        err_hint(err, "write `%s = a b`, or repeat the key on several lines", k->name);
        return SNAP_EUSAGE;
    case CFG_ENUM:
        if (word_in(k->values, v))
            return SNAP_OK;
        return enum_error(k, v, err);
    }
    return SNAP_OK;
}

/* Levenshtein distance, for "did you mean" (names are short). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

    if (la >= 63 || lb >= 63)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]), del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

static bool near(const char *typed, const char *name)
{
    size_t d = edit_distance(typed, name), l = strlen(name);
    return d > 0 && d <= (l > 5 ? 2 : 1);
}

/* The declared key of this section closest to a mistyped one, or NULL. */
static const char *suggest_key(const char *section, const char *typed)
{
    size_t n, best = 64;
    const cfg_key *k = cfg_keys(&n);
    const char *found = NULL;

    for (size_t i = 0; i < n; i++)
        if (section_matches(k[i].section, section) && near(typed, k[i].name) &&
            edit_distance(typed, k[i].name) < best) {
            best = edit_distance(typed, k[i].name);
            found = k[i].name;
        }
    return found;
}

/* ---- values and their origins ----------------------------------------------------- */

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
    c->sources[c->nsources++] = xstrdup(name);
}

static void add_item(cfg *c, const char *section, const char *key, const char *value, const char *origin)
{
    cfg_item *it;

    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        c->items = xrealloc(c->items, cap * sizeof *c->items);
        c->cap = cap;
    }
    it = &c->items[c->n++];
    it->section = xstrdup(section);
    it->key = xstrdup(key);
    it->value = xstrdup(value);
    it->origin = xstrdup(origin);
    note_source(c, section);
}

static void remove_key(cfg *c, const char *section, const char *key)
{
    size_t j = 0;

    for (size_t i = 0; i < c->n; i++) {
        cfg_item *it = &c->items[i];
        if (strcmp(it->section, section) == 0 && strcmp(it->key, key) == 0) {
            item_free(it);
            continue;
        }
        c->items[j++] = *it;
    }
    c->n = j;
}

void cfg_add(cfg *c, const char *section, const char *key, const char *value)
{
    must_be_declared(section, key);
    add_item(c, section, key, value, "program");
}

void cfg_set_from(cfg *c, const char *section, const char *key, const char *value, const char *origin)
{
    must_be_declared(section, key);
    remove_key(c, section, key);
    add_item(c, section, key, value, origin);
}

void cfg_set(cfg *c, const char *section, const char *key, const char *value)
{
    cfg_set_from(c, section, key, value, "program");
}

static const cfg_item *last_item(const cfg *c, const char *section, const char *key)
{
    for (size_t i = c->n; i-- > 0;)
        if (strcmp(c->items[i].section, section) == 0 && strcmp(c->items[i].key, key) == 0)
            return &c->items[i];
    return NULL;
}

const char *cfg_get(const cfg *c, const char *section, const char *key)
{
    const cfg_item *it;

    must_be_declared(section, key);
    if (c == NULL)
        return NULL;
    it = last_item(c, section, key);
    return it ? it->value : NULL;
}

const char *cfg_origin(const cfg *c, const char *section, const char *key)
{
    const cfg_item *it = c ? last_item(c, section, key) : NULL;
    return it ? it->origin : "default";
}

void cfg_each(const cfg *c, const char *section, const char *key,
              bool (*fn)(const char *value, void *arg), void *arg)
{
    must_be_declared(section, key);
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].section, section) == 0 && strcmp(c->items[i].key, key) == 0)
            if (!fn(c->items[i].value, arg))
                return;
}

void cfg_copy_section(cfg *dst, const cfg *src, const char *from, const char *to, const char *const *except)
{
    if (src == NULL)
        return;
    for (size_t i = 0; i < src->n; i++) {
        const char *key = src->items[i].key;
        bool skip = strcmp(src->items[i].section, from) != 0;
        for (size_t k = 0; !skip && except != NULL && except[k] != NULL; k++)
            skip = strcmp(except[k], key) == 0;
        if (!skip)
            cfg_add(dst, to, key, src->items[i].value);
    }
}

size_t cfg_source_count(const cfg *c)
{
    return c ? c->nsources : 0;
}

const char *cfg_source_name(const cfg *c, size_t i)
{
    return i < c->nsources ? c->sources[i] : NULL;
}

size_t cfg_file_count(const cfg *c)
{
    return c ? c->files.n : 0;
}

const char *cfg_file_name(const cfg *c, size_t i)
{
    return i < c->files.n ? c->files.v[i] : NULL;
}

snap_rc cfg_apply_env(cfg *c, snap_err *err)
{
    size_t n;
    const cfg_key *k = cfg_keys(&n);

    for (size_t i = 0; i < n; i++) {
        const char *v = k[i].env ? getenv(k[i].env) : NULL;
        char origin[64];
        if (v == NULL || v[0] == '\0' || strchr(k[i].section, '*') != NULL)
            continue;
        if (cfg_check_value(&k[i], v, err) != SNAP_OK) {
            err_prefix(err, "$%s", k[i].env);
            return SNAP_EUSAGE;
        }
        snprintf(origin, sizeof origin, "environment $%s", k[i].env);
        cfg_set_from(c, k[i].section, k[i].name, v, origin);
    }
    return SNAP_OK;
}

/* ---- reading a file ---------------------------------------------------------------- */

/*
 * inih reads lines into a buffer of its own size and parses what does not fit as a line
 * of its own, so a long value would end up as a second key. This reader hands it whole
 * lines only, and stops at the first one that does not fit, so the file is refused. It
 * also checks each section header as it passes, so that an unknown one is named with its
 * line even when no key follows it.
 */
typedef struct line_reader {
    FILE *f;
    char *buf;
    size_t cap;
    int line;
    int too_long; /* the line number of the first line that does not fit, or 0 */
    int max;
    int bad_section; /* the line of the first unknown section header, or 0 */
    char section[128];
} line_reader;

static bool section_known(const char *s)
{
    return !strcmp(s, "store") || !strcmp(s, "snap") || !strcmp(s, "revert") || !strcmp(s, "hooks") || !strcmp(s, "notify") || !strcmp(s, "metrics") ||
           (strncmp(s, "source ", 7) == 0 && s[7] != '\0' && s[7] != ' ');
}

static void check_header(line_reader *r, const char *text)
{
    const char *p = text + strspn(text, " \t"), *end;
    size_t n;

    if (*p != '[' || (end = strchr(p, ']')) == NULL)
        return;
    n = (size_t)(end - p - 1);
    if (n >= sizeof r->section)
        n = sizeof r->section - 1;
    memcpy(r->section, p + 1, n);
    r->section[n] = '\0';
    if (!section_known(r->section) && r->bad_section == 0)
        r->bad_section = r->line;
}

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
    check_header(r, r->buf);
    if (r->bad_section != 0)
        return NULL;
    memcpy(str, r->buf, (size_t)n + 1);
    return str;
}

typedef struct loading {
    cfg *into; /* the items of this one file, checked before they join the config */
    line_reader *r;
    const char *path;
} loading;

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    loading *l = user;
    char origin[PATH_MAX + 16];

    if (name == NULL) /* a section header without keys */
        return 1;
    snprintf(origin, sizeof origin, "%s:%d", l->path, l->r->line);
    add_item(l->into, section, name, value, origin);
    return 1;
}

/* The type of [source NAME]: from this file, else from the files before it. */
static const char *source_type(const cfg *file, const cfg *before, const char *section)
{
    const cfg_item *it = last_item(file, section, "type");

    if (it == NULL && before != NULL)
        it = last_item(before, section, "type");
    return it ? it->value : NULL;
}

static snap_rc check_item(cfg_item *it, snap_err *err)
{
    const cfg_key *k = cfg_key_find(it->section, it->key);
    const char *hint;
    bool b;

    if (k == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "config file %s: unknown key '%s' in [%s]", it->origin, it->key, it->section);
        if ((hint = suggest_key(it->section, it->key)) != NULL)
            err_hint(err, "did you mean '%s'?", hint);
        else
            err_hint(err, "`snap config keys` lists every key; see snap.conf(5)");
        return SNAP_EUSAGE;
    }
    /* A key of another source type (a dsn under a files source) is declared and left
     * unused: one file may describe a source whose type changes. */
    if (cfg_check_value(k, it->value, err) != SNAP_OK) {
        err_prefix(err, "config file %s: [%s]", it->origin, it->section);
        return SNAP_EUSAGE;
    }
    if (k->type == CFG_BOOL && cfg_parse_bool(it->value, &b)) { /* every reader sees one spelling */
        free(it->value);
        it->value = xstrdup(b ? "true" : "false");
    }
    return SNAP_OK;
}

static snap_rc bad_section(const char *path, const line_reader *r, snap_err *err)
{
    const char *name = r->section, *space = strchr(name, ' ');
    static const char *const known[] = {"store", "snap", "revert", "source"};
    char first[128];
    size_t n = space ? (size_t)(space - name) : strlen(name);

    err_set(err, SNAP_EUSAGE, 0, "config file %s:%d: unknown section [%s]", path, r->bad_section, name);
    snprintf(first, sizeof first, "%.*s", (int)n, name);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (near(first, known[i]) || (strcmp(first, known[i]) == 0)) {
            if (strcmp(known[i], "source") == 0)
                err_hint(err, "did you mean [source%s]?", space ? space : " NAME");
            else
                err_hint(err, "did you mean [%s]?", known[i]);
            return SNAP_EUSAGE;
        }
    err_hint(err, "sections are [store], [snap], [revert], [hooks], [notify], [metrics] and [source NAME]");
    return SNAP_EUSAGE;
}

static snap_rc parse_file(const char *path, cfg *into, snap_err *err)
{
    line_reader r = {.f = fopen(path, "re")};
    loading l = {into, &r, path};
    int rc = -1;

    if (r.f != NULL) {
        rc = ini_parse_stream(read_line, &r, ini_cb, &l);
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
    if (r.bad_section > 0)
        return bad_section(path, &r, err);
    if (rc > 0) {
        err_set(err, SNAP_EUSAGE, 0, "config file %s: syntax error on line %d", path, rc);
        err_hint(err, "lines are `key = value` under `[section]` headers");
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

snap_rc cfg_load_file(cfg *c, const char *path, snap_err *err)
{
    cfg *file = cfg_new();
    snap_rc rc = parse_file(path, file, err);

    for (size_t i = 0; rc == SNAP_OK && i < file->n; i++)
        rc = check_item(&file->items[i], err);
    if (rc != SNAP_OK)
        goto out;
    /* Layering: what this file sets replaces what earlier files set. */
    for (size_t i = 0; i < file->n; i++)
        remove_key(c, file->items[i].section, file->items[i].key);
    for (size_t i = 0; i < file->n; i++)
        add_item(c, file->items[i].section, file->items[i].key, file->items[i].value, file->items[i].origin);
    util_strv_push(&c->files, xstrdup(path));
out:
    cfg_free(file);
    return rc;
}

/*
 * A config file names stores, sources and credentials: one that another local user
 * could have written is refused rather than obeyed (see util_check_trusted).
 */
static snap_rc load_trusted(cfg *c, const char *path, snap_err *err)
{
    snap_rc rc;

    if (strcmp(path, "/dev/null") == 0) /* no configuration at all */
        return SNAP_OK;
    rc = util_check_trusted(path, "config file", SNAP_EUSAGE, err);
    return rc == SNAP_OK ? cfg_load_file(c, path, err) : rc;
}

/* $XDG_CONFIG_HOME/snap/snap.conf, else ~/.config/snap/snap.conf (caller frees), or NULL. */
static char *user_config_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

    if (xdg != NULL && xdg[0] == '/')
        return xasprintf("%s/snap/snap.conf", xdg);
    if (home != NULL && home[0] == '/')
        return xasprintf("%s/.config/snap/snap.conf", home);
    return NULL;
}

snap_rc cfg_find_and_load(cfg *c, const char *explicit_path, snap_err *err)
{
    const char *env = getenv("SNAP_CONFIG");
    char *user;
    snap_rc rc = SNAP_OK;

    /* Never the current directory: it may belong to anyone. */
    if (explicit_path != NULL)
        return load_trusted(c, explicit_path, err);
    if (env != NULL && env[0] != '\0')
        return load_trusted(c, env, err);
    if (access(CFG_DEFAULT_PATH, F_OK) == 0)
        rc = load_trusted(c, CFG_DEFAULT_PATH, err);
    user = user_config_path();
    if (rc == SNAP_OK && user != NULL && access(user, F_OK) == 0)
        rc = load_trusted(c, user, err);
    free(user);
    return rc;
}

/* ---- showing ------------------------------------------------------------------------ */

static bool key_applies(const cfg_key *k, const char *section, const cfg *c)
{
    const char *type;

    if (!section_matches(k->section, section))
        return false;
    if (last_item(c, section, k->name) != NULL) /* set, even if this type ignores it */
        return true;
    if (k->types == NULL || strncmp(section, "source ", 7) != 0)
        return true;
    type = source_type(c, NULL, section);
    return type == NULL || word_in(k->types, type);
}

static json_t *section_json(const cfg *c, const char *section)
{
    size_t n;
    const cfg_key *k = cfg_keys(&n);
    json_t *obj = json_object();

    for (size_t i = 0; i < n; i++) {
        json_t *vals = json_array(), *one;
        if (!key_applies(&k[i], section, c)) {
            json_decref(vals);
            continue;
        }
        for (size_t j = 0; j < c->n; j++)
            if (strcmp(c->items[j].section, section) == 0 && strcmp(c->items[j].key, k[i].name) == 0)
                json_array_append_new(vals, json_string(k[i].secret ? "<redacted>" : c->items[j].value));
        one = json_array_size(vals) == 0 ? (k[i].def[0] ? json_string(k[i].def) : json_null())
              : json_array_size(vals) == 1 ? json_incref(json_array_get(vals, 0))
                                           : json_incref(vals);
        json_object_set_new(obj, k[i].name,
                            json_pack("{s:o, s:s}", "value", one, "origin", cfg_origin(c, section, k[i].name)));
        json_decref(vals);
    }
    return obj;
}

void cfg_show(const cfg *c, bool as_json, FILE *f)
{
    json_t *doc = json_object(), *files = json_array();
    const char *section, *name;
    json_t *keys, *v;

    for (size_t i = 0; i < c->files.n; i++)
        json_array_append_new(files, json_string(c->files.v[i]));
    json_object_set_new(doc, "store", section_json(c, "store"));
    json_object_set_new(doc, "snap", section_json(c, "snap"));
    json_object_set_new(doc, "revert", section_json(c, "revert"));
    for (size_t i = 0; i < c->nsources; i++) {
        char *s = xasprintf("source %s", c->sources[i]);
        json_object_set_new(doc, s, section_json(c, s));
        free(s);
    }
    if (as_json) {
        /* "format": the shape of this document (docs/json.md) */
        json_t *out = json_pack("{s:i, s:o, s:o}", "format", 1, "files", files, "config", doc);
        json_dumpf(out, f, JSON_INDENT(2));
        fputc('\n', f);
        json_decref(out);
        return;
    }
    for (size_t i = 0; i < json_array_size(files); i++)
        util_fprintf_esc(f, "# file: %s\n", json_string_value(json_array_get(files, i)));
    json_object_foreach(doc, section, keys) {
        util_fprintf_esc(f, "[%s]\n", section);
        json_object_foreach(keys, name, v) {
            json_t *val = json_object_get(v, "value");
            const char *origin = json_string_value(json_object_get(v, "origin"));
            if (json_is_array(val)) {
                for (size_t j = 0; j < json_array_size(val); j++)
                    util_fprintf_esc(f, "%s = %s    ; %s\n", name, json_string_value(json_array_get(val, j)), origin);
            } else if (json_is_string(val)) {
                util_fprintf_esc(f, "%s%s = %s    ; %s\n", strcmp(origin, "default") ? "" : "; ", name,
                                 json_string_value(val), origin);
            } else {
                util_fprintf_esc(f, "; %s =    ; %s\n", name, origin);
            }
        }
    }
    json_decref(files);
    json_decref(doc);
}

void cfg_print_keys(FILE *f)
{
    size_t n;
    const cfg_key *k = cfg_keys(&n);

    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", k[i].section, k[i].types ? k[i].types : "*", k[i].name,
                cfg_type_name(k[i].type), k[i].def, k[i].env ? k[i].env : "");
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

/* ---- typed reads: type, range and default from the table ------------------------- */

static const cfg_key *typed_key(const char *section, const char *key, cfg_type t)
{
    const cfg_key *k = cfg_key_find(section, key);

    if (k == NULL || k->type != t) {
        fprintf(stderr, "internal error: configuration key [%s] %s is not declared as a %s in common/cfg_keys.c\n",
                section, key, cfg_type_name(t));
        abort();
    }
    return k;
}

/* The value to parse: the last one set, else the table's default when it is a value of
 * the key's type, else NULL (the caller's derived default stands). */
static snap_rc typed_value(const cfg *c, const char *section, const cfg_key *k, const char **out,
                           snap_err *err)
{
    const char *v = c ? cfg_get(c, section, k->name) : NULL;

    *out = NULL;
    if (v == NULL) {
        if (k->def != NULL && k->def[0] != '\0' && cfg_check_value(k, k->def, NULL) == SNAP_OK)
            *out = k->def;
        return SNAP_OK;
    }
    if (cfg_check_value(k, v, err) != SNAP_OK) {
        const char *origin = cfg_origin(c, section, k->name);
        if (strcmp(origin, "default") != 0 && strchr(origin, ':') != NULL)
            err_prefix(err, "config file %s: [%s]", origin, section);
        else
            err_prefix(err, "%s: [%s]", origin, section);
        return SNAP_EUSAGE;
    }
    *out = v;
    return SNAP_OK;
}

snap_rc cfg_int(const cfg *c, const char *section, const char *key, long *out, snap_err *err)
{
    const char *v;
    snap_rc rc = typed_value(c, section, typed_key(section, key, CFG_INT), &v, err);

    if (rc == SNAP_OK && v != NULL)
        *out = strtol(v, NULL, 10); /* checked against the range already */
    return rc;
}

snap_rc cfg_size(const cfg *c, const char *section, const char *key, uint64_t *out, snap_err *err)
{
    const char *v;
    snap_rc rc = typed_value(c, section, typed_key(section, key, CFG_SIZE), &v, err);

    if (rc == SNAP_OK && v != NULL)
        (void)cfg_parse_size(v, out);
    return rc;
}

snap_rc cfg_bool(const cfg *c, const char *section, const char *key, bool *out, snap_err *err)
{
    const char *v;
    snap_rc rc = typed_value(c, section, typed_key(section, key, CFG_BOOL), &v, err);

    if (rc == SNAP_OK && v != NULL)
        (void)cfg_parse_bool(v, out);
    return rc;
}

snap_rc cfg_duration(const cfg *c, const char *section, const char *key, int64_t *out, snap_err *err)
{
    const char *v;
    snap_rc rc = typed_value(c, section, typed_key(section, key, CFG_DURATION), &v, err);

    if (rc == SNAP_OK && v != NULL)
        (void)cfg_parse_duration(v, out);
    return rc;
}

snap_rc cfg_str(const cfg *c, const char *section, const char *key, const char **out, snap_err *err)
{
    const cfg_key *k = cfg_key_find(section, key);

    if (k == NULL || (k->type != CFG_STRING && k->type != CFG_ENUM))
        (void)typed_key(section, key, CFG_STRING); /* aborts */
    if (k->type == CFG_STRING) { /* a string's table default is a description */
        *out = cfg_get(c, section, key);
        return SNAP_OK;
    }
    return typed_value(c, section, k, out, err);
}

void cfg_list(const cfg *c, const char *section, const char *key, struct util_strv *out)
{
    const cfg_key *k = cfg_key_find(section, key);

    if (k == NULL || (k->type != CFG_LIST && k->type != CFG_STRING))
        (void)typed_key(section, key, CFG_LIST); /* aborts */
    cfg_each(c, section, key, k->type == CFG_LIST ? util_strv_add_words : util_strv_add_one, out);
}
