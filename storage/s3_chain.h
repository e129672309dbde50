/*
 * s3_chain.h: the AWS credential chain of the S3 driver, private to storage/s3*.c.
 *
 * s3_chain_new() picks the source the way the AWS CLI does (docs/s3.md has the order)
 * from local configuration only: the environment, ~/.aws/credentials, ~/.aws/config and
 * [store]. Nothing is fetched then. s3_chain_get() hands out a copy of the credentials in
 * force, fetching them on first use and again before temporary ones expire; it is safe
 * across threads, so a part or range sent late in a long transfer gets fresh keys.
 */
#ifndef SNAP_S3_CHAIN_H
#define SNAP_S3_CHAIN_H

#include <stdbool.h>
#include <time.h>

#include "../common/cfg.h"
#include "../common/ctx.h"

typedef struct s3_drv s3_drv;

/* One set of credentials. expires is 0 for keys that do not expire. */
typedef struct s3_key {
    char *access_key, *secret_key, *session_token;
    time_t expires;
} s3_key;

void s3_key_free(s3_key *k); /* cleanses the secrets; leaves k zeroed */
void s3_key_copy(s3_key *dst, const s3_key *src);

typedef struct s3_chain s3_chain;

/* Picks the source for the driver d (its url, ctx, region are set). */
snap_rc s3_chain_new(s3_drv *d, const cfg *c, const char *profile, s3_chain **out, snap_err *err);
void s3_chain_free(s3_chain *ch); /* NULL: nothing */

/* The credentials in force, fetched or renewed when due. Caller frees out. */
snap_rc s3_chain_get(s3_drv *d, s3_key *out, snap_err *err);

/* The server refused keys it was given: renew at the next s3_chain_get(). False when the
 * source hands out keys that never change (another try would be refused alike). */
bool s3_chain_expire(s3_drv *d, const s3_key *refused);

/* "web identity (AssumeRoleWithWebIdentity)": which source, for -v, describe and hints. */
const char *s3_chain_source(const s3_chain *ch);

/* ---------------------------------------------------------------- s3_sts.c */

/* What a fetch needs from the driver: TLS settings, timeouts, the log. */
typedef struct s3_fetch_env {
    snap_ctx *ctx;
    const char *ca_file;
    bool tls_verify;
    long timeout; /* seconds */
} s3_fetch_env;

typedef struct s3_role {
    const char *role_arn;
    const char *session_name;
    const char *external_id;     /* or NULL */
    long duration;               /* seconds, 0: the server's default */
    const char *endpoint;        /* https://sts.REGION.amazonaws.com, from config */
    const char *region;          /* the signing region */
} s3_role;

/* STS AssumeRole, signed with src's keys. */
snap_rc s3_sts_assume_role(const s3_fetch_env *e, const s3_role *r, const s3_key *src,
                           s3_key *out, snap_err *err);
/* STS AssumeRoleWithWebIdentity with the token read from token_file (unsigned). */
snap_rc s3_sts_web_identity(const s3_fetch_env *e, const s3_role *r, const char *token_file,
                            s3_key *out, snap_err *err);
/* Container credentials (ECS, EKS Pod Identity): GET url with the authorization token. */
snap_rc s3_container_fetch(const s3_fetch_env *e, const char *url, const char *token,
                           const char *token_file, s3_key *out, snap_err *err);
/* IMDSv2 at endpoint ("http://169.254.169.254"): a session token, the role, its keys. */
snap_rc s3_imds_fetch(const s3_fetch_env *e, const char *endpoint, long timeout_s,
                      s3_key *out, snap_err *err);
/* credential_process: runs command with sh -c, reads its JSON (Version 1). */
snap_rc s3_process_fetch(const s3_fetch_env *e, const char *command, s3_key *out,
                         snap_err *err);

#endif
