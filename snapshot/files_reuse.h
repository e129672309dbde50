/* files_reuse.h: the entry index of a files component, and the parent's parts it reuses. */
#ifndef SNAP_FILES_REUSE_H
#define SNAP_FILES_REUSE_H

#include <stdbool.h>
#include <sys/stat.h>

#include "snapshot.h"

typedef struct frs frs;

/*
 * Finds the parent (snp_parent, else the latest snapshot with a files component of this
 * name, source and exclude list, authenticated) and adds each of its parts whose entries
 * are all unchanged to the component's parts as a reference. Never fails: without a usable
 * parent every entry is stored anew.
 */
frs *frs_new(snp_capture *c, const char *source, const json_t *exclude, const char *const *roots, size_t nroots);
/*
 * Whether the walk's entry (stored name, as lstat saw it) is in a reused part: then it is
 * not stored again. *changed when it is, but changed since frs_new looked (fail the snap).
 */
bool frs_covered(frs *r, const char *stored, const struct stat *st, bool *changed);
/* Records an entry the walk stored in part number no (arc_writer_part_no); caps: it has
 * file capabilities. */
void frs_record(frs *r, unsigned no, const char *stored, const struct stat *st, bool caps);
/* Checks that every reused entry was met, writes the index and names it in the component. */
snap_rc frs_finish(frs *r, snap_err *err);
void frs_free(frs *r);

#endif
