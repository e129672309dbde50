/* my_client.h: MySQL and MariaDB clients: DSNs, connections, statements, quoting. */
#ifndef SNAP_MY_CLIENT_H
#define SNAP_MY_CLIENT_H

#include <mysql.h>
#include <stdbool.h>

#include "../common/errors.h"

/*
 * A parsed DSN: mysql://user[:password]@host[:port]/db[?socket=PATH&ssl-mode=...]
 * Query options: socket, ssl-mode (disabled|preferred|required|verify_ca|verify_identity),
 * ssl-ca, ssl-cert, ssl-key, defaults-file, defaults-group, connect-timeout.
 * A missing password comes from MYSQL_PWD or the option files ([client] of ~/.my.cnf).
 */
typedef struct my_dsn my_dsn;

snap_rc my_dsn_parse(const char *dsn, my_dsn **out, snap_err *err);
void my_dsn_free(my_dsn *d);
const char *my_dsn_db(const my_dsn *d);
/* Whether the DSN itself carries a password (not MYSQL_PWD or an option file). */
bool my_dsn_has_password(const my_dsn *d);
/* Replaces the database (for --to). */
void my_dsn_set_db(my_dsn *d, const char *db);
/* The DSN without its password, for messages, manifests and journals (caller frees). */
char *my_dsn_redacted(const my_dsn *d);

/*
 * The server the DSN names, as written: host, port, socket and the option file it reads
 * (which may name the server), each empty or 0 when not given; nothing is filled from
 * defaults or option files (docs/design.md, "One target, one component"). Caller frees.
 */
char *my_dsn_server(const my_dsn *d);

/* Seconds to wait for a server when neither the DSN (connect-timeout) nor $SNAP_CONNECT_TIMEOUT sets it. */
#define MY_CONNECT_TIMEOUT_DEFAULT 10

/*
 * Connects with utf8mb4 for statements, time_zone +00:00 and LOCAL INFILE allowed.
 * db may be NULL (no default schema). Errors say what to check: server unreachable, silent
 * past the connect timeout, and access denied are SNAP_EUNREACH, an unknown database
 * SNAP_ENOTFOUND.
 */
snap_rc my_connect(const my_dsn *d, const char *db, MYSQL **out, snap_err *err);

/* Runs one statement that returns no rows; the message names what was being done. */
snap_rc my_exec(MYSQL *m, snap_err *err, const char *what, const char *sql);
snap_rc my_execf(MYSQL *m, snap_err *err, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Runs a query and stores its (small) result; *res is NULL for a statement without rows. */
snap_rc my_query(MYSQL *m, snap_err *err, const char *what, const char *sql, MYSQL_RES **res);
/* Sets err from the connection's last error, with the server's text. */
snap_rc my_fail(MYSQL *m, snap_err *err, const char *what);

/* `name` with backquotes doubled (caller frees). */
char *my_ident(const char *name);
/* 'text' as an SQL string literal for this connection (caller frees). */
char *my_literal(MYSQL *m, const char *s);
/* A table name as an archive path component: [A-Za-z0-9_$-] kept, the rest as %XX. */
char *my_path_encode(const char *name);
char *my_path_decode(const char *enc);

/* True for MariaDB, false for Oracle MySQL (from the server version string). */
bool my_is_mariadb(MYSQL *m);

/* The archive entry holding the schema: the first entry of the component's first part. */
#define MY_SCHEMA_ENTRY "schema.json"
#define MY_FORMAT 1

#endif
