/* restore_int.h: internal entry points of restore/ for its tests and fuzzers (tests/fuzz).
 * Only restore/ and tests include this. */
#ifndef SNAP_RESTORE_INT_H
#define SNAP_RESTORE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "restore.h"

/* Reads a journal document as `revert --recover` does, up to the targets it names, and
 * frees it again: no driver is called and nothing on disk is touched. */
snap_rc rst_journal_parse_int(const char *buf, size_t len, snap_err *err);

/*
 * rst_revert and rst_recover with target types besides the built-in ones: extra[0..nextra)
 * is looked up first, by type, for the components of the manifest and the targets of a
 * journal. The unit tests revert onto a fake target with them; the commands never do.
 */
snap_rc rst_revert_int(snap_ctx *ctx, stg *store, const rst_request *req, const rst_driver *const *extra,
                       size_t nextra, json_t **result, snap_err *err);
snap_rc rst_recover_int(snap_ctx *ctx, stg *store, const rst_driver *const *extra, size_t nextra,
                        json_t **result, snap_err *err);

/*
 * Where the files target puts one archive name (restore/files.c): roots is the target's
 * state "roots" array ({stored, path, ...} objects). Sets the root's index and the rest of
 * the name below it, or refuses a name that escapes, lies outside every root, or is not
 * in normal form. dir says the entry is a directory (a trailing '/' is allowed then).
 */
snap_rc rst_files_locate_int(const json_t *roots, const char *name, bool dir, size_t *root, const char **rel,
                             snap_err *err);

#endif
