/* source_opts.c: one [source NAME] section into its typed options. */
#include <string.h>

#include "source_opts.h"

snap_rc src_opts_parse(const cfg *c, const char *section, src_opts *o, snap_err *err)
{
    static const char *const schema_keys[] = {"schema", "pg_schema", "pg-schema"};
    static const char *const exclude_keys[] = {"exclude_table", "pg_exclude_table", "pg-exclude-table"};
    snap_rc rc;

    memset(o, 0, sizeof *o);
    cfg_list(c, section, "paths", &o->paths);
    cfg_list(c, section, "path", &o->paths);
    cfg_list(c, section, "exclude", &o->exclude);
    cfg_list(c, section, "manifests", &o->manifests);
    cfg_list(c, section, "insecure_registries", &o->insecure_registries);
    cfg_list(c, section, "token_hosts", &o->token_hosts);
    for (size_t i = 0; i < 3; i++) {
        cfg_list(c, section, schema_keys[i], &o->schema);
        cfg_list(c, section, exclude_keys[i], &o->exclude_table);
    }
    if ((rc = cfg_str(c, section, "type", &o->type, err)) != SNAP_OK ||
        (rc = cfg_str(c, section, "docker_config", &o->docker_config, err)) != SNAP_OK ||
        (rc = cfg_str(c, section, "dsn", &o->dsn, err)) != SNAP_OK ||
        (rc = cfg_str(c, section, "pg_bindir", &o->pg_bindir, err)) != SNAP_OK ||
        (rc = cfg_bool(c, section, "allow_unresolved", &o->allow_unresolved, err)) != SNAP_OK ||
        (rc = cfg_int(c, section, "registry_jobs", &o->registry_jobs, err)) != SNAP_OK ||
        (rc = cfg_duration(c, section, "registry_timeout", &o->registry_timeout, err)) != SNAP_OK ||
        (rc = cfg_size(c, section, "chunk_size", &o->chunk_size, err)) != SNAP_OK ||
        (rc = cfg_size(c, section, "split_size", &o->split_size, err)) != SNAP_OK ||
        (rc = cfg_duration(c, section, "lock_wait_timeout", &o->lock_wait_timeout, err)) != SNAP_OK ||
        (rc = cfg_duration(c, section, "long_query_guard", &o->long_query_guard, err)) != SNAP_OK)
        src_opts_free(o);
    return rc;
}

void src_opts_free(src_opts *o)
{
    util_strv_free(&o->paths);
    util_strv_free(&o->exclude);
    util_strv_free(&o->manifests);
    util_strv_free(&o->insecure_registries);
    util_strv_free(&o->token_hosts);
    util_strv_free(&o->schema);
    util_strv_free(&o->exclude_table);
}
