/* storage.h: the store interface. Keys are relative, '/'-separated ("catalog/x.json"). */
#ifndef SNAP_STORAGE_H
#define SNAP_STORAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../common/ctx.h"

typedef struct stg stg;
typedef struct stg_writer stg_writer;
typedef struct stg_reader stg_reader;

/* Writer flags. */
#define STG_CREATE_ONLY 0x1u /* commit fails with SNAP_ECONFLICT if the key exists */
#define STG_SEALED 0x2u      /* the bytes were sealed by the caller (an envelope): store them as they are */

/* Driver features, see stg_features(). */
#define STG_FEAT_RANGE 0x1u       /* ranged reads are cheap (no read-and-skip) */
#define STG_FEAT_CREATE_ONLY 0x2u /* create-only commit is enforced by the store itself */
#define STG_FEAT_LOCAL 0x4u       /* a directory on this machine */

typedef struct stg_entry {
    const char *key;
    uint64_t size;
    time_t mtime;
} stg_entry;

/* Return false to stop the listing early. */
typedef bool (*stg_list_fn)(const stg_entry *e, void *arg);

/*
 * Opens the store at url: a local path, file://PATH, or s3://bucket/prefix. Driver options
 * come from cfg's [store] section and the environment. With create, a missing store is
 * made (a local directory, STORE.json); without, it is SNAP_ENOTFOUND. STORE.json (format
 * version, store id, encryption) is checked on every open.
 */
snap_rc stg_open(const char *url, bool create, snap_ctx *ctx, stg **out, snap_err *err);
void stg_free(stg *s);

const char *stg_url(const stg *s); /* for messages: never holds secrets */
unsigned stg_features(const stg *s);
const char *stg_id(const stg *s); /* from STORE.json */
/* Adds driver facts ("create_only_check": "if-none-match" ...) to a JSON object (json_t *). */
void stg_describe(const stg *s, void *json_object);

/*
 * Streamed put: data becomes visible at the key only at stg_commit (local: a file without
 * a name, fsync, a link to the key or a name renamed to it, fsync of the directory; S3: the
 * completed upload). stg_commit and stg_abort free the writer; abort leaves nothing behind.
 * A writer is used by one thread; several writers may run at once.
 */
snap_rc stg_writer_open(stg *s, const char *key, unsigned flags, stg_writer **out, snap_err *err);
snap_rc stg_write(stg_writer *w, const void *buf, size_t len, snap_err *err);
snap_rc stg_commit(stg_writer *w, snap_err *err);
void stg_abort(stg_writer *w);

/* Streamed get of [off, off+len); len 0 means to the end. SNAP_ENOTFOUND if absent. */
snap_rc stg_reader_open(stg *s, const char *key, uint64_t off, uint64_t len, stg_reader **out,
                        snap_err *err);
/* Reads up to cap bytes; *got is 0 only at the end. */
snap_rc stg_read(stg_reader *r, void *buf, size_t cap, size_t *got, snap_err *err);
void stg_reader_free(stg_reader *r);

/* Whole small objects (manifests, journals): at most max bytes, NUL-terminated copy. */
snap_rc stg_get(stg *s, const char *key, size_t max, char **buf, size_t *len, snap_err *err);
snap_rc stg_put(stg *s, const char *key, const void *buf, size_t len, unsigned flags,
                snap_err *err);

snap_rc stg_stat(stg *s, const char *key, uint64_t *size, snap_err *err);
/* Keys under prefix, in no set order. */
snap_rc stg_list(stg *s, const char *prefix, stg_list_fn fn, void *arg, snap_err *err);
/* Deleting a missing key succeeds. */
snap_rc stg_delete(stg *s, const char *key, snap_err *err);
/* Removes every key under prefix. */
snap_rc stg_delete_prefix(stg *s, const char *prefix, snap_err *err);
/*
 * Removes uploads that never committed and are older than max_age seconds: local temp
 * files, S3 multipart uploads. Counts them in *n; with dry_run only counts.
 */
snap_rc stg_cleanup(stg *s, int64_t max_age, bool dry_run, unsigned *n, snap_err *err);

/*
 * Encryption at rest (docs/encryption.md). In an encrypted store every object under
 * data/<snapshot-id>/ is sealed and opened here, transparently (sizes are those of the
 * plain bytes); keys.json beside them holds the snapshot's wrapped data key. A plain write
 * of anything but STORE.json, leases and STG_SEALED envelopes is refused.
 */
bool stg_encrypted(const stg *s);

/*
 * Raises STORE.json's format to at least format before the first manifest of that format
 * is committed: 2 when a manifest refers to other snapshots' parts, 3 when one holds
 * binary table data (docs/formats.md). A version that predates it refuses the store whole
 * rather than deleting data of snapshots it cannot read.
 */
snap_rc stg_require_format(stg *s, int format, snap_err *err);
/*
 * Compare and swap of a small plain object (STORE.json): writes buf at key only while key
 * still holds exactly old, else SNAP_ECONFLICT, so that of two writers that read the same
 * copy only one wins (local: under a lock of the store; S3: If-Match on the copy's ETag).
 */
snap_rc stg_replace(stg *s, const char *key, const char *old, size_t oldlen, const void *buf, size_t len,
                    snap_err *err);
/* Makes the data key of a new snapshot (data/<id>/keys.json); nothing on a plain store. */
snap_rc stg_snapshot_key_new(stg *s, const char *snapshot_id, snap_err *err);
/* Seals buf under the snapshot's data key, bound to name (its key in the store): base64. */
snap_rc stg_seal(stg *s, const char *snapshot_id, const char *name, const void *buf, size_t len, char **b64,
                 snap_err *err);
/* Opens what stg_seal made: SNAP_EVERIFY when it was altered or belongs elsewhere. */
snap_rc stg_unseal(stg *s, const char *snapshot_id, const char *name, const char *b64, size_t max, char **buf,
                   size_t *len, snap_err *err);

/*
 * Key management of an encrypted store (snap key): list fills an array; add gives the
 * store a second key-encryption key; remove drops one (never the last, nor the one in
 * use); rotate adds the new key, re-wraps every snapshot's data key under a new master
 * key that only the new key opens, then drops every other key. Data is not rewritten.
 */
snap_rc stg_key_list(stg *s, json_t *out, snap_err *err);
snap_rc stg_key_add(stg *s, const char *new_key_file, json_t *report, snap_err *err);
snap_rc stg_key_remove(stg *s, const char *key_id, snap_err *err);
snap_rc stg_key_rotate(stg *s, const char *new_key_file, json_t *report, snap_err *err);

#endif
