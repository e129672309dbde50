/* restore_int.h: internal entry points of restore/ for its tests and fuzzers (tests/fuzz).
 * Only restore/ and tests include this. */
#ifndef SNAP_RESTORE_INT_H
#define SNAP_RESTORE_INT_H

#include <archive_entry.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "restore.h"

/* Reads a journal document as `revert --recover` does, up to the targets it names, and
 * frees it again: no driver is called and nothing on disk is touched. */
snap_rc rst_journal_parse_int(const char *buf, size_t len, snap_err *err);

/*
 * The files target's mapping of one archive entry into its staging tree (restore/files.c):
 * roots is the target's state "roots" array ({stored, path, staged} objects). Rewrites the
 * entry's names, or refuses it; *defer says a hard link's first name is not staged yet.
 */
snap_rc rst_files_map_entry_int(const json_t *roots, bool allow_external,
                                struct archive_entry *e, bool *defer, snap_err *err);

#endif
