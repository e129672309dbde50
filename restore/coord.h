/* coord.h: what a revert shares through the store so that any runner can finish it: the
 * store journal (journal/<revert-id>.json, authenticated like a manifest) and its lease.
 * Internal to restore/. */
#ifndef SNAP_RESTORE_COORD_H
#define SNAP_RESTORE_COORD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/auth.h"
#include "../common/ctx.h"
#include "../storage/storage.h"

typedef struct rst_coord rst_coord;

/* The store journals of store, signed with the keys of this host ([store] auth_key_file,
 * the host key); host names this runner, lease is how long a claim lasts unrenewed. */
snap_rc coord_new(snap_ctx *ctx, stg *store, const char *host, int64_t lease, rst_coord **out, snap_err *err);
/* Stops the renewal and frees; the store journal stays (coord_remove removes it). */
void coord_free(rst_coord *co);

/* Writes doc, with this runner's lease and signed, to journal/<revert_id>.json (an atomic
 * replace: the old copy or the new one, never part of either). */
snap_rc coord_save(rst_coord *co, const char *revert_id, const json_t *doc, snap_err *err);
/* Renews the lease (rewrites the last copy saved) every third of the lease time until
 * coord_remove or coord_free. */
void coord_lease_start(rst_coord *co);
/* Stops the renewal and removes the store journal of revert_id. */
void coord_remove(rst_coord *co, const char *revert_id);
/* Whether the store still holds the journal of revert_id. */
snap_rc coord_exists(rst_coord *co, const char *revert_id, bool *found, snap_err *err);
/* Records in the store (reverts/<revert_id>.json, create-only, signed) that this runner
 * recovered a revert another one started: entry says how it ended. */
snap_rc coord_record_recovery(rst_coord *co, const char *revert_id, const char *snapshot_id, const json_t *entry,
                              snap_err *err);
/* Whether an authenticated record says another runner recovered revert_id. */
snap_rc coord_recovered_elsewhere(rst_coord *co, const char *revert_id, bool *yes, char **by, snap_err *err);

/* One store journal as read back: the document, whether a key of this host authenticates
 * it, and how long ago (by the store's clock) it was last written. */
typedef struct coord_journal {
    const char *key;
    json_t *doc;         /* NULL when it is not JSON */
    auth_status auth;
    int64_t age;         /* seconds since its last renewal, by the store's clock */
    int64_t lease;       /* the lease it claims (at least this runner's) */
    bool stale;          /* the lease expired at least one more lease ago */
} coord_journal;

typedef snap_rc (*coord_fn)(const coord_journal *cj, void *arg, snap_err *err);

/* Calls fn for every store journal; stops when fn does not return SNAP_OK. */
snap_rc coord_each(rst_coord *co, coord_fn fn, void *arg, snap_err *err);

/* The displaced state a finished revert kept: kept/<revert_id>.json, signed like a journal
 * (doc is its journal), listed by coord_each_kept, removed by coord_kept_delete. */
snap_rc coord_kept_save(rst_coord *co, const char *revert_id, const json_t *doc, snap_err *err);
snap_rc coord_each_kept(rst_coord *co, coord_fn fn, void *arg, snap_err *err);
snap_rc coord_kept_delete(rst_coord *co, const char *revert_id, snap_err *err);

#endif
