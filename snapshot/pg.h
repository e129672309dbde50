/* pg.h: the PostgreSQL capture driver (type = postgres). */
#ifndef SNAP_SNAPSHOT_PG_H
#define SNAP_SNAPSHOT_PG_H

#include "snapshot.h"

extern const snp_driver snp_postgres_driver;

/*
 * Turns a psql-style name pattern (pg_dump -n / -T: * and ? wildcards, "quoted" parts
 * kept verbatim, unquoted letters folded to lower case, one unquoted '.' separating
 * schema from name) into anchored POSIX regular expressions for the server's `~`.
 * *schema_re is NULL when the pattern has no schema part. Callers free both.
 */
void pg_pattern_regex(const char *pattern, char **schema_re, char **name_re);

#endif
