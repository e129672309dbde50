/* pg.c: connections, DSN redaction and the client programs both PostgreSQL sides use. */
#include "pg_client.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/util.h"

#include <ctype.h>

extern char **environ;

static bool is_uri(const char *dsn)
{
    return strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
}

/*
 * libpq's parse, refusing URIs that libpq would read in a way that exposes part of a
 * password: an unencoded '/' or '@' in it makes libpq take a fragment for the host, the
 * port or the database name, which then reach messages and the component name.
 */
static PQconninfoOption *parse_dsn(const char *dsn)
{
    PQconninfoOption *kw;
    char *perr = NULL;

    if (dsn == NULL || (kw = PQconninfoParse(dsn, &perr)) == NULL) {
        PQfreemem(perr); /* it may quote the DSN */
        return NULL;
    }
    if (is_uri(dsn)) {
        const char *auth = strstr(dsn, "://") + 3, *path = auth + strcspn(auth, "/");
        const char *at = memchr(auth, '@', (size_t)(path - auth)), *port = NULL;
        bool bad = memchr(path, '@', strcspn(path, "?")) != NULL ||
                   (at != NULL && memchr(at + 1, '@', (size_t)(path - at - 1)) != NULL);
        for (const PQconninfoOption *o = kw; o->keyword != NULL; o++)
            if (strcmp(o->keyword, "port") == 0)
                port = o->val;
        if (port != NULL && port[strspn(port, "0123456789,")] != '\0')
            bad = true;
        if (bad) {
            PQconninfoFree(kw);
            return NULL;
        }
    }
    return kw;
}

/* Whether libpq treats this keyword as a secret (its dispchar "*": password, sslpassword...). */
static bool is_secret(const PQconninfoOption *o)
{
    return o->dispchar != NULL && strchr(o->dispchar, '*') != NULL;
}

/* Writes s percent-encoded (all but RFC 3986 unreserved bytes, and those in keep). */
static void put_pct(FILE *f, const char *s, const char *keep)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c) != NULL || (keep != NULL && strchr(keep, c) != NULL))
            fputc(c, f);
        else
            fprintf(f, "%%%02X", c);
    }
}

static const char *kw_val(const PQconninfoOption *kw, const char *key)
{
    for (const PQconninfoOption *o = kw; o->keyword != NULL; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* A value that is itself a connection string (a dbname libpq would expand) is redacted too. */
static char *redact_value(const char *key, const char *val)
{
    if (strcmp(key, "dbname") == 0 && (is_uri(val) || strchr(val, '=') != NULL)) {
        char *inner = pg_redact_dsn(val);
        return inner != NULL ? inner : xstrdup("");
    }
    return xstrdup(val);
}

/*
 * The URI form rebuilt from libpq's parse: user@host:port/dbname?rest. A host list, a
 * socket directory or a port list goes to the query, where it needs no special syntax.
 */
static void write_uri(FILE *f, const char *dsn, const PQconninfoOption *kw)
{
    const char *user = kw_val(kw, "user"), *host = kw_val(kw, "host");
    const char *port = kw_val(kw, "port"), *db = kw_val(kw, "dbname");
    bool host_in_query = host != NULL && (strchr(host, ',') != NULL || host[0] == '/');
    bool port_in_query = port != NULL && (host_in_query || strchr(port, ',') != NULL);
    bool first = true;

    fputs(strncmp(dsn, "postgres://", 11) == 0 ? "postgres://" : "postgresql://", f);
    if (user != NULL) {
        put_pct(f, user, NULL);
        fputc('@', f);
    }
    if (host != NULL && !host_in_query) {
        bool v6 = strchr(host, ':') != NULL;
        fputs(v6 ? "[" : "", f);
        put_pct(f, host, v6 ? ":" : NULL);
        fputs(v6 ? "]" : "", f);
    }
    if (port != NULL && !port_in_query) {
        fputc(':', f);
        put_pct(f, port, NULL);
    }
    if (db != NULL) {
        char *v = redact_value("dbname", db);
        fputc('/', f);
        put_pct(f, v, NULL);
        free(v);
    }
    for (const PQconninfoOption *o = kw; o->keyword != NULL; o++) {
        const char *k = o->keyword;
        if (o->val == NULL || is_secret(o) || !strcmp(k, "user") || !strcmp(k, "dbname") ||
            (!strcmp(k, "host") && !host_in_query) || (!strcmp(k, "port") && !port_in_query))
            continue;
        fputc(first ? '?' : '&', f);
        first = false;
        put_pct(f, k, NULL);
        fputc('=', f);
        put_pct(f, o->val, "/,");
    }
}

/* key='value' pairs, with ' and \ escaped as libpq reads them back. */
static void write_keywords(FILE *f, const PQconninfoOption *kw)
{
    bool first = true;

    for (const PQconninfoOption *o = kw; o->keyword != NULL; o++) {
        char *v;
        if (o->val == NULL || is_secret(o))
            continue;
        v = redact_value(o->keyword, o->val);
        fprintf(f, "%s%s='", first ? "" : " ", o->keyword);
        for (const char *c = v; *c; c++) {
            if (*c == '\'' || *c == '\\')
                fputc('\\', f);
            fputc(*c, f);
        }
        fputc('\'', f);
        free(v);
        first = false;
    }
}

/*
 * Built from libpq's own parse, never by editing the text: whatever way the secret was
 * written (an escaped '?', a %-encoded key, sslpassword), libpq names it, and only the
 * options libpq does not mark secret are written back.
 */
char *pg_redact_dsn(const char *dsn)
{
    PQconninfoOption *kw = parse_dsn(dsn);
    char *out = NULL;
    size_t len = 0;
    FILE *f;

    if (kw == NULL)
        return NULL;
    f = open_memstream(&out, &len);
    if (f == NULL)
        abort();
    if (is_uri(dsn))
        write_uri(f, dsn, kw);
    else
        write_keywords(f, kw);
    fclose(f);
    PQconninfoFree(kw);
    return out;
}

bool pg_dsn_has_secret(const char *dsn)
{
    PQconninfoOption *kw;
    bool found = false;

    if ((kw = parse_dsn(dsn)) == NULL)
        return false;
    for (const PQconninfoOption *o = kw; o->keyword != NULL; o++)
        if (o->val != NULL && (is_secret(o) || (strcmp(o->keyword, "dbname") == 0 && pg_dsn_has_secret(o->val))))
            found = true;
    PQconninfoFree(kw);
    return found;
}

char *pg_dsn_dbname(const char *dsn)
{
    PQconninfoOption *kw;
    const char *db;
    char *out = NULL;

    if ((kw = parse_dsn(dsn)) == NULL)
        return NULL;
    db = kw_val(kw, "dbname");
    if (db != NULL && (is_uri(db) || strchr(db, '=') != NULL))
        out = pg_dsn_dbname(db);
    else if (db != NULL && *db != '\0')
        out = xstrdup(db);
    PQconninfoFree(kw);
    return out;
}

char *pg_dsn_server(const char *dsn)
{
    static const char *const keys[] = {"host", "hostaddr", "port", "service"};
    PQconninfoOption *kw;
    const char *db;
    char *out = NULL;
    util_buf b = {0};

    if ((kw = parse_dsn(dsn)) == NULL)
        return NULL;
    db = kw_val(kw, "dbname");
    if (db == NULL || !(is_uri(db) || strchr(db, '=') != NULL)) {
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const char *v = kw_val(kw, keys[i]);
            util_buf_adds(&b, i ? " " : "");
            util_buf_adds(&b, keys[i]);
            util_buf_addc(&b, '=');
            util_buf_adds(&b, v != NULL ? v : "");
        }
        out = util_buf_take(&b);
    }
    PQconninfoFree(kw);
    return out;
}

/* libpq messages are multi-line and end with a newline: keep them on one line. */
static void one_line(const char *in, char *out, size_t cap)
{
    size_t n = 0;

    for (; *in && n + 1 < cap; in++) {
        char ch = *in == '\n' || *in == '\t' ? ' ' : *in;
        if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = ch;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

void pg_errmsg(PGconn *conn, const PGresult *res, char *out, size_t cap)
{
    const char *m = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (m == NULL && res != NULL)
        m = PQresultErrorMessage(res);
    if ((m == NULL || *m == '\0') && conn != NULL)
        m = PQerrorMessage(conn);
    one_line(m != NULL && *m ? m : "unknown error", out, cap);
    if (strncmp(out, "ERROR: ", 7) == 0)
        memmove(out, out + 7, strlen(out + 7) + 1);
}

const char *pg_sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

/* A description of where dsn points, for a failed connection: "host:port/db". */
static char *dsn_where(const char *dsn, const char *dbname)
{
    PQconninfoOption *kw = parse_dsn(dsn), *def = PQconndefaults();
    const char *host = NULL, *port = NULL, *db = dbname, *user = NULL;
    char *out;

    for (int pass = 0; pass < 2; pass++)
        for (PQconninfoOption *o = pass ? def : kw; o != NULL && o->keyword != NULL; o++) {
            if (o->val == NULL || *o->val == '\0')
                continue;
            if (strcmp(o->keyword, "host") == 0 && host == NULL)
                host = o->val;
            else if (strcmp(o->keyword, "port") == 0 && port == NULL)
                port = o->val;
            else if (strcmp(o->keyword, "dbname") == 0 && db == NULL)
                db = o->val;
            else if (strcmp(o->keyword, "user") == 0 && user == NULL)
                user = o->val;
        }
    out = xasprintf("%s:%s/%s", host ? host : "localhost", port ? port : "5432",
                    db ? db : (user ? user : "?"));
    PQconninfoFree(kw);
    PQconninfoFree(def);
    return out;
}

snap_rc pg_connect(const char *dsn, const char *dbname, PGconn **out, snap_err *err)
{
    const char *keys[8], *vals[8], *env = getenv("PGCONNECT_TIMEOUT"), *ours = getenv("SNAP_CONNECT_TIMEOUT");
    char msg[512], *where;
    PQconninfoOption *kw;
    bool has_timeout = env != NULL && *env != '\0';
    PGconn *conn;
    size_t n = 0;
    snap_rc rc;

    *out = NULL;
    kw = parse_dsn(dsn);
    if (kw == NULL) {
        err_set(err, SNAP_EUSAGE, 0, "invalid postgres dsn");
        err_hint(err, "use postgresql://user@host:port/dbname or key=value pairs (host=... dbname=...);"
                      " a '/', '@', '?' or '#' in a URI's password must be %%-encoded, or better,"
                      " leave the password to ~/.pgpass or PGPASSWORD");
        return SNAP_EUSAGE;
    }
    if (kw_val(kw, "connect_timeout") != NULL)
        has_timeout = true;
    PQconninfoFree(kw);
    keys[n] = "dbname", vals[n++] = dsn;
    if (dbname != NULL)
        keys[n] = "dbname", vals[n++] = dbname;
    keys[n] = "fallback_application_name", vals[n++] = "snap";
    keys[n] = "client_encoding", vals[n++] = "UTF8";
    /* a server that accepts and never answers must not hang us: libpq waits forever by default */
    if (!has_timeout)
        keys[n] = "connect_timeout", vals[n++] = ours != NULL && *ours != '\0' ? ours : PG_CONNECT_TIMEOUT_DEFAULT;
    keys[n] = vals[n] = NULL;
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        /*
         * What pg_dump sets too: data in formats any session reads back the same (a
         * database's own DateStyle could make dates ambiguous), no timeout cutting a long
         * COPY short, and an error instead of rows silently hidden by row-level security.
         */
        rc = pg_exec(conn,
                     "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3;"
                     " SET bytea_output = hex; SET statement_timeout = 0; SET lock_timeout = 0;"
                     " SET idle_in_transaction_session_timeout = 0; SET row_security = off",
                     err);
        if (rc != SNAP_OK) {
            PQfinish(conn);
            return rc;
        }
        *out = conn;
        return SNAP_OK;
    }
    where = dsn_where(dsn, dbname);
    one_line(conn ? PQerrorMessage(conn) : "out of memory", msg, sizeof msg);
    if (strstr(msg, "database \"") != NULL && strstr(msg, "does not exist") != NULL) {
        rc = err_set(err, SNAP_ENOTFOUND, 0, "cannot connect to postgres %s: %s", where, msg);
        err_hint(err, "check the database name in the DSN (psql -l lists them)");
    } else if (strstr(msg, "timeout expired") != NULL) {
        rc = err_set(err, SNAP_EUNREACH, 0, "cannot connect to postgres %s: no answer within the connect timeout",
                     where);
        err_hint(err, "check the host and port; a slow server needs a larger connect_timeout (the dsn's,"
                      " PGCONNECT_TIMEOUT, or [snap] connect_timeout in the config)");
    } else if (strstr(msg, "password") != NULL || strstr(msg, "authentication") != NULL) {
        rc = err_set(err, SNAP_EUNREACH, 0, "cannot connect to postgres %s: %s", where, msg);
        /* libpq says "no password supplied" when it had none to send */
        err_kind(err, strstr(msg, "no password supplied") != NULL ? "credentials" : "denied");
        err_hint(err, "check the user and password: PGPASSWORD, ~/.pgpass or the service file");
    } else {
        rc = err_set(err, SNAP_EUNREACH, 0, "cannot connect to postgres %s: %s", where, msg);
        err_hint(err, "check that the server runs and accepts connections (pg_isready -h HOST -p PORT)");
    }
    free(where);
    PQfinish(conn);
    return rc;
}

char *pg_where(PGconn *conn)
{
    const char *host = PQhost(conn);

    if (host == NULL || *host == '\0' || *host == '/')
        host = "localhost";
    return xasprintf("%s:%s/%s", host, PQport(conn), PQdb(conn));
}

snap_rc pg_exec(PGconn *conn, const char *sql, snap_err *err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    char msg[512];

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
        PQclear(res);
        return SNAP_OK;
    }
    pg_errmsg(conn, res, msg, sizeof msg);
    err_set(err, PQstatus(conn) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0, "%s", msg);
    if (strcmp(pg_sqlstate(res), "42501") == 0)
        err->code = SNAP_EUNREACH;
    PQclear(res);
    return err->code;
}

snap_rc pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                 PGresult **out, snap_err *err)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    char msg[512];

    *out = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        *out = res;
        return SNAP_OK;
    }
    pg_errmsg(conn, res, msg, sizeof msg);
    err_set(err, PQstatus(conn) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0, "%s", msg);
    PQclear(res);
    return err->code;
}

/* libpq's quoted text, copied into our allocator's memory. */
static char *from_libpq(char *q)
{
    char *r;

    if (q == NULL)
        abort();
    r = xstrdup(q);
    PQfreemem(q);
    return r;
}

char *pg_ident(PGconn *conn, const char *s)
{
    return from_libpq(PQescapeIdentifier(conn, s, strlen(s)));
}

char *pg_literal(PGconn *conn, const char *s)
{
    return from_libpq(PQescapeLiteral(conn, s, strlen(s)));
}

int pg_tmpfile(snap_err *err)
{
    const char *env = getenv("TMPDIR"), *dir = env && *env ? env : "/tmp";
    int fd = util_tmpfile(dir, O_RDWR, 0600);

    if (fd < 0)
        err_sys(err, SNAP_EFAIL, "cannot create a temporary file in %s", dir);
    return fd;
}

/* Reads all of fd from the start (at most cap-1 bytes, the tail kept). */
static void read_tail(int fd, char *out, size_t cap)
{
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)(cap - 1) ? size - (off_t)(cap - 1) : 0;
    ssize_t n = pread(fd, out, cap - 1, from);

    out[n > 0 ? n : 0] = '\0';
}

/* Runs argv with stdout to out_fd and stderr to err_fd; returns the exit status or -1. */
static int spawn_wait(char *const *argv, char *const *envp, int out_fd, int err_fd, const int *keep, size_t nkeep,
                      snap_err *err)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status, e;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    /* a dup2 onto itself clears close-on-exec in the child only (POSIX.1-2024; glibc does) */
    for (size_t i = 0; i < nkeep; i++)
        posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    e = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        errno = e;
        err_sys(err, SNAP_EFAIL, "cannot run %s", argv[0]);
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            err_sys(err, SNAP_EFAIL, "cannot wait for %s", argv[0]);
            return -1;
        }
    return status;
}

/* The newest /usr/lib/postgresql/N/bin/tool (Debian's layout), or NULL. */
static char *debian_newest(const char *tool)
{
    glob_t g;
    char *best = NULL;
    long best_v = -1;

    if (glob("/usr/lib/postgresql/*/bin", GLOB_ONLYDIR, NULL, &g) != 0)
        return NULL;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        char *cand = xasprintf("%s/%s", g.gl_pathv[i], tool);
        if (v > best_v && access(cand, X_OK) == 0) {
            free(best);
            best = cand;
            best_v = v;
        } else {
            free(cand);
        }
    }
    globfree(&g);
    return best;
}

snap_rc pg_tool_find(const char *bindir, const char *tool, char **path, int *major, snap_err *err)
{
    char *p = NULL, out[256];
    const char *from_env = getenv("SNAP_PG_BINDIR");
    /* The one precedence rule: the environment beats the file. */
    const char *dir = from_env && *from_env ? from_env : bindir;
    int fd, null_fd, status;
    snap_rc rc = SNAP_OK;

    *path = NULL;
    *major = 0;
    if (dir != NULL && *dir) {
        p = xasprintf("%s/%s", dir, tool);
    } else if ((p = debian_newest(tool)) != NULL) {
        /* Debian's /usr/bin/pg_dump is a Perl wrapper that costs a second per run */
    } else {
        const char *env = getenv("PATH");
        char *paths = xstrdup(env && *env ? env : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
        for (char *d = strtok_r(paths, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
            char *cand = xasprintf("%s/%s", d, tool);
            if (access(cand, X_OK) == 0) {
                p = cand;
                break;
            }
            free(cand);
        }
        free(paths);
    }
    if (p == NULL || access(p, X_OK) != 0) {
        err_set(err, SNAP_ENOTFOUND, 0, "%s not found%s%s", tool, p ? " at " : " on PATH", p ? p : "");
        err_hint(err, "install the PostgreSQL client programs (Debian: postgresql-client), or set pg_bindir");
        free(p);
        return SNAP_ENOTFOUND;
    }
    fd = pg_tmpfile(err);
    if (fd < 0) {
        free(p);
        return err->code;
    }
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    {
        char *argv[] = {p, (char *)"--version", NULL};
        status = spawn_wait(argv, environ, fd, null_fd, NULL, 0, err);
    }
    close(null_fd);
    if (status < 0) {
        rc = err->code;
    } else {
        const char *v;
        read_tail(fd, out, sizeof out);
        /* "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" */
        v = strstr(out, ") ");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || v == NULL || (*major = atoi(v + 2)) <= 0)
            rc = err_set(err, SNAP_EFAIL, 0, "cannot tell the version of %s", p);
        /* 9.6 and older are "9.6.x": majors below 10 are all older than any server we support */
    }
    close(fd);
    if (rc == SNAP_OK)
        *path = p;
    else
        free(p);
    return rc;
}

/* The environment of a client program: ours without libpq's variables, plus conn's settings. */
static char **tool_env(PGconn *conn, const char *dbname, const char *options)
{
    PQconninfoOption *kw = PQconninfo(conn);
    size_t n = 0, cap = 64;
    char **env = xmalloc(cap * sizeof *env);

    for (char **e = environ; *e != NULL; e++) {
        if (strncmp(*e, "PG", 2) == 0)
            continue;
        if (n + 2 >= cap)
            env = xrealloc(env, (cap *= 2) * sizeof *env);
        env[n++] = xstrdup(*e);
    }
    for (PQconninfoOption *o = kw; o != NULL && o->keyword != NULL; o++) {
        const char *val = o->val;
        if (o->envvar == NULL || strcmp(o->keyword, "service") == 0)
            continue;
        if (strcmp(o->keyword, "options") == 0 && options != NULL) {
            if (n + 2 >= cap)
                env = xrealloc(env, (cap *= 2) * sizeof *env);
            env[n++] = xasprintf("%s=%s%s%s", o->envvar, val ? val : "", val && *val ? " " : "", options);
            continue;
        }
        if (strcmp(o->keyword, "dbname") == 0)
            val = dbname != NULL ? dbname : PQdb(conn);
        else if (strcmp(o->keyword, "host") == 0 && PQhost(conn) != NULL)
            val = PQhost(conn); /* the host actually connected to, not the whole list */
        else if (strcmp(o->keyword, "port") == 0)
            val = PQport(conn);
        if (val == NULL || *val == '\0')
            continue;
        if (n + 2 >= cap)
            env = xrealloc(env, (cap *= 2) * sizeof *env);
        env[n++] = xasprintf("%s=%s", o->envvar, val);
    }
    env[n] = NULL;
    PQconninfoFree(kw);
    return env;
}

snap_rc pg_tool_run(PGconn *conn, const char *dbname, const char *options, char *const *argv, int out_fd,
                    const int *keep, size_t nkeep, const snap_ctx *ctx, snap_err *err)
{
    char **env = tool_env(conn, dbname, options);
    int err_fd = pg_tmpfile(err), null_fd = -1, status;
    const char *tool = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    snap_rc rc = SNAP_OK;

    if (err_fd < 0) {
        rc = err->code;
        goto out;
    }
    if (out_fd < 0)
        out_fd = null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    log_debug(ctx, "running %s", tool);
    status = spawn_wait(argv, env, out_fd, err_fd, keep, nkeep, err);
    if (status < 0) {
        rc = err->code;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char tail[600], line[600];
        read_tail(err_fd, tail, sizeof tail);
        one_line(tail, line, sizeof line);
        if (WIFSIGNALED(status))
            rc = err_set(err, SNAP_EFAIL, 0, "%s was killed by signal %d: %s", tool, WTERMSIG(status), line);
        else
            rc = err_set(err, SNAP_EFAIL, 0, "%s failed (exit %d): %s", tool, WEXITSTATUS(status), line);
    }
out:
    if (err_fd >= 0)
        close(err_fd);
    if (null_fd >= 0)
        close(null_fd);
    for (char **e = env; *e != NULL; e++)
        free(*e);
    free(env);
    return rc;
}

void pg_pattern_regex(const char *pattern, char **schema_re, char **name_re)
{
    util_buf part[2] = {{0}, {0}};
    int cur = 0;
    bool quoted = false;

    for (int i = 0; i < 2; i++)
        util_buf_adds(&part[i], "^(");
    for (const char *p = pattern; *p; p++) {
        char ch = *p;
        if (ch == '"') {
            if (quoted && p[1] == '"') {
                util_buf_addc(&part[cur], '"');
                p++;
            } else {
                quoted = !quoted;
            }
        } else if (!quoted && ch == '.' && cur == 0) {
            cur = 1;
        } else if (!quoted && ch == '*') {
            util_buf_adds(&part[cur], ".*");
        } else if (!quoted && ch == '?') {
            util_buf_adds(&part[cur], ".");
        } else {
            char lower = quoted ? ch : (char)tolower((unsigned char)ch);
            if (strchr("|*+?()[]{}.^$\\", lower) != NULL)
                util_buf_adds(&part[cur], "\\");
            util_buf_addc(&part[cur], lower);
        }
    }
    for (int i = 0; i < 2; i++)
        util_buf_adds(&part[i], ")$");
    if (cur == 1) {
        *schema_re = util_buf_take(&part[0]);
        *name_re = util_buf_take(&part[1]);
    } else {
        *schema_re = NULL;
        *name_re = util_buf_take(&part[0]);
        util_buf_free(&part[1]);
    }
}

