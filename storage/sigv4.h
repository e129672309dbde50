/*
 * sigv4.h: AWS Signature Version 4 for S3 requests, with OpenSSL's SHA-256 and HMAC.
 *
 * The project signs requests itself: Debian 12's libcurl 7.88 CURLOPT_AWS_SIGV4 encodes
 * paths and query strings in a way servers reject and never sends x-amz-content-sha256.
 * The functions are pure (no I/O, no clock) so they are tested against AWS's published
 * examples.
 */
#ifndef SNAP_SIGV4_H
#define SNAP_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* SHA-256 of an empty payload, the x-amz-content-sha256 of requests without a body. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct sigv4_header {
    const char *name;  /* any case; signed lowercase */
    const char *value; /* leading and trailing blanks are trimmed when signing */
} sigv4_header;

typedef struct sigv4_param {
    const char *name;
    const char *value; /* NULL for a bare name such as "uploads" (signed as "uploads=") */
} sigv4_param;

typedef struct sigv4_request {
    const char *method;          /* "GET" */
    const char *path;            /* the canonical URI, already encoded: "/bucket/a%24b" */
    const char *query;           /* canonical query from sigv4_query(), or NULL */
    const sigv4_header *headers; /* every header to sign, Host included, in any order */
    size_t nheaders;
    const char *payload_hash;    /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;        /* "20130524T000000Z", the request's x-amz-date */
    const char *region;          /* "us-east-1" */
    const char *service;         /* "s3" */
} sigv4_request;

/*
 * URI-encodes s as SigV4 requires: A-Z a-z 0-9 - . _ ~ stay, every other byte becomes
 * %XX (uppercase hex); '/' stays when keep_slash (object keys in paths). Caller frees.
 */
char *sigv4_uri_encode(const char *s, bool keep_slash);

/*
 * The canonical query string of n parameters: names and values encoded, sorted by
 * encoded name then value, joined with '&'. It is also a valid URL query. Caller frees.
 */
char *sigv4_query(const sigv4_param *p, size_t n);

/* The canonical request (method, URI, query, headers, signed headers, hash). Caller frees. */
char *sigv4_canonical_request(const sigv4_request *r);

/* "host;range;x-amz-date": the SignedHeaders list. Caller frees. */
char *sigv4_signed_headers(const sigv4_request *r);

/* The string to sign for a canonical request. Caller frees. */
char *sigv4_string_to_sign(const sigv4_request *r, const char *canonical_request);

/* kSigning = HMAC chain over "AWS4"+secret, date (YYYYMMDD), region, service, "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32]);

/* The 64 hex digit signature of a request. */
void sigv4_signature(const sigv4_request *r, const char *secret, char hex[65]);

/* The whole Authorization header value ("AWS4-HMAC-SHA256 Credential=..."). Caller frees. */
char *sigv4_authorization(const sigv4_request *r, const char *access_key, const char *secret);

/* Hex SHA-256 of a buffer. */
void sigv4_sha256_hex(const void *buf, size_t len, char hex[65]);

/* "20130524T000000Z" of a time. */
void sigv4_amz_date(time_t t, char out[17]);

#endif
