/* targets.h: the live targets that sources (at snap) or components (at revert) name,
 * compared, so that one snap or one revert never names one target twice
 * (docs/design.md, "One target, one component"). */
#ifndef SNAP_TARGETS_H
#define SNAP_TARGETS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tgt_set tgt_set;

/* noun names an owner in messages: "source" or "component". */
tgt_set *tgt_set_new(const char *noun);
void tgt_set_free(tgt_set *s);

/*
 * A files or images root of owner: an absolute path, compared with its directory resolved
 * (realpath) and its last name as given, as revert resolves a root before it swaps it.
 * Two roots clash when they are the same path or one lies inside the other.
 */
void tgt_add_path(tgt_set *s, const char *owner, const char *path);

/*
 * A database of owner: type "postgres" or "mysql", its DSN, and the database (NULL: the
 * DSN's own). Two clash when their type, database and server as written
 * (pg_dsn_server, my_dsn_server) are the same. Not added when the DSN does not parse
 * or names no database: the capture or the plan says why.
 */
void tgt_add_db(tgt_set *s, const char *owner, const char *type, const char *dsn, const char *db);

/*
 * Whether two targets of the set are one, or one path is inside another, whether two
 * owners name them or one. When they do, msg gets what, without secrets: "sources a and
 * a-2 both name postgres database a on one server (dbname=a; postgresql:///a)", "sources
 * etc and x overlap: /etc/x is inside /etc", "source etc names /etc/x inside /etc".
 */
bool tgt_clash(const tgt_set *s, char *msg, size_t n);

#endif
