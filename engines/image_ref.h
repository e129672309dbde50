/* image.h: container image references: parsing and normalisation as Docker does them,
 * finding them in Kubernetes and Compose YAML (libyaml), and rewriting them in place. */
#ifndef SNAP_IMAGE_H
#define SNAP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/ctx.h"
#include "../common/errors.h"

/* The longest digest we accept: "sha512:" and 128 hex digits. */
#define IMG_DIGEST_MAX 136

/*
 * A parsed, normalised reference. "nginx" becomes domain docker.io, path library/nginx,
 * tag latest; "ghcr.io/o/app:1@sha256:…" keeps both tag and digest.
 */
typedef struct img_ref img_ref;

/* SNAP_EUSAGE with a message naming the reference when it is not valid. */
snap_rc img_ref_parse(const char *s, img_ref **out, snap_err *err);
void img_ref_free(img_ref *r);

const char *img_ref_written(const img_ref *r);   /* the text as given */
const char *img_ref_domain(const img_ref *r);    /* docker.io, ghcr.io, 127.0.0.1:5000 */
const char *img_ref_api_host(const img_ref *r);  /* registry-1.docker.io for docker.io */
const char *img_ref_path(const img_ref *r);      /* library/nginx: the repository in the API */
const char *img_ref_name(const img_ref *r);      /* docker.io/library/nginx */
/* The tag: "latest" when neither a tag nor a digest was written, NULL for a digest alone. */
const char *img_ref_tag(const img_ref *r);
const char *img_ref_digest(const img_ref *r);    /* NULL unless written */
/* name[:tag][@digest]: docker.io/library/nginx:latest */
const char *img_ref_canonical(const img_ref *r);
/* What the manifests endpoint is asked for: the digest when there is one, else the tag. */
const char *img_ref_reference(const img_ref *r);

/* "sha256:" and 64 lowercase hex digits, or "sha512:" and 128. */
bool img_digest_valid(const char *d);

/*
 * The text --pin writes for a reference written as `written` that resolved to digest:
 * "nginx:1.25" -> "nginx:1.25@sha256:…", "nginx" -> "nginx@sha256:…". A reference that
 * already holds a digest is returned as it is. Caller frees.
 */
char *img_pinned_text(const char *written, const char *digest);

/* One image reference found in a YAML file. */
typedef struct img_found {
    const char *file;      /* as given to the scanner */
    const char *value;     /* the scalar's value: the reference as written */
    const char *where;     /* "Deployment/web container app", "service web" */
    unsigned long line;    /* 1-based, of the scalar */
    unsigned long column;  /* 1-based */
    size_t off, len;       /* byte range of the scalar in the file, quotes included */
    int style;             /* libyaml's yaml_scalar_style_t */
} img_found;

/* The references found in one or more files, in file order. */
typedef struct img_scan img_scan;

img_scan *img_scan_new(void);
void img_scan_free(img_scan *s);
/* A scan polls ctx's interruption flag (SNAP_EINTR) while it works; ctx may be NULL. */
void img_scan_set_ctx(img_scan *s, const snap_ctx *ctx);

/*
 * Finds the image references of every YAML document in buf: the containers,
 * initContainers and ephemeralContainers of Pods and of the pod templates of
 * Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs,
 * CronJobs and PodTemplates (also inside a kind: List), and services.*.image of Compose
 * files (with `<<` merge keys). Documents of other kinds are skipped. A YAML error is
 * SNAP_EFAIL with "FILE:LINE:COLUMN: problem" as its message; so is a file whose aliases
 * and merge keys would take more work than a bounded budget to follow.
 */
snap_rc img_scan_buffer(img_scan *s, const char *file, const char *buf, size_t len,
                        snap_err *err);
/* Reads the file (at most 64 MiB) and scans it. */
snap_rc img_scan_file(img_scan *s, const char *path, snap_err *err);
/* The work the last buffer took, in steps: a node looked into, an alias followed. The
 * budget is 8 Mi steps plus 4 per byte of the buffer; past it the scan stops. */
uint64_t img_scan_steps(const img_scan *s);

size_t img_scan_count(const img_scan *s);
const img_found *img_scan_get(const img_scan *s, size_t i);

/*
 * Rewrites buf with each found reference i of s (all found in this buf) replaced by
 * values[i] (NULL leaves it), touching no other byte: a plain or quoted scalar keeps its
 * quotes. A scalar that cannot be edited in place (a block scalar, or one whose source
 * text differs from its value, as with escapes or folding) is written as a double-quoted
 * scalar instead, unless it is a block scalar, which is an error naming file and line.
 * The result is parsed again and checked to hold the new values at the same places.
 * *out is a new buffer (caller frees).
 */
snap_rc img_rewrite(const img_scan *s, const char *buf, size_t len,
                    const char *const *values, char **out, size_t *outlen, snap_err *err);

/* True for names ending in .yaml or .yml (any case). */
bool img_yaml_name(const char *name);

/*
 * The YAML files of a root: the root itself when it is a file (whatever its name), else
 * every *.yaml and *.yml below it, in name order, skipping hidden directories and what
 * the exclude globs (relative to root) match. *out is an array of n paths (caller frees).
 */
snap_rc img_yaml_files(const char *root, const char *const *exclude, size_t nexclude,
                       char ***out, size_t *n, snap_err *err);

/* Reads a whole file of at most max bytes (NUL-terminated); SNAP_EFAIL if larger. */
snap_rc img_read_file(const char *path, size_t max, char **buf, size_t *len, snap_err *err);

#endif
