/* my_client.c: MySQL and MariaDB clients: DSNs, connections, statements, quoting; the
 * capture (snapshot/mysql.c) and the revert (restore/mysql.c) both call it. */
#include "my_client.h"

#include <errmsg.h>
#include <errno.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/util.h"

/* ------------------------------------------------------------------------------------ */
/* DSN and connections                                                                   */

struct my_dsn {
    char *user, *password, *host, *socket, *db;
    unsigned port;
    char *ssl_mode, *ssl_ca, *ssl_cert, *ssl_key;
    char *defaults_file, *defaults_group;
    unsigned connect_timeout;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into a new string; NULL on a bad escape or an embedded NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

void my_dsn_free(my_dsn *d)
{
    if (d == NULL)
        return;
    free(d->user);
    if (d->password != NULL) {
        memset(d->password, 0, strlen(d->password));
        free(d->password);
    }
    free(d->host);
    free(d->socket);
    free(d->db);
    free(d->ssl_mode);
    free(d->ssl_ca);
    free(d->ssl_cert);
    free(d->ssl_key);
    free(d->defaults_file);
    free(d->defaults_group);
    free(d);
}

static snap_rc dsn_bad(snap_err *err, const char *why)
{
    err_set(err, SNAP_EUSAGE, 0, "invalid mysql dsn: %s", why);
    err_hint(err, "the form is mysql://user[:password]@host[:port]/db[?socket=PATH&ssl-mode=...]");
    return SNAP_EUSAGE;
}

/* user[:password]@ before the host; the last '@' before the path ends it (a password may
 * hold '@'). Advances *p past it; returns what is wrong, or NULL. */
static const char *parse_userinfo(my_dsn *d, const char **p, const char *slash)
{
    const char *at = NULL, *colon;

    for (const char *s = *p; s < slash; s++)
        if (*s == '@')
            at = s;
    if (at == NULL)
        return NULL;
    colon = memchr(*p, ':', (size_t)(at - *p));
    if (colon != NULL) {
        d->user = pct_decode(*p, (size_t)(colon - *p));
        d->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
        if (d->password == NULL)
            return "bad %-escape in the password";
    } else {
        d->user = pct_decode(*p, (size_t)(at - *p));
    }
    if (d->user == NULL)
        return "bad %-escape in the user";
    *p = at + 1;
    return NULL;
}

/* host, [v6] or nothing, then :port, up to the path. */
static const char *parse_hostport(my_dsn *d, const char *p, const char *slash)
{
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(slash - p));
        if (rb == NULL)
            return "unclosed [ in the host";
        d->host = pct_decode(p + 1, (size_t)(rb - p - 1));
        p = rb + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(slash - p)), *hostend = colon ? colon : slash;
        d->host = pct_decode(p, (size_t)(hostend - p));
        p = hostend;
    }
    if (*p == ':') {
        char *end;
        unsigned long port = strtoul(p + 1, &end, 10);
        if (end != slash || port == 0 || port > 65535)
            return "the port is not a number from 1 to 65535";
        d->port = (unsigned)port;
    }
    if (d->host != NULL && d->host[0] == '\0') {
        free(d->host);
        d->host = NULL;
    }
    return NULL;
}

/* Where a query option goes, or NULL when unknown; connect-timeout is set here. */
static char **option_slot(my_dsn *d, const char *name, const char *val, bool *done)
{
    static const struct {
        const char *name;
        size_t off;
    } keys[] = {
        {"socket", offsetof(my_dsn, socket)},           {"ssl-mode", offsetof(my_dsn, ssl_mode)},
        {"sslmode", offsetof(my_dsn, ssl_mode)},        {"ssl-ca", offsetof(my_dsn, ssl_ca)},
        {"ssl-cert", offsetof(my_dsn, ssl_cert)},       {"ssl-key", offsetof(my_dsn, ssl_key)},
        {"defaults-file", offsetof(my_dsn, defaults_file)},
        {"defaults-group", offsetof(my_dsn, defaults_group)},
        {"password", offsetof(my_dsn, password)},       {"pwd", offsetof(my_dsn, password)},
    };

    *done = false;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(name, keys[i].name) == 0)
            return (char **)(void *)((char *)d + keys[i].off);
    if (strcmp(name, "connect-timeout") == 0) {
        d->connect_timeout = (unsigned)strtoul(val, NULL, 10);
        *done = true;
    }
    return NULL;
}

/* ?key=value&... after the database; keys and values may be %-encoded. */
static snap_rc parse_query(my_dsn *d, const char *q, snap_err *err)
{
    while (q != NULL && *q != '\0') {
        const char *key = q + 1, *amp = strchr(key, '&'), *eq;
        size_t len = amp ? (size_t)(amp - key) : strlen(key);
        char *val, *name, **slot;
        bool done;

        q = amp;
        if (len == 0)
            continue;
        eq = memchr(key, '=', len);
        if (eq == NULL)
            return dsn_bad(err, "a query option lacks '='");
        val = pct_decode(eq + 1, len - (size_t)(eq + 1 - key));
        name = pct_decode(key, (size_t)(eq - key));
        if (val == NULL || name == NULL) {
            free(val);
            free(name);
            return dsn_bad(err, "bad %-escape in a query option");
        }
        slot = option_slot(d, name, val, &done);
        free(name);
        if (slot == NULL) {
            free(val);
            if (done)
                continue;
            err_set(err, SNAP_EUSAGE, 0, "invalid mysql dsn: unknown option %.*s", (int)(eq - key), key);
            err_hint(err, "known options: socket, ssl-mode, ssl-ca, ssl-cert, ssl-key, "
                          "defaults-file, defaults-group, password, connect-timeout");
            return SNAP_EUSAGE;
        }
        free(*slot);
        *slot = val;
    }
    return SNAP_OK;
}

static bool ssl_mode_known(const char *mode)
{
    static const char *const modes[] = {"disabled", "preferred", "required", "verify_ca", "verify_identity"};

    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcasecmp(mode, modes[i]) == 0)
            return true;
    return false;
}

snap_rc my_dsn_parse(const char *dsn, my_dsn **out, snap_err *err)
{
    my_dsn *d;
    const char *p, *slash, *q, *why = NULL;
    snap_rc rc;

    *out = NULL;
    if (strncmp(dsn, "mysql://", 8) != 0 && strncmp(dsn, "mariadb://", 10) != 0)
        return dsn_bad(err, "it must start with mysql://");
    p = strchr(dsn, ':') + 3;
    slash = strchr(p, '/');
    if (slash == NULL)
        return dsn_bad(err, "no database after the host");
    d = xcalloc(1, sizeof *d);
    why = parse_userinfo(d, &p, slash);
    if (why == NULL)
        why = parse_hostport(d, p, slash);
    if (why == NULL) {
        q = strchr(slash + 1, '?');
        d->db = pct_decode(slash + 1, q ? (size_t)(q - slash - 1) : strlen(slash + 1));
        if (d->db == NULL || d->db[0] == '\0')
            why = "no database name after the host";
    }
    if (why != NULL) {
        my_dsn_free(d);
        return dsn_bad(err, why);
    }
    rc = parse_query(d, q, err);
    if (rc == SNAP_OK && d->ssl_mode != NULL && !ssl_mode_known(d->ssl_mode))
        rc = dsn_bad(err, "ssl-mode is one of disabled, preferred, required, verify_ca, verify_identity");
    if (rc != SNAP_OK) {
        my_dsn_free(d);
        return rc;
    }
    *out = d;
    return SNAP_OK;
}

const char *my_dsn_db(const my_dsn *d)
{
    return d->db;
}

bool my_dsn_has_password(const my_dsn *d)
{
    return d != NULL && d->password != NULL;
}

void my_dsn_set_db(my_dsn *d, const char *db)
{
    free(d->db);
    d->db = xstrdup(db);
}

/* Percent-encodes what would break the DSN form. */
static void pct_append(char **buf, size_t *len, const char *s, const char *keep)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c) || (keep && strchr(keep, c))) {
            *buf = xrealloc(*buf, *len + 2);
            (*buf)[(*len)++] = (char)c;
        } else {
            *buf = xrealloc(*buf, *len + 4);
            snprintf(*buf + *len, 4, "%%%02X", c);
            *len += 3;
        }
    }
    *buf = xrealloc(*buf, *len + 1);
    (*buf)[*len] = '\0';
}

char *my_dsn_server(const my_dsn *d)
{
    return xasprintf("host=%s port=%u socket=%s defaults-file=%s defaults-group=%s", d->host ? d->host : "", d->port,
                     d->socket ? d->socket : "", d->defaults_file ? d->defaults_file : "",
                     d->defaults_group ? d->defaults_group : "");
}

char *my_dsn_redacted(const my_dsn *d)
{
    char *b = xstrdup("mysql://");
    size_t n = strlen(b);

    if (d->user) {
        pct_append(&b, &n, d->user, NULL);
        pct_append(&b, &n, "@", "@");
    }
    if (d->host) {
        bool v6 = strchr(d->host, ':') != NULL;
        if (v6)
            pct_append(&b, &n, "[", "[");
        pct_append(&b, &n, d->host, v6 ? ":" : NULL);
        if (v6)
            pct_append(&b, &n, "]", "]");
    }
    if (d->port) {
        char port[16];
        snprintf(port, sizeof port, ":%u", d->port);
        pct_append(&b, &n, port, ":");
    }
    pct_append(&b, &n, "/", "/");
    pct_append(&b, &n, d->db, NULL);
    const char *names[] = {"socket", "ssl-mode", "ssl-ca", "ssl-cert", "ssl-key",
                           "defaults-file", "defaults-group"};
    const char *vals[] = {d->socket, d->ssl_mode, d->ssl_ca, d->ssl_cert, d->ssl_key,
                          d->defaults_file, d->defaults_group};
    bool first = true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (vals[i] == NULL)
            continue;
        pct_append(&b, &n, first ? "?" : "&", "?&");
        pct_append(&b, &n, names[i], NULL);
        pct_append(&b, &n, "=", "=");
        pct_append(&b, &n, vals[i], "/");
        first = false;
    }
    return b;
}

snap_rc my_fail(MYSQL *m, snap_err *err, const char *what)
{
    unsigned no = mysql_errno(m);
    snap_rc code = SNAP_EFAIL;

    switch (no) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_UNKNOWN_HOST:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SSL_CONNECTION_ERROR:
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_TABLEACCESS_DENIED_ERROR:
    case ER_SPECIFIC_ACCESS_DENIED_ERROR:
    case ER_COLUMNACCESS_DENIED_ERROR:
    case ER_SERVER_SHUTDOWN:
        code = SNAP_EUNREACH;
        break;
    case ER_BAD_DB_ERROR:
    case ER_NO_SUCH_TABLE:
        code = SNAP_ENOTFOUND;
        break;
    default:
        break;
    }
    err_set(err, code, 0, "%s: %s (mysql error %u)", what, mysql_error(m), no);
    if (no == ER_ACCESS_DENIED_ERROR || no == ER_DBACCESS_DENIED_ERROR || no == ER_TABLEACCESS_DENIED_ERROR ||
        no == ER_SPECIFIC_ACCESS_DENIED_ERROR || no == ER_COLUMNACCESS_DENIED_ERROR)
        err_kind(err, "denied");
    if (no == CR_SERVER_GONE_ERROR || no == CR_SERVER_LOST || no == ER_SERVER_SHUTDOWN)
        err_hint(err, "the server went away (restarted or killed the session); nothing was "
                      "committed, run the command again");
    else if (no == ER_SPECIFIC_ACCESS_DENIED_ERROR || no == ER_TABLEACCESS_DENIED_ERROR ||
             no == ER_DBACCESS_DENIED_ERROR)
        err_hint(err, "grant the privilege named above to the user of the dsn");
    return code;
}

snap_rc my_exec(MYSQL *m, snap_err *err, const char *what, const char *sql)
{
    MYSQL_RES *r;

    if (mysql_real_query(m, sql, strlen(sql)) != 0)
        return my_fail(m, err, what);
    /* drain anything returned */
    r = mysql_store_result(m);
    mysql_free_result(r);
    if (r == NULL && mysql_field_count(m) != 0)
        return my_fail(m, err, what);
    return SNAP_OK;
}

snap_rc my_execf(MYSQL *m, snap_err *err, const char *what, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    snap_rc rc;

    va_start(ap, fmt);
    if (vasprintf(&sql, fmt, ap) < 0)
        abort();
    va_end(ap);
    rc = my_exec(m, err, what, sql);
    free(sql);
    return rc;
}

snap_rc my_query(MYSQL *m, snap_err *err, const char *what, const char *sql, MYSQL_RES **res)
{
    *res = NULL;
    if (mysql_real_query(m, sql, strlen(sql)) != 0)
        return my_fail(m, err, what);
    *res = mysql_store_result(m);
    if (*res == NULL && mysql_field_count(m) != 0)
        return my_fail(m, err, what);
    return SNAP_OK;
}

char *my_ident(const char *name)
{
    size_t n = strlen(name), o = 0;
    char *s = xmalloc(2 * n + 3);

    s[o++] = '`';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '`')
            s[o++] = '`';
        s[o++] = name[i];
    }
    s[o++] = '`';
    s[o] = '\0';
    return s;
}

char *my_literal(MYSQL *m, const char *s)
{
    size_t n = strlen(s);
    char *out = xmalloc(2 * n + 3);
    unsigned long len;

    out[0] = '\'';
    len = mysql_real_escape_string(m, out + 1, s, (unsigned long)n);
    out[len + 1] = '\'';
    out[len + 2] = '\0';
    return out;
}

char *my_path_encode(const char *name)
{
    size_t n = strlen(name), o = 0;
    char *s = xmalloc(3 * n + 1);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '$' || c == '-') {
            s[o++] = (char)c;
        } else {
            snprintf(s + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    s[o] = '\0';
    return s;
}

char *my_path_decode(const char *enc)
{
    return pct_decode(enc, strlen(enc));
}

bool my_is_mariadb(MYSQL *m)
{
    const char *v = mysql_get_server_info(m);
    return v != NULL && strstr(v, "MariaDB") != NULL;
}

snap_rc my_connect(const my_dsn *d, const char *db, MYSQL **out, snap_err *err)
{
    MYSQL *m = mysql_init(NULL);
    char *redacted;
    const char *env = getenv("SNAP_CONNECT_TIMEOUT");
    unsigned long env_timeout = env != NULL ? strtoul(env, NULL, 10) : 0;
    unsigned timeout = d->connect_timeout  ? d->connect_timeout
                       : env_timeout > 0 && env_timeout < 86400 ? (unsigned)env_timeout
                                                                : MY_CONNECT_TIMEOUT_DEFAULT;
    my_bool on = 1;
    const char *pwd = d->password;
    snap_rc rc;

    *out = NULL;
    if (m == NULL)
        return err_set(err, SNAP_EFAIL, ENOMEM, "mysql_init failed");
    /* MySQL's own conventions: [client] of the option files, or a named file and group */
    if (d->defaults_file != NULL)
        mysql_optionsv(m, MYSQL_READ_DEFAULT_FILE, d->defaults_file);
    mysql_optionsv(m, MYSQL_READ_DEFAULT_GROUP, d->defaults_group ? d->defaults_group : "client");
    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &on);
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (d->ssl_mode != NULL && strcasecmp(d->ssl_mode, "disabled") != 0) {
        my_bool verify = strncasecmp(d->ssl_mode, "verify", 6) == 0;
        my_bool enforce = strcasecmp(d->ssl_mode, "preferred") != 0;
        mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &enforce);
        mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
        if (d->ssl_ca)
            mysql_optionsv(m, MYSQL_OPT_SSL_CA, d->ssl_ca);
        if (d->ssl_cert)
            mysql_optionsv(m, MYSQL_OPT_SSL_CERT, d->ssl_cert);
        if (d->ssl_key)
            mysql_optionsv(m, MYSQL_OPT_SSL_KEY, d->ssl_key);
    } else if (d->ssl_mode != NULL) {
        my_bool off = 0;
        mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &off);
    }
    if (pwd == NULL)
        pwd = getenv("MYSQL_PWD");
    /* "localhost" (or no host) with a socket means the Unix socket */
    if (mysql_real_connect(m, d->host, d->user, pwd, db, d->port, d->socket,
                           CLIENT_LOCAL_FILES) == NULL) {
        unsigned no = mysql_errno(m);
        redacted = my_dsn_redacted(d);
        rc = my_fail(m, err, "cannot connect");
        err_prefix(err, "%s", redacted);
        if (no == ER_ACCESS_DENIED_ERROR)
            err_hint(err, "check the user and password: MYSQL_PWD, the [client] section of "
                          "~/.my.cnf, or the dsn (mysql://user:password@...)");
        else if (no == CR_SSL_CONNECTION_ERROR)
            err_hint(err, "the TLS handshake or the server certificate failed: check ssl-ca and "
                          "the host name against the certificate, or the ssl-mode of the dsn");
        else if (no == ER_BAD_DB_ERROR)
            err_hint(err, "check the database name at the end of the dsn");
        else if (rc == SNAP_EUNREACH && no != ER_DBACCESS_DENIED_ERROR)
            err_hint(err, "check that the server runs and listens on that host and port "
                          "(or socket)");
        free(redacted);
        mysql_close(m);
        return rc;
    }
    rc = my_exec(m, err, "set the session",
                 "SET time_zone = '+00:00', SESSION group_concat_max_len = 1048576");
    if (rc != SNAP_OK) {
        mysql_close(m);
        return rc;
    }
    *out = m;
    return SNAP_OK;
}
