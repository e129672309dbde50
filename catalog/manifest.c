/* manifest.c: the manifest model over its JSON document. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "catalog.h"

struct cat_manifest {
    json_t *root;
};

/* A component is its JSON object; the cast keeps the type opaque to callers. */
#define COMP(c) ((const json_t *)(const void *)(c))

snap_rc cat_name_check(const char *what, const char *name, snap_err *err)
{
    size_t n = strlen(name);
    bool ok = n > 0 && n <= CAT_NAME_MAX;

    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        ok = alnum || (i > 0 && (c == '.' || c == '_' || c == '-'));
    }
    if (!ok) {
        err_set(err, SNAP_EUSAGE, 0, "invalid %s name '%.*s'", what, 200, name);
        err_hint(err, "names are 1 to 128 of A-Z a-z 0-9 . _ - and start with a letter or digit");
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

void cat_new_id_at(char out[32], int64_t ms)
{
    char now[20], rnd[9];
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&sec, &tm);
    strftime(now, sizeof now, "%Y%m%dT%H%M%S", &tm);
    util_random_hex(rnd, 4);
    if (snprintf(out, 32, "%.15s.%03dZ-%.8s", now, (int)(ms % 1000), rnd) >= 32)
        abort(); /* 15 + 5 + 1 + 8 characters always fit */
}

void cat_new_id(char out[32])
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    cat_new_id_at(out, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

cat_manifest *cat_manifest_new(const char *name, const char *id)
{
    cat_manifest *m = xcalloc(1, sizeof *m);
    char now[32], host[256] = "";

    util_iso8601(time(NULL), now);
    gethostname(host, sizeof host - 1);
    m->root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:{}, s:n, s:[]}", "format", CAT_FORMAT,
                        "name", name, "id", id, "created", now, "host", host, "tool",
                        "snap " SNAP_VERSION, "labels", "encryption", "components");
    if (m->root == NULL)
        abort();
    return m;
}

void cat_manifest_free(cat_manifest *m)
{
    if (m == NULL)
        return;
    json_decref(m->root);
    free(m);
}

json_t *cat_json_text(const char *s, bool *bad)
{
    json_t *v;

    if (s == NULL)
        return json_null();
    v = json_string(s);
    if (v == NULL) {
        *bad = true;
        return json_null();
    }
    return v;
}

/* Text that must not vanish: bytes that are not UTF-8 are kept as \xNN (callers refuse
 * such text before; this is the last guard). */
static json_t *text_kept(const char *s)
{
    char *fixed;
    json_t *v = json_string(s);

    if (v != NULL)
        return v;
    fixed = util_utf8_lossless(s);
    v = json_string(fixed);
    free(fixed);
    return v;
}

void cat_manifest_set_note(cat_manifest *m, const char *note)
{
    json_object_set_new(m->root, "note", text_kept(note));
}

void cat_manifest_set_label(cat_manifest *m, const char *key, const char *value)
{
    json_object_set_new(json_object_get(m->root, "labels"), key, text_kept(value));
}

void cat_manifest_set_finished(cat_manifest *m, time_t t)
{
    char buf[32];
    util_iso8601(t, buf);
    json_object_set_new(m->root, "finished", json_string(buf));
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

const char *cat_manifest_name(const cat_manifest *m) { return str(m->root, "name"); }
const char *cat_manifest_id(const cat_manifest *m) { return str(m->root, "id"); }
const char *cat_manifest_note(const cat_manifest *m) { return str(m->root, "note"); }

time_t cat_manifest_created(const cat_manifest *m)
{
    time_t t = 0;
    util_parse_iso8601(str(m->root, "created"), &t);
    return t;
}

json_t *cat_manifest_labels(const cat_manifest *m)
{
    return json_object_get(m->root, "labels");
}

const char *cat_manifest_label(const cat_manifest *m, const char *key)
{
    return json_string_value(json_object_get(cat_manifest_labels(m), key));
}

bool cat_manifest_match_labels(const cat_manifest *m, const char *const *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(labels[i], '=');
        char *key = eq ? strndup(labels[i], (size_t)(eq - labels[i])) : xstrdup(labels[i]);
        const char *have = cat_manifest_label(m, key);
        bool ok = have != NULL && (eq == NULL || strcmp(have, eq + 1) == 0);
        free(key);
        if (!ok)
            return false;
    }
    return true;
}

size_t cat_manifest_ncomponents(const cat_manifest *m)
{
    return json_array_size(json_object_get(m->root, "components"));
}

cat_component *cat_manifest_component(const cat_manifest *m, size_t i)
{
    return (cat_component *)json_array_get(json_object_get(m->root, "components"), i);
}

cat_component *cat_manifest_find(const cat_manifest *m, const char *name)
{
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *c = cat_manifest_component(m, i);
        if (strcmp(cat_component_name(c), name) == 0)
            return c;
    }
    return NULL;
}

char *cat_component_prefix(const cat_manifest *m, const char *component_name)
{
    return xasprintf("data/%s/%s", cat_manifest_id(m), component_name);
}

uint64_t cat_manifest_bytes(const cat_manifest *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++)
        n += cat_component_bytes(cat_manifest_component(m, i));
    return n;
}

uint64_t cat_manifest_own_bytes(const cat_manifest *m)
{
    char *own = xasprintf("data/%s/", cat_manifest_id(m));
    uint64_t n = 0;

    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *c = cat_manifest_component(m, i);
        for (size_t j = 0; j < cat_component_nparts(c); j++) {
            const char *key, *sha;
            uint64_t size, entries;
            cat_component_part(c, j, &key, &size, &sha, &entries);
            if (strncmp(key, own, strlen(own)) == 0)
                n += size;
        }
    }
    free(own);
    return n;
}

cat_component *cat_manifest_add_component(cat_manifest *m, const char *name, const char *type)
{
    json_t *c = json_pack("{s:s, s:s, s:[], s:{}, s:{}}", "name", name, "type", type, "parts",
                          "stats", "info");
    json_array_append_new(json_object_get(m->root, "components"), c);
    return (cat_component *)c;
}

void cat_component_set_source(cat_component *c, const char *redacted_source)
{
    json_object_set_new((json_t *)c, "source", text_kept(redacted_source));
}

void cat_component_add_part(cat_component *c, const char *key, uint64_t size, const char *sha256,
                            uint64_t entries, uint64_t raw_bytes)
{
    json_array_append_new(json_object_get((json_t *)c, "parts"),
                          json_pack("{s:s, s:I, s:s, s:I, s:I}", "key", key, "size", (json_int_t)size,
                                    "sha256", sha256, "entries", (json_int_t)entries,
                                    "raw_bytes", (json_int_t)raw_bytes));
}

const char *cat_component_name(const cat_component *c) { return str(COMP(c), "name"); }
const char *cat_component_type(const cat_component *c) { return str(COMP(c), "type"); }
const char *cat_component_source(const cat_component *c) { return str(COMP(c), "source"); }

size_t cat_component_nparts(const cat_component *c)
{
    return json_array_size(json_object_get(COMP(c), "parts"));
}

void cat_component_part(const cat_component *c, size_t i, const char **key, uint64_t *size,
                        const char **sha256, uint64_t *entries)
{
    json_t *p = json_array_get(json_object_get(COMP(c), "parts"), i);

    *key = str(p, "key");
    *size = (uint64_t)json_integer_value(json_object_get(p, "size"));
    *sha256 = str(p, "sha256");
    *entries = (uint64_t)json_integer_value(json_object_get(p, "entries"));
}

void cat_component_part_raw(const cat_component *c, size_t i, const char **key, uint64_t *size,
                            const char **sha256, uint64_t *entries, uint64_t *raw_bytes)
{
    json_t *p = json_array_get(json_object_get(COMP(c), "parts"), i);

    cat_component_part(c, i, key, size, sha256, entries);
    *raw_bytes = (uint64_t)json_integer_value(json_object_get(p, "raw_bytes"));
}

uint64_t cat_component_bytes(const cat_component *c)
{
    uint64_t n = 0;
    json_t *p;
    size_t i;

    json_array_foreach(json_object_get(COMP(c), "parts"), i, p)
        n += (uint64_t)json_integer_value(json_object_get(p, "size"));
    return n;
}

json_t *cat_component_json(cat_component *c) { return (json_t *)(void *)c; }
json_t *cat_component_stats(cat_component *c) { return json_object_get(COMP(c), "stats"); }
json_t *cat_component_info(cat_component *c) { return json_object_get(COMP(c), "info"); }

json_t *cat_manifest_json(const cat_manifest *m)
{
    return m->root;
}

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

bool cat_key_ref(const char *key, const char *own_id, const char *suffix)
{
    const char *id = key != NULL && strncmp(key, "data/", 5) == 0 ? key + 5 : NULL;
    const char *slash = id != NULL ? strchr(id, '/') : NULL, *file;
    size_t n, ns = strlen(suffix);
    char *sid;
    snap_err e;
    bool ok;

    if (slash == NULL || strstr(key, "..") != NULL)
        return false;
    file = slash + 1;
    n = strlen(file);
    sid = strndup(id, (size_t)(slash - id));
    ok = cat_name_check("snapshot id", sid, &e) == SNAP_OK && (own_id == NULL || strcmp(sid, own_id) == 0) &&
         n > ns && n < 256 && strcmp(file + n - ns, suffix) == 0 && strspn(file, NAME_CHARS) == n &&
         file[0] != '.' && file[0] != '-';
    free(sid);
    return ok;
}

/*
 * Part keys name a part under data/<snapshot-id>/: the manifest's own (format 1), or any
 * snapshot's of this store (format 2: a reference). Never keys.json, never outside data/.
 */
static bool valid_part_key(const char *key, const char *own_id, json_int_t format)
{
    const char *own = format >= 2 ? NULL : own_id;
    return cat_key_ref(key, own, ".tar.zst") || cat_key_ref(key, own, ".tar.zst.enc");
}

static bool valid_component(json_t *c, const char *own_id, json_int_t format)
{
    json_t *parts = json_object_get(c, "parts"), *p, *index = json_object_get(c, "index");
    size_t i;

    if (!json_is_string(json_object_get(c, "name")) || !json_is_string(json_object_get(c, "type")) ||
        !json_is_array(parts) || !json_is_object(json_object_get(c, "stats")) ||
        !json_is_object(json_object_get(c, "info")))
        return false;
    json_array_foreach(parts, i, p) {
        const char *sha = str(p, "sha256"), *key = str(p, "key");
        if (!valid_part_key(key, own_id, format) || sha == NULL || strlen(sha) != 64 ||
            !json_is_integer(json_object_get(p, "size")))
            return false;
    }
    /* the entry index of a files component (snapshot/files.c): the snapshot's own object */
    if (index != NULL && !json_is_null(index) &&
        (!json_is_object(index) ||
         !(cat_key_ref(str(index, "key"), own_id, ".index.json.zst") ||
           cat_key_ref(str(index, "key"), own_id, ".index.json.zst.enc")) ||
         str(index, "sha256") == NULL || strlen(str(index, "sha256")) != 64 ||
         !json_is_integer(json_object_get(index, "size"))))
        return false;
    return true;
}

void cat_component_require_format(cat_component *c, int format)
{
    json_t *o = (json_t *)(void *)c;

    if (json_integer_value(json_object_get(o, "format")) < format)
        json_object_set_new(o, "format", json_integer(format));
}

void cat_manifest_set_format(cat_manifest *m)
{
    char *own = xasprintf("data/%s/", cat_manifest_id(m));
    json_int_t format = CAT_FORMAT;

    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *c = cat_manifest_component(m, i);
        json_int_t need = json_integer_value(json_object_get(COMP(c), "format"));
        if (need > format)
            format = need;
        for (size_t j = 0; j < cat_component_nparts(c) && format < CAT_FORMAT_REFS; j++) {
            const char *key, *sha;
            uint64_t size, entries;
            cat_component_part(c, j, &key, &size, &sha, &entries);
            if (strncmp(key, own, strlen(own)) != 0)
                format = CAT_FORMAT_REFS;
        }
    }
    json_object_set_new(m->root, "format", json_integer(format));
    free(own);
}

snap_rc cat_manifest_parse(const char *buf, size_t len, cat_manifest **out, snap_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr), *c;
    json_int_t format = 0;
    snap_err idle;
    size_t i;

    *out = NULL;
    if (root == NULL)
        return err_set(err, SNAP_EVERIFY, 0, "manifest is not valid JSON: %s (line %d)", jerr.text, jerr.line);
    if (json_unpack(root, "{s:I}", "format", &format) != 0 || format < CAT_FORMAT || format > CAT_FORMAT_BINCOPY) {
        json_decref(root);
        err_set(err, SNAP_EFAIL, 0, "manifest format %lld is not one this version reads", (long long)format);
        err_hint(err, "use a newer version of snap");
        return SNAP_EFAIL;
    }
    bool ok = json_is_string(json_object_get(root, "name")) && json_is_string(json_object_get(root, "id")) &&
              json_is_string(json_object_get(root, "created")) &&
              json_is_object(json_object_get(root, "labels")) &&
              json_is_array(json_object_get(root, "components"));
    /* An id that is not a snapshot id is refused, by name, where the entry is checked
     * (cat_load); the keys are checked against it only when it is one. */
    const char *own = ok && cat_name_check("snapshot id", str(root, "id"), &idle) == SNAP_OK ? str(root, "id") : NULL;
    json_array_foreach(json_object_get(root, "components"), i, c)
        ok = ok && valid_component(c, own, own != NULL ? format : CAT_FORMAT_REFS);
    if (!ok) {
        json_decref(root);
        return err_set(err, SNAP_EVERIFY, 0, "manifest is damaged: a required field is missing or of the wrong type");
    }
    *out = xcalloc(1, sizeof **out);
    (*out)->root = root;
    return SNAP_OK;
}
