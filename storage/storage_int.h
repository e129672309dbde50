/* storage_int.h: what a store driver implements. Only storage/ includes this. */
#ifndef SNAP_STORAGE_INT_H
#define SNAP_STORAGE_INT_H

#include "storage.h"
#include "../common/cry.h"

/*
 * A driver is a table of functions, like pgBackRest's StorageInterface. Every function
 * returns a snap_rc and fills err; drv, w and r are the driver's own objects. The
 * functions must be safe to call from several threads at once on different writers
 * and readers of one store.
 */
typedef struct stg_driver {
    const char *scheme; /* "file", "s3" */
    unsigned features;  /* STG_FEAT_* */

    /* url without the scheme's own prefix handling; create: make a missing root. */
    snap_rc (*open)(const char *url, bool create, snap_ctx *ctx, void **drv, snap_err *err);
    void (*free)(void *drv);
    const char *(*url)(void *drv);
    void (*describe)(void *drv, void *json_object); /* may be NULL */

    snap_rc (*writer_open)(void *drv, const char *key, unsigned flags, void **w, snap_err *err);
    snap_rc (*write)(void *w, const void *buf, size_t len, snap_err *err);
    snap_rc (*commit)(void *w, snap_err *err); /* frees w */
    void (*abort)(void *w);                    /* frees w */

    snap_rc (*reader_open)(void *drv, const char *key, uint64_t off, uint64_t len, void **r,
                           snap_err *err);
    snap_rc (*read)(void *r, void *buf, size_t cap, size_t *got, snap_err *err);
    void (*reader_free)(void *r);

    snap_rc (*stat)(void *drv, const char *key, uint64_t *size, snap_err *err);
    snap_rc (*list)(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err);
    snap_rc (*remove)(void *drv, const char *key, snap_err *err);
    /* Batch removal; may be NULL, then remove is called for each key. */
    snap_rc (*remove_many)(void *drv, const char *const *keys, size_t n, snap_err *err);
    snap_rc (*cleanup)(void *drv, int64_t max_age, bool dry_run, unsigned *n, snap_err *err);
    /* Compare and swap of a small object: writes buf only while key holds exactly old,
     * else SNAP_ECONFLICT (see stg_replace). */
    snap_rc (*replace)(void *drv, const char *key, const void *old, size_t oldlen, const void *buf, size_t len,
                       snap_err *err);
} stg_driver;

/*
 * The S3 driver's parsers of a server's answers (storage/s3.c), for its tests and fuzzers.
 * One ListObjectsV2 page: calls fn for each key under prefix (with prefix removed) while
 * *go_on stays true; *more and *token (freed and replaced) say whether and where it goes on.
 */
snap_rc s3_parse_list_int(const char *bucket, const char *prefix, const char *body, size_t len,
                          stg_list_fn fn, void *arg, bool *go_on, bool *more, char **token,
                          snap_err *err);
/* A raw response: header lines up to a blank line, then an <Error> body; what was read of them. */
void s3_parse_response_int(const char *buf, size_t len, long *status, char code[64]);

/*
 * The in-memory store, mem://NAME (storage/mem.c), for tests: every open starts empty.
 * Makes the nth call of op ("write", "commit", "read", "list", "remove", "stat") on a key
 * under prefix (NULL or "": any key), counted from this call, fail with rc; nth 0 disarms.
 * One failure is armed at a time.
 */
snap_rc stg_mem_fail(stg *s, const char *op, const char *prefix, unsigned nth, snap_rc rc, snap_err *err);

/*
 * An encrypted store (enc.c, docs/encryption.md). stg_enc_get is NULL for a plain store.
 * enc_object_key gives the data key that seals the object at key (NULL: stored as it is)
 * and refuses a plain write that must not reach an encrypted store.
 */
typedef struct stg_enc stg_enc;

stg_enc *stg_enc_get(stg *s);
json_t *stg_meta_get(stg *s); /* STORE.json as read (borrowed) */
/* Writes stg_meta_get's document over the copy this stg read or last wrote, never over a
 * newer one (stg_replace): SNAP_ECONFLICT, nothing written, when another process changed it. */
snap_rc stg_meta_put(stg *s, snap_err *err);
snap_rc enc_new_store(const cfg *c, const char *store_id, json_t **enc_json, stg_enc **out, snap_err *err);
snap_rc enc_open_store(const cfg *c, const char *store_id, json_t *enc_json, stg_enc **out, snap_err *err);
void enc_free(stg_enc *e);
uint32_t enc_seg(const stg_enc *e);
const char *enc_store_id(const stg_enc *e);
json_t *enc_doc(const stg_enc *e);
const char *enc_kek_id(const stg_enc *e);
bool enc_sealed_key(const char *key); /* data/<id>/..., but not keys.json */
snap_rc enc_object_key(stg *s, stg_enc *e, const char *key, bool writing, unsigned flags, cry_key **dk,
                       snap_err *err);
snap_rc enc_data_key(stg *s, stg_enc *e, const char *snapshot_id, cry_key **out, snap_err *err);
snap_rc enc_data_key_new(stg *s, stg_enc *e, const char *snapshot_id, snap_err *err);
/* For key management (enc_keys.c). */
json_t *enc_key_entry(const cry_secret *s, cry_key **kek, snap_err *err);
snap_rc enc_load_data_key(stg *s, stg_enc *e, const char *snapshot_id, cry_key **out, char **master_id,
                          snap_err *err);
char *enc_keys_doc(const stg_enc *e, const char *snapshot_id, const char *master_id, const cry_key *mk,
                   const cry_key *dk);
snap_rc enc_master_key(stg_enc *e, const char *id, cry_key **out, snap_err *err);
char *enc_wrap_with_kek(const stg_enc *e, const cry_key *k, const char *aad);
char *enc_master_aad(const stg_enc *e, const char *master_id, const char *key_id);

extern const stg_driver stg_local_driver;
extern const stg_driver stg_mem_driver;
extern const stg_driver stg_s3_driver;

#endif
