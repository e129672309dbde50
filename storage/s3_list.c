/*
 * s3_list.c: listing an S3 prefix: ListObjectsV2 pages parsed as they stream (SAX),
 * bounded in keys and pages, the continuation tokens checked for loops.
 */
#include "s3_int.h"

/*
 * Listings are read as they arrive, with libxml2's SAX parser: one page's entries are
 * kept (at most max-keys of them, each field bounded) and handed out once the page is
 * complete, so memory does not grow with the listing, and a retried page is not handed
 * out twice.
 */
#define LIST_FIELD_MAX 1100         /* an S3 key is at most 1024 bytes, a token far less */
#define LIST_PAGE_BYTES (64 * MIB)  /* no page of at most 1000 keys is this large */

enum { LF_NONE, LF_KEY, LF_SIZE, LF_MTIME, LF_TRUNCATED, LF_TOKEN };

typedef struct list_entry {
    char *key;
    uint64_t size;
    time_t mtime;
} list_entry;

typedef struct list_page {
    xmlParserCtxtPtr xml;
    int depth, field;
    bool in_contents, root_ok, bad;
    const char *why; /* what was wrong with the page, when bad */
    char text[LIST_FIELD_MAX + 1];
    size_t tlen;
    char key[LIST_FIELD_MAX + 1], size[32], mtime[64];
    char truncated[16], token[LIST_FIELD_MAX + 1];
    list_entry *v;
    size_t n, max;
    size_t bytes;
} list_page;

static void page_bad(list_page *pg, const char *why)
{
    if (!pg->bad)
        pg->why = why;
    pg->bad = true;
}

static void list_start(void *ctx, const xmlChar *name, const xmlChar *prefix, const xmlChar *uri, int nns,
                       const xmlChar **ns, int nattr, int ndef, const xmlChar **attrs)
{
    list_page *pg = ctx;
    const char *n = (const char *)name;

    (void)prefix, (void)uri, (void)nns, (void)ns, (void)nattr, (void)ndef, (void)attrs;
    pg->depth++;
    pg->field = LF_NONE;
    pg->tlen = 0;
    if (pg->depth == 1) {
        pg->root_ok = strcmp(n, "ListBucketResult") == 0;
    } else if (pg->depth == 2 && strcmp(n, "Contents") == 0) {
        pg->in_contents = true;
        pg->key[0] = pg->size[0] = pg->mtime[0] = '\0';
    } else if (pg->depth == 2) {
        pg->field = strcmp(n, "IsTruncated") == 0             ? LF_TRUNCATED
                    : strcmp(n, "NextContinuationToken") == 0 ? LF_TOKEN
                                                              : LF_NONE;
    } else if (pg->depth == 3 && pg->in_contents) {
        pg->field = strcmp(n, "Key") == 0            ? LF_KEY
                    : strcmp(n, "Size") == 0         ? LF_SIZE
                    : strcmp(n, "LastModified") == 0 ? LF_MTIME
                                                     : LF_NONE;
    }
}

static void list_chars(void *ctx, const xmlChar *ch, int len)
{
    list_page *pg = ctx;

    if (pg->field == LF_NONE || len <= 0)
        return;
    if (pg->tlen + (size_t)len > LIST_FIELD_MAX) {
        page_bad(pg, "a key or token longer than S3 allows");
        return;
    }
    memcpy(pg->text + pg->tlen, ch, (size_t)len);
    pg->tlen += (size_t)len;
}

/* A short field, cut to fit: what is longer than these is not a size, date or boolean. */
static void copy_field(char *out, size_t cap, const char *text, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;

    memcpy(out, text, n);
    out[n] = '\0';
}

static void list_end(void *ctx, const xmlChar *name, const xmlChar *prefix, const xmlChar *uri)
{
    list_page *pg = ctx;

    (void)name, (void)prefix, (void)uri;
    pg->text[pg->tlen] = '\0';
    switch (pg->field) {
    case LF_KEY: memcpy(pg->key, pg->text, pg->tlen + 1); break;
    case LF_SIZE: copy_field(pg->size, sizeof pg->size, pg->text, pg->tlen); break;
    case LF_MTIME: copy_field(pg->mtime, sizeof pg->mtime, pg->text, pg->tlen); break;
    case LF_TRUNCATED: copy_field(pg->truncated, sizeof pg->truncated, pg->text, pg->tlen); break;
    case LF_TOKEN: memcpy(pg->token, pg->text, pg->tlen + 1); break;
    default: break;
    }
    pg->field = LF_NONE;
    pg->tlen = 0;
    if (pg->depth == 2 && pg->in_contents) {
        pg->in_contents = false;
        if (pg->n >= pg->max) {
            page_bad(pg, "more keys in one page than asked for");
        } else {
            list_entry *e = &pg->v[pg->n++];
            e->key = xstrdup(pg->key);
            e->size = strtoull(pg->size, NULL, 10);
            e->mtime = util_parse_time(pg->mtime, NULL);
        }
    }
    pg->depth--;
}

static void page_clear(list_page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        free(pg->v[i].key);
    pg->n = 0;
    if (pg->xml != NULL) {
        xmlFreeParserCtxt(pg->xml);
        pg->xml = NULL;
    }
}

/* Before each attempt of a page: a fresh parser, no entries. */
static void page_rearm(s3_req *q, void *arg)
{
    xmlSAXHandler sax; /* the parser keeps its own copy */
    list_page *pg = arg;
    size_t max = pg->max;
    list_entry *v = pg->v;

    (void)q;
    page_clear(pg);
    memset(pg, 0, sizeof *pg);
    pg->max = max;
    pg->v = v;
    memset(&sax, 0, sizeof sax); /* no DTD, no entities: only elements and text */
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = list_start;
    sax.endElementNs = list_end;
    sax.characters = list_chars;
    pg->xml = xmlCreatePushParserCtxt(&sax, pg, NULL, 0, NULL);
    if (pg->xml == NULL)
        abort();
    xmlCtxtUseOptions(pg->xml, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static size_t page_sink(const void *p, size_t n, void *arg)
{
    list_page *pg = arg;

    pg->bytes += n;
    if (pg->bytes > LIST_PAGE_BYTES || n > INT32_MAX) {
        page_bad(pg, "a page larger than any listing");
        return 0;
    }
    if (!pg->bad && xmlParseChunk(pg->xml, p, (int)n, 0) != 0)
        page_bad(pg, "not XML");
    return n;
}

/* The continuation tokens seen in one listing, as 64-bit hashes (open addressing). */
typedef struct token_set {
    uint64_t *v;
    size_t cap, n;
} token_set;

/* Adds the token; false when it was there already. */
static bool token_set_add(token_set *t, const char *tok)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *c = (const unsigned char *)tok; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    h |= 1; /* 0 marks a free slot */
    if (2 * (t->n + 1) > t->cap) {
        token_set bigger = {xcalloc(t->cap ? t->cap * 2 : 64, sizeof(uint64_t)), t->cap ? t->cap * 2 : 64, 0};
        for (size_t i = 0; i < t->cap; i++)
            if (t->v[i] != 0) {
                size_t j = (size_t)(t->v[i] % bigger.cap);
                while (bigger.v[j] != 0)
                    j = (j + 1) % bigger.cap;
                bigger.v[j] = t->v[i];
                bigger.n++;
            }
        free(t->v);
        *t = bigger;
    }
    for (size_t j = (size_t)(h % t->cap);; j = (j + 1) % t->cap) {
        if (t->v[j] == h)
            return false;
        if (t->v[j] == 0) {
            t->v[j] = h;
            t->n++;
            return true;
        }
    }
}

/* Ends a page and hands its entries under prefix to fn; *more and *token say what follows. */
static snap_rc page_deliver(list_page *pg, const char *bucket, const char *prefix, stg_list_fn fn, void *arg,
                            bool *go_on, bool *more, char **token, snap_err *err)
{
    size_t plen = strlen(prefix);

    *more = false;
    if (!pg->bad && xmlParseChunk(pg->xml, NULL, 0, 1) != 0)
        page_bad(pg, "not XML");
    if (pg->bad || !pg->root_ok)
        return err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: unreadable answer (%s)", bucket,
                       pg->bad ? pg->why : "not a ListBucketResult");
    for (size_t i = 0; i < pg->n && *go_on; i++) {
        stg_entry e;
        if (strncmp(pg->v[i].key, prefix, plen) != 0)
            continue;
        e.key = pg->v[i].key + plen;
        e.size = pg->v[i].size;
        e.mtime = pg->v[i].mtime;
        *go_on = fn(&e, arg);
    }
    free(*token);
    *token = xstrdup(pg->token);
    *more = strcmp(pg->truncated, "true") == 0;
    if (*more && (*token)[0] == '\0') {
        *more = false;
        return err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: truncated listing without a "
                                           "continuation token", bucket);
    }
    return SNAP_OK;
}

snap_rc s3_parse_list_int(const char *bucket, const char *prefix, const char *body, size_t len,
                          stg_list_fn fn, void *arg, bool *go_on, bool *more, char **token, snap_err *err)
{
    list_page pg = {.max = 1000};
    snap_rc rc;

    pg.v = xcalloc(pg.max, sizeof *pg.v);
    page_rearm(NULL, &pg);
    page_sink(body, len, &pg);
    rc = page_deliver(&pg, bucket, prefix, fn, arg, go_on, more, token, err);
    page_clear(&pg);
    free(pg.v);
    return rc;
}

snap_rc s3_list(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err)
{
    s3_drv *d = drv;
    char *full = xasprintf("%s%s", d->prefix, prefix ? prefix : "");
    char *token = NULL, max[16];
    list_page pg = {.max = (size_t)d->list_max_keys};
    token_set seen = {0};
    snap_rc rc = SNAP_OK;
    bool more = true, go_on = true;
    long pages = 0;

    pg.v = xcalloc(pg.max, sizeof *pg.v);
    snprintf(max, sizeof max, "%ld", d->list_max_keys);
    while (more && go_on) {
        sigv4_param p[4] = {{"list-type", "2"}, {"prefix", full}, {"max-keys", max}};
        size_t np = 3;
        if (s3_interrupted(d)) {
            rc = err_set(err, SNAP_EINTR, 0, "interrupted");
            break;
        }
        if (++pages > d->list_max_pages) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: the listing goes on past %ld pages",
                         d->bucket, d->list_max_pages);
            err_hint(err, "a store this large needs a larger [store] list_max_pages; otherwise the server "
                          "keeps saying there is more");
            break;
        }
        if (token != NULL)
            p[np++] = (sigv4_param){"continuation-token", token};
        char *query = sigv4_query(p, np);
        s3_req q = {.method = "GET", .query = query, .sink = page_sink, .sink_arg = &pg,
                    .before_attempt = page_rearm};

        rc = s3_request(d, &q, 0, err);
        free(query);
        s3_req_done(&q);
        if (rc != SNAP_OK)
            break;
        rc = page_deliver(&pg, d->bucket, d->prefix, fn, arg, &go_on, &more, &token, err);
        if (rc != SNAP_OK)
            break;
        if (more && !token_set_add(&seen, token)) {
            rc = err_set(err, SNAP_EFAIL, 0, "s3 GET s3://%s?list-type=2: the server sent the same "
                                             "continuation token twice",
                         d->bucket);
            err_hint(err, "the listing would never end: check the S3 endpoint or the proxy in front of it");
            more = false;
        }
    }
    page_clear(&pg);
    free(pg.v);
    free(seen.v);
    free(token);
    free(full);
    return rc;
}
