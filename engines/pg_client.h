/* pg.h: what the PostgreSQL capture (snapshot/pg.c) and revert (restore/pg.c) share:
 * connections, DSN redaction, and running pg_dump / pg_restore. SQL stays in the engine. */
#ifndef SNAP_PG_H
#define SNAP_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ctx.h"

/* Layout of a postgres component's archive (docs/postgres.md). */
#define PG_META_ENTRY "postgres/snapshot.json"
#define PG_SEQ_ENTRY "postgres/sequences.sql"
#define PG_SCHEMA_ENTRY "postgres/schema.dump"
#define PG_DATA_DIR "data/"
#define PG_LO_DIR "lo/"

/*
 * The DSN without any keyword libpq marks secret (password, sslpassword; from the URI
 * userinfo, the query or a keyword, however written), rebuilt from libpq's parse in the
 * DSN's own form (URI or key='value'), still usable to connect: the password comes from PGPASSWORD, ~/.pgpass or the service file.
 * NULL when libpq cannot parse it. Caller frees.
 */
char *pg_redact_dsn(const char *dsn);
/* Whether the DSN holds a secret libpq knows (password, sslpassword...); false when unparsable. */
bool pg_dsn_has_secret(const char *dsn);
/* The database the DSN names (libpq's parse), or NULL when none or unparsable. Caller frees. */
char *pg_dsn_dbname(const char *dsn);

/*
 * The server a DSN names, as written (libpq's parse, so a URI and its key=value form
 * agree): "host=H hostaddr=A port=P service=S", each empty when not given. Nothing is
 * filled from the environment or the defaults, so two DSNs that give the same text name
 * the same server, and two that differ may still (docs/design.md, "One target, one
 * component"). NULL when unparsable or when dbname is itself a connection string.
 */
char *pg_dsn_server(const char *dsn);

/* Seconds to wait for a server when neither the DSN nor PGCONNECT_TIMEOUT sets it. */
#define PG_CONNECT_TIMEOUT_DEFAULT "10"

/*
 * Connects with dsn (URI, key=value, or "" for libpq's defaults), to database dbname
 * instead of the DSN's when dbname is not NULL. Failures say what and where without
 * secrets: SNAP_EUNREACH (down, refused, authentication), SNAP_ENOTFOUND (no such
 * database; or a server silent past the connect timeout: the DSN's connect_timeout, else
 * $PGCONNECT_TIMEOUT, else $SNAP_CONNECT_TIMEOUT, else PG_CONNECT_TIMEOUT_DEFAULT). The session gets
 * application_name snap and a UTF8 client encoding.
 */
snap_rc pg_connect(const char *dsn, const char *dbname, PGconn **out, snap_err *err);

/* "host:port/db" of a live connection, for messages and lock keys (caller frees). */
char *pg_where(PGconn *conn);

/* Runs a command (or several separated by ';'); SNAP_EFAIL with the server's message. */
snap_rc pg_exec(PGconn *conn, const char *sql, snap_err *err);
/* Runs a query with text parameters; *res is a PGRES_TUPLES_OK result the caller clears. */
snap_rc pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                 PGresult **res, snap_err *err);
/* The server's error of a failed result or connection as one line (static buffer of caller). */
void pg_errmsg(PGconn *conn, const PGresult *res, char *out, size_t cap);
/* A result's SQLSTATE, or "" */
const char *pg_sqlstate(const PGresult *res);

/* Quotes an identifier or literal (caller frees with free(), not PQfreemem). */
char *pg_ident(PGconn *conn, const char *s);
char *pg_literal(PGconn *conn, const char *s);

/*
 * A PostgreSQL client program (pg_dump, pg_restore): in $SNAP_PG_BINDIR when set (the
 * environment beats the file), else in bindir when given (the configuration's pg_bindir),
 * else Debian's newest or the one found on PATH; and its major version
 * from --version. SNAP_ENOTFOUND when it is missing.
 */
snap_rc pg_tool_find(const char *bindir, const char *tool, char **path, int *major, snap_err *err);

/*
 * Runs a client program with argv (argv[0] is its path) against conn's server, database
 * dbname (NULL: conn's): the connection settings travel as libpq environment variables,
 * never in argv. options (may be NULL) adds server settings ("-c name=value") to PGOPTIONS.
 * Its stdout goes to out_fd (or /dev/null when -1). The nkeep descriptors of keep stay open
 * in it under their numbers, so that argv can name an anonymous file as PG_FD_PATH. On a
 * non-zero exit the error carries the last lines of its stderr.
 */
snap_rc pg_tool_run(PGconn *conn, const char *dbname, const char *options, char *const *argv, int out_fd,
                    const int *keep, size_t nkeep, const snap_ctx *ctx, snap_err *err);

/* How a tool run with the descriptor kept names an anonymous file (printf, one int). */
#define PG_FD_PATH "/dev/fd/%d"

/*
 * A temporary file without a name in $TMPDIR (else /tmp), 0600 (util_tmpfile), so that
 * nothing is left when the process is killed; or -1 with err set. A tool
 * reaches it through pg_tool_run's keep and PG_FD_PATH.
 */
int pg_tmpfile(snap_err *err);

/*
 * Turns a psql-style name pattern (pg_dump -n / -T: * and ? wildcards, "quoted" parts
 * kept verbatim, unquoted letters folded to lower case, one unquoted '.' separating
 * schema from name) into anchored POSIX regular expressions for the server's `~`.
 * *schema_re is NULL when the pattern has no schema part. Callers free both.
 */
void pg_pattern_regex(const char *pattern, char **schema_re, char **name_re);

#endif
