/* registry.h: a client of the OCI distribution API on libcurl: tags resolved to digests,
 * manifests fetched and verified, digests checked. Anonymous, basic (from Docker's
 * config.json) and bearer-token authentication, as `docker pull` does. */
#ifndef SNAP_REGISTRY_H
#define SNAP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/ctx.h"
#include "image_ref.h"

/* What HEAD and GET of a manifest ask for: without it registries answer 404 or 400. */
#define REG_ACCEPT                                                                        \
    "application/vnd.oci.image.index.v1+json, "                                           \
    "application/vnd.oci.image.manifest.v1+json, "                                        \
    "application/vnd.docker.distribution.manifest.list.v2+json, "                         \
    "application/vnd.docker.distribution.manifest.v2+json"

/* Manifests larger than this are refused (containerd's limit). */
#define REG_MANIFEST_MAX ((size_t)4 << 20)

typedef struct reg_opts {
    /* Registries (host[:port]) that may be reached over plain HTTP or TLS that is not
     * verified, as Docker's insecure-registries. Loopback registries always may. */
    const char *const *insecure;
    size_t ninsecure;
    /* Hosts (host or host:port) besides the registry's own that may receive its credentials
     * as a token service (a realm on another host). auth.docker.io for docker.io is built in. */
    const char *const *token_hosts;
    size_t ntoken_hosts;
    /* The directory of config.json; NULL: $DOCKER_CONFIG, else ~/.docker. */
    const char *docker_config;
    long timeout_ms;         /* one request, 0: 30 s */
    long connect_timeout_ms; /* 0: 10 s */
} reg_opts;

typedef struct reg_client reg_client;

/* Reads the Docker config (a missing file is no credentials; a broken one is an error). */
snap_rc reg_client_new(const reg_opts *opts, const snap_ctx *ctx, reg_client **out,
                       snap_err *err);
void reg_client_free(reg_client *c);

/* Where credentials came from, for messages ("/root/.docker/config.json"). */
const char *reg_client_config_path(const reg_client *c);

typedef enum reg_op {
    REG_RESOLVE, /* HEAD the reference for its digest, then GET the manifest by digest */
    REG_HEAD,    /* HEAD only: the digest the reference names now */
    REG_EXISTS   /* HEAD ref's repository at `digest`: does it still exist */
} reg_op;

/* One look-up; the out fields are filled by reg_run and freed by reg_job_clear. */
typedef struct reg_job {
    const img_ref *ref; /* in */
    reg_op op;          /* in */
    const char *digest; /* in, REG_EXISTS: the digest to look for */

    snap_rc rc;                         /* out: SNAP_OK, or the failure in err */
    snap_err err;                       /* names the image and the registry */
    bool exists;                        /* out, REG_EXISTS: false when the registry said 404 */
    char resolved[IMG_DIGEST_MAX + 1];  /* out: Docker-Content-Digest */
    char *media_type;                   /* out, REG_RESOLVE */
    char *manifest;                     /* out, REG_RESOLVE: the exact bytes, digest checked */
    size_t manifest_len;
} reg_job;

void reg_job_clear(reg_job *j);

/*
 * Runs the jobs on up to `workers` threads, each with its own connections; tokens and
 * what each registry asks for are shared. Every job gets its own result; the call
 * itself does not fail. Polls ctx's interruption flag.
 */
void reg_run(reg_client *c, reg_job *jobs, size_t n, int workers);

#endif
