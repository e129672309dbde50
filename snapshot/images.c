/* images.c: the images source: deployment manifests captured as files, with every image
 * reference they name resolved to its digest and the registry's manifest kept. */
#include <errno.h>
#include <fts.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../engines/image_ref.h"
#include "../engines/registry.h"
#include "../common/util.h"
#include "snapshot.h"

/* The files scanned, with what stat said before reading them. */
typedef struct seen_file {
    char *path;
    struct stat st;
} seen_file;

typedef struct seen_list {
    seen_file *v;
    size_t n, cap;
} seen_list;

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Scans one file, keeping its stat from before the read; takes ownership of path. */
static snap_rc scan_one(img_scan *scan, char *path, seen_list *seen, snap_err *err)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        snap_rc rc = err_sys(err, err_from_errno(errno), "cannot read %s", path);
        free(path);
        return rc;
    }
    if (seen->n == seen->cap) {
        seen->cap = seen->cap ? seen->cap * 2 : 16;
        seen->v = xrealloc(seen->v, seen->cap * sizeof *seen->v);
    }
    seen->v[seen->n].path = path;
    seen->v[seen->n++].st = st;
    return img_scan_file(scan, path, err);
}

/* One distinct reference, as written, and what the registry said of it. */
typedef struct uref {
    const char *written;  /* borrowed from the scan */
    const img_found *first;
    img_ref *ref;         /* NULL when it did not parse */
    reg_job job;
} uref;

static int uref_cmp(const void *a, const void *b)
{
    return strcmp(((const uref *)a)->written, ((const uref *)b)->written);
}

static uref *uref_find(uref *u, size_t n, const char *written)
{
    uref key = {.written = written};
    return bsearch(&key, u, n, sizeof *u, uref_cmp);
}

static snap_rc client_for(snp_capture *c, reg_client **out, int *jobs, snap_err *err)
{
    const src_opts *so = snp_opts(c);
    reg_opts o = {0};

    o.insecure = (const char *const *)so->insecure_registries.v;
    o.ninsecure = so->insecure_registries.n;
    o.token_hosts = (const char *const *)so->token_hosts.v;
    o.ntoken_hosts = so->token_hosts.n;
    o.docker_config = so->docker_config;
    o.timeout_ms = so->registry_timeout > 0 ? (long)so->registry_timeout * 1000 : 30000;
    o.connect_timeout_ms = o.timeout_ms < 10000 ? o.timeout_ms : 10000;
    *jobs = (int)so->registry_jobs;
    return reg_client_new(&o, snp_ctx(c), out, err);
}

static void where_prefix(snap_err *err, const img_found *f)
{
    if (strstr(err->msg, f->file) == NULL)
        err_prefix(err, "%s:%lu", f->file, f->line);
}
/* The archive name of a registry manifest kept in a snapshot:
 * .snap-meta/images/sha256/<hex>.json (caller frees). */
static char *img_meta_name(const char *digest)
{
    const char *colon = strchr(digest, ':');
    return xasprintf(ARC_META_PREFIX "images/%.*s/%s.json", (int)(colon - digest), digest,
                     colon + 1);
}

/* One capture of images: what it reads, finds and resolves, phase by phase. */
typedef struct img_cap {
    snp_capture *c;
    snap_ctx *ctx;
    util_strv raw, roots, exclude, insecure;
    seen_list scanned;
    img_scan *scan;
    reg_client *client;
    uref *u; /* each distinct reference once */
    size_t nu, nfiles;
    reg_job *jobs;
    size_t njobs;
    bool allow_unresolved;
    int workers;
} img_cap;

static void copy_strv(util_strv *to, const util_strv *from)
{
    for (size_t i = 0; i < from->n; i++)
        util_strv_add_one(from->v[i], to);
}

/* The source's settings and its roots, each once and absolute. */
static snap_rc read_roots(img_cap *ic, snap_err *err)
{
    const src_opts *so = snp_opts(ic->c);
    snap_rc rc = SNAP_OK;

    copy_strv(&ic->raw, &so->manifests);
    copy_strv(&ic->exclude, &so->exclude);
    copy_strv(&ic->insecure, &so->insecure_registries);
    ic->allow_unresolved = so->allow_unresolved;
    if (ic->raw.n == 0) {
        rc = err_set(err, SNAP_EUSAGE, 0, "[source %s] names no manifests", snp_source_name(ic->c));
        err_hint(err, "add `manifests = deploy/k8s` to the section, or use --images PATH");
    }
    for (size_t i = 0; rc == SNAP_OK && i < ic->raw.n; i++) {
        char *abs;
        rc = util_abspath_err(ic->raw.v[i], &abs, err);
        for (size_t j = 0; j < ic->roots.n && abs != NULL; j++)
            if (strcmp(ic->roots.v[j], abs) == 0) {
                free(abs);
                abs = NULL;
            }
        if (abs != NULL)
            util_strv_push(&ic->roots, abs);
    }
    return rc;
}

/* 1. Finds every reference; a YAML error names file and line and stops the snap. */
static snap_rc find_references(img_cap *ic, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; rc == SNAP_OK && i < ic->roots.n; i++) {
        char **files;
        size_t n;
        rc = img_yaml_files(ic->roots.v[i], (const char *const *)ic->exclude.v, ic->exclude.n, &files, &n, err);
        for (size_t k = 0; k < n; k++) {
            if (rc == SNAP_OK)
                rc = scan_one(ic->scan, files[k], &ic->scanned, err);
            else
                free(files[k]);
        }
        free(files);
        ic->nfiles += n;
        if (rc == SNAP_OK && ctx_interrupted(ic->ctx, err))
            rc = SNAP_EINTR;
    }
    if (rc == SNAP_OK)
        log_debug(ic->ctx, "%s: %zu image references in %zu manifest files", snp_source_name(ic->c),
                  img_scan_count(ic->scan), ic->nfiles);
    return rc;
}

/* 2. Each distinct reference once, parsed; a resolve job for each that parses. */
static void distinct_references(img_cap *ic)
{
    uref *u = xcalloc(img_scan_count(ic->scan) + 1, sizeof *u);
    size_t nu = 0;

    for (size_t i = 0; i < img_scan_count(ic->scan); i++) {
        const img_found *f = img_scan_get(ic->scan, i);
        bool seen = false;
        for (size_t k = 0; k < nu && !seen; k++)
            seen = strcmp(u[k].written, f->value) == 0;
        if (seen)
            continue;
        u[nu].written = f->value;
        u[nu].first = f;
        nu++;
    }
    qsort(u, nu, sizeof *u, uref_cmp);
    ic->jobs = xcalloc(nu + 1, sizeof *ic->jobs);
    for (size_t i = 0; i < nu; i++) {
        snap_err perr = {0};
        if (img_ref_parse(u[i].written, &u[i].ref, &perr) != SNAP_OK) {
            u[i].job.rc = perr.code;
            u[i].job.err = perr;
            where_prefix(&u[i].job.err, u[i].first);
            continue;
        }
        ic->jobs[ic->njobs].ref = u[i].ref;
        ic->jobs[ic->njobs].op = REG_RESOLVE;
        ic->njobs++;
    }
    ic->u = u;
    ic->nu = nu;
}

/* 3. Asks the registries, in parallel; each answer goes back to its reference. */
static snap_rc ask_registries(img_cap *ic, snap_err *err)
{
    uint64_t t0 = util_now_ms();
    snap_rc rc;

    if (ic->njobs == 0)
        return SNAP_OK;
    rc = client_for(ic->c, &ic->client, &ic->workers, err);
    if (rc != SNAP_OK)
        return rc;
    reg_run(ic->client, ic->jobs, ic->njobs, ic->workers);
    log_debug(ic->ctx, "%s: resolved %zu references in %llu ms with %d workers", snp_source_name(ic->c), ic->njobs,
              (unsigned long long)(util_now_ms() - t0), ic->workers);
    if (ctx_interrupted(ic->ctx, err))
        return SNAP_EINTR;
    for (size_t i = 0, k = 0; i < ic->nu; i++)
        if (ic->u[i].ref != NULL) {
            ic->u[i].job = ic->jobs[k];
            memset(&ic->jobs[k], 0, sizeof ic->jobs[k]);
            k++;
            if (ic->u[i].job.rc != SNAP_OK)
                where_prefix(&ic->u[i].job.err, ic->u[i].first);
        }
    return SNAP_OK;
}

/* The first unresolved reference stops the snap, unless --allow-unresolved. */
static snap_rc judge_unresolved(img_cap *ic, snap_err *err)
{
    size_t failed = 0;
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < ic->nu; i++) {
        const reg_job *j = &ic->u[i].job;
        if (j->rc == SNAP_OK)
            continue;
        if (j->rc == SNAP_EINTR) {
            *err = j->err;
            return SNAP_EINTR;
        }
        if (ic->allow_unresolved) {
            log_warn(ic->ctx, "%s; recording the tag alone (--allow-unresolved)", j->err.msg);
        } else if (failed++ == 0) {
            *err = j->err;
            rc = err->code;
        } else {
            log_warn(ic->ctx, "also: %s", j->err.msg);
        }
    }
    if (rc != SNAP_OK && failed > 1)
        err_hint(err, "%zu image references could not be resolved (see above); "
                      "--allow-unresolved records their tags alone", failed);
    return rc;
}

/* The references must be those of the bytes just captured: a file edited meanwhile
 * would be given back with references nobody resolved. */
static snap_rc check_unchanged(img_cap *ic, snap_err *err)
{
    for (size_t i = 0; i < ic->scanned.n; i++) {
        struct stat st;
        if (stat(ic->scanned.v[i].path, &st) != 0 || !same_file(&st, &ic->scanned.v[i].st)) {
            err_set(err, SNAP_ECONFLICT, 0, "%s changed while it was captured", ic->scanned.v[i].path);
            err_hint(err, "run snap again once the deployment manifests are settled; nothing was committed");
            return SNAP_ECONFLICT;
        }
    }
    return SNAP_OK;
}

/* 5. The registry's manifest of every digest, in the same archive, beside the files. */
static snap_rc write_digests(img_cap *ic, size_t *ndigests, snap_err *err)
{
    arc_writer *w = NULL;
    snap_rc rc = snp_writer_new(ic->c, &w, err);

    *ndigests = 0;
    for (size_t i = 0; rc == SNAP_OK && i < ic->nu; i++) {
        const reg_job *j = &ic->u[i].job;
        bool dup = false;
        char *name;
        if (j->manifest == NULL)
            continue;
        for (size_t k = 0; k < i && !dup; k++)
            dup = ic->u[k].job.manifest != NULL && strcmp(ic->u[k].job.resolved, j->resolved) == 0;
        if (dup)
            continue;
        name = img_meta_name(j->resolved);
        /* the fixed time of database entries: the same digests give the same part, which
         * the next snap then refers to instead of storing it again */
        rc = arc_write_buffer(w, name, j->manifest, j->manifest_len, 0644, SNP_DB_MTIME, err);
        free(name);
        (*ndigests)++;
    }
    if (rc == SNAP_OK)
        rc = arc_writer_finish(w, err);
    arc_writer_free(w);
    return rc;
}

/* 6. What revert, show and the lock file need: one record per place an image is named. */
static void record_images(img_cap *ic, size_t ndigests)
{
    cat_component *comp = snp_component(ic->c);
    json_t *list = json_array(), *summary = json_array(), *regs = json_array(), *ins = json_array();
    json_t *info = cat_component_info(comp);
    char *src = xasprintf("images:");

    for (size_t i = 0; i < img_scan_count(ic->scan); i++) {
        const img_found *f = img_scan_get(ic->scan, i);
        uref *x = uref_find(ic->u, ic->nu, f->value);
        json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "file", f->file, "line", (json_int_t)f->line, "where",
                              f->where, "image", f->value);
        char *base = util_basename(f->file);
        if (x->ref != NULL)
            json_object_set_new(o, "name", json_string(img_ref_canonical(x->ref)));
        if (x->job.rc == SNAP_OK) {
            json_object_set_new(o, "digest", json_string(x->job.resolved));
            json_object_set_new(o, "media_type", json_string(x->job.media_type));
            json_array_append_new(summary,
                                  json_sprintf("%s  %s  (%s:%lu)", f->value, x->job.resolved, base, f->line));
        } else {
            json_object_set_new(o, "digest", json_null());
            json_object_set_new(o, "unresolved", json_string(x->job.err.msg));
            json_array_append_new(summary, json_sprintf("%s  unresolved  (%s:%lu)", f->value, base, f->line));
        }
        free(base);
        json_array_append_new(list, o);
    }
    for (size_t i = 0; i < ic->nu; i++) {
        bool dup = false;
        size_t k;
        json_t *r;
        if (ic->u[i].ref == NULL)
            continue;
        json_array_foreach(regs, k, r)
            dup = dup || strcmp(json_string_value(r), img_ref_domain(ic->u[i].ref)) == 0;
        if (!dup)
            json_array_append_new(regs, json_string(img_ref_domain(ic->u[i].ref)));
    }
    for (size_t i = 0; i < ic->insecure.n; i++)
        json_array_append_new(ins, json_string(ic->insecure.v[i]));
    json_object_set_new(info, "images", list);
    json_object_set_new(info, "registries", regs);
    json_object_set_new(info, "insecure_registries", ins);
    json_object_set_new(info, "summary", summary);
    json_object_set_new(cat_component_stats(comp), "images", json_integer((json_int_t)img_scan_count(ic->scan)));
    json_object_set_new(cat_component_stats(comp), "digests", json_integer((json_int_t)ndigests));
    json_object_set_new(cat_component_stats(comp), "manifest_files", json_integer((json_int_t)ic->nfiles));
    for (size_t i = 0; i < ic->roots.n; i++) {
        char *tmp = xasprintf("%s%s%s", src, i ? " " : "", ic->roots.v[i]);
        free(src);
        src = tmp;
    }
    cat_component_set_source(comp, src);
    free(src);
}

static void img_cap_free(img_cap *ic)
{
    for (size_t i = 0; i < ic->nu; i++) {
        img_ref_free(ic->u[i].ref);
        reg_job_clear(&ic->u[i].job);
    }
    for (size_t i = 0; i < ic->njobs; i++)
        reg_job_clear(&ic->jobs[i]);
    free(ic->jobs);
    free(ic->u);
    reg_client_free(ic->client);
    img_scan_free(ic->scan);
    util_strv_free(&ic->raw);
    util_strv_free(&ic->roots);
    util_strv_free(&ic->exclude);
    util_strv_free(&ic->insecure);
    for (size_t i = 0; i < ic->scanned.n; i++)
        free(ic->scanned.v[i].path);
    free(ic->scanned.v);
}

static snap_rc images_capture(snp_capture *c, snap_err *err)
{
    img_cap ic = {.c = c, .ctx = snp_ctx(c), .scan = img_scan_new(), .workers = 8};
    size_t ndigests = 0;
    snap_rc rc;

    img_scan_set_ctx(ic.scan, ic.ctx);
    rc = read_roots(&ic, err);
    if (rc == SNAP_OK)
        rc = find_references(&ic, err);
    if (rc != SNAP_OK)
        goto out;
    distinct_references(&ic);
    rc = ask_registries(&ic, err);
    if (rc == SNAP_OK)
        rc = judge_unresolved(&ic, err);
    /* 4. The manifest files themselves, byte for byte, as the files source does. */
    if (rc == SNAP_OK)
        rc = snp_files_capture_paths(c, (const char *const *)ic.roots.v, ic.roots.n,
                                     (const char *const *)ic.exclude.v, ic.exclude.n, err);
    if (rc == SNAP_OK)
        rc = check_unchanged(&ic, err);
    if (rc == SNAP_OK)
        rc = write_digests(&ic, &ndigests, err);
    if (rc == SNAP_OK)
        record_images(&ic, ndigests);
out:
    img_cap_free(&ic);
    return rc;
}

const snp_driver snp_images_driver = {
    .type = "images",
    .capture = images_capture,
};
