/* catalog.h: the manifest model and its JSON, names, listing, retention, verify, gc. */
#ifndef SNAP_CATALOG_H
#define SNAP_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/ctx.h"
#include "../storage/storage.h"

#define CAT_FORMAT 1
/* A manifest whose parts may be other snapshots' (references, docs/formats.md). */
#define CAT_FORMAT_REFS 2
/* A manifest with a component whose entries a reader before it would misread: PostgreSQL
 * table data in binary COPY format (docs/formats.md). Holds references too. */
#define CAT_FORMAT_BINCOPY 3
#define CAT_NAME_MAX 128

/*
 * A manifest is a JSON document (docs/formats.md); cat_manifest wraps it and the getters
 * below read it. A component and a part are views into the manifest, valid while it lives.
 */
typedef struct cat_manifest cat_manifest;
typedef struct cat_component cat_component;

/* Names match [A-Za-z0-9][A-Za-z0-9._-]{0,127}; a usage error otherwise. */
snap_rc cat_name_check(const char *what, const char *name, snap_err *err);
/* Ids sort by time: 20261126T054128.123Z-1a2b3c4d (out holds 32). */
void cat_new_id(char out[32]);
/* The same for a given time in milliseconds since the epoch. */
void cat_new_id_at(char out[32], int64_t ms);

cat_manifest *cat_manifest_new(const char *name, const char *id);
void cat_manifest_free(cat_manifest *m);

void cat_manifest_set_note(cat_manifest *m, const char *note);
void cat_manifest_set_label(cat_manifest *m, const char *key, const char *value);
void cat_manifest_set_finished(cat_manifest *m, time_t t); /* created is set by _new */

const char *cat_manifest_name(const cat_manifest *m);
const char *cat_manifest_id(const cat_manifest *m);
time_t cat_manifest_created(const cat_manifest *m);
const char *cat_manifest_note(const cat_manifest *m); /* NULL if none */
const char *cat_manifest_label(const cat_manifest *m, const char *key); /* NULL if none */
json_t *cat_manifest_labels(const cat_manifest *m); /* object: borrowed */
uint64_t cat_manifest_bytes(const cat_manifest *m); /* stored bytes of every part */
/* Stored bytes of the parts in the snapshot's own data/<id>/ (not references). */
uint64_t cat_manifest_own_bytes(const cat_manifest *m);
/* True when every "k=v" in labels matches. */
bool cat_manifest_match_labels(const cat_manifest *m, const char *const *labels, size_t n);

size_t cat_manifest_ncomponents(const cat_manifest *m);
cat_component *cat_manifest_component(const cat_manifest *m, size_t i);
cat_component *cat_manifest_find(const cat_manifest *m, const char *component_name);

/* Data keys of a snapshot live under data/<id>/; a component's parts under data/<id>/<name>. */
char *cat_component_prefix(const cat_manifest *m, const char *component_name);

cat_component *cat_manifest_add_component(cat_manifest *m, const char *name, const char *type);
void cat_component_set_source(cat_component *c, const char *redacted_source);
void cat_component_add_part(cat_component *c, const char *key, uint64_t size,
                            const char *sha256, uint64_t entries, uint64_t raw_bytes);

const char *cat_component_name(const cat_component *c);
const char *cat_component_type(const cat_component *c);
const char *cat_component_source(const cat_component *c);
size_t cat_component_nparts(const cat_component *c);
void cat_component_part(const cat_component *c, size_t i, const char **key, uint64_t *size,
                        const char **sha256, uint64_t *entries);
void cat_component_part_raw(const cat_component *c, size_t i, const char **key, uint64_t *size,
                            const char **sha256, uint64_t *entries, uint64_t *raw_bytes);
uint64_t cat_component_bytes(const cat_component *c);
/* Engine-specific objects, borrowed and writable: "stats" (checked at revert), "info". */
json_t *cat_component_stats(cat_component *c);
/* The component's whole object (borrowed): "index" names a files component's entry index. */
json_t *cat_component_json(cat_component *c);
json_t *cat_component_info(cat_component *c);

/*
 * json_string for text read from outside (a server, the config, the command line): NULL
 * text gives JSON null; text that is not UTF-8, which JSON cannot hold, gives null too and
 * sets *bad, so that the caller fails instead of losing the field.
 */
json_t *cat_json_text(const char *s, bool *bad);

/*
 * Whether key is data/<id>/<file> with file a part name ending in suffix, and id a
 * snapshot id (own_id's when not NULL). Never keys.json, never outside data/.
 */
bool cat_key_ref(const char *key, const char *own_id, const char *suffix);
/* A component whose parts need a reader of at least this manifest format. */
void cat_component_require_format(cat_component *c, int format);
/* Sets the format number: the highest a component requires, CAT_FORMAT_REFS when a part
 * is another snapshot's, else CAT_FORMAT. */
void cat_manifest_set_format(cat_manifest *m);

/*
 * The entry index of a files component (docs/formats.md, "Entry index"). cat_index_open
 * reads its stored bytes and checks them against the size and SHA-256 the manifest holds
 * (SNAP_ENOTFOUND when the component has none; SNAP_EVERIFY when they do not match), then
 * cat_ixr_read hands out its text as it is decompressed. cat_index_parse parses a whole
 * text (NULL when it is not an index).
 */
#define CAT_INDEX_FORMAT 1
#define CAT_INDEX_FIELDS 10 /* name, mode, size, mtime s/ns, ctime s/ns, inode, links, capabilities */
json_t *cat_index_parse(const char *text, size_t len);
typedef struct cat_ixr cat_ixr;
snap_rc cat_index_open(stg *s, cat_component *c, cat_ixr **out, snap_err *err);
/* Up to n bytes of the text into buf; *got is 0 at its end. SNAP_EVERIFY when the text
 * turns out damaged (not one zstd frame of the size its header says). */
snap_rc cat_ixr_read(cat_ixr *r, char *buf, size_t n, size_t *got, snap_err *err);
/* The size of the whole text, as the frame's header gives it. */
uint64_t cat_ixr_size(const cat_ixr *r);
/* Back to the start of the text. */
snap_rc cat_ixr_rewind(cat_ixr *r, snap_err *err);
void cat_ixr_free(cat_ixr *r);

/*
 * The index read a part and an entry at a time, in its order, its text and its tree never
 * held whole: part (its key; NULL when it is not a string), each of its entries (NULL: its
 * list of entries is not one), part_end. An index laid out otherwise than its writers lay
 * it out is parsed whole when its text is small (reset first: forget every visit before),
 * else SNAP_EVERIFY. A visit that returns false ends the walk there: nothing more is read,
 * and the walk returns SNAP_EFAIL. After an error, what the visits built must be discarded.
 */
typedef struct cat_ixv {
    void *arg;
    bool (*part)(void *arg, const char *key);
    bool (*entry)(void *arg, const json_t *entry);
    bool (*part_end)(void *arg);
    void (*reset)(void *arg);
} cat_ixv;
snap_rc cat_index_walk(stg *s, cat_component *c, const cat_ixv *v, snap_err *err);

/*
 * Writing an entry index (catalog/index.c) a part at a time: each part's text is kept
 * compressed once the writer has moved on from it, so the index costs a few bytes an entry
 * while it is built. cat_ixw_finish packs it: one zstd frame, the text json_dumps
 * (JSON_COMPACT) makes of the tree, parts in the order `parts` lists them (a part it does
 * not list is left out), *out for the caller to free.
 */
typedef struct cat_ixw cat_ixw;
struct arc_parts;
cat_ixw *cat_ixw_new(void);
void cat_ixw_free(cat_ixw *w);
/* Lists part number no, without entries if none are added. */
void cat_ixw_part(cat_ixw *w, unsigned no);
/* Appends an entry (an array of CAT_INDEX_FIELDS values) to part number no. */
void cat_ixw_add(cat_ixw *w, unsigned no, const json_t *entry);
/* Moves the entries of from's part from_no to the end of w's part no. */
void cat_ixw_move(cat_ixw *w, unsigned no, cat_ixw *from, unsigned from_no);
/* Forgets the entries of part no (it stays listed). */
void cat_ixw_drop(cat_ixw *w, unsigned no);
snap_rc cat_ixw_finish(cat_ixw *w, const struct arc_parts *parts, char **out, size_t *len, snap_err *err);

/* The manifest as JSON (borrowed). */
json_t *cat_manifest_json(const cat_manifest *m);
/* Parses and validates (format version, required fields, types). */
snap_rc cat_manifest_parse(const char *buf, size_t len, cat_manifest **out, snap_err *err);

/* Store operations. */
/*
 * A document that carries data (a revert's journal, its kept-state record) in an encrypted
 * store: cat_doc_seal replaces *text with an envelope sealed under the snapshot's data key
 * and bound to key (nothing on a plain store); cat_doc_open replaces *buf with what the
 * envelope holds, and refuses (SNAP_EVERIFY) a plain document in an encrypted store, an
 * envelope in a plain one, or one that was altered or moved.
 */
snap_rc cat_doc_seal(stg *s, const char *key, const char *snapshot_id, char **text, snap_err *err);
snap_rc cat_doc_open(stg *s, const char *key, size_t max, char **buf, size_t *len, snap_err *err);
snap_rc cat_commit(stg *s, const cat_manifest *m, snap_err *err); /* create-only */
snap_rc cat_exists(stg *s, const char *name, bool *exists, snap_err *err);
snap_rc cat_load(stg *s, const char *name, cat_manifest **out, snap_err *err);
/* Every committed manifest, oldest first; *out is an array of n manifests. */
snap_rc cat_list(stg *s, cat_manifest ***out, size_t *n, snap_err *err);
void cat_list_free(cat_manifest **list, size_t n);
/* Removes the catalog entry (the commit point) first, then the data. */
snap_rc cat_delete(stg *s, const cat_manifest *m, snap_err *err);

/* Re-reads every part and checks its SHA-256 and size; report receives one object per part. */
snap_rc cat_verify(stg *s, const cat_manifest *m, const snap_ctx *ctx, json_t *report,
                   snap_err *err);

/*
 * Leases: a revert holds one on the snapshot it reads so that prune and delete leave it
 * alone. A lease older than a day is considered abandoned.
 */
snap_rc cat_lease_take(stg *s, const char *name, const char *holder_id, snap_err *err);
void cat_lease_drop(stg *s, const char *name, const char *holder_id);
snap_rc cat_lease_held(stg *s, const char *name, bool *held, snap_err *err);

/* Retention: which of list (oldest first) a policy removes. keep_last 0 and keep_within 0 disable. */
typedef struct cat_retention {
    long keep_last;
    int64_t keep_within; /* seconds */
} cat_retention;
/* Fills doomed[i] for each manifest; labels filter which snapshots the policy applies to. */
void cat_retention_apply(cat_manifest *const *list, size_t n, const cat_retention *policy,
                         const char *const *labels, size_t nlabels, time_t now, bool *doomed);

/* Applies a policy to the store, never deleting a snapshot a revert holds a lease on.
 * report receives {name, id, action} for each snapshot the labels select. */
snap_rc cat_prune(stg *s, const cat_retention *policy, const char *const *labels, size_t nlabels,
                  bool dry_run, const snap_ctx *ctx, json_t *report, snap_err *err);

/* Data directories no manifest references and older than min_age seconds. */
snap_rc cat_gc(stg *s, int64_t min_age, bool dry_run, const snap_ctx *ctx, json_t *report,
               snap_err *err);

/*
 * snap cat: the tar of a component (every part, or part index `part` alone when >= 0) to
 * fd as one stream, decrypted and decompressed. SNAP_ENOTFOUND for a component or part the
 * snapshot lacks; SNAP_EVERIFY when a part is damaged (what was written before stays).
 */
snap_rc cat_cat(stg *s, const cat_manifest *m, const char *component, long part, int fd, const snap_ctx *ctx,
                snap_err *err);

/* An audit record of a revert, stored as reverts/<revert-id>.json. */
snap_rc cat_record_revert(stg *s, const char *revert_id, json_t *record, snap_err *err);

#endif
