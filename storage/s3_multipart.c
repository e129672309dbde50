/*
 * s3_multipart.c: the S3 store writer: one PUT for a small object, else a multipart
 * upload whose parts go up in their own threads, completed at commit, aborted on abort.
 */
#include "s3_int.h"

/* ---------------------------------------------------------------- writer */

typedef struct s3_writer s3_writer;

typedef struct s3_part {
    s3_writer *w;
    int num;
    unsigned char *buf;
    size_t len;
    pthread_t th;
    bool threaded;
    snap_rc rc;
    snap_err err;
    char etag[128];
} s3_part;

struct s3_writer {
    s3_drv *d;
    char *okey;
    unsigned flags;
    unsigned char *buf; /* the part being filled */
    size_t len, cap;
    char *upload_id;
    char *upload_query_fmt;
    s3_part **inflight; /* oldest first */
    size_t ninflight;
    char **etags;       /* of finished parts, by number - 1 */
    size_t netags;
    int nparts;         /* parts started */
    uint64_t total;
    unsigned char *spare; /* a full-size buffer back from a finished part */
};

snap_rc s3_writer_open(void *drv, const char *key, unsigned flags, void **out,
                       snap_err *err)
{
    s3_drv *d = drv;
    s3_writer *w;
    snap_rc rc;

    if ((rc = s3_check_key(key, err)) != SNAP_OK)
        return rc;
    w = xcalloc(1, sizeof *w);
    w->d = d;
    w->okey = s3_okey(d, key);
    w->flags = flags;
    w->inflight = xcalloc((size_t)d->upload_conc, sizeof *w->inflight);
    *out = w;
    return SNAP_OK;
}

/*
 * CreateMultipartUpload is the one request that is not idempotent: when an attempt
 * reached the server but its answer was lost, the retry made a second upload. Abort
 * every other upload of this key (one writer owns a key, so none is anyone else's).
 */
static void abort_twins(s3_writer *w)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploads", NULL}, {"prefix", w->okey}};
    char *query = sigv4_query(p, 2);
    s3_req q = {.method = "GET", .query = query};
    snap_err e;
    xmlDoc *doc = NULL;

    if (s3_request(d, &q, 0, &e) == SNAP_OK) {
        doc = s3_xml_parse(q.resp.p, q.resp.len);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        for (xmlNode *c = root ? root->children : NULL; c; c = c->next) {
            char key[1100], id[512];
            if (!s3_xml_is(c, "Upload"))
                continue;
            s3_xml_text(c, "Key", key, sizeof key);
            s3_xml_text(c, "UploadId", id, sizeof id);
            if (strcmp(key, w->okey) == 0 && strcmp(id, w->upload_id) != 0) {
                log_debug(d->ctx, "aborting a duplicate upload of s3://%s/%s", d->bucket, key);
                s3_abort_upload(d, key, id);
            }
        }
    }
    xmlFreeDoc(doc);
    s3_req_done(&q);
    free(query);
}

static snap_rc create_upload(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploads", NULL}};
    char *query = sigv4_query(p, 1);
    s3_req q = {.method = "POST", .okey = w->okey, .query = query, .object_headers = true};
    snap_rc rc = s3_request(d, &q, 0, err);
    xmlDoc *doc = NULL;

    if (rc == SNAP_OK) {
        doc = s3_xml_parse(q.resp.p, q.resp.len);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (root != NULL && s3_xml_is(root, "InitiateMultipartUploadResult"))
            w->upload_id = s3_xml_text_dup(root, "UploadId");
        if (w->upload_id == NULL || w->upload_id[0] == '\0')
            rc = err_set(err, SNAP_EFAIL, 0, "s3 POST s3://%s/%s?uploads: no UploadId in the "
                                             "answer",
                         d->bucket, w->okey);
    }
    if (rc == SNAP_OK && q.attempts > 1)
        abort_twins(w);
    xmlFreeDoc(doc);
    s3_req_done(&q);
    free(query);
    return rc;
}

static void *part_thread(void *arg)
{
    s3_part *p = arg;
    s3_writer *w = p->w;
    char num[16];
    snprintf(num, sizeof num, "%d", p->num);
    sigv4_param qp[] = {{"partNumber", num}, {"uploadId", w->upload_id}};
    char *query = sigv4_query(qp, 2);
    s3_req q = {.method = "PUT", .okey = w->okey, .query = query, .body = p->buf,
                .body_len = p->len};

    p->rc = s3_request(w->d, &q, 0, &p->err);
    if (p->rc == SNAP_OK && q.etag[0] == '\0')
        p->rc = err_set(&p->err, SNAP_EFAIL, 0, "s3 PUT s3://%s/%s part %d: no ETag in the answer",
                        w->d->bucket, w->okey, p->num);
    snprintf(p->etag, sizeof p->etag, "%s", q.etag);
    s3_req_done(&q);
    free(query);
    return NULL;
}

/* Waits for the oldest part in flight; keeps its ETag and its buffer. */
static snap_rc join_oldest(s3_writer *w, snap_err *err)
{
    s3_part *p = w->inflight[0];
    snap_rc rc;

    if (p->threaded)
        pthread_join(p->th, NULL);
    memmove(w->inflight, w->inflight + 1, (w->ninflight - 1) * sizeof *w->inflight);
    w->ninflight--;
    rc = p->rc;
    if (rc == SNAP_OK) {
        if ((size_t)p->num > w->netags) {
            w->etags = xrealloc(w->etags, (size_t)p->num * sizeof *w->etags);
            for (size_t i = w->netags; i < (size_t)p->num; i++)
                w->etags[i] = NULL;
            w->netags = (size_t)p->num;
        }
        w->etags[p->num - 1] = xstrdup(p->etag);
    } else if (err != NULL) {
        *err = p->err;
    }
    if (w->spare == NULL && p->len == w->d->part_size)
        w->spare = p->buf;
    else
        free(p->buf);
    free(p);
    return rc;
}

/* Hands the filled buffer to an upload thread; waits while too many are in flight. */
static snap_rc start_part(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    s3_part *p;
    snap_rc rc;

    if (w->upload_id == NULL && (rc = create_upload(w, err)) != SNAP_OK)
        return rc;
    if (w->nparts == S3_MAX_PARTS)
        return err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: more than %d parts; raise [store] "
                                           "part_size",
                       d->bucket, w->okey, S3_MAX_PARTS);
    p = xcalloc(1, sizeof *p);
    p->w = w;
    p->num = ++w->nparts;
    p->buf = w->buf;
    p->len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    p->threaded = pthread_create(&p->th, NULL, part_thread, p) == 0;
    if (!p->threaded)
        part_thread(p); /* no thread to be had: upload in this one */
    w->inflight[w->ninflight++] = p;
    /* At most upload_concurrency buffers: those in flight, then the one to fill. */
    while (w->ninflight >= (size_t)d->upload_conc)
        if ((rc = join_oldest(w, err)) != SNAP_OK)
            return rc;
    return SNAP_OK;
}

snap_rc s3_write(void *wp, const void *buf, size_t len, snap_err *err)
{
    s3_writer *w = wp;
    const unsigned char *src = buf;
    size_t ps = (size_t)w->d->part_size;
    snap_rc rc;

    while (len > 0) {
        if (w->len == ps && (rc = start_part(w, err)) != SNAP_OK)
            return rc;
        if (w->cap < ps && w->len + len > w->cap) {
            if (w->spare != NULL && w->len == 0) {
                free(w->buf);
                w->buf = w->spare;
                w->spare = NULL;
                w->cap = ps;
            } else {
                size_t cap = w->cap ? w->cap : 64 * 1024;
                while (cap < w->len + len && cap < ps)
                    cap *= 2;
                if (cap > ps)
                    cap = ps;
                w->buf = xrealloc(w->buf, cap);
                w->cap = cap;
            }
        }
        size_t n = ps - w->len < len ? ps - w->len : len;
        if (n > w->cap - w->len)
            n = w->cap - w->len;
        memcpy(w->buf + w->len, src, n);
        w->len += n;
        w->total += n;
        src += n;
        len -= n;
    }
    return SNAP_OK;
}

static void writer_free(s3_writer *w)
{
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    for (size_t i = 0; i < w->netags; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->inflight);
    free(w->buf);
    free(w->spare);
    free(w->upload_id);
    free(w->okey);
    free(w);
}

void s3_abort_upload(s3_drv *d, const char *okey, const char *upload_id)
{
    sigv4_param p[] = {{"uploadId", upload_id}};
    char *query = sigv4_query(p, 1);
    s3_req q = {.method = "DELETE", .okey = okey, .query = query, .cleanup = true};
    snap_err e;

    if (s3_request(d, &q, 404, &e) != SNAP_OK)
        log_warn(d->ctx, "cannot abort the upload of s3://%s/%s: %s; `snap gc` removes it later",
                 d->bucket, okey, e.msg);
    s3_req_done(&q);
    free(query);
}

static char *complete_body(s3_writer *w)
{
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = xmlNewNode(NULL, BAD_CAST "CompleteMultipartUpload");
    xmlChar *mem = NULL;
    int size = 0;
    char num[24], *out;

    xmlDocSetRootElement(doc, root);
    for (size_t i = 0; i < w->netags; i++) {
        xmlNode *part = xmlNewChild(root, NULL, BAD_CAST "Part", NULL);
        snprintf(num, sizeof num, "%zu", i + 1);
        xmlNewTextChild(part, NULL, BAD_CAST "PartNumber", BAD_CAST num);
        xmlNewTextChild(part, NULL, BAD_CAST "ETag", BAD_CAST w->etags[i]);
    }
    xmlDocDumpMemory(doc, &mem, &size);
    out = xstrdup((const char *)mem);
    xmlFree(mem);
    xmlFreeDoc(doc);
    return out;
}

static snap_rc complete_upload(s3_writer *w, snap_err *err)
{
    s3_drv *d = w->d;
    sigv4_param p[] = {{"uploadId", w->upload_id}};
    char *query = sigv4_query(p, 1);
    char *body = complete_body(w);
    s3_req q = {.method = "POST", .okey = w->okey, .query = query, .body = body,
                .body_len = strlen(body), .error_in_200 = true};
    snap_rc rc = s3_request(d, &q, 0, err);

    if (rc == SNAP_ENOTFOUND && q.attempts > 1 && !strcmp(q.err_code, "NoSuchUpload")) {
        /* An earlier attempt completed it and its answer was lost: the object says so. */
        uint64_t size = 0;
        snap_err e2;
        if (s3_head_object(d, w->okey, &size, NULL, 0, &e2) == SNAP_OK && size == w->total)
            rc = SNAP_OK;
    }
    s3_req_done(&q);
    free(query);
    free(body);
    return rc;
}

snap_rc s3_commit(void *wp, snap_err *err)
{
    s3_writer *w = wp;
    s3_drv *d = w->d;
    snap_rc rc = SNAP_OK;

    if (w->upload_id == NULL) {
        /* Smaller than a part: one PUT. */
        if (w->flags & STG_CREATE_ONLY)
            rc = s3_put_create_only(d, w->okey, w->buf, w->len, err);
        else
            rc = s3_put_object(d, w->okey, w->buf, w->len, false, NULL, NULL, NULL, err);
        writer_free(w);
        return rc;
    }
    if (w->len > 0 && (rc = start_part(w, err)) != SNAP_OK)
        goto fail;
    while (w->ninflight > 0)
        if ((rc = join_oldest(w, err)) != SNAP_OK)
            goto fail;
    for (size_t i = 0; i < w->netags; i++)
        if (w->etags[i] == NULL) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3://%s/%s: part %zu went missing", d->bucket,
                         w->okey, i + 1);
            goto fail;
        }
    if (w->flags & STG_CREATE_ONLY) {
        /* Completing is not conditional on every server: check just before, the weak way. */
        rc = s3_head_object(d, w->okey, NULL, NULL, 0, err);
        if (rc == SNAP_OK) {
            rc = s3_conflict(d, w->okey, err);
            goto fail;
        }
        if (rc != SNAP_ENOTFOUND)
            goto fail;
    }
    if ((rc = complete_upload(w, err)) != SNAP_OK)
        goto fail;
    writer_free(w);
    return SNAP_OK;
fail:
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    s3_abort_upload(d, w->okey, w->upload_id);
    writer_free(w);
    return rc;
}

void s3_abort(void *wp)
{
    s3_writer *w = wp;

    if (w == NULL)
        return;
    while (w->ninflight > 0)
        join_oldest(w, NULL);
    if (w->upload_id != NULL)
        s3_abort_upload(w->d, w->okey, w->upload_id);
    writer_free(w);
}
