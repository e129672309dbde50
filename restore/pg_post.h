/* pg_post.h: a PostgreSQL snapshot's post-data section split so that each table's indexes
 * and constraints can be built as soon as that table is loaded (restore/pg.c), the rest
 * left to one final `pg_restore --use-list` (docs/postgres.md, "Swap"). Text only: no
 * connection, no process. */
#ifndef SNAP_RESTORE_PG_POST_H
#define SNAP_RESTORE_PG_POST_H

#include <stdbool.h>
#include <stddef.h>

/* The index (in the manifest's info.tables) of schema.name, or SIZE_MAX. */
typedef size_t (*pgp_table_fn)(const char *schema, const char *name, void *arg);

typedef struct pgp_entry {
    char *sql;    /* the entry's tablespace and access method, then its statements */
    size_t table; /* the table it is built on */
} pgp_entry;

typedef struct pgp_plan {
    char *prologue;   /* pg_restore's SET header: every connection that builds runs it first */
    pgp_entry *e;     /* the entries built early, in the dump's order */
    size_t n;
    char *rest_list;  /* `pg_restore -l` with the early entries commented out; NULL when n is 0 */
    /* a table may be analyzed once its early entries are built: nothing left for the final
     * pass (an index, extended statistics) changes what ANALYZE of a loaded table computes */
    bool analyze_early;
} pgp_plan;

/*
 * sql: `pg_restore --section=post-data -f -` without psql's backslash lines; toc:
 * `pg_restore --section=post-data -l` of the same archive. An INDEX on a loaded table
 * (`CREATE [UNIQUE] INDEX i ON s.t`, not ON ONLY) and a CONSTRAINT added with
 * `ALTER TABLE ONLY s.t ADD CONSTRAINT` (a primary key, unique or exclusion constraint; never a
 * foreign key or a check, which have types of their own) go early; everything else, and
 * everything when the two listings do not pair up entry by entry, stays for the final pass
 * (then n is 0 and analyze_early false).
 */
void pgp_plan_build(const char *sql, const char *toc, pgp_table_fn find, void *arg, pgp_plan *out);
void pgp_plan_free(pgp_plan *p);

#endif
