/*
 * enc.c: an encrypted store (docs/encryption.md): the "encryption" member of STORE.json,
 * the key-encryption key this host holds, the store's master keys, each snapshot's data
 * key (data/<id>/keys.json), and which objects are sealed.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "storage_int.h"

#define KEYS_NAME "keys.json"
#define KEYS_MAX (64u * 1024)
#define MAX_KEYS 16

typedef struct cached {
    char id[80]; /* "m:<master id>" or "d:<snapshot id>" */
    cry_key *k;
} cached;

struct stg_enc {
    json_t *doc; /* the "encryption" member of STORE.json (owned) */
    char store_id[64];
    uint32_t seg;
    cry_key *kek;
    char kek_id[CRY_ID_LEN + 1];
    char master_id[CRY_ID_LEN + 1]; /* the master key new snapshots use */
    pthread_mutex_t mu;
    cached *cache;
    size_t n;
};

static char *master_aad(const char *store_id, const char *master_id, const char *key_id)
{
    return xasprintf(CRY_SCHEME " master key\n%s\n%s\n%s", store_id, master_id, key_id);
}

static char *data_aad(const char *store_id, const char *snapshot_id, const char *master_id)
{
    return xasprintf(CRY_SCHEME " data key\n%s\n%s\n%s", store_id, snapshot_id, master_id);
}

static cry_key *cache_get(stg_enc *e, const char *id)
{
    cry_key *k = NULL;

    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n && k == NULL; i++)
        if (strcmp(e->cache[i].id, id) == 0)
            k = cry_key_dup(e->cache[i].k);
    pthread_mutex_unlock(&e->mu);
    return k;
}

static void cache_put(stg_enc *e, const char *id, const cry_key *k)
{
    pthread_mutex_lock(&e->mu);
    e->cache = xrealloc(e->cache, (e->n + 1) * sizeof *e->cache);
    snprintf(e->cache[e->n].id, sizeof e->cache[e->n].id, "%s", id);
    e->cache[e->n++].k = cry_key_dup(k);
    pthread_mutex_unlock(&e->mu);
}

static stg_enc *enc_alloc(json_t *doc, const char *store_id)
{
    stg_enc *e = xcalloc(1, sizeof *e);

    e->doc = doc;
    snprintf(e->store_id, sizeof e->store_id, "%s", store_id);
    pthread_mutex_init(&e->mu, NULL);
    return e;
}

void enc_free(stg_enc *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++)
        cry_key_free(e->cache[i].k);
    free(e->cache);
    cry_key_free(e->kek);
    json_decref(e->doc);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

uint32_t enc_seg(const stg_enc *e)
{
    return e->seg;
}

const char *enc_store_id(const stg_enc *e)
{
    return e->store_id;
}

json_t *enc_doc(const stg_enc *e)
{
    return e->doc;
}

const char *enc_kek_id(const stg_enc *e)
{
    return e->kek_id;
}

/* A key entry of STORE.json for secret s: its kdf, id and the key-encryption key. */
json_t *enc_key_entry(const cry_secret *s, cry_key **kek, snap_err *err)
{
    json_t *kdf = cry_kdf_new(s);
    char id[CRY_ID_LEN + 1], now[32];

    if (cry_kek_derive(s, kdf, kek, err) != SNAP_OK) {
        json_decref(kdf);
        return NULL;
    }
    cry_key_id(*kek, id);
    util_iso8601(time(NULL), now);
    return json_pack("{s:s, s:o, s:s}", "key_id", id, "kdf", kdf, "added", now);
}

static snap_rc open_with(cry_secret *s, const char *store_id, json_t *enc_json, stg_enc **out, snap_err *err);

snap_rc enc_new_store(const cfg *c, const char *store_id, json_t **enc_json, stg_enc **out, snap_err *err)
{
    cry_secret *s = NULL;
    cry_key *kek = NULL, *master;
    json_t *entry;
    char mid[CRY_ID_LEN + 1], *aad, *wrapped;
    snap_rc rc = cry_secret_load(c, &s, err);

    *enc_json = NULL;
    *out = NULL;
    if (rc != SNAP_OK || s == NULL)
        return rc;
    entry = enc_key_entry(s, &kek, err);
    if (entry == NULL) {
        cry_secret_free(s);
        return err->code;
    }
    master = cry_key_random();
    util_random_hex(mid, CRY_ID_LEN / 2);
    aad = master_aad(store_id, mid, json_string_value(json_object_get(entry, "key_id")));
    wrapped = cry_wrap(kek, master, aad);
    *enc_json = json_pack("{s:s, s:i, s:[o], s:[{s:s, s:{s:s}}]}", "scheme", CRY_SCHEME, "segment_size",
                          (json_int_t)CRY_SEG_DEFAULT, "keys", entry, "masters", "master_id", mid, "wrapped",
                          json_string_value(json_object_get(entry, "key_id")), wrapped);
    free(aad);
    free(wrapped);
    cry_key_free(master);
    cry_key_free(kek);
    return open_with(s, store_id, *enc_json, out, err);
}

static snap_rc altered(snap_err *err, const char *what)
{
    err_set(err, SNAP_EVERIFY, 0, "STORE.json %s", what);
    err_hint(err, "the store's description was altered or is damaged; nothing was read or written");
    return SNAP_EVERIFY;
}

/* Which of the store's keys the secret is: fills e->kek and e->kek_id. */
static snap_rc find_kek(stg_enc *e, const cry_secret *s, snap_err *err)
{
    const json_t *keys = json_object_get(e->doc, "keys"), *k;
    size_t i;
    util_buf ids = {0};

    if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > MAX_KEYS)
        return altered(err, "lists no keys, or too many");
    json_array_foreach(keys, i, k) {
        const char *id = json_string_value(json_object_get(k, "key_id"));
        cry_key *kek = NULL;
        char have[CRY_ID_LEN + 1];
        snap_err ignored;
        if (id == NULL) {
            util_buf_free(&ids);
            return altered(err, "has a key without an id");
        }
        util_buf_adds(&ids, i ? ", " : "");
        util_buf_adds(&ids, id);
        if (cry_kek_derive(s, json_object_get(k, "kdf"), &kek, &ignored) != SNAP_OK)
            continue; /* a passphrase entry for a raw key, or the reverse */
        cry_key_id(kek, have);
        if (strcmp(have, id) == 0) {
            e->kek = kek;
            snprintf(e->kek_id, sizeof e->kek_id, "%s", id);
            util_buf_free(&ids);
            return SNAP_OK;
        }
        cry_key_free(kek);
    }
    err_set(err, SNAP_EUNREACH, 0, "the key of %s is not one of this store's keys (%s)", cry_secret_source(s),
            ids.p ? ids.p : "");
    err_hint(err, "configure a key the store was given (`snap key list` on a host that holds one)");
    util_buf_free(&ids);
    return err_kind(err, "denied");
}

/* The master key of id, unwrapped with this host's key. */
static snap_rc master_key(stg_enc *e, const char *id, cry_key **out, snap_err *err)
{
    char cid[80], *aad;
    const json_t *masters = json_object_get(e->doc, "masters"), *m;
    size_t i;
    snap_rc rc;

    snprintf(cid, sizeof cid, "m:%s", id);
    if ((*out = cache_get(e, cid)) != NULL)
        return SNAP_OK;
    json_array_foreach(masters, i, m) {
        const char *mid = json_string_value(json_object_get(m, "master_id"));
        const char *w = json_string_value(json_object_get(json_object_get(m, "wrapped"), e->kek_id));
        if (mid == NULL || strcmp(mid, id) != 0)
            continue;
        if (w == NULL)
            return altered(err, "holds no copy of a store key for this host's key");
        aad = master_aad(e->store_id, mid, e->kek_id);
        rc = cry_unwrap(e->kek, w, aad, out, err);
        free(aad);
        if (rc != SNAP_OK)
            return altered(err, "holds a store key that does not open with this host's key");
        cache_put(e, cid, *out);
        return SNAP_OK;
    }
    err_set(err, SNAP_EVERIFY, 0, "the store has no master key %s", id);
    err_hint(err, "the store's description was altered or is damaged; nothing was changed");
    return SNAP_EVERIFY;
}

static bool known_scheme(const json_t *enc_json, snap_err *err)
{
    const char *scheme = json_string_value(json_object_get(enc_json, "scheme"));
    json_int_t seg = json_integer_value(json_object_get(enc_json, "segment_size"));
    const char *mid = json_string_value(json_object_get(json_array_get(json_object_get(enc_json, "masters"), 0),
                                                        "master_id"));

    if (scheme != NULL && strcmp(scheme, CRY_SCHEME) == 0 && seg >= CRY_SEG_MIN && seg <= CRY_SEG_MAX &&
        mid != NULL && strlen(mid) == CRY_ID_LEN)
        return true;
    err_set(err, SNAP_EFAIL, 0, "the store's encryption (%s) is not one this version reads", scheme ? scheme : "unnamed");
    err_hint(err, "use a newer version of snap");
    return false;
}

/* Takes s (frees it). */
static snap_rc open_with(cry_secret *s, const char *store_id, json_t *enc_json, stg_enc **out, snap_err *err)
{
    stg_enc *e;
    cry_key *m = NULL;
    snap_rc rc;

    *out = NULL;
    if (!known_scheme(enc_json, err)) {
        cry_secret_free(s);
        return SNAP_EFAIL;
    }
    e = enc_alloc(json_incref(enc_json), store_id);
    e->seg = (uint32_t)json_integer_value(json_object_get(enc_json, "segment_size"));
    snprintf(e->master_id, sizeof e->master_id, "%s",
             json_string_value(json_object_get(json_array_get(json_object_get(enc_json, "masters"), 0), "master_id")));
    rc = find_kek(e, s, err);
    cry_secret_free(s);
    if (rc == SNAP_OK)
        rc = master_key(e, e->master_id, &m, err);
    cry_key_free(m);
    if (rc != SNAP_OK) {
        enc_free(e);
        return rc;
    }
    *out = e;
    return SNAP_OK;
}

snap_rc enc_open_store(const cfg *c, const char *store_id, json_t *enc_json, stg_enc **out, snap_err *err)
{
    cry_secret *s = NULL;
    snap_rc rc;

    *out = NULL;
    if (!known_scheme(enc_json, err))
        return SNAP_EFAIL;
    rc = cry_secret_load(c, &s, err);
    if (rc != SNAP_OK)
        return rc;
    if (s == NULL) {
        err_set(err, SNAP_EUNREACH, 0, "the store is encrypted and no key is configured");
        err_hint(err, "set [store] key_file or key_command, or $SNAP_PASSPHRASE (docs/encryption.md)");
        return err_kind(err, "key_unavailable");
    }
    return open_with(s, store_id, enc_json, out, err);
}

/* ---- data keys -------------------------------------------------------------------- */

static char *keys_key(const char *snapshot_id)
{
    return xasprintf("data/%s/" KEYS_NAME, snapshot_id);
}

/* A snapshot's keys.json: which master key wraps its data key, and the wrapped key. */
static char *keys_doc(const stg_enc *e, const char *snapshot_id, const char *master_id, const cry_key *mk,
                      const cry_key *dk)
{
    char *aad = data_aad(e->store_id, snapshot_id, master_id), *w = cry_wrap(mk, dk, aad), *text;
    json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:s}", "format", 1, "scheme", CRY_SCHEME, "snapshot",
                            snapshot_id, "master_id", master_id, "data_key", w);

    text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    free(aad);
    free(w);
    return text;
}

snap_rc enc_data_key_new(stg *s, stg_enc *e, const char *snapshot_id, snap_err *err)
{
    cry_key *mk = NULL, *dk;
    char *key, *text, cid[80];
    snap_rc rc = master_key(e, e->master_id, &mk, err);

    if (rc != SNAP_OK)
        return rc;
    dk = cry_key_random();
    key = keys_key(snapshot_id);
    text = keys_doc(e, snapshot_id, e->master_id, mk, dk);
    rc = stg_put(s, key, text, strlen(text), STG_CREATE_ONLY, err);
    if (rc == SNAP_OK) {
        snprintf(cid, sizeof cid, "d:%s", snapshot_id);
        cache_put(e, cid, dk);
    }
    free(text);
    free(key);
    cry_key_free(dk);
    cry_key_free(mk);
    return rc;
}

/* Reads and opens data/<id>/keys.json; *master_id (may be NULL) gets its master's id. */
static snap_rc load_data_key(stg *s, stg_enc *e, const char *snapshot_id, cry_key **out, char **master_id,
                             snap_err *err)
{
    char *key = keys_key(snapshot_id), *buf = NULL, *aad;
    size_t len;
    json_t *doc = NULL;
    const char *mid, *w, *sid;
    cry_key *mk = NULL;
    snap_rc rc = stg_get(s, key, KEYS_MAX, &buf, &len, err);

    *out = NULL;
    if (rc == SNAP_ENOTFOUND) {
        err_set(err, SNAP_EVERIFY, 0, "%s is missing: the data of snapshot %s cannot be opened", key, snapshot_id);
        err_hint(err, "the store was altered or is damaged; nothing was changed");
        rc = SNAP_EVERIFY;
    }
    if (rc == SNAP_OK && ((doc = json_loadb(buf, len, 0, NULL)) == NULL ||
                          (mid = json_string_value(json_object_get(doc, "master_id"))) == NULL ||
                          (w = json_string_value(json_object_get(doc, "data_key"))) == NULL ||
                          (sid = json_string_value(json_object_get(doc, "snapshot"))) == NULL ||
                          strcmp(sid, snapshot_id) != 0 || strlen(mid) != CRY_ID_LEN)) {
        err_set(err, SNAP_EVERIFY, 0, "%s is damaged", key);
        err_hint(err, "the store was altered or is damaged; nothing was changed");
        rc = SNAP_EVERIFY;
    }
    if (rc == SNAP_OK)
        rc = master_key(e, mid, &mk, err);
    if (rc == SNAP_OK) {
        aad = data_aad(e->store_id, snapshot_id, mid);
        rc = cry_unwrap(mk, w, aad, out, err);
        free(aad);
        if (rc != SNAP_OK) {
            err_set(err, SNAP_EVERIFY, 0, "%s does not open: it was altered, or copied from another snapshot", key);
            err_hint(err, "the store was altered or is damaged; nothing was changed");
        }
    }
    if (rc == SNAP_OK && master_id != NULL)
        *master_id = xstrdup(mid);
    cry_key_free(mk);
    json_decref(doc);
    free(buf);
    free(key);
    return rc;
}

snap_rc enc_data_key(stg *s, stg_enc *e, const char *snapshot_id, cry_key **out, snap_err *err)
{
    char cid[80];
    snap_rc rc;

    snprintf(cid, sizeof cid, "d:%s", snapshot_id);
    if ((*out = cache_get(e, cid)) != NULL)
        return SNAP_OK;
    rc = load_data_key(s, e, snapshot_id, out, NULL, err);
    if (rc == SNAP_OK)
        cache_put(e, cid, *out);
    return rc;
}

bool enc_sealed_key(const char *key)
{
    const char *slash = strncmp(key, "data/", 5) == 0 ? strchr(key + 5, '/') : NULL;

    return slash != NULL && slash != key + 5 && strcmp(slash + 1, KEYS_NAME) != 0;
}

snap_rc enc_object_key(stg *s, stg_enc *e, const char *key, bool writing, unsigned flags, cry_key **dk,
                       snap_err *err)
{
    const char *id, *slash;
    char *sid;
    snap_rc rc;

    *dk = NULL;
    if (strncmp(key, "data/", 5) != 0) {
        /* STORE.json, leases (a name and a time) and envelopes sealed by their writer are
         * stored as they are; anything else must not reach an encrypted store in the clear. */
        if (!writing || (flags & STG_SEALED) || strcmp(key, "STORE.json") == 0 || strncmp(key, "leases/", 7) == 0)
            return SNAP_OK;
        return err_set(err, SNAP_EFAIL, 0, "refusing to store %s unencrypted in an encrypted store", key);
    }
    id = key + 5;
    slash = strchr(id, '/');
    if (slash == NULL || slash == id || strcmp(slash + 1, KEYS_NAME) == 0)
        return slash == NULL && writing ? err_set(err, SNAP_EFAIL, 0, "refusing to store %s unencrypted", key)
                                        : SNAP_OK;
    sid = strndup(id, (size_t)(slash - id));
    rc = strstr(sid, "..") != NULL ? err_set(err, SNAP_EVERIFY, 0, "bad snapshot id in %s", key)
                                   : enc_data_key(s, e, sid, dk, err);
    free(sid);
    return rc;
}

/* ---- whole sealed objects (manifest envelopes, revert records) ------------------------- */

static snap_rc buf_sink(void *arg, const void *buf, size_t len, snap_err *err)
{
    (void)err;
    util_buf_add(arg, buf, len);
    return SNAP_OK;
}

typedef struct mem_src {
    const unsigned char *p;
    size_t len, off;
} mem_src;

static snap_rc mem_source(void *arg, void *buf, size_t cap, size_t *got, snap_err *err)
{
    mem_src *m = arg;

    (void)err;
    *got = m->len - m->off < cap ? m->len - m->off : cap;
    memcpy(buf, m->p + m->off, *got);
    m->off += *got;
    return SNAP_OK;
}

snap_rc stg_seal(stg *s, const char *snapshot_id, const char *name, const void *buf, size_t len, char **b64,
                 snap_err *err)
{
    stg_enc *e = stg_enc_get(s);
    cry_key *dk = NULL;
    cry_writer *w;
    util_buf out = {0};
    snap_rc rc;

    *b64 = NULL;
    if (e == NULL)
        return err_set(err, SNAP_EFAIL, 0, "the store is not encrypted");
    rc = enc_data_key(s, e, snapshot_id, &dk, err);
    if (rc != SNAP_OK)
        return rc;
    w = cry_writer_new(dk, e->seg, e->store_id, name, NULL, buf_sink, &out);
    rc = cry_writer_write(w, buf, len, err);
    if (rc == SNAP_OK)
        rc = cry_writer_finish(w, err);
    cry_writer_free(w);
    cry_key_free(dk);
    if (rc == SNAP_OK) {
        *b64 = xmalloc(4 * (out.len / 3 + 1) + 1);
        EVP_EncodeBlock((unsigned char *)*b64, (const unsigned char *)out.p, (int)out.len);
    }
    util_buf_free(&out);
    return rc;
}

snap_rc stg_unseal(stg *s, const char *snapshot_id, const char *name, const char *b64, size_t max, char **buf,
                   size_t *len, snap_err *err)
{
    stg_enc *e = stg_enc_get(s);
    size_t n = strlen(b64), got;
    unsigned char *raw;
    int rawlen;
    cry_key *dk = NULL;
    cry_reader *r;
    util_buf out = {0};
    char chunk[16384];
    snap_rc rc;

    *buf = NULL;
    *len = 0;
    if (e == NULL)
        return err_set(err, SNAP_EVERIFY, 0, "%s is encrypted, and the store is not", name);
    raw = xmalloc(n / 4 * 3 + 3);
    rawlen = n % 4 == 0 ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n) : -1;
    if (rawlen < 0) {
        free(raw);
        return err_set(err, SNAP_EVERIFY, 0, "%s is damaged: its sealed text is not base64", name);
    }
    rawlen -= n >= 2 && b64[n - 1] == '=' ? (b64[n - 2] == '=' ? 2 : 1) : 0;
    rc = enc_data_key(s, e, snapshot_id, &dk, err);
    if (rc == SNAP_OK) {
        mem_src m = {raw, (size_t)rawlen, 0};
        r = cry_reader_new(dk, e->seg, e->store_id, name, mem_source, &m);
        do {
            rc = cry_reader_read(r, chunk, sizeof chunk, &got, err);
            if (rc == SNAP_OK && out.len + got > max)
                rc = err_set(err, SNAP_EFAIL, 0, "%s is larger than %zu bytes", name, max);
            if (rc == SNAP_OK)
                util_buf_add(&out, chunk, got);
        } while (rc == SNAP_OK && got > 0);
        cry_reader_free(r);
    }
    cry_key_free(dk);
    free(raw);
    if (rc != SNAP_OK) {
        util_buf_free(&out);
        return rc;
    }
    *len = out.len;
    util_buf_addc(&out, '\0');
    *buf = util_buf_take(&out);
    return SNAP_OK;
}

bool stg_encrypted(const stg *s)
{
    return stg_enc_get((stg *)(uintptr_t)s) != NULL;
}

snap_rc stg_snapshot_key_new(stg *s, const char *snapshot_id, snap_err *err)
{
    stg_enc *e = stg_enc_get(s);

    return e == NULL ? SNAP_OK : enc_data_key_new(s, e, snapshot_id, err);
}

/* For key rotation (enc_keys.c). */
snap_rc enc_load_data_key(stg *s, stg_enc *e, const char *snapshot_id, cry_key **out, char **master_id,
                          snap_err *err)
{
    return load_data_key(s, e, snapshot_id, out, master_id, err);
}

char *enc_keys_doc(const stg_enc *e, const char *snapshot_id, const char *master_id, const cry_key *mk,
                   const cry_key *dk)
{
    return keys_doc(e, snapshot_id, master_id, mk, dk);
}

snap_rc enc_master_key(stg_enc *e, const char *id, cry_key **out, snap_err *err)
{
    return master_key(e, id, out, err);
}

char *enc_master_aad(const stg_enc *e, const char *master_id, const char *key_id)
{
    return master_aad(e->store_id, master_id, key_id);
}

char *enc_wrap_with_kek(const stg_enc *e, const cry_key *k, const char *aad)
{
    return cry_wrap(e->kek, k, aad);
}
