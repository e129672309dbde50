/* archive.c: pax tar through libarchive, zstd, SHA-256 of the stored bytes, parts. */
#include "arc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "../common/util.h"

#define IO_BUF (1024 * 1024)
#define ZSTD_JOB (2u << 20) /* per compression worker: bounds memory, keeps both cores busy */
#define DEFAULT_PART_SIZE (256ULL << 20)

typedef struct part {
    unsigned no;
    char *key;
    uint64_t size, entries, raw;
    char sha256[65];
} part;

struct arc_parts {
    pthread_mutex_t mu;
    char *prefix;
    unsigned next;
    part *v;
    size_t n, cap;
    bool sorted;
    part *known; /* parts already in the store, by content (arc_parts_know) */
    size_t nknown, capknown;
    uint64_t reused_bytes;
};

arc_parts *arc_parts_new(const char *prefix)
{
    arc_parts *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->prefix = xstrdup(prefix);
    return p;
}

void arc_parts_free(arc_parts *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].key);
    free(p->v);
    for (size_t i = 0; i < p->nknown; i++)
        free(p->known[i].key);
    free(p->known);
    free(p->prefix);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

const char *arc_parts_prefix(const arc_parts *p)
{
    return p->prefix;
}

size_t arc_parts_count(const arc_parts *p)
{
    return p->n;
}

static int part_cmp(const void *a, const void *b)
{
    const part *x = a, *y = b;
    return x->no < y->no ? -1 : x->no > y->no;
}

void arc_parts_get(const arc_parts *cp, size_t i, const char **key, uint64_t *size,
                   const char **sha256, uint64_t *entries, uint64_t *raw_bytes)
{
    arc_parts *p = (arc_parts *)(uintptr_t)cp; /* sorting once is not a visible change */

    if (!p->sorted) {
        qsort(p->v, p->n, sizeof *p->v, part_cmp);
        p->sorted = true;
    }
    *key = p->v[i].key;
    *size = p->v[i].size;
    *sha256 = p->v[i].sha256;
    *entries = p->v[i].entries;
    *raw_bytes = p->v[i].raw;
}

unsigned arc_parts_no(const arc_parts *p, size_t i)
{
    const char *key, *sha;
    uint64_t size, entries, raw;

    arc_parts_get(p, i, &key, &size, &sha, &entries, &raw); /* sorts */
    return p->v[i].no;
}

uint64_t arc_parts_reused_bytes(const arc_parts *p)
{
    return p->reused_bytes;
}

void arc_parts_know(arc_parts *p, const char *key, uint64_t size, const char *sha256, uint64_t entries,
                    uint64_t raw_bytes)
{
    part k = {.key = xstrdup(key), .size = size, .entries = entries, .raw = raw_bytes};

    snprintf(k.sha256, sizeof k.sha256, "%s", sha256);
    pthread_mutex_lock(&p->mu);
    if (p->nknown == p->capknown) {
        p->capknown = p->capknown ? p->capknown * 2 : 16;
        p->known = xrealloc(p->known, p->capknown * sizeof *p->known);
    }
    p->known[p->nknown++] = k;
    pthread_mutex_unlock(&p->mu);
}

/* A stored part with these bytes (same size and SHA-256), or NULL. Call under mu. */
static const part *known_find(const arc_parts *p, uint64_t size, const char *sha256)
{
    for (size_t i = 0; i < p->nknown; i++)
        if (p->known[i].size == size && strcmp(p->known[i].sha256, sha256) == 0)
            return &p->known[i];
    return NULL;
}

static unsigned parts_next(arc_parts *p)
{
    unsigned no;
    pthread_mutex_lock(&p->mu);
    no = p->next++;
    pthread_mutex_unlock(&p->mu);
    return no;
}

static void parts_add_locked(arc_parts *p, const part *pt)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n++] = *pt;
    p->sorted = false;
}

static void parts_add(arc_parts *p, const part *pt)
{
    pthread_mutex_lock(&p->mu);
    parts_add_locked(p, pt);
    pthread_mutex_unlock(&p->mu);
}

unsigned arc_parts_add_ref(arc_parts *p, const char *key, uint64_t size, const char *sha256, uint64_t entries,
                           uint64_t raw_bytes)
{
    part r = {.key = xstrdup(key), .size = size, .entries = entries, .raw = raw_bytes};

    snprintf(r.sha256, sizeof r.sha256, "%s", sha256);
    pthread_mutex_lock(&p->mu);
    r.no = p->next++;
    parts_add_locked(p, &r);
    p->reused_bytes += size;
    pthread_mutex_unlock(&p->mu);
    return r.no;
}

/*
 * A part whose bytes the store holds already is not committed: the upload is dropped and
 * the part refers to the stored one. True when it did.
 */
static bool parts_add_or_reuse(arc_parts *p, part *pt)
{
    const part *k;

    pthread_mutex_lock(&p->mu);
    k = known_find(p, pt->size, pt->sha256);
    if (k != NULL) {
        free(pt->key);
        pt->key = xstrdup(k->key);
        p->reused_bytes += pt->size;
        parts_add_locked(p, pt);
    }
    pthread_mutex_unlock(&p->mu);
    return k != NULL;
}

struct arc_writer {
    stg *store;
    arc_parts *parts;
    arc_opts opts;
    const snap_ctx *ctx;
    struct archive_entry_linkresolver *links;
    char *buf;
    ZSTD_CCtx *zc;
    ZSTD_outBuffer zout;
    /* the open part */
    struct archive *a;
    stg_writer *out;
    util_sha256 *hash;
    part cur;
    snap_err werr; /* what the write callback met */
    bool wfailed;
};

/* Hands compressed bytes to the store and the checksum. */
static bool emit(arc_writer *w, const void *buf, size_t len)
{
    if (len == 0)
        return true;
    if (stg_write(w->out, buf, len, &w->werr) != SNAP_OK) {
        w->wfailed = true;
        return false;
    }
    util_sha256_update(w->hash, buf, len);
    w->cur.size += len;
    return true;
}

/* Compresses what libarchive produced; mode ZSTD_e_end closes the frame. */
static bool compress(arc_writer *w, const void *buf, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, len, 0};
    size_t left;

    do {
        w->zout.pos = 0;
        left = ZSTD_compressStream2(w->zc, &w->zout, &in, mode);
        if (ZSTD_isError(left)) {
            err_set(&w->werr, SNAP_EFAIL, 0, "zstd: %s", ZSTD_getErrorName(left));
            w->wfailed = true;
            return false;
        }
        if (!emit(w, w->zout.dst, w->zout.pos))
            return false;
    } while (mode == ZSTD_e_end ? left > 0 : in.pos < in.size);
    return true;
}

static la_ssize_t write_cb(struct archive *a, void *client, const void *buf, size_t len)
{
    arc_writer *w = client;

    (void)a;
    if (w->wfailed || !compress(w, buf, len, ZSTD_e_continue))
        return -1;
    return (la_ssize_t)len;
}

snap_rc arc_writer_new(stg *store, arc_parts *parts, const arc_opts *opts, const snap_ctx *ctx,
                       arc_writer **out, snap_err *err)
{
    arc_writer *w = xcalloc(1, sizeof *w);

    w->store = store;
    w->parts = parts;
    w->opts = *opts;
    if (w->opts.zstd_level == 0)
        w->opts.zstd_level = 3;
    if (w->opts.zstd_threads == 0)
        w->opts.zstd_threads = 2;
    if (w->opts.part_size == 0)
        w->opts.part_size = DEFAULT_PART_SIZE;
    w->ctx = ctx;
    w->links = archive_entry_linkresolver_new();
    archive_entry_linkresolver_set_strategy(w->links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
    w->buf = xmalloc(IO_BUF);
    /*
     * zstd runs here rather than in libarchive's filter so that the job size, and with it
     * the memory of the compression workers, is ours to bound.
     */
    w->zc = ZSTD_createCCtx();
    w->zout.size = ZSTD_CStreamOutSize();
    w->zout.dst = xmalloc(w->zout.size);
    if (w->zc == NULL ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, w->opts.zstd_level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1))) {
        arc_writer_free(w);
        return err_set(err, SNAP_EFAIL, 0, "cannot set up zstd level %d", opts->zstd_level);
    }
    if (w->opts.zstd_threads > 1 &&
        (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, w->opts.zstd_threads)) ||
         ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize, ZSTD_JOB)) ||
         /* whole_overlap: each job starts with the whole window of what the previous one
          * saw, so that matches across files are not lost at job boundaries (overlapLog 9);
          * it costs a third more CPU, and on table rows it gains nothing */
         (w->opts.whole_overlap && ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_overlapLog, 9)))))
        log_warn(ctx, "this zstd library compresses on one thread only");
    *out = w;
    return SNAP_OK;
}

static snap_rc arc_fail(arc_writer *w, snap_err *err, const char *what)
{
    if (w->wfailed) {
        *err = w->werr;
        return err->code;
    }
    return err_set(err, SNAP_EFAIL, archive_errno(w->a), "%s %s: %s", what, w->cur.key,
                   archive_error_string(w->a) ? archive_error_string(w->a) : "archive error");
}

static void part_drop(arc_writer *w)
{
    if (w->a != NULL)
        archive_write_free(w->a); /* may call write_cb: out is still valid here */
    w->a = NULL;
    stg_abort(w->out);
    w->out = NULL;
    util_sha256_free(w->hash);
    w->hash = NULL;
    free(w->cur.key);
    memset(&w->cur, 0, sizeof w->cur);
}

static snap_rc part_open(arc_writer *w, snap_err *err)
{
    snap_rc rc;

    memset(&w->cur, 0, sizeof w->cur);
    w->cur.no = parts_next(w->parts);
    /* sealed parts say so: stock tar cannot read them, `snap cat` can */
    w->cur.key = xasprintf("%s.%04u.tar.zst%s", w->parts->prefix, w->cur.no, stg_encrypted(w->store) ? ".enc" : "");
    rc = stg_writer_open(w->store, w->cur.key, 0, &w->out, err);
    if (rc != SNAP_OK) {
        free(w->cur.key);
        w->cur.key = NULL;
        return rc;
    }
    w->hash = util_sha256_new();
    w->wfailed = false;
    w->a = archive_write_new();
    archive_write_set_format_pax_restricted(w->a);
    ZSTD_CCtx_reset(w->zc, ZSTD_reset_session_only);
    /* No padding after the tar end: the part is one zstd frame that stock tools read. */
    archive_write_set_bytes_per_block(w->a, 128 * 1024);
    archive_write_set_bytes_in_last_block(w->a, 1);
    if (archive_write_open2(w->a, w, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
        goto fail;
    return SNAP_OK;
fail:
    rc = arc_fail(w, err, "cannot start part");
    part_drop(w);
    return rc;
}

static snap_rc part_close(arc_writer *w, snap_err *err)
{
    snap_rc rc;

    if (w->a == NULL)
        return SNAP_OK;
    if (archive_write_close(w->a) != ARCHIVE_OK || !compress(w, NULL, 0, ZSTD_e_end)) {
        rc = arc_fail(w, err, "cannot finish part");
        part_drop(w);
        return rc;
    }
    archive_write_free(w->a);
    w->a = NULL;
    util_sha256_final(w->hash, w->cur.sha256);
    w->hash = NULL;
    if (parts_add_or_reuse(w->parts, &w->cur)) {
        log_debug(w->ctx, "part of %llu bytes is stored already as %s", (unsigned long long)w->cur.size,
                  w->cur.key);
        stg_abort(w->out);
        w->out = NULL;
        memset(&w->cur, 0, sizeof w->cur);
        return SNAP_OK;
    }
    rc = stg_commit(w->out, err);
    w->out = NULL;
    if (rc != SNAP_OK) {
        free(w->cur.key);
        memset(&w->cur, 0, sizeof w->cur);
        return rc;
    }
    parts_add(w->parts, &w->cur);
    memset(&w->cur, 0, sizeof w->cur);
    return SNAP_OK;
}

static snap_rc ensure_part(arc_writer *w, snap_err *err)
{
    /* zstd holds back output while it works, so the stored count lags: the raw count
     * bounds a part too (stored bytes never much exceed raw bytes). */
    if (w->a != NULL && (w->cur.size >= w->opts.part_size || w->cur.raw >= 4 * w->opts.part_size)) {
        snap_rc rc = part_close(w, err);
        if (rc != SNAP_OK)
            return rc;
    }
    return w->a == NULL ? part_open(w, err) : SNAP_OK;
}

snap_rc arc_write_entry(arc_writer *w, struct archive_entry *e, int fd, snap_err *err)
{
    struct archive_entry *spare = NULL;
    la_int64_t left;
    snap_rc rc = ensure_part(w, err);

    if (rc != SNAP_OK)
        return rc;
    if (archive_entry_nlink(e) > 1 && archive_entry_filetype(e) != AE_IFDIR)
        archive_entry_linkify(w->links, &e, &spare);
    if (archive_write_header(w->a, e) < ARCHIVE_WARN)
        return arc_fail(w, err, "cannot write to part");
    left = archive_entry_size_is_set(e) && archive_entry_hardlink(e) == NULL ? archive_entry_size(e) : 0;
    while (left > 0 && fd >= 0) {
        size_t want = left < IO_BUF ? (size_t)left : IO_BUF;
        ssize_t n = read(fd, w->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_sys(err, SNAP_EFAIL, "cannot read %s", archive_entry_pathname(e));
        if (n == 0) {
            log_warn(w->ctx, "%s shrank while it was read; the rest is stored as zeros",
                     archive_entry_pathname(e));
            break;
        }
        if (archive_write_data(w->a, w->buf, (size_t)n) < 0)
            return arc_fail(w, err, "cannot write to part");
        left -= n;
        w->cur.raw += (uint64_t)n;
        prg_add(w->opts.progress, (uint64_t)n);
        if (ctx_interrupted(w->ctx, err))
            return SNAP_EINTR;
    }
    if (archive_write_finish_entry(w->a) < ARCHIVE_WARN)
        return arc_fail(w, err, "cannot write to part");
    w->cur.entries++;
    return SNAP_OK;
}

snap_rc arc_write_buffer(arc_writer *w, const char *path, const void *buf, size_t len,
                         unsigned mode, time_t mtime, snap_err *err)
{
    struct archive_entry *e = archive_entry_new();
    snap_rc rc = ensure_part(w, err);

    if (rc != SNAP_OK) {
        archive_entry_free(e);
        return rc;
    }
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, mode);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_mtime(e, mtime, 0);
    archive_entry_set_nlink(e, 1);
    if (archive_write_header(w->a, e) < ARCHIVE_WARN ||
        (len > 0 && archive_write_data(w->a, buf, len) < 0) ||
        archive_write_finish_entry(w->a) < ARCHIVE_WARN)
        rc = arc_fail(w, err, "cannot write to part");
    else {
        w->cur.entries++;
        w->cur.raw += len;
        prg_add(w->opts.progress, len);
    }
    archive_entry_free(e);
    return rc;
}

unsigned arc_writer_part_no(const arc_writer *w)
{
    return w->cur.no;
}

snap_rc arc_writer_cut(arc_writer *w, snap_err *err)
{
    return part_close(w, err);
}

snap_rc arc_writer_finish(arc_writer *w, snap_err *err)
{
    return part_close(w, err);
}

void arc_writer_free(arc_writer *w)
{
    if (w == NULL)
        return;
    if (w->a != NULL || w->out != NULL)
        part_drop(w);
    archive_entry_linkresolver_free(w->links);
    ZSTD_freeCCtx(w->zc);
    free(w->zout.dst);
    free(w->buf);
    free(w);
}

struct arc_reader {
    stg_reader *in;
    struct archive *a;
    util_sha256 *hash;
    char *key;
    uint64_t size, want_size;
    char want_sha[65];
    prg_bar *progress;
    const snap_ctx *ctx;
    char *buf;
    snap_err rerr;
    bool rfailed;
};

static la_ssize_t read_cb(struct archive *a, void *client, const void **buf)
{
    arc_reader *r = client;
    size_t got = 0;

    (void)a;
    if (r->rfailed)
        return -1;
    if (stg_read(r->in, r->buf, IO_BUF, &got, &r->rerr) != SNAP_OK) {
        r->rfailed = true;
        return -1;
    }
    util_sha256_update(r->hash, r->buf, got);
    r->size += got;
    prg_add(r->progress, got);
    *buf = r->buf;
    return (la_ssize_t)got;
}

snap_rc arc_reader_open(stg *store, const char *key, uint64_t size, const char *sha256,
                        const snap_ctx *ctx, prg_bar *progress, arc_reader **out, snap_err *err)
{
    arc_reader *r;
    snap_rc rc;
    stg_reader *in;

    *out = NULL;
    rc = stg_reader_open(store, key, 0, 0, &in, err);
    if (rc == SNAP_ENOTFOUND) {
        err_set(err, SNAP_EVERIFY, ENOENT, "part %s is missing from the store", key);
        err_hint(err, "the snapshot is damaged; `snap verify` lists every missing or damaged part");
        return SNAP_EVERIFY;
    }
    if (rc != SNAP_OK)
        return rc;
    r = xcalloc(1, sizeof *r);
    r->in = in;
    r->key = xstrdup(key);
    r->want_size = size;
    snprintf(r->want_sha, sizeof r->want_sha, "%s", sha256);
    r->progress = progress;
    r->ctx = ctx;
    r->buf = xmalloc(IO_BUF);
    r->hash = util_sha256_new();
    r->a = archive_read_new();
    archive_read_support_filter_zstd(r->a);
    archive_read_support_format_tar(r->a);
    if (archive_read_open(r->a, r, NULL, read_cb, NULL) != ARCHIVE_OK) {
        /* An unreadable header is most often damage: say which. */
        snap_err tmp;
        rc = arc_reader_close(r, &tmp);
        if (rc == SNAP_EVERIFY)
            *err = tmp;
        else
            err_set(err, SNAP_EVERIFY, 0, "part %s is not a tar.zst archive", key);
        return SNAP_EVERIFY;
    }
    *out = r;
    return SNAP_OK;
}

/* Reads what is left and compares size and SHA-256 with the manifest's. */
static snap_rc drain_and_check(arc_reader *r, snap_err *err)
{
    char hex[65];
    size_t got;

    if (r->hash == NULL) /* checked already, after a read error */
        return SNAP_OK;
    if (!r->rfailed) {
        do {
            if (stg_read(r->in, r->buf, IO_BUF, &got, &r->rerr) != SNAP_OK) {
                r->rfailed = true;
                break;
            }
            util_sha256_update(r->hash, r->buf, got);
            r->size += got;
        } while (got > 0);
    }
    if (r->rfailed) {
        *err = r->rerr;
        return err->code;
    }
    util_sha256_final(r->hash, hex);
    r->hash = NULL;
    if (r->size != r->want_size) {
        err_set(err, SNAP_EVERIFY, 0, "part %s has %llu bytes, the manifest says %llu (truncated or replaced)",
                r->key, (unsigned long long)r->size, (unsigned long long)r->want_size);
        err_hint(err, "the snapshot is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (strcmp(hex, r->want_sha) != 0) {
        err_set(err, SNAP_EVERIFY, 0, "part %s fails its checksum: sha256 %s, the manifest says %s",
                r->key, hex, r->want_sha);
        err_hint(err, "the snapshot is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    return SNAP_OK;
}

/* A libarchive error while reading: damage if the bytes disagree with the manifest. */
static snap_rc read_fail(arc_reader *r, snap_err *err)
{
    char msg[512];
    snap_rc rc;

    snprintf(msg, sizeof msg, "%s", archive_error_string(r->a) ? archive_error_string(r->a) : "read error");
    if (r->rfailed) {
        *err = r->rerr;
        return err->code;
    }
    archive_read_free(r->a);
    r->a = NULL;
    rc = drain_and_check(r, err);
    if (rc != SNAP_OK)
        return rc;
    return err_set(err, SNAP_EVERIFY, 0, "part %s cannot be read: %s", r->key, msg);
}

/* After a failure the archive is gone: every later call fails the same way. */
static snap_rc read_after_fail(const arc_reader *r, snap_err *err)
{
    return err_set(err, SNAP_EVERIFY, 0, "part %s cannot be read past an error", r->key);
}

snap_rc arc_reader_next(arc_reader *r, struct archive_entry **e, snap_err *err)
{
    if (r->a == NULL)
        return read_after_fail(r, err);
    int rc = archive_read_next_header(r->a, e);

    if (rc == ARCHIVE_EOF) {
        *e = NULL;
        return SNAP_OK;
    }
    if (rc < ARCHIVE_WARN)
        return read_fail(r, err);
    if (archive_entry_pathname(*e) == NULL) { /* every reader compares names */
        err_set(err, SNAP_EVERIFY, 0, "part %s has an entry without a name", r->key);
        err_hint(err, "the snapshot was altered or is damaged; nothing was changed");
        return SNAP_EVERIFY;
    }
    if (ctx_interrupted(r->ctx, err))
        return SNAP_EINTR;
    return SNAP_OK;
}

snap_rc arc_reader_data(arc_reader *r, void *buf, size_t cap, size_t *got, snap_err *err)
{
    if (r->a == NULL)
        return read_after_fail(r, err);
    la_ssize_t n = archive_read_data(r->a, buf, cap);

    if (n < 0)
        return read_fail(r, err);
    *got = (size_t)n;
    return SNAP_OK;
}

snap_rc arc_reader_data_block(arc_reader *r, const void **buf, size_t *len, int64_t *offset, snap_err *err)
{
    la_int64_t off = 0;
    int rc = archive_read_data_block(r->a, buf, len, &off);

    if (rc == ARCHIVE_EOF) {
        *len = 0;
        *offset = 0;
        return SNAP_OK;
    }
    if (rc < ARCHIVE_WARN)
        return read_fail(r, err);
    if (off < 0)
        return err_set(err, SNAP_EVERIFY, 0, "part %s: a data block at a negative offset", r->key);
    *offset = off;
    return SNAP_OK;
}

snap_rc arc_reader_close(arc_reader *r, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    if (r == NULL)
        return SNAP_OK;
    if (r->a != NULL)
        archive_read_free(r->a);
    r->a = NULL;
    if (err != NULL)
        rc = drain_and_check(r, err);
    stg_reader_free(r->in);
    util_sha256_free(r->hash);
    free(r->key);
    free(r->buf);
    free(r);
    return rc;
}

snap_rc arc_verify_part(stg *store, const char *key, uint64_t size, const char *sha256,
                        const snap_ctx *ctx, prg_bar *progress, uint64_t *entries, snap_err *err)
{
    arc_reader *r;
    struct archive_entry *e;
    snap_rc rc = arc_reader_open(store, key, size, sha256, ctx, progress, &r, err);

    *entries = 0;
    if (rc != SNAP_OK)
        return rc;
    for (;;) {
        rc = arc_reader_next(r, &e, err);
        if (rc != SNAP_OK || e == NULL)
            break;
        (*entries)++;
        if (archive_read_data_skip(r->a) < ARCHIVE_WARN) {
            rc = read_fail(r, err);
            break;
        }
    }
    if (rc != SNAP_OK) {
        arc_reader_close(r, NULL);
        return rc;
    }
    return arc_reader_close(r, err);
}

/* ---- snap cat --------------------------------------------------------------------- */

#define TAR_END 1024 /* two zero blocks end a tar archive */

typedef struct cat_out {
    int fd;
    unsigned char hold[TAR_END];
    size_t held;
} cat_out;

static snap_rc write_all(int fd, const unsigned char *p, size_t n, snap_err *err)
{
    return util_write_all(fd, p, n) ? SNAP_OK : err_sys(err, SNAP_EFAIL, "cannot write the archive to standard output");
}

/* Writes all but the last TAR_END bytes seen so far. */
static snap_rc cat_emit(cat_out *o, const unsigned char *p, size_t n, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    if (n >= TAR_END) {
        rc = write_all(o->fd, o->hold, o->held, err);
        if (rc == SNAP_OK)
            rc = write_all(o->fd, p, n - TAR_END, err);
        memcpy(o->hold, p + n - TAR_END, TAR_END);
        o->held = TAR_END;
        return rc;
    }
    if (o->held + n > TAR_END) {
        size_t out = o->held + n - TAR_END;
        rc = write_all(o->fd, o->hold, out, err);
        memmove(o->hold, o->hold + out, o->held - out);
        o->held -= out;
    }
    memcpy(o->hold + o->held, p, n);
    o->held += n;
    return rc;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

snap_rc arc_cat_part(stg *store, const char *key, uint64_t size, const char *sha256, bool last, int fd,
                     const snap_ctx *ctx, snap_err *err)
{
    arc_reader r = {0};
    ZSTD_DStream *dz = ZSTD_createDStream();
    size_t outcap = ZSTD_DStreamOutSize(), got = 0, zret = 1;
    unsigned char *out = xmalloc(outcap);
    cat_out o = {.fd = fd};
    snap_rc rc = stg_reader_open(store, key, 0, 0, &r.in, err);

    r.key = xstrdup(key);
    r.want_size = size;
    snprintf(r.want_sha, sizeof r.want_sha, "%s", sha256);
    r.buf = xmalloc(IO_BUF);
    r.hash = util_sha256_new();
    if (rc == SNAP_ENOTFOUND)
        rc = err_set(err, SNAP_EVERIFY, ENOENT, "part %s is missing from the store", key);
    while (rc == SNAP_OK && (rc = stg_read(r.in, r.buf, IO_BUF, &got, err)) == SNAP_OK && got > 0) {
        ZSTD_inBuffer in = {r.buf, got, 0};
        util_sha256_update(r.hash, r.buf, got);
        r.size += got;
        while (rc == SNAP_OK && in.pos < in.size) {
            ZSTD_outBuffer ob = {out, outcap, 0};
            zret = ZSTD_decompressStream(dz, &ob, &in);
            rc = ZSTD_isError(zret) ? err_set(err, SNAP_EVERIFY, 0, "part %s: %s", key, ZSTD_getErrorName(zret))
                                    : cat_emit(&o, out, ob.pos, err);
        }
        if (rc == SNAP_OK && ctx_interrupted(ctx, err))
            rc = SNAP_EINTR;
    }
    if (rc == SNAP_OK && zret != 0)
        rc = err_set(err, SNAP_EVERIFY, 0, "part %s ends inside its zstd frame", key);
    if (rc == SNAP_OK)
        rc = drain_and_check(&r, err);
    if (rc == SNAP_OK && !(o.held == TAR_END && !last && all_zero(o.hold, o.held)))
        rc = write_all(fd, o.hold, o.held, err);
    ZSTD_freeDStream(dz);
    free(out);
    stg_reader_free(r.in);
    util_sha256_free(r.hash);
    free(r.key);
    free(r.buf);
    return rc;
}

bool arc_entry_has_caps(struct archive_entry *e)
{
    const char *name;
    const void *value;
    size_t size;
    bool found = false;

    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
        found = found || (name != NULL && strcmp(name, "security.capability") == 0);
    archive_entry_xattr_reset(e);
    return found;
}
