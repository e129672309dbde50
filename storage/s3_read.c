/*
 * s3_read.c: the S3 store reader: ranged GETs of download_chunk bytes, several at once,
 * each pinned with If-Match to the ETag the first saw, resumed where a broken one stopped.
 */
#include "s3_int.h"

/* ---------------------------------------------------------------- reader */

typedef struct s3_reader s3_reader;

typedef struct s3_chunk {
    s3_reader *r;
    uint64_t start;
    size_t len, got;
    unsigned char *buf;
    char range[64];
    pthread_t th;
    bool threaded;
    bool first;     /* the reader's first chunk, which learns the size and the ETag */
    uint64_t total; /* the object's size, known once the first chunk is in */
    long status;
    snap_rc rc;
    snap_err err;
} s3_chunk;

struct s3_reader {
    s3_drv *d;
    char *okey;
    char etag[128];
    uint64_t next, end; /* bytes [next, end) are still to be fetched */
    s3_chunk **q;       /* fetched or in flight, oldest first */
    size_t nq;
    s3_chunk *cur;      /* being consumed */
    size_t cur_off;
};

static size_t chunk_sink(const void *p, size_t n, void *arg)
{
    s3_chunk *c = arg;

    if (n > c->len - c->got)
        return 0; /* more than asked for: fail the transfer rather than guess */
    memcpy(c->buf + c->got, p, n);
    c->got += n;
    return n;
}

/* Before each attempt: ask only for what has not arrived (resume after a broken body). */
static void chunk_rearm(s3_req *q, void *arg)
{
    s3_chunk *c = arg;
    s3_reader *r = c->r;

    if (c->first && q->attempts > 1) {
        /* What the broken attempt told: the object's size, and the version to stick to. */
        if (q->have_total && c->start + c->len > q->range_total && q->range_total > c->start)
            c->len = (size_t)(q->range_total - c->start);
        if (r->etag[0] == '\0' && q->etag[0] != '\0') {
            snprintf(r->etag, sizeof r->etag, "%s", q->etag);
            q->if_match = r->etag;
        }
    }
    snprintf(c->range, sizeof c->range, "bytes=%llu-%llu",
             (unsigned long long)(c->start + c->got),
             (unsigned long long)(c->start + c->len - 1));
    q->range = c->range;
}

static void *chunk_thread(void *arg)
{
    s3_chunk *c = arg;
    s3_reader *r = c->r;
    s3_req q = {.method = "GET", .okey = r->okey, .if_match = r->etag[0] ? r->etag : NULL,
                .sink = chunk_sink, .sink_arg = c, .before_attempt = chunk_rearm};

    c->rc = s3_request(r->d, &q, 0, &c->err);
    c->status = q.curl_rc == CURLE_OK ? q.status : 0;
    if (c->first && c->rc == SNAP_OK) {
        if (q.have_total)
            c->total = q.range_total;
        else if (q.status == 200 && q.have_length)
            c->total = q.content_length; /* the whole object, Range or not */
        else
            c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: no object size in the "
                                                    "answer",
                            r->d->bucket, r->okey);
        if (c->start + c->len > c->total)
            c->len = c->total > c->start ? (size_t)(c->total - c->start) : 0;
        if (r->etag[0] == '\0')
            snprintf(r->etag, sizeof r->etag, "%s", q.etag);
    }
    if (c->rc == SNAP_ECONFLICT)
        c->rc = err_set(&c->err, SNAP_EVERIFY, 0, "s3://%s/%s changed while it was read",
                        r->d->bucket, r->okey);
    else if (c->rc == SNAP_OK && (q.status != 206 && !(q.status == 200 && c->start == 0)))
        c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: answered %ld to a ranged "
                                                "request",
                        r->d->bucket, r->okey, q.status);
    else if (c->rc == SNAP_OK && c->got != c->len)
        c->rc = err_set(&c->err, SNAP_EFAIL, 0, "s3 GET s3://%s/%s: %zu bytes of %zu arrived",
                        r->d->bucket, r->okey, c->got, c->len);
    s3_req_done(&q);
    return NULL;
}

static s3_chunk *new_chunk(s3_reader *r, uint64_t start, uint64_t len)
{
    s3_chunk *c = xcalloc(1, sizeof *c);

    c->r = r;
    c->start = start;
    c->len = (size_t)len;
    c->buf = xmalloc(c->len);
    return c;
}

/* Starts fetches until download_concurrency are queued or the range is exhausted. */
static void fill_queue(s3_reader *r)
{
    while (r->nq < (size_t)r->d->download_conc && r->next < r->end) {
        uint64_t n = r->end - r->next;
        s3_chunk *c;

        if (n > r->d->download_chunk)
            n = r->d->download_chunk;
        c = new_chunk(r, r->next, n);
        r->next += n;
        c->threaded = pthread_create(&c->th, NULL, chunk_thread, c) == 0;
        if (!c->threaded)
            chunk_thread(c);
        r->q[r->nq++] = c;
    }
}

static void chunk_free(s3_chunk *c)
{
    if (c == NULL)
        return;
    if (c->threaded)
        pthread_join(c->th, NULL);
    free(c->buf);
    free(c);
}

void s3_reader_free(void *rp)
{
    s3_reader *r = rp;

    if (r == NULL)
        return;
    chunk_free(r->cur);
    for (size_t i = 0; i < r->nq; i++)
        chunk_free(r->q[i]);
    free(r->q);
    free(r->okey);
    free(r);
}

snap_rc s3_reader_open(void *drv, const char *key, uint64_t off, uint64_t len, void **out,
                       snap_err *err)
{
    s3_drv *d = drv;
    s3_reader *r;
    s3_chunk *first;
    uint64_t size = 0;
    snap_rc rc;

    if ((rc = s3_check_key(key, err)) != SNAP_OK)
        return rc;
    r = xcalloc(1, sizeof *r);
    r->d = d;
    r->okey = s3_okey(d, key);
    r->q = xcalloc((size_t)d->download_conc, sizeof *r->q);

    /* The first range also tells the size and the ETag: no HEAD for small objects. */
    first = new_chunk(r, off, len != 0 && len < d->download_chunk ? len : d->download_chunk);
    first->first = true;
    chunk_thread(first);
    if (first->rc == SNAP_OK) {
        r->end = len == 0 || len > first->total - off ? first->total : off + len;
        r->next = off + first->len;
        if (first->len < d->download_chunk / 2) /* a small object: give back the rest */
            first->buf = xrealloc(first->buf, first->len);
        r->q[r->nq++] = first;
        fill_queue(r);
        *out = r;
        return SNAP_OK;
    }
    if (first->status != 416) { /* 416: empty, or off past the end: HEAD tells which */
        rc = first->rc;
        *err = first->err;
        chunk_free(first);
        goto fail;
    }
    chunk_free(first);
    r->etag[0] = '\0';
    if ((rc = s3_head_object(d, r->okey, &size, r->etag, sizeof r->etag, err)) != SNAP_OK)
        goto fail;
    if (off > size) {
        rc = err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: offset %llu is past its end (%llu bytes)",
                     d->bucket, r->okey, (unsigned long long)off, (unsigned long long)size);
        goto fail;
    }
    r->next = off;
    r->end = len == 0 || len > size - off ? size : off + len;
    fill_queue(r);
    *out = r;
    return SNAP_OK;
fail:
    s3_reader_free(r);
    return rc;
}

snap_rc s3_read(void *rp, void *buf, size_t cap, size_t *got, snap_err *err)
{
    s3_reader *r = rp;
    size_t n;

    *got = 0;
    if (r->cur != NULL && r->cur->rc != SNAP_OK) { /* a failed read stays failed */
        *err = r->cur->err;
        return r->cur->rc;
    }
    if (r->cur != NULL && r->cur_off == r->cur->len) {
        chunk_free(r->cur);
        r->cur = NULL;
    }
    if (r->cur == NULL) {
        if (r->nq == 0)
            return SNAP_OK; /* the end */
        r->cur = r->q[0];
        memmove(r->q, r->q + 1, (r->nq - 1) * sizeof *r->q);
        r->nq--;
        r->cur_off = 0;
        if (r->cur->threaded) {
            pthread_join(r->cur->th, NULL);
            r->cur->threaded = false;
        }
        if (r->cur->rc != SNAP_OK) {
            *err = r->cur->err;
            return r->cur->rc;
        }
        fill_queue(r); /* keep the window full while this chunk is consumed */
    }
    n = r->cur->len - r->cur_off;
    if (n > cap)
        n = cap;
    memcpy(buf, r->cur->buf + r->cur_off, n);
    r->cur_off += n;
    *got = n;
    return SNAP_OK;
}
