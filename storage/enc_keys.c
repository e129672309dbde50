/* enc_keys.c: snap key: list, add, remove and rotate the key-encryption keys of a store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "storage_int.h"

static snap_rc need_enc(stg *s, stg_enc **e, snap_err *err)
{
    *e = stg_enc_get(s);
    if (*e != NULL)
        return SNAP_OK;
    err_set(err, SNAP_EUSAGE, 0, "store %s is not encrypted", stg_url(s));
    err_hint(err, "a store is encrypted when it is first written with [store] key_file, key_command or "
                  "$SNAP_PASSPHRASE set (docs/encryption.md)");
    return SNAP_EUSAGE;
}

static json_t *find_key(json_t *keys, const char *id, size_t *at)
{
    size_t i;
    json_t *k;

    json_array_foreach(keys, i, k) {
        const char *kid = json_string_value(json_object_get(k, "key_id"));
        if (kid != NULL && strcmp(kid, id) == 0) {
            if (at != NULL)
                *at = i;
            return k;
        }
    }
    return NULL;
}

snap_rc stg_key_list(stg *s, json_t *out, snap_err *err)
{
    stg_enc *e;
    size_t i;
    json_t *k;
    snap_rc rc = need_enc(s, &e, err);

    if (rc != SNAP_OK)
        return rc;
    json_array_foreach(json_object_get(enc_doc(e), "keys"), i, k) {
        const char *id = json_string_value(json_object_get(k, "key_id"));
        json_array_append_new(out, json_pack("{s:s?, s:s?, s:O?, s:b}", "key_id", id, "kdf",
                                             json_string_value(json_object_get(json_object_get(k, "kdf"), "alg")),
                                             "added", json_object_get(k, "added"), "in_use",
                                             id != NULL && strcmp(id, enc_kek_id(e)) == 0));
    }
    return SNAP_OK;
}

/* Gives every master key a copy wrapped under kek (id): the new key opens all the store. */
static snap_rc wrap_masters(stg_enc *e, const cry_key *kek, const char *id, snap_err *err)
{
    size_t i;
    json_t *m;

    json_array_foreach(json_object_get(enc_doc(e), "masters"), i, m) {
        const char *mid = json_string_value(json_object_get(m, "master_id"));
        cry_key *mk = NULL;
        char *aad, *w;
        snap_rc rc = mid != NULL ? enc_master_key(e, mid, &mk, err)
                                 : err_set(err, SNAP_EVERIFY, 0, "STORE.json has a master key without an id");
        if (rc != SNAP_OK)
            return rc;
        aad = enc_master_aad(e, mid, id);
        w = cry_wrap(kek, mk, aad);
        json_object_set_new(json_object_get(m, "wrapped"), id, json_string(w));
        free(aad);
        free(w);
        cry_key_free(mk);
    }
    return SNAP_OK;
}

/* Reads the new key file and adds it to STORE.json (in memory); *kek and *id are the new key's. */
static snap_rc add_key(stg_enc *e, const char *path, bool exists_ok, cry_key **kek, char id[CRY_ID_LEN + 1],
                       snap_err *err)
{
    cry_secret *sec = NULL;
    json_t *entry = NULL, *keys = json_object_get(enc_doc(e), "keys");
    snap_rc rc = cry_secret_from_file(path, &sec, err);

    *kek = NULL;
    if (rc != SNAP_OK) {
        err_prefix(err, "--new-key-file");
        return rc;
    }
    entry = enc_key_entry(sec, kek, err);
    cry_secret_free(sec);
    if (entry == NULL)
        return err->code;
    snprintf(id, CRY_ID_LEN + 1, "%s", json_string_value(json_object_get(entry, "key_id")));
    if (find_key(keys, id, NULL) != NULL) {
        json_decref(entry);
        if (exists_ok)
            return SNAP_OK;
        err_set(err, SNAP_ECONFLICT, 0, "key %s is already a key of this store", id);
        err_hint(err, "`snap key list` shows the store's keys");
        return SNAP_ECONFLICT;
    }
    rc = wrap_masters(e, *kek, id, err);
    if (rc == SNAP_OK)
        json_array_append_new(keys, entry);
    else
        json_decref(entry);
    return rc;
}

snap_rc stg_key_add(stg *s, const char *new_key_file, json_t *report, snap_err *err)
{
    stg_enc *e;
    cry_key *kek = NULL;
    char id[CRY_ID_LEN + 1];
    snap_rc rc = need_enc(s, &e, err);

    if (rc == SNAP_OK)
        rc = add_key(e, new_key_file, false, &kek, id, err);
    if (rc == SNAP_OK)
        rc = stg_meta_put(s, err);
    if (rc == SNAP_OK)
        json_object_set_new(report, "added", json_string(id));
    cry_key_free(kek);
    return rc;
}

/* Drops key id from the list and from every master key's copies. */
static void drop_key(stg_enc *e, const char *id)
{
    size_t at = 0, i;
    json_t *m;

    if (find_key(json_object_get(enc_doc(e), "keys"), id, &at) != NULL)
        json_array_remove(json_object_get(enc_doc(e), "keys"), at);
    json_array_foreach(json_object_get(enc_doc(e), "masters"), i, m)
        json_object_del(json_object_get(m, "wrapped"), id);
}

snap_rc stg_key_remove(stg *s, const char *key_id, snap_err *err)
{
    stg_enc *e;
    snap_rc rc = need_enc(s, &e, err);
    json_t *keys;

    if (rc != SNAP_OK)
        return rc;
    keys = json_object_get(enc_doc(e), "keys");
    if (find_key(keys, key_id, NULL) == NULL) {
        err_set(err, SNAP_ENOTFOUND, 0, "the store has no key %s", key_id);
        err_hint(err, "`snap key list` shows the store's keys");
        return SNAP_ENOTFOUND;
    }
    if (strcmp(key_id, enc_kek_id(e)) == 0 || json_array_size(keys) < 2) {
        err_set(err, SNAP_EUSAGE, 0, "key %s is the one in use%s", key_id,
                json_array_size(keys) < 2 ? ", and the store's last" : "");
        err_hint(err, "configure another of the store's keys first, or use `snap key rotate --new-key-file FILE`");
        return SNAP_EUSAGE;
    }
    drop_key(e, key_id);
    return stg_meta_put(s, err);
}

static bool collect_keys_json(const stg_entry *en, void *arg)
{
    size_t n = strlen(en->key);

    if (n > 15 && strcmp(en->key + n - 10, "/keys.json") == 0)
        util_strv_push(arg, strndup(en->key + 5, n - 15)); /* data/ ID /keys.json */
    return true;
}

/* Re-wraps every snapshot's data key under the master key mk (id mid). */
static snap_rc rewrap_all(stg *s, stg_enc *e, const char *mid, const cry_key *mk, unsigned *n, snap_err *err)
{
    util_strv ids = {0};
    snap_rc rc = stg_list(s, "data/", collect_keys_json, &ids, err);

    *n = 0;
    for (size_t i = 0; rc == SNAP_OK && i < ids.n; i++) {
        cry_key *dk = NULL;
        char *old = NULL, *key, *text;
        rc = enc_load_data_key(s, e, ids.v[i], &dk, &old, err);
        if (rc == SNAP_OK && strcmp(old, mid) != 0) {
            key = xasprintf("data/%s/keys.json", ids.v[i]);
            text = enc_keys_doc(e, ids.v[i], mid, mk, dk);
            rc = stg_put(s, key, text, strlen(text), 0, err);
            (*n)++;
            free(text);
            free(key);
        }
        free(old);
        cry_key_free(dk);
    }
    util_strv_free(&ids);
    return rc;
}

snap_rc stg_key_rotate(stg *s, const char *new_key_file, json_t *report, snap_err *err)
{
    stg_enc *e;
    cry_key *kek = NULL, *mk = NULL;
    char id[CRY_ID_LEN + 1], mid[CRY_ID_LEN + 1], *aad = NULL, *w = NULL;
    json_t *masters, *removed = json_array(), *k;
    unsigned n = 0;
    size_t i;
    snap_rc rc = need_enc(s, &e, err);

    /* 1. the new key opens every master key, and a new master key that only it opens comes first */
    if (rc == SNAP_OK)
        rc = add_key(e, new_key_file, true, &kek, id, err);
    if (rc != SNAP_OK)
        goto out;
    mk = cry_key_random();
    util_random_hex(mid, CRY_ID_LEN / 2);
    aad = enc_master_aad(e, mid, id);
    w = cry_wrap(kek, mk, aad);
    masters = json_object_get(enc_doc(e), "masters");
    json_array_insert_new(masters, 0, json_pack("{s:s, s:{s:s}}", "master_id", mid, "wrapped", id, w));
    free(aad);
    free(w);
    /* the key in use opens it too until the end, so that hosts holding it go on meanwhile */
    aad = enc_master_aad(e, mid, enc_kek_id(e));
    w = enc_wrap_with_kek(e, mk, aad);
    json_object_set_new(json_object_get(json_array_get(masters, 0), "wrapped"), enc_kek_id(e), json_string(w));
    rc = stg_meta_put(s, err);
    /* 2. every snapshot's data key under the new master key: the data stays as it is */
    if (rc == SNAP_OK)
        rc = rewrap_all(s, e, mid, mk, &n, err);
    /* 3. only the new key and the new master key remain */
    if (rc == SNAP_OK) {
        json_array_foreach(json_object_get(enc_doc(e), "keys"), i, k)
            if (strcmp(json_string_value(json_object_get(k, "key_id")), id) != 0)
                json_array_append(removed, json_object_get(k, "key_id"));
        for (i = 0; i < json_array_size(removed); i++)
            drop_key(e, json_string_value(json_array_get(removed, i)));
        while (json_array_size(masters) > 1)
            json_array_remove(masters, 1);
        rc = stg_meta_put(s, err);
    }
    if (rc == SNAP_OK)
        json_object_set_new(report, "key_id", json_string(id));
    json_object_set(report, "removed", removed);
    json_object_set_new(report, "snapshots_rewrapped", json_integer(n));
out:
    if (rc != SNAP_OK && err->hint[0] == '\0')
        err_hint(err, "the store keeps every key until the end of a rotation: run it again to finish");
    json_decref(removed);
    cry_key_free(kek);
    cry_key_free(mk);
    free(aad);
    free(w);
    return rc;
}
