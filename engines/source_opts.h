/* source_opts.h: the typed options of one [source NAME] section, parsed once. The capture
 * drivers (snapshot/), the revert drivers (restore/) and a revert's safety snapshot read
 * these fields, never the keys by name. */
#ifndef SNAP_SOURCE_OPTS_H
#define SNAP_SOURCE_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/cfg.h"
#include "../common/util.h"

typedef struct src_opts {
    const char *type; /* NULL: the section has none */
    /* files */
    util_strv paths;   /* `paths` words, then every `path` whole, as the file gives them */
    util_strv exclude; /* files and images */
    /* images */
    util_strv manifests, insecure_registries, token_hosts;
    bool allow_unresolved;
    long registry_jobs;
    int64_t registry_timeout; /* seconds */
    const char *docker_config; /* NULL: $DOCKER_CONFIG, else ~/.docker */
    /* postgres and mysql */
    const char *dsn;        /* NULL: not set */
    uint64_t chunk_size;    /* 0: not set (the engine's own default) */
    /* postgres */
    util_strv schema, exclude_table; /* every spelling of the key, in order */
    const char *pg_bindir;           /* NULL: $PATH */
    /* mysql */
    uint64_t split_size;
    int64_t lock_wait_timeout, long_query_guard; /* seconds */
} src_opts;

/* Parses [section] ("source NAME") of c through the declared table (cfg_int and friends):
 * defaults and ranges are the table's; a bad value is SNAP_EUSAGE naming where it came
 * from. Free with src_opts_free (strings stay owned by c). */
snap_rc src_opts_parse(const cfg *c, const char *section, src_opts *o, snap_err *err);
void src_opts_free(src_opts *o);

#endif
