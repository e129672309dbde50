/* images.c: the images target: the manifest files come back through the files target;
 * --pin rewrites their image references to the recorded digests in the staged copy;
 * the plan checks that every recorded digest still exists; --images-lock writes JSON. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engines/image_ref.h"
#include "../engines/registry.h"
#include "../common/util.h"
#include "../engines/source_opts.h"
#include "restore.h"

#define MANIFEST_FILE_MAX ((size_t)64 << 20)

static json_t *info_of(rst_target *t)
{
    return cat_component_info((cat_component *)(uintptr_t)rst_component(t));
}


/* The recorded digest of a reference as written, or NULL. */
static const char *recorded_digest(json_t *images, const char *written)
{
    size_t i;
    json_t *o;

    json_array_foreach(images, i, o) {
        const char *img = json_string_value(json_object_get(o, "image"));
        const char *d = json_string_value(json_object_get(o, "digest"));
        if (img != NULL && d != NULL && strcmp(img, written) == 0)
            return d;
    }
    return NULL;
}

/* ---- registry checks -------------------------------------------------------------- */

static snap_rc client_for(rst_target *t, reg_client **out, int *workers, snap_err *err)
{
    /* Registries reached without TLS checks: the configuration's, and the snapshot's own
     * only when it is authenticated, since they decide where credentials may go. */
    json_t *ins = rst_trusted(t) ? json_deep_copy(json_object_get(info_of(t), "insecure_registries")) : NULL;
    const char **v = NULL;
    reg_opts o = {0};
    const src_opts *so = rst_source(t);
    snap_rc rc;
    size_t i;
    json_t *x;

    if (!json_is_array(ins)) {
        json_decref(ins);
        ins = json_array();
    }
    for (i = 0; i < so->insecure_registries.n; i++)
        json_array_append_new(ins, json_string(so->insecure_registries.v[i]));
    v = xcalloc(json_array_size(ins) + 1, sizeof *v);
    json_array_foreach(ins, i, x)
        v[i] = json_string_value(x);
    o.insecure = v;
    o.ninsecure = json_array_size(ins);
    /* token_hosts come from the local configuration only, never from the manifest */
    o.token_hosts = (const char *const *)so->token_hosts.v;
    o.ntoken_hosts = so->token_hosts.n;
    o.docker_config = so->docker_config;
    o.timeout_ms = so->registry_timeout > 0 ? (long)so->registry_timeout * 1000 : 30000;
    o.connect_timeout_ms = o.timeout_ms < 10000 ? o.timeout_ms : 10000;
    *workers = (int)so->registry_jobs;
    rc = reg_client_new(&o, rst_ctx(t), out, err);
    free(v);
    json_decref(ins);
    return rc;
}

/*
 * One entry per distinct reference: does the recorded digest still exist, and where does
 * its tag point now. Fills "registry" ("present", "missing", "unchecked") and "now".
 */
static snap_rc check_registries(rst_target *t, json_t *distinct, snap_err *err)
{
    snap_ctx *ctx = rst_ctx(t);
    bool require = rst_options(t)->require_images;
    size_t n = json_array_size(distinct), nj = 0, i;
    reg_job *jobs = xcalloc(2 * n + 1, sizeof *jobs);
    img_ref **refs = xcalloc(n + 1, sizeof *refs);
    size_t *owner = xcalloc(2 * n + 1, sizeof *owner);
    reg_client *client = NULL;
    int workers = 8;
    snap_rc rc = SNAP_OK;
    json_t *o;

    json_array_foreach(distinct, i, o) {
        const char *d = json_string_value(json_object_get(o, "digest"));
        snap_err perr;
        json_object_set_new(o, "registry", json_string("unchecked"));
        if (d == NULL || img_ref_parse(json_string_value(json_object_get(o, "image")), &refs[i],
                                       &perr) != SNAP_OK)
            continue;
        jobs[nj] = (reg_job){.ref = refs[i], .op = REG_EXISTS, .digest = d};
        owner[nj++] = i;
        if (img_ref_digest(refs[i]) == NULL) {
            jobs[nj] = (reg_job){.ref = refs[i], .op = REG_HEAD};
            owner[nj++] = i;
        }
    }
    if (nj > 0) {
        rc = client_for(t, &client, &workers, err);
        if (rc != SNAP_OK)
            goto out;
        reg_run(client, jobs, nj, workers);
    }
    for (size_t k = 0; k < nj && rc == SNAP_OK; k++) {
        reg_job *j = &jobs[k];
        o = json_array_get(distinct, owner[k]);
        const char *img = json_string_value(json_object_get(o, "image"));
        const char *d = json_string_value(json_object_get(o, "digest"));
        if (j->rc == SNAP_EINTR) {
            *err = j->err;
            rc = SNAP_EINTR;
        } else if (j->op == REG_EXISTS && j->rc != SNAP_OK) {
            if (require) {
                *err = j->err;
                err_hint(err, "the digest could not be checked; nothing was changed "
                              "(without --require-images revert only warns)");
                rc = err->code;
            } else {
                log_warn(ctx, "could not check %s: %s", img, j->err.msg);
            }
        } else if (j->op == REG_EXISTS) {
            json_object_set_new(o, "registry", json_string(j->exists ? "present" : "missing"));
            if (!j->exists && require) {
                rc = err_set(err, SNAP_ENOTFOUND, 0,
                             "image %s: digest %s is gone from registry %s (deleted or garbage-collected)",
                             img, d, img_ref_domain(j->ref));
                err_hint(err, "push that image again, or revert without --require-images; nothing was changed");
            } else if (!j->exists) {
                log_warn(ctx, "image %s: digest %s is gone from registry %s (deleted or "
                              "garbage-collected); the reverted manifests name an image that cannot be pulled",
                         img, d, img_ref_domain(j->ref));
            }
        } else if (j->rc == SNAP_OK && j->resolved[0] != '\0') {
            json_object_set_new(o, "now", json_string(j->resolved));
            if (strcmp(j->resolved, d) != 0 && !rst_options(t)->pin)
                log_warn(ctx, "image %s: the tag moved since the snapshot (now %s, recorded %s); "
                              "without --pin the reverted manifests pull the new image",
                         img, j->resolved, d);
            else if (strcmp(j->resolved, d) != 0)
                log_info(ctx, "image %s: the tag moved since the snapshot; --pin gives back %s",
                         img, d);
        }
    }
out:
    for (size_t k = 0; k < nj; k++)
        reg_job_clear(&jobs[k]);
    for (i = 0; i < n; i++)
        img_ref_free(refs[i]);
    free(jobs);
    free(refs);
    free(owner);
    reg_client_free(client);
    return rc;
}

/* ---- the lock file ---------------------------------------------------------------- */

/* The distinct references of the snapshot, in the order first named, with their places. */
static json_t *distinct_images(rst_target *t)
{
    json_t *out = json_array(), *o;
    size_t i;

    json_array_foreach(json_object_get(info_of(t), "images"), i, o) {
        const char *img = json_string_value(json_object_get(o, "image"));
        json_t *d = NULL, *x;
        size_t k;
        json_array_foreach(out, k, x)
            if (strcmp(json_string_value(json_object_get(x, "image")), img) == 0)
                d = x;
        if (d == NULL) {
            const char *digest = json_string_value(json_object_get(o, "digest"));
            char *pinned = digest ? img_pinned_text(img, digest) : NULL;
            d = json_pack("{s:s, s:O, s:O, s:O, s:[]}", "image", img, "name",
                          json_object_get(o, "name") ? json_object_get(o, "name") : json_null(),
                          "digest", json_object_get(o, "digest"), "media_type",
                          json_object_get(o, "media_type") ? json_object_get(o, "media_type")
                                                           : json_null(),
                          "locations");
            json_object_set_new(d, "pinned", pinned ? json_string(pinned) : json_null());
            free(pinned);
            json_array_append_new(out, d);
        }
        json_array_append_new(json_object_get(d, "locations"),
                              json_pack("{s:O, s:O, s:O}", "file", json_object_get(o, "file"),
                                        "line", json_object_get(o, "line"), "where",
                                        json_object_get(o, "where")));
    }
    return out;
}

/* Written whole or not at all (util_write_file). */
static snap_rc write_lock(rst_target *t, const char *path, json_t *distinct, snap_err *err)
{
    const cat_manifest *m = rst_manifest(t);
    json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:O}", "format", 1, "snapshot",
                            cat_manifest_name(m), "snapshot_id", cat_manifest_id(m), "component",
                            rst_component_name(t), "images", distinct);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER), *line = xasprintf("%s\n", text);
    char *abs = NULL;
    snap_rc rc = util_abspath_err(path, &abs, err);

    if (rc == SNAP_OK)
        rc = util_write_file(abs, line, strlen(line), 0644, err);
    if (rc != SNAP_OK)
        err_prefix(err, "--images-lock");
    free(abs);
    free(line);
    free(text);
    json_decref(doc);
    return rc;
}

/* ---- plan, stage, and the rest from the files target ------------------------------ */

/* What a person reading the plan needs: the count, and every image that needs a look. */
static void plan_notes(rst_target *t, json_t *distinct)
{
    json_t *plan = rst_plan(t), *notes = json_object_get(plan, "notes"), *o;
    size_t i, present = 0;

    if (!json_is_array(notes)) {
        notes = json_array();
        json_object_set_new(plan, "notes", notes);
    }
    json_array_foreach(distinct, i, o) {
        const char *img = json_string_value(json_object_get(o, "image"));
        const char *d = json_string_value(json_object_get(o, "digest"));
        const char *reg = json_string_value(json_object_get(o, "registry"));
        const char *now = json_string_value(json_object_get(o, "now"));
        if (d == NULL)
            json_array_append_new(notes, json_sprintf("image %s: no digest was recorded; left as written", img));
        else if (reg != NULL && strcmp(reg, "missing") == 0)
            json_array_append_new(notes, json_sprintf("image %s: %s is gone from its registry", img, d));
        else if (reg != NULL && strcmp(reg, "unchecked") == 0)
            json_array_append_new(notes, json_sprintf("image %s: %s could not be checked", img, d));
        else
            present++;
        if (d != NULL && now != NULL && strcmp(now, d) != 0)
            json_array_append_new(notes, json_sprintf("image %s: the tag moved to %s since the snapshot%s",
                                                      img, now, rst_options(t)->pin ? "; --pin gives back the recorded digest" : ""));
    }
    json_array_append_new(notes, json_sprintf("%zu image%s, %zu digest%s present in the registries; %s",
                                              json_array_size(distinct),
                                              json_array_size(distinct) == 1 ? "" : "s", present,
                                              present == 1 ? "" : "s",
                                              rst_options(t)->pin ? "--pin writes them as name@digest"
                                                                    : "written as they were (--pin writes name@digest)"));
}

#define NFIELDS(a) (sizeof (a) / sizeof (a)[0])

/* The fields of info that this driver reads (its roots are the files driver's to check). */
static snap_rc images_check_info(rst_target *t, snap_err *err)
{
    static const rst_field info[] = {
        {"images", JSON_ARRAY, true, JSON_OBJECT},
        {"exclude", JSON_ARRAY, false, JSON_STRING},
        {"insecure_registries", JSON_ARRAY, false, JSON_STRING},
    };
    static const rst_field image[] = {
        {"image", JSON_STRING, true, JSON_NULL},
        {"digest", JSON_STRING, false, JSON_NULL},
        {"name", JSON_STRING, false, JSON_NULL},
        {"media_type", JSON_STRING, false, JSON_NULL},
        {"file", JSON_STRING, false, JSON_NULL},
        {"line", JSON_INTEGER, false, JSON_NULL},
        {"where", JSON_STRING, false, JSON_NULL},
    };
    json_t *in = info_of(t), *o;
    char what[200];
    size_t i;
    snap_rc rc;

    snprintf(what, sizeof what, "the info of component %s", rst_component_name(t));
    rc = rst_check_fields(what, in, info, NFIELDS(info), err);
    json_array_foreach(json_object_get(in, "images"), i, o) {
        if (rc != SNAP_OK)
            break;
        snprintf(what, sizeof what, "the info of component %s, image %zu,", rst_component_name(t), i);
        rc = rst_check_fields(what, o, image, NFIELDS(image), err);
    }
    if (rc != SNAP_OK)
        err_hint(err, "the snapshot's manifest is damaged or was changed by hand; nothing was changed");
    return rc;
}

static snap_rc images_plan(rst_target *t, snap_err *err)
{
    json_t *plan = rst_plan(t), *distinct;
    const char *lock = rst_options(t)->images_lock;
    snap_rc rc = images_check_info(t, err);

    if (rc == SNAP_OK)
        rc = rst_files_driver.plan(t, err);
    if (rc != SNAP_OK)
        return rc;
    distinct = distinct_images(t);
    rc = check_registries(t, distinct, err);
    json_object_set_new(plan, "pin", json_boolean(rst_options(t)->pin));
    json_object_set(plan, "images", distinct);
    if (rc == SNAP_OK)
        plan_notes(t, distinct);
    if (rc == SNAP_OK && lock != NULL)
        rc = write_lock(t, lock, distinct, err);
    if (rc == SNAP_OK && lock != NULL)
        json_object_set_new(plan, "images_lock", json_string(lock));
    json_decref(distinct);
    return rc;
}

/* The safety snapshot keeps the live manifests as files: no registry needed to go back. */
static snap_rc images_safety_source(rst_target *t, cfg *c, const char *section, snap_err *err)
{
    return rst_files_driver.safety_source(t, c, section, err);
}

/* Rewrites the file in place (it is our staged copy): same inode, mode and owner. */
static snap_rc replace_contents(const char *path, const char *buf, size_t len, snap_err *err)
{
    struct stat st;
    size_t off = 0;
    snap_rc rc = SNAP_OK;
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return err_sys(err, err_from_errno(errno), "cannot pin images in %s", path);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, SNAP_EFAIL, 0, "cannot pin images in %s: not a regular file", path);
    }
    if (ftruncate(fd, 0) != 0)
        rc = err_sys(err, err_from_errno(errno), "cannot pin images in %s", path);
    while (rc == SNAP_OK && off < len) {
        ssize_t w = pwrite(fd, buf + off, len - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = err_sys(err, err_from_errno(errno), "cannot pin images in %s", path);
        else
            off += (size_t)w;
    }
    if (rc == SNAP_OK && fsync(fd) != 0)
        rc = err_sys(err, err_from_errno(errno), "cannot pin images in %s", path);
    close(fd);
    return rc;
}

/* Pins every reference of one staged file; live names it in messages. */
static snap_rc pin_file(rst_target *t, const char *staged, const char *live, json_t *images,
                        unsigned *pinned, snap_err *err)
{
    img_scan *scan = img_scan_new();
    char *buf = NULL, *out = NULL;
    const char **values = NULL;
    size_t len, outlen, n;
    bool change = false;
    snap_rc rc = img_read_file(staged, MANIFEST_FILE_MAX, &buf, &len, err);

    img_scan_set_ctx(scan, rst_ctx(t));
    if (rc == SNAP_OK)
        rc = img_scan_buffer(scan, live, buf, len, err);
    if (rc != SNAP_OK)
        goto out;
    n = img_scan_count(scan);
    values = xcalloc(n + 1, sizeof *values);
    for (size_t i = 0; i < n; i++) {
        const img_found *f = img_scan_get(scan, i);
        const char *d = recorded_digest(images, f->value);
        if (strchr(f->value, '@') != NULL)
            continue; /* already a digest: kept as it is */
        if (d == NULL) {
            log_warn(rst_ctx(t), "%s:%lu: image %s has no recorded digest; left as written",
                     live, f->line, f->value);
            continue;
        }
        values[i] = img_pinned_text(f->value, d);
        change = true;
        (*pinned)++;
    }
    if (!change)
        goto out;
    rc = img_rewrite(scan, buf, len, values, &out, &outlen, err);
    if (rc == SNAP_OK)
        rc = replace_contents(staged, out, outlen, err);
out:
    for (size_t i = 0; values != NULL && i < img_scan_count(scan); i++)
        free((void *)(uintptr_t)values[i]);
    free(values);
    free(out);
    free(buf);
    img_scan_free(scan);
    return rc;
}

static snap_rc pin_staged(rst_target *t, snap_err *err)
{
    json_t *images = json_object_get(info_of(t), "images");
    json_t *excl = json_object_get(info_of(t), "exclude"), *r, *x;
    const char **exclude = xcalloc(json_array_size(excl) + 1, sizeof *exclude);
    unsigned pinned = 0;
    snap_rc rc = SNAP_OK;
    size_t i;

    json_array_foreach(excl, i, x)
        exclude[i] = json_string_value(x);
    json_array_foreach(json_object_get(rst_state(t), "roots"), i, r) {
        const char *staged = json_string_value(json_object_get(r, "staged"));
        const char *path = json_string_value(json_object_get(r, "path"));
        const char *type = json_string_value(json_object_get(r, "type"));
        char **files = NULL;
        size_t n = 0;
        if (rc != SNAP_OK || type == NULL || strcmp(type, "absent") == 0)
            continue;
        rc = img_yaml_files(staged, exclude, json_array_size(excl), &files, &n, err);
        for (size_t k = 0; k < n; k++) {
            if (rc == SNAP_OK) {
                /* Name the live file in messages: the staged one is ours and short-lived. */
                char *live = xasprintf("%s%s", path, files[k] + strlen(staged));
                rc = pin_file(t, files[k], live, images, &pinned, err);
                free(live);
            }
            free(files[k]);
        }
        free(files);
    }
    free(exclude);
    if (rc == SNAP_OK)
        log_info(rst_ctx(t), "%s: pinned %u image reference%s to their digests",
                 rst_component_name(t), pinned, pinned == 1 ? "" : "s");
    return rc;
}

static snap_rc images_stage(rst_target *t, snap_err *err)
{
    snap_rc rc = rst_files_driver.stage(t, err);

    if (rc == SNAP_OK && rst_options(t)->pin)
        rc = pin_staged(t, err);
    return rc;
}

static snap_rc images_cutover(rst_target *t, snap_err *err)
{
    return rst_files_driver.cutover(t, err);
}

static snap_rc images_rollback(rst_target *t, snap_err *err)
{
    return rst_files_driver.rollback(t, err);
}

static snap_rc images_discard(rst_target *t, snap_err *err)
{
    return rst_files_driver.discard(t, err);
}

static snap_rc images_finish(rst_target *t, bool drop_old, snap_err *err)
{
    return rst_files_driver.finish(t, drop_old, err);
}

const rst_driver rst_images_driver = {
    .type = "images",
    .plan = images_plan,
    .safety_source = images_safety_source,
    .stage = images_stage,
    .cutover = images_cutover,
    .rollback = images_rollback,
    .discard = images_discard,
    .finish = images_finish,
};
