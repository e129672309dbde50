/* archive.h: the archive stream: pax tar (libarchive) -> zstd -> SHA-256 -> store writer. */
#ifndef SNAP_ARCHIVE_H
#define SNAP_ARCHIVE_H

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stdint.h>

#include "../storage/storage.h"
#include "../common/ctx.h"
#include "../common/progress.h"

/*
 * Names under this prefix hold a driver's own records (the registry manifests of an
 * images component), not captured files: the files target does not restore them.
 */
#define ARC_META_PREFIX ".snap-meta/"

typedef struct arc_opts {
    int zstd_level;     /* 0: default (3) */
    int zstd_threads;   /* 0: default (2) */
    uint64_t part_size; /* a part closes at the first entry boundary past this; 0: 256 MiB */
    bool whole_overlap; /* each zstd job starts with the whole window before it (small files
                         * that share text); else zstd's default, a sixth of the CPU less */
    prg_bar *progress;  /* may be NULL; raw bytes are added to it */
} arc_opts;

/*
 * The parts of one component, shared by every writer of that component (several workers
 * may write parts at once). Thread-safe. Part keys are <prefix>.NNNN.tar.zst.
 */
typedef struct arc_parts arc_parts;

arc_parts *arc_parts_new(const char *prefix);
void arc_parts_free(arc_parts *p);
size_t arc_parts_count(const arc_parts *p);
/* data/<snapshot-id>/<component> */
const char *arc_parts_prefix(const arc_parts *p);
/* Sorted by part number once writing is over. */
void arc_parts_get(const arc_parts *p, size_t i, const char **key, uint64_t *size,
                   const char **sha256, uint64_t *entries, uint64_t *raw_bytes);

/* The number of part i (sorted order): arc_writer_part_no says which entries it holds. */
unsigned arc_parts_no(const arc_parts *p, size_t i);
/*
 * Content-addressed reuse: a part already in the store (another snapshot's, by its key).
 * A writer whose finished part has the same size and SHA-256 drops its upload and the
 * component refers to the stored part instead (docs/formats.md, "References").
 */
void arc_parts_know(arc_parts *p, const char *key, uint64_t size, const char *sha256, uint64_t entries,
                    uint64_t raw_bytes);
/* Adds a stored part as it is (a files part whose entries did not change); its number. */
unsigned arc_parts_add_ref(arc_parts *p, const char *key, uint64_t size, const char *sha256, uint64_t entries,
                           uint64_t raw_bytes);
/* Stored bytes that were not written again. */
uint64_t arc_parts_reused_bytes(const arc_parts *p);

typedef struct arc_writer arc_writer;

snap_rc arc_writer_new(stg *store, arc_parts *parts, const arc_opts *opts, const snap_ctx *ctx,
                       arc_writer **out, snap_err *err);
/* Frees; an open, uncommitted part is aborted (nothing is left in the store). */
void arc_writer_free(arc_writer *w);

/*
 * Writes one entry. Data of a regular file comes from fd (read to the size the entry
 * says; a file that shrank meanwhile is padded and reported with a warning), or from buf.
 * Hard links are resolved across the writer's parts (archive_entry_linkresolver).
 */
snap_rc arc_write_entry(arc_writer *w, struct archive_entry *e, int fd, snap_err *err);
snap_rc arc_write_buffer(arc_writer *w, const char *path, const void *buf, size_t len,
                         unsigned mode, time_t mtime, snap_err *err);
/* Forces the current part to close at this entry boundary (e.g. between tables). */
snap_rc arc_writer_cut(arc_writer *w, snap_err *err);
/* The number of the part that the last entry written went into. */
unsigned arc_writer_part_no(const arc_writer *w);
/* Closes and commits the open part, if any. */
snap_rc arc_writer_finish(arc_writer *w, snap_err *err);

/*
 * Reading one part: the stored bytes are hashed as they stream; arc_reader_close checks
 * size and SHA-256 against the manifest's and returns SNAP_EVERIFY on a mismatch.
 */
typedef struct arc_reader arc_reader;

snap_rc arc_reader_open(stg *store, const char *key, uint64_t size, const char *sha256,
                        const snap_ctx *ctx, prg_bar *progress, arc_reader **out,
                        snap_err *err);
/* *e is NULL at the end of the archive. The entry stays valid until the next call. */
snap_rc arc_reader_next(arc_reader *r, struct archive_entry **e, snap_err *err);
/* Reads the current entry's data; *got is 0 at its end. */
snap_rc arc_reader_data(arc_reader *r, void *buf, size_t cap, size_t *got, snap_err *err);
/* The current entry's next block of data at its offset in the file (sparse files have
 * holes between blocks); *len is 0 at its end. The block stays valid until the next call. */
snap_rc arc_reader_data_block(arc_reader *r, const void **buf, size_t *len, int64_t *offset,
                              snap_err *err);
/* Drains the stream and verifies it; then frees. Pass err NULL to only free. */
snap_rc arc_reader_close(arc_reader *r, snap_err *err);

/* Reads a whole part through libarchive and checks size and SHA-256 (snap verify). */
snap_rc arc_verify_part(stg *store, const char *key, uint64_t size, const char *sha256,
                        const snap_ctx *ctx, prg_bar *progress, uint64_t *entries,
                        snap_err *err);

/*
 * Writes the tar of one part to fd, decompressed (and opened, in an encrypted store), as
 * `snap cat` does. Without last, the end-of-archive blocks are left out so that the parts
 * of a component follow each other as one tar stream. Size and SHA-256 are checked at the
 * end (SNAP_EVERIFY); in an encrypted store every segment is authenticated before it is written.
 */
snap_rc arc_cat_part(stg *store, const char *key, uint64_t size, const char *sha256, bool last, int fd,
                     const snap_ctx *ctx, snap_err *err);

/* Whether an entry carries file capabilities (the security.capability xattr). */
bool arc_entry_has_caps(struct archive_entry *e);

#endif
