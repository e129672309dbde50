/* snapshot.h: capture. The engine runs each source into its component's archive parts. */
#ifndef SNAP_SNAPSHOT_H
#define SNAP_SNAPSHOT_H

#include <stdbool.h>

#include "../catalog/catalog.h"
#include "../catalog/arc.h"
#include "../common/ctx.h"
#include "../engines/engines.h"
#include "../engines/source_opts.h"
#include "../storage/storage.h"

/*
 * Where a revert's deferred safety snapshot reads a source: the state its cut-over
 * displaced (a directory beside the live one, a renamed database), recorded in the
 * manifest under the live name, so that reverting to it puts back the live target.
 */
typedef struct snp_redirect {
    const char *source; /* the [source NAME] it applies to */
    const char *live;   /* a files root's absolute path, or the live database's name */
    const char *from;   /* where that state is now */
} snp_redirect;

typedef struct snp_request {
    const char *name;
    const char *note;                /* may be NULL */
    const char *const *labels;       /* "key=value" */
    size_t nlabels;
    /*
     * A safety snapshot before a revert: a configured path that does not exist now is
     * recorded as absent (so reverting to it removes the path) instead of failing.
     */
    bool allow_missing;
    /*
     * The caller holds the targets' locks already (a revert's safety snapshot): capture
     * does not take the shared lock of each files root that it takes otherwise.
     */
    bool locks_held;
    /*
     * A part of another command (a revert's safety snapshot): its phases and components
     * are not the command's, so it writes no phase or component events (ticks it does).
     */
    bool nested;
    /*
     * --parent NAME: the snapshot whose files parts a files source reuses where nothing in
     * them changed; NULL for the latest snapshot with the same source.
     */
    const char *parent;
    /* Read these sources from the displaced state (a deferred safety snapshot). */
    const snp_redirect *redirect;
    size_t nredirect;
} snp_request;

/*
 * Captures every [source NAME] of ctx->cfg into a new snapshot and commits its manifest
 * last, create-only. On failure or interruption nothing is committed and the parts
 * written so far are deleted (what a kill leaves behind, snap gc removes).
 * *out (may be NULL) receives the committed manifest.
 */
snap_rc snp_create(snap_ctx *ctx, stg *store, const snp_request *req, cat_manifest **out,
                   snap_err *err);

/*
 * Whether the committed snapshot m holds the sources of ctx->cfg: the same component
 * names, each of the same type and pointing at the same thing (paths, redacted DSN).
 * When not, why says the first difference. For `snap create --if-absent`.
 */
bool snp_same_sources(const snap_ctx *ctx, const cat_manifest *m, char *why, size_t n);

/*
 * SNAP_EUSAGE when two sources of ctx->cfg name one live target: the same database on the
 * same server as written, or the same path, or a path inside another's (files and images
 * alike). Checked before anything is written (docs/design.md, "One target, one component").
 */
snap_rc snp_check_targets(const snap_ctx *ctx, snap_err *err);

/*
 * snap create --if-absent, retry-safe: when req->name is committed with the same sources,
 * *out is that snapshot and *existed is set, nothing is captured; when it holds other
 * sources, SNAP_ECONFLICT (kind name_exists) saying the first difference; else snp_create
 * (and when another runner commits the name first, the same question again).
 */
snap_rc snp_create_if_absent(snap_ctx *ctx, stg *store, const snp_request *req, cat_manifest **out,
                             bool *existed, snap_err *err);

/* What a source driver gets: one source becoming one component. */
typedef struct snp_capture snp_capture;

const char *snp_source_name(const snp_capture *c);
/* The typed options of the [source NAME] section (after flags and environment), parsed
 * once before the driver runs. */
const src_opts *snp_opts(const snp_capture *c);
snap_ctx *snp_ctx(const snp_capture *c);
/* The snapshots the store held when snap began, oldest first (borrowed). */
cat_manifest *const *snp_catalog(const snp_capture *c, size_t *n);
/* The parent named on the command line, or NULL. */
const char *snp_parent(const snp_capture *c);
/* The component's parts (a driver adds the stored parts it reuses here). */
arc_parts *snp_parts(const snp_capture *c);
stg *snp_store(const snp_capture *c);
bool snp_allow_missing(const snp_capture *c);
bool snp_locks_held(const snp_capture *c);
/* The redirect of this source for live (a files root), or with live NULL its only one
 * (a database source); NULL when the source is read where it names. */
const snp_redirect *snp_redirect_of(const snp_capture *c, const char *live);
/* The component being filled: set its source (redacted), stats and info here. */
cat_component *snp_component(const snp_capture *c);
/* Progress of the whole snap (may be a bar that does not draw). */
prg_bar *snp_progress(const snp_capture *c);
/*
 * A new writer whose parts belong to this component; one per worker thread. Each must
 * be finished (arc_writer_finish) and freed by the driver.
 */
snap_rc snp_writer_new(snp_capture *c, arc_writer **out, snap_err *err);
/*
 * The time database entries and the registry manifests of an images source carry: a
 * constant, so that an unchanged table or image gives the same bytes in every snap and
 * its parts are reused (docs/design.md, "Reuse").
 */
#define SNP_DB_MTIME ((time_t)0)
/* Whether a new group of small tables starts at this name: 1 in 16 names, by a hash of
 * the name, so that a table that grows moves the group boundaries near it only. */
bool snp_group_mark(const char *name);
/*
 * Content-defined cut points for rows: whether a row of n bytes ends a piece of about
 * `target` bytes (true with a chance of n / target, by a hash of the row's ends). A piece
 * cut there ends at the same row in the next snap, whatever changed before it.
 */
bool snp_row_mark(const void *row, size_t n, uint64_t target);

/*
 * Which tables each part of a database component holds: info.part_tables, which orders a
 * revert's loads (restore/order.h). Thread-safe; a pair per part and table.
 */
typedef struct snp_holds snp_holds;
/* One writer's last pair, so that a run of entries into one part is noted once. */
typedef struct snp_held {
    unsigned part;
    size_t table;
    bool set;
} snp_held;
snp_holds *snp_holds_new(void);
void snp_holds_free(snp_holds *h);
/* w has just written an entry of table (an index in the driver's list of tables). */
void snp_holds_note(snp_holds *h, const arc_writer *w, snp_held *last, size_t table);
/* For each part of c, in the manifest's order, the array of its tables, each as value(table)
 * makes it (an id, a name). After the last writer is finished. */
json_t *snp_holds_json(snp_holds *h, const snp_capture *c, json_t *(*value)(size_t table, void *arg), void *arg);

typedef struct snp_driver {
    const char *type; /* the `type =` of a [source] section */
    snap_rc (*capture)(snp_capture *c, snap_err *err);
    /* Optional, cheap: about how many bytes capture will add to the progress (file sizes
     * by a walk, table sizes), for its total, percentage and ETA; 0 when unknown. Runs
     * before any capture; snp_component is NULL then. */
    uint64_t (*estimate)(snp_capture *c);
} snp_driver;

#define SNP_DECLARE(type) extern const snp_driver snp_##type##_driver;
SNAP_ENGINES(SNP_DECLARE)
#undef SNP_DECLARE

/*
 * Captures absolute paths as a files source does (for drivers that build on it, such
 * as images, which keeps the manifest files themselves). Fills the component's info
 * ("roots") and stats ("files", "bytes") as the files driver does.
 */
snap_rc snp_files_capture_paths(snp_capture *c, const char *const *paths, size_t n,
                                const char *const *exclude, size_t nexclude, snap_err *err);

/* The driver for a source type, or NULL. */
const snp_driver *snp_driver_find(const char *type);

#endif
