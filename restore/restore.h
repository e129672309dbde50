/* restore.h: revert: plan, safety snapshot, stage, verify, journaled cut-over, finish, recover. */
#ifndef SNAP_RESTORE_H
#define SNAP_RESTORE_H

#include <jansson.h>
#include <stdbool.h>

#include "../catalog/catalog.h"
#include "../common/ctx.h"
#include "../common/progress.h"
#include "../engines/engines.h"
#include "../engines/source_opts.h"
#include "../snapshot/snapshot.h"
#include "../storage/storage.h"

typedef struct rst_request {
    const char *name;             /* snapshot to revert to */
    const char *const *only;      /* component names; none means all */
    size_t nonly;
    const char *to;               /* --to: restore beside, never touching the original */
    bool dry_run;
    bool no_safety_snapshot;
    bool drop_old;                /* remove the displaced state after success */
    /* Asked before the cut-over when not assume_yes; returns true to go on. */
    bool (*confirm)(const json_t *plan, void *arg);
    void *confirm_arg;
} rst_request;

/*
 * Reverts every selected component of the snapshot. The plan (and, after success, the
 * result) is put in *result, a JSON object the caller prints and frees (may be NULL on
 * early errors). Refuses with SNAP_ERECOVER while an abandoned journal is pending.
 */
snap_rc rst_revert(snap_ctx *ctx, stg *store, const rst_request *req, json_t **result,
                   snap_err *err);

/* Completes or rolls back every abandoned journal and removes staging leftovers. */
snap_rc rst_recover(snap_ctx *ctx, stg *store, json_t **result, snap_err *err);

/*
 * The displaced state that finished reverts kept (recorded in the store by every runner):
 * {"kept": [{revert_id, snapshot, host, age, authenticated, targets: [{component, type,
 * displaced: [...]}]}]}. With drop, removes what is at least older_than seconds old
 * (negative: [revert] keep_old), from authenticated records only, and not files or images
 * state of another host; each entry then says "dropped".
 */
snap_rc rst_kept(snap_ctx *ctx, stg *store, bool drop, int64_t older_than, json_t **result, snap_err *err);

/* What a target driver gets: one component being reverted onto its live target. */
typedef struct rst_target rst_target;

snap_ctx *rst_ctx(const rst_target *t);
stg *rst_store(const rst_target *t);
/* NULL during recovery, which works from the journal state alone. */
const cat_manifest *rst_manifest(const rst_target *t);
const cat_component *rst_component(const rst_target *t);
const char *rst_component_name(const rst_target *t);
const char *rst_revert_id(const rst_target *t);
/* True when the snapshot's manifest is authenticated by a key this host holds; what an
 * unauthenticated manifest asks for (special files, set-id bits, targets) is not trusted. */
bool rst_trusted(const rst_target *t);
/* --to, or NULL. */
const char *rst_to(const rst_target *t);
/* The [revert] options (flags, environment, file, the table's defaults), typed. */
typedef struct rst_opts {
    const char *mode;        /* PostgreSQL: "swap" or "transaction" */
    const char *images_lock; /* NULL: none */
    bool pin, require_images;
    bool allow_external_symlinks, allow_special_files, check_free_space;
    bool mysql_require_local_infile;
    int64_t lock_wait_timeout, keep_old; /* seconds */
    int64_t lock_wait, lease;            /* seconds: wait for a busy target; store journal lease */
    const char *pg_bindir, *pg_maintenance_db, *pg_maintenance_work_mem; /* NULL: not set */
} rst_opts;

/* The typed options of this component's [source NAME] (all unset when the configuration
 * has none), parsed with the target: what names the live target (type, dsn) and the
 * settings its safety snapshot and registry checks use. */
const src_opts *rst_source(const rst_target *t);

/* Parses [revert] of c once; a bad value is SNAP_EUSAGE naming where it came from. */
snap_rc rst_opts_parse(const cfg *c, rst_opts *o, snap_err *err);
/* The options this revert runs with (parsed when the target was made; a bad value fails
 * the plan before anything changes). */
const rst_opts *rst_options(const rst_target *t);
/* The progress of this target while it stages (total: the component's stored bytes), for a
 * driver that reads its parts itself (arc_reader_open); NULL outside stage. */
prg_bar *rst_progress(const rst_target *t);
/* True when the plan should list what changes in detail (--dry-run, or a prompt). */
bool rst_plan_detail(const rst_target *t);
/* The plan of this target: an object the driver fills (target, actions, checks). */
json_t *rst_plan(rst_target *t);
/* The driver's own state, kept in the journal: whatever recovery needs (paths, names). */
json_t *rst_state(rst_target *t);
/* Writes the journal with the current state to disk (fsync) before a step that needs it. */
snap_rc rst_journal_save(rst_target *t, snap_err *err);
/* Adds a lock key for this target (a path, a database name on a server); a revert holds
 * every key of its targets exclusively (see state_lock). */
void rst_set_lock_key(rst_target *t, const char *key);

/* How long a busy target is waited for, in seconds (--lock-wait, [revert] lock_wait). */
int64_t rst_lock_wait(const rst_target *t);
/* This runner's name ([revert] host, else the host name), for the holder of a lock. */
const char *rst_host(const rst_target *t);
/* Keeps handle until the target is freed, then calls release(handle): how a driver holds
 * a lock that lives as long as its session. */
void rst_hold(rst_target *t, void *handle, void (*release)(void *));

typedef struct rst_driver {
    const char *type;
    /* Connects, checks privileges and blockers, fills rst_plan and rst_set_lock_key.
     * Changes nothing. */
    snap_rc (*plan)(rst_target *t, snap_err *err);
    /* Adds a [source NAME] section to c that captures the live target as it is now. */
    snap_rc (*safety_source)(rst_target *t, cfg *c, const char *section, snap_err *err);
    /* Optional, swap mode: true when the state the cut-over displaces stays whole beside
     * the live target (a directory, a renamed database), so that the safety snapshot can
     * be taken from it after the cut-over instead of from the live state before staging. */
    bool (*safety_deferrable)(rst_target *t);
    /* With safety_deferrable: as safety_source, and one redirect per place the displaced
     * state is read from (appended to *rd, *nrd; its strings owned by the target's state). */
    snap_rc (*displaced_source)(rst_target *t, cfg *c, const char *section, snp_redirect **rd, size_t *nrd,
                                snap_err *err);
    /* Restores beside the live target and verifies it; nothing live changes. */
    snap_rc (*stage)(rst_target *t, snap_err *err);
    /* Switches staged and live. Idempotent: recovery calls it again after a crash. */
    snap_rc (*cutover)(rst_target *t, snap_err *err);
    /* Undoes cutover if it happened, idempotent. */
    snap_rc (*rollback)(rst_target *t, snap_err *err);
    /* Removes staging leftovers of a target that was not switched, idempotent. */
    snap_rc (*discard)(rst_target *t, snap_err *err);
    /* After every target switched: keep or drop the displaced state. */
    snap_rc (*finish)(rst_target *t, bool drop_old, snap_err *err);
    /* Optional: checks a state read back from a journal before any other call uses it
     * (every field the driver reads, of the right type); the message names the field. */
    snap_rc (*check_state)(const json_t *state, snap_err *err);
    /* Optional: locks the live target in its own server, with a lock that dies with the
     * session (rst_hold keeps it for the revert or the recovery), waiting up to
     * rst_lock_wait. Busy: SNAP_ECONFLICT with err_kind "locked", naming the holder when the
     * server can tell. Called before plan (never on a dry run) and before recovery acts. */
    snap_rc (*lock)(rst_target *t, snap_err *err);
    /* Optional: what reverts left beside the live target of one configured source of this
     * type (section "source NAME") when their journals are lost, told by its marker: marked
     * staging is removed when the target's lock can be taken and no journal names the revert
     * (rst_journaled); marked displaced state is reported, never removed (keep_old and
     * --drop-kept own it); what carries no marker of this target is left alone. Appends one
     * object per marked leftover to report: {revert_id, snapshot, created, outcome:
     * removed|kept|locked|failed|marker-removed, staging?, displaced?} and the target
     * (path or database). Called by `revert --recover` after every journal was dealt with. */
    snap_rc (*orphans)(snap_ctx *ctx, const char *section, json_t *report, snap_err *err);
} rst_driver;

/*
 * Checks fields of an engine's object read from a manifest or journal (info, state)
 * before use: each must be present when required and of the given JSON type; arrays
 * may require each element to be of elem type. On a problem: SNAP_EVERIFY, naming
 * what and the field.
 */
typedef struct rst_field {
    const char *name;
    json_type type;   /* JSON_TRUE stands for either boolean */
    bool required;
    json_type elem;   /* for arrays: the type of every element; JSON_NULL: any */
} rst_field;
snap_rc rst_check_fields(const char *what, const json_t *obj, const rst_field *fields, size_t n,
                         snap_err *err);

#define RST_DECLARE(type) extern const rst_driver rst_##type##_driver;
SNAP_ENGINES(RST_DECLARE)
#undef RST_DECLARE
/* The roots of a files or images component's info: a non-empty list of distinct objects,
 * each an absolute, normalised path with a known type; SNAP_EVERIFY naming what is wrong. */
snap_rc rst_files_check_roots(const rst_target *t, snap_err *err);

const rst_driver *rst_driver_find(const char *type);

/* Whether a local journal names revert id (an orphan's marker is trusted only when none
 * does; unknown counts as yes). */
bool rst_journaled(snap_ctx *ctx, const char *id);

/* How a database driver names what a revert leaves beside live (rst_orphan_verdict): word
 * for its objects in messages ("database", "schema"); warn_foreign: a marker that is not of
 * a revert of live is warned about (a listing by name finds it only under live's names,
 * while a listing of every marked object finds other sources' too); names: the staging and
 * displaced names (allocated) a revert id of snapshot snap gives live. */
typedef struct rst_orphan_kind {
    const char *word;
    bool warn_foreign;
    void (*names)(const char *live, const char *id, const char *snap, char **staging, char **displaced);
} rst_orphan_kind;

/* The verdict on object name beside live, by its marker (its JSON text, or NULL): NULL when
 * it is left alone (no marker of a revert of live, no revert id, a journal names the revert,
 * or name is neither of the revert's names), else the report entry {database, revert_id,
 * snapshot, outcome "kept", created?}, already appended to report (which holds it); the
 * displaced one also gets "displaced" and is logged, and *staging says it is the staging one,
 * which the driver drops under its lock. */
json_t *rst_orphan_verdict(snap_ctx *ctx, const rst_orphan_kind *k, const char *live, const char *name,
                           const char *marker, json_t *report, bool *staging);

/* displaced_source of a database target: its safety_source, and one redirect from the
 * state's "live" name to the name its state key holds. */
snap_rc rst_displaced_as_live(rst_target *t, cfg *c, const char *section, const char *key, snp_redirect **rd,
                              size_t *nrd, snap_err *err);

#endif
