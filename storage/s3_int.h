/* s3_int.h: what the files of the S3 driver share: the driver and request types, the
 * request path (s3_request.c), credentials (s3_creds.c), multipart uploads
 * (s3_multipart.c), ranged reads (s3_read.c) and listing (s3_list.c); the driver table,
 * open/close and object calls are in s3.c. Private to storage/s3*.c. */
#ifndef SNAP_S3_INT_H
#define SNAP_S3_INT_H

#include <curl/curl.h>
#include <errno.h>
#include <ini.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>


#include "../common/http.h"
#include "../common/util.h"
#include "s3_chain.h"
#include "sigv4.h"
#include "storage_int.h"

#define MIB (1024ULL * 1024ULL)
#define S3_MIN_PART (5 * MIB)      /* S3's smallest part but the last */
#define S3_MAX_PART (5 * 1024 * MIB)
#define S3_MAX_PARTS 10000
#define S3_DELETE_BATCH 1000
#define S3_RETRY_BASE_MS 100
#define S3_RETRY_CAP_MS 8000

typedef enum s3_check {
    S3_CHECK_UNKNOWN = 0,
    S3_CHECK_IF_NONE_MATCH, /* the server answers 412 to If-None-Match: * */
    S3_CHECK_HEAD_THEN_PUT  /* fallback: HEAD before PUT, read back after */
} s3_check;

typedef struct s3_drv {
    snap_ctx *ctx;
    char *url;         /* s3://bucket/prefix, for messages */
    char *bucket;
    char *prefix;      /* "" or "some/prefix/" */
    char *endpoint;    /* as configured: "https://s3.eu-west-1.amazonaws.com" */
    char *base;        /* scheme://host[:port], with the bucket in the host when virtual */
    char *host;        /* the Host header */
    char *path_base;   /* "/bucket" for path-style, "" for virtual-hosted */
    bool path_style;
    char *region;
    s3_chain *chain;         /* the credentials (s3_chain.c) */
    const char *cred_source; /* "environment", "shared credentials file" ... (for describe) */
    char *ca_file;
    bool tls_verify;
    char *storage_class, *sse, *sse_kms_key_id;
    uint64_t part_size, download_chunk;
    long upload_conc, download_conc, retries, timeout, list_max_keys, list_max_pages;

    pthread_mutex_t lock; /* guards check and if_match */
    http_pool *curls;     /* easy handles kept for their live connections */
    s3_check check;
    int if_match;          /* the If-Match form a PUT takes (s3.c IFM_*): 0 not probed yet */
    s3_check check_forced; /* from [store] create_only_check, UNKNOWN for auto */
} s3_drv;

typedef struct s3_req s3_req;

struct s3_req {
    /* what to send */
    const char *method;
    const char *okey;        /* object key with the prefix; NULL for the bucket itself */
    const char *query;       /* canonical query from sigv4_query(), or NULL */
    const void *body;        /* sent from memory; NULL for none */
    size_t body_len;
    const char *body_sha256; /* when the caller has it; else computed once */
    const char *content_md5; /* base64 */
    const char *range;       /* "bytes=0-9" */
    const char *if_match;
    bool if_none_match;
    bool object_headers;     /* storage class and encryption (PUT, CreateMultipartUpload) */
    bool error_in_200;       /* CompleteMultipartUpload may answer 200 with an <Error> */
    bool cleanup;            /* an abort that must run even after SIGINT */
    const s3_drv *drv;       /* set by s3_request() */
    /* where a GET's body goes: to sink when set, else to resp */
    size_t (*sink)(const void *p, size_t n, void *arg);
    void *sink_arg;
    /* called before each attempt, e.g. to move a range past what arrived */
    void (*before_attempt)(s3_req *q, void *arg);

    /* what came back (of the last attempt) */
    long status;
    CURLcode curl_rc;
    char curl_msg[CURL_ERROR_SIZE];
    util_buf resp;
    char etag[128];
    char bucket_region[64];
    uint64_t content_length;
    bool have_length;
    uint64_t range_total;    /* the object's size, from Content-Range */
    bool have_total;
    char err_code[64];
    char err_msg[256];
    int attempts;
};


/* s3_request.c */
void s3_md5(const void *buf, size_t len, char out[25], char hexout[33]);
char *s3_okey(const s3_drv *d, const char *key);
snap_rc s3_check_key(const char *key, snap_err *err);
xmlDoc *s3_xml_parse(const char *buf, size_t len);
bool s3_xml_is(const xmlNode *n, const char *name);
xmlNode *s3_xml_child(const xmlNode *n, const char *name);
const char *s3_xml_text(const xmlNode *n, const char *name, char *out, size_t cap);
char *s3_xml_text_dup(const xmlNode *n, const char *name);
bool s3_interrupted(const s3_drv *d);
snap_rc s3_fail(s3_drv *d, const s3_req *q, snap_err *err);
snap_rc s3_request(s3_drv *d, s3_req *q, long ok_also, snap_err *err);
void s3_req_done(s3_req *q);

/* s3.c */
snap_rc s3_head_object(s3_drv *d, const char *okey, uint64_t *size, char *etag, size_t cap, snap_err *err);
/* A PUT of a whole object; If-None-Match: * and If-Match: if_match when set; attempts and
 * status (of the last answer) when not NULL. */
snap_rc s3_put_object(s3_drv *d, const char *okey, const void *buf, size_t len, bool if_none_match,
                      const char *if_match, int *attempts, long *status, snap_err *err);
snap_rc s3_conflict(s3_drv *d, const char *okey, snap_err *err);
snap_rc s3_put_create_only(s3_drv *d, const char *okey, const void *buf, size_t len, snap_err *err);

/* s3_creds.c */
const char *s3_env(const char *name);
snap_rc s3_load_credentials(s3_drv *d, const cfg *c, snap_err *err);

/* s3_multipart.c */
snap_rc s3_writer_open(void *drv, const char *key, unsigned flags, void **out, snap_err *err);
snap_rc s3_write(void *wp, const void *buf, size_t len, snap_err *err);
void s3_abort_upload(s3_drv *d, const char *okey, const char *upload_id);
snap_rc s3_commit(void *wp, snap_err *err);
void s3_abort(void *wp);

/* s3_read.c */
void s3_reader_free(void *rp);
snap_rc s3_reader_open(void *drv, const char *key, uint64_t off, uint64_t len, void **out, snap_err *err);
snap_rc s3_read(void *rp, void *buf, size_t cap, size_t *got, snap_err *err);

/* s3_list.c */
snap_rc s3_list(void *drv, const char *prefix, stg_list_fn fn, void *arg, snap_err *err);

#endif
