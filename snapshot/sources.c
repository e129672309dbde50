/* sources.c: what the configured sources point at, as a committed manifest records it,
 * so that `snap create NAME --if-absent` can tell a retry from a clash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../engines/my_client.h"
#include "../engines/pg_client.h"
#include "../engines/targets.h"
#include "snapshot.h"

/* "PREFIX/abs/a /abs/b": each path once, absolute, in order, as files and images record them. */
static char *paths_text(const cfg *c, const char *section, const char *const *keys, size_t nkeys,
                        const char *prefix)
{
    util_strv raw = {0}, paths = {0};
    util_buf b = {0};

    for (size_t k = 0; k < nkeys; k++)
        cfg_each(c, section, keys[k], strcmp(keys[k], "paths") == 0 ? util_strv_add_words : util_strv_add_one,
                 &raw);
    for (size_t i = 0; i < raw.n; i++)
        (void)util_strv_add_abs(&paths, raw.v[i]);
    util_buf_adds(&b, prefix);
    for (size_t i = 0; i < paths.n; i++) {
        if (i > 0)
            util_buf_addc(&b, ' ');
        util_buf_adds(&b, paths.v[i]);
    }
    util_strv_free(&raw);
    util_strv_free(&paths);
    return util_buf_take(&b);
}

/* The source text a capture of this section would record (redacted), or NULL. */
static char *source_text(const cfg *c, const char *section, const char *type)
{
    static const char *const files_keys[] = {"paths", "path"}, *const images_keys[] = {"manifests"};
    const char *dsn = cfg_get(c, section, "dsn");

    if (strcmp(type, "files") == 0)
        return paths_text(c, section, files_keys, 2, "files:");
    if (strcmp(type, "images") == 0)
        return paths_text(c, section, images_keys, 1, "images:");
    if (strcmp(type, "postgres") == 0)
        return pg_redact_dsn(dsn != NULL ? dsn : "");
    if (strcmp(type, "mysql") == 0) {
        my_dsn *d = NULL;
        snap_err ignored;
        char *text = NULL;
        if (my_dsn_parse(dsn != NULL ? dsn : "", &d, &ignored) == SNAP_OK)
            text = my_dsn_redacted(d);
        my_dsn_free(d);
        return text;
    }
    return NULL;
}

/* The component of m named name, or NULL. */
static const cat_component *component_named(const cat_manifest *m, const char *name)
{
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++)
        if (strcmp(cat_component_name(cat_manifest_component(m, i)), name) == 0)
            return cat_manifest_component(m, i);
    return NULL;
}

bool snp_same_sources(const snap_ctx *ctx, const cat_manifest *m, char *why, size_t n)
{
    size_t nsources = cfg_source_count(ctx->cfg);
    bool same = nsources == cat_manifest_ncomponents(m);

    snprintf(why, n, "it has %zu component%s, the sources are %zu", cat_manifest_ncomponents(m),
             cat_manifest_ncomponents(m) == 1 ? "" : "s", nsources);
    for (size_t i = 0; i < nsources && same; i++) {
        const char *name = cfg_source_name(ctx->cfg, i);
        char *section = xasprintf("source %s", name), *text;
        const char *type = cfg_get(ctx->cfg, section, "type");
        const cat_component *k = component_named(m, name);

        if (k == NULL) {
            snprintf(why, n, "it has no component %s", name);
            same = false;
        } else if (type == NULL || strcmp(type, cat_component_type(k)) != 0) {
            snprintf(why, n, "its component %s is of type %s", name, cat_component_type(k));
            same = false;
        } else {
            text = source_text(ctx->cfg, section, type);
            same = text != NULL && cat_component_source(k) != NULL && strcmp(text, cat_component_source(k)) == 0;
            if (!same)
                snprintf(why, n, "its component %s captured %s", name,
                         cat_component_source(k) ? cat_component_source(k) : "(nothing recorded)");
            free(text);
        }
        free(section);
    }
    return same;
}

/* *out is the committed snapshot when name holds the same sources, NULL when name is free;
 * SNAP_ECONFLICT (name_exists) when it holds other sources. */
static snap_rc find_same(const snap_ctx *ctx, stg *store, const char *name, cat_manifest **out, snap_err *err)
{
    bool exists = false;
    cat_manifest *m = NULL;
    char why[600];
    snap_rc rc = cat_name_check("snapshot", name, err);

    *out = NULL;
    if (rc == SNAP_OK && cfg_source_count(ctx->cfg) > 0) /* none: snp_create says so */
        rc = cat_exists(store, name, &exists, err);
    if (rc != SNAP_OK || !exists)
        return rc;
    rc = cat_load(store, name, &m, err);
    if (rc != SNAP_OK)
        return rc;
    if (snp_same_sources(ctx, m, why, sizeof why)) {
        *out = m;
        return SNAP_OK;
    }
    cat_manifest_free(m);
    err_set(err, SNAP_ECONFLICT, 0, "snapshot %s exists with other sources: %s", name, why);
    err_hint(err, "choose another name, or `snap delete %s` first", name);
    return err_kind(err, "name_exists");
}

snap_rc snp_create_if_absent(snap_ctx *ctx, stg *store, const snp_request *req, cat_manifest **out,
                             bool *existed, snap_err *err)
{
    snap_rc rc = find_same(ctx, store, req->name, out, err);

    *existed = *out != NULL;
    if (rc != SNAP_OK || *existed)
        return rc;
    rc = snp_create(ctx, store, req, out, err);
    /* Another runner committed it in the meantime: the same question again. */
    if (rc == SNAP_ECONFLICT && err->kind != NULL && strcmp(err->kind, "name_exists") == 0) {
        rc = find_same(ctx, store, req->name, out, err);
        *existed = *out != NULL;
        if (rc == SNAP_OK && !*existed) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "snapshot %s was created and removed while snap ran", req->name);
            err_hint(err, "run the command again");
        }
    }
    return rc;
}

snap_rc snp_check_targets(const snap_ctx *ctx, snap_err *err)
{
    tgt_set *set = tgt_set_new("source");
    char msg[1024];
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < cfg_source_count(ctx->cfg); i++) {
        const char *name = cfg_source_name(ctx->cfg, i);
        char *section = xasprintf("source %s", name);
        src_opts so;
        snap_err ignored;
        /* a section that does not parse: its capture says why */
        if (src_opts_parse(ctx->cfg, section, &so, &ignored) == SNAP_OK) {
            const util_strv *paths = so.type == NULL                    ? NULL
                                     : strcmp(so.type, "files") == 0  ? &so.paths
                                     : strcmp(so.type, "images") == 0 ? &so.manifests
                                                                      : NULL;
            for (size_t k = 0; paths != NULL && k < paths->n; k++)
                tgt_add_path(set, name, paths->v[k]);
            if (so.type != NULL && so.dsn != NULL)
                tgt_add_db(set, name, so.type, so.dsn, NULL);
            src_opts_free(&so);
        }
        free(section);
    }
    if (tgt_clash(set, msg, sizeof msg)) {
        rc = err_set(err, SNAP_EUSAGE, 0, "%s", msg);
        err_hint(err, "name each target once: drop one of the flags or [source] sections (a directory "
                      "captures what it holds); nothing was written");
    }
    tgt_set_free(set);
    return rc;
}
