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

static bool split_words(const char *value, void *arg)
{
    char *copy = xstrdup(value), *save = NULL;

    for (char *tok = strtok_r(copy, " \t\n,", &save); tok; tok = strtok_r(NULL, " \t\n,", &save))
        util_strv_push(arg, xstrdup(tok));
    free(copy);
    return true;
}

static bool one_value(const char *value, void *arg)
{
    util_strv_push(arg, xstrdup(value));
    return true;
}

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
    snap_ctx *ctx = snp_ctx(c);
    util_strv insecure = {0}, token_hosts = {0};
    reg_opts o = {0};
    int64_t secs = 30;
    long njobs = 8;
    const char *v;
    char section[300];
    snap_rc rc;

    snprintf(section, sizeof section, "source %s", snp_source_name(c));
    rc = cfg_get_int(ctx->cfg, section, "registry_jobs", 8, 1, 64, &njobs, err);
    if (rc != SNAP_OK)
        return rc;
    if ((v = snp_source_get(c, "registry_timeout")) != NULL && !cfg_parse_duration(v, &secs)) {
        err_set(err, SNAP_EUSAGE, 0, "[source %s] registry_timeout = %s is not a duration",
                snp_source_name(c), v);
        err_hint(err, "write it as 30s, 2m ...");
        return SNAP_EUSAGE;
    }
    snp_source_each(c, "insecure_registries", split_words, &insecure);
    o.insecure = (const char *const *)insecure.v;
    o.ninsecure = insecure.n;
    snp_source_each(c, "token_hosts", split_words, &token_hosts);
    o.token_hosts = (const char *const *)token_hosts.v;
    o.ntoken_hosts = token_hosts.n;
    o.docker_config = snp_source_get(c, "docker_config");
    o.timeout_ms = secs > 0 ? (long)secs * 1000 : 30000;
    o.connect_timeout_ms = o.timeout_ms < 10000 ? o.timeout_ms : 10000;
    rc = reg_client_new(&o, ctx, out, err);
    util_strv_free(&insecure);
    util_strv_free(&token_hosts);
    *jobs = (int)njobs;
    return rc;
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

static snap_rc images_capture(snp_capture *c, snap_err *err)
{
    snap_ctx *ctx = snp_ctx(c);
    cat_component *comp = snp_component(c);
    util_strv raw = {0}, roots = {0}, exclude = {0}, insecure = {0};
    seen_list scanned = {0};
    img_scan *scan = img_scan_new();
    reg_client *client = NULL;
    uref *u = NULL;
    size_t nu = 0, nfiles = 0, failed = 0;
    reg_job *jobs = NULL;
    size_t njobs = 0;
    arc_writer *w = NULL;
    bool allow_unresolved = false;
    int workers = 8;

    img_scan_set_ctx(scan, ctx);
    char section[300];
    json_t *list = json_array(), *summary = json_array(), *regs = json_array();
    snap_rc rc = SNAP_OK;

    snprintf(section, sizeof section, "source %s", snp_source_name(c));
    snp_source_each(c, "manifests", one_value, &raw);
    snp_source_each(c, "exclude", split_words, &exclude);
    snp_source_each(c, "insecure_registries", split_words, &insecure);
    rc = cfg_get_bool(ctx->cfg, section, "allow_unresolved", false, &allow_unresolved, err);
    if (rc == SNAP_OK && raw.n == 0) {
        rc = err_set(err, SNAP_EUSAGE, 0, "[source %s] names no manifests", snp_source_name(c));
        err_hint(err, "add `manifests = deploy/k8s` to the section, or use --images PATH");
    }
    for (size_t i = 0; rc == SNAP_OK && i < raw.n; i++) {
        char *abs;
        rc = util_abspath_err(raw.v[i], &abs, err);
        for (size_t j = 0; j < roots.n && abs != NULL; j++)
            if (strcmp(roots.v[j], abs) == 0) {
                free(abs);
                abs = NULL;
            }
        if (abs != NULL)
            util_strv_push(&roots, abs);
    }

    /* 1. Find every reference; a YAML error names file and line and stops the snap. */
    for (size_t i = 0; rc == SNAP_OK && i < roots.n; i++) {
        char **files;
        size_t n;
        rc = img_yaml_files(roots.v[i], (const char *const *)exclude.v, exclude.n, &files, &n, err);
        for (size_t k = 0; k < n; k++) {
            if (rc == SNAP_OK)
                rc = scan_one(scan, files[k], &scanned, err);
            else
                free(files[k]);
        }
        free(files);
        nfiles += n;
        if (rc == SNAP_OK && ctx_interrupted(ctx, err))
            rc = SNAP_EINTR;
    }
    if (rc != SNAP_OK)
        goto out;
    log_debug(ctx, "%s: %zu image references in %zu manifest files", snp_source_name(c),
              img_scan_count(scan), nfiles);

    /* 2. Each distinct reference once. */
    u = xcalloc(img_scan_count(scan) + 1, sizeof *u);
    for (size_t i = 0; i < img_scan_count(scan); i++) {
        const img_found *f = img_scan_get(scan, i);
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
    jobs = xcalloc(nu + 1, sizeof *jobs);
    for (size_t i = 0; i < nu; i++) {
        snap_err perr = {0};
        if (img_ref_parse(u[i].written, &u[i].ref, &perr) != SNAP_OK) {
            u[i].job.rc = perr.code;
            u[i].job.err = perr;
            where_prefix(&u[i].job.err, u[i].first);
            continue;
        }
        jobs[njobs].ref = u[i].ref;
        jobs[njobs].op = REG_RESOLVE;
        njobs++;
    }

    /* 3. Ask the registries, in parallel. */
    if (njobs > 0) {
        uint64_t t0 = util_now_ms();
        rc = client_for(c, &client, &workers, err);
        if (rc != SNAP_OK)
            goto out;
        reg_run(client, jobs, njobs, workers);
        log_debug(ctx, "%s: resolved %zu references in %llu ms with %d workers",
                  snp_source_name(c), njobs, (unsigned long long)(util_now_ms() - t0), workers);
        if (ctx_interrupted(ctx, err)) {
            rc = SNAP_EINTR;
            goto out;
        }
        for (size_t i = 0, k = 0; i < nu; i++)
            if (u[i].ref != NULL) {
                u[i].job = jobs[k];
                memset(&jobs[k], 0, sizeof jobs[k]);
                k++;
                if (u[i].job.rc != SNAP_OK)
                    where_prefix(&u[i].job.err, u[i].first);
            }
    }
    for (size_t i = 0; i < nu; i++) {
        if (u[i].job.rc == SNAP_OK)
            continue;
        if (u[i].job.rc == SNAP_EINTR) {
            *err = u[i].job.err;
            rc = SNAP_EINTR;
            goto out;
        }
        if (allow_unresolved) {
            log_warn(ctx, "%s; recording the tag alone (--allow-unresolved)", u[i].job.err.msg);
        } else if (failed++ == 0) {
            *err = u[i].job.err;
            rc = err->code;
        } else {
            log_warn(ctx, "also: %s", u[i].job.err.msg);
        }
    }
    if (rc != SNAP_OK) {
        if (failed > 1)
            err_hint(err, "%zu image references could not be resolved (see above); "
                          "--allow-unresolved records their tags alone", failed);
        goto out;
    }

    /* 4. The manifest files themselves, byte for byte, as the files source does. */
    rc = snp_files_capture_paths(c, (const char *const *)roots.v, roots.n,
                                 (const char *const *)exclude.v, exclude.n, err);
    if (rc != SNAP_OK)
        goto out;

    /* The references must be those of the bytes just captured: a file edited meanwhile
     * would be given back with references nobody resolved. */
    for (size_t i = 0; rc == SNAP_OK && i < scanned.n; i++) {
        struct stat st;
        if (stat(scanned.v[i].path, &st) != 0 || !same_file(&st, &scanned.v[i].st)) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "%s changed while it was captured", scanned.v[i].path);
            err_hint(err, "run snap again once the deployment manifests are settled; nothing was committed");
        }
    }
    if (rc != SNAP_OK)
        goto out;

    /* 5. The registry's manifest of every digest, in the same archive, beside the files. */
    rc = snp_writer_new(c, &w, err);
    size_t ndigests = 0;
    for (size_t i = 0; rc == SNAP_OK && i < nu; i++) {
        bool dup = false;
        if (u[i].job.manifest == NULL)
            continue;
        for (size_t k = 0; k < i && !dup; k++)
            dup = u[k].job.manifest != NULL && strcmp(u[k].job.resolved, u[i].job.resolved) == 0;
        if (dup)
            continue;
        char *name = img_meta_name(u[i].job.resolved);
        rc = arc_write_buffer(w, name, u[i].job.manifest, u[i].job.manifest_len, 0644,
                              time(NULL), err);
        free(name);
        ndigests++;
    }
    if (rc == SNAP_OK)
        rc = arc_writer_finish(w, err);
    if (rc != SNAP_OK)
        goto out;

    /* 6. What revert, show and the lock file need: one record per place an image is named. */
    for (size_t i = 0; i < img_scan_count(scan); i++) {
        const img_found *f = img_scan_get(scan, i);
        uref *x = uref_find(u, nu, f->value);
        json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "file", f->file, "line", (json_int_t)f->line,
                              "where", f->where, "image", f->value);
        char *base = util_basename(f->file);
        if (x->ref != NULL)
            json_object_set_new(o, "name", json_string(img_ref_canonical(x->ref)));
        if (x->job.rc == SNAP_OK) {
            json_object_set_new(o, "digest", json_string(x->job.resolved));
            json_object_set_new(o, "media_type", json_string(x->job.media_type));
            json_array_append_new(summary, json_sprintf("%s  %s  (%s:%lu)", f->value,
                                                        x->job.resolved, base, f->line));
        } else {
            json_object_set_new(o, "digest", json_null());
            json_object_set_new(o, "unresolved", json_string(x->job.err.msg));
            json_array_append_new(summary, json_sprintf("%s  unresolved  (%s:%lu)", f->value,
                                                        base, f->line));
        }
        free(base);
        json_array_append_new(list, o);
    }
    for (size_t i = 0; i < nu; i++) {
        bool dup = false;
        size_t k;
        json_t *r;
        if (u[i].ref == NULL)
            continue;
        json_array_foreach(regs, k, r)
            dup = dup || strcmp(json_string_value(r), img_ref_domain(u[i].ref)) == 0;
        if (!dup)
            json_array_append_new(regs, json_string(img_ref_domain(u[i].ref)));
    }
    json_t *info = cat_component_info(comp), *ins = json_array();
    for (size_t i = 0; i < insecure.n; i++)
        json_array_append_new(ins, json_string(insecure.v[i]));
    json_object_set(info, "images", list);
    json_object_set(info, "registries", regs);
    json_object_set_new(info, "insecure_registries", ins);
    json_object_set(info, "summary", summary);
    json_object_set_new(cat_component_stats(comp), "images",
                        json_integer((json_int_t)img_scan_count(scan)));
    json_object_set_new(cat_component_stats(comp), "digests", json_integer((json_int_t)ndigests));
    json_object_set_new(cat_component_stats(comp), "manifest_files", json_integer((json_int_t)nfiles));
    {
        char *src = xasprintf("images:");
        for (size_t i = 0; i < roots.n; i++) {
            char *tmp = xasprintf("%s%s%s", src, i ? " " : "", roots.v[i]);
            free(src);
            src = tmp;
        }
        cat_component_set_source(comp, src);
        free(src);
    }
out:
    arc_writer_free(w);
    for (size_t i = 0; i < nu; i++) {
        img_ref_free(u[i].ref);
        reg_job_clear(&u[i].job);
    }
    for (size_t i = 0; i < njobs; i++)
        reg_job_clear(&jobs[i]);
    free(jobs);
    free(u);
    reg_client_free(client);
    img_scan_free(scan);
    json_decref(list);
    json_decref(summary);
    json_decref(regs);
    util_strv_free(&raw);
    util_strv_free(&roots);
    util_strv_free(&exclude);
    util_strv_free(&insecure);
    for (size_t i = 0; i < scanned.n; i++)
        free(scanned.v[i].path);
    free(scanned.v);
    return rc;
}

const snp_driver snp_images_driver = {
    .type = "images",
    .capture = images_capture,
};
