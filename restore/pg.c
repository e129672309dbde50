/*
 * pg.c: the PostgreSQL target.
 *
 * swap (default): restore into <db>__revert_<snapshot> on the same server (pre-data with
 *   pg_restore, parallel COPY FROM STDIN with each table's indexes and ANALYZE as it completes
 *   (pg_post.h), the rest of post-data with pg_restore -j --use-list, row counts,
 *   database properties), then the cut-over: ALLOW_CONNECTIONS false on the live database,
 *   end its sessions, and in one transaction rename live -> <db>__pre_revert_<revert> and
 *   staged -> <db>. The databases are told apart by oid, so every step can be retried.
 * transaction: in one transaction on the live database, drop the captured schemas,
 *   recreate, load, commit; for servers where CREATE DATABASE is not allowed.
 * --to NAME: swap's staging, then staged -> NAME; the original is never touched.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../catalog/arc.h"
#include "../engines/pg_client.h"
#include "order.h"
#include "pg_post.h"
#include "restore.h"
#include "../common/pool.h"
#include "../common/state.h"
#include "../common/util.h"

#define NAMEDATALEN_MAX 63
#define IO_CHUNK (256u << 10)

/* ---- small helpers ---- */

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static json_t *info_of(const rst_target *t)
{
    return cat_component_info((cat_component *)(uintptr_t)rst_component(t));
}

static void set_str(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, json_string(v));
}

/* The DSN of a [source NAME] of type postgres for this component, or NULL. */
static const char *configured_dsn(rst_target *t)
{
    const src_opts *so = rst_source(t);

    return so->type != NULL && strcmp(so->type, "postgres") == 0 ? so->dsn : NULL;
}

/* The DSN: the config's [source NAME] when it names one, else the snapshot's (redacted),
 * which pg_plan takes only from an authenticated manifest. */
static const char *target_dsn(rst_target *t)
{
    const char *dsn = configured_dsn(t);

    if (dsn == NULL)
        dsn = json_string_value(json_object_get(rst_state(t), "dsn"));
    return dsn != NULL ? dsn : "";
}

/* "<db><suffix>" within PostgreSQL's 63 bytes, cutting the name at a character boundary. */
static char *db_with_suffix(const char *db, const char *suffix)
{
    size_t room = NAMEDATALEN_MAX - strlen(suffix), n = strlen(db);

    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)db[n] & 0xC0) == 0x80)
            n--;
    }
    return xasprintf("%.*s%s", (int)n, db, suffix);
}

/* The random part of an id (20261126T054128Z-1a2b3c4d -> 1a2b3c4d). */
static const char *id_token(const char *id)
{
    const char *dash = strrchr(id, '-');
    return dash != NULL ? dash + 1 : id;
}

static snap_rc connect_db(rst_target *t, const char *db, PGconn **out, snap_err *err)
{
    return pg_connect(target_dsn(t), db, out, err);
}

/* A database to run CREATE/ALTER/DROP DATABASE from: neither the live nor the staged one. */
static snap_rc connect_maintenance(rst_target *t, PGconn **out, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *opt = rst_options(t)->pg_maintenance_db;
    const char *cands[] = {opt, "postgres", "template1"};
    snap_rc rc = SNAP_ENOTFOUND;

    for (size_t i = 0; i < 3; i++) {
        if (cands[i] == NULL || strcmp(cands[i], jstr(st, "live")) == 0 ||
            strcmp(cands[i], jstr(st, "staged")) == 0 || strcmp(cands[i], jstr(st, "displaced")) == 0)
            continue;
        rc = connect_db(t, cands[i], out, err);
        if (rc == SNAP_OK || rc != SNAP_ENOTFOUND)
            return rc;
    }
    err_hint(err, "set [revert] pg_maintenance_db to a database the user may connect to");
    return rc;
}

/* Quoted identifier of a database name; the caller frees. */
static char *qi(PGconn *c, const char *s) { return pg_ident(c, s); }

/* Runs a statement built from a format; errors get the statement's purpose as prefix. */
static snap_rc execf(PGconn *c, snap_err *err, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static snap_rc execf(PGconn *c, snap_err *err, const char *what, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    snap_rc rc;

    va_start(ap, fmt);
    if (vasprintf(&sql, fmt, ap) < 0)
        abort();
    va_end(ap);
    rc = pg_exec(c, sql, err);
    free(sql);
    if (rc != SNAP_OK && what != NULL)
        err_prefix(err, "%s", what);
    return rc;
}

/* The oid of a database by name, 0 when it does not exist. */
static snap_rc db_oid(PGconn *c, const char *name, unsigned long *oid, snap_err *err)
{
    const char *p[1] = {name};
    PGresult *res;
    snap_rc rc = pg_query(c, "SELECT oid FROM pg_catalog.pg_database WHERE datname = $1", 1, p, &res, err);

    *oid = 0;
    if (rc == SNAP_OK && PQntuples(res) == 1)
        *oid = strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

/* The name of the database with this oid, or NULL (caller frees). */
static snap_rc db_name(PGconn *c, unsigned long oid, char **name, snap_err *err)
{
    char o[24];
    const char *p[1] = {o};
    PGresult *res;
    snap_rc rc;

    snprintf(o, sizeof o, "%lu", oid);
    rc = pg_query(c, "SELECT datname FROM pg_catalog.pg_database WHERE oid = $1::oid", 1, p, &res, err);
    *name = rc == SNAP_OK && PQntuples(res) == 1 ? xstrdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return rc;
}

static unsigned long st_oid(const rst_target *t, const char *key)
{
    return (unsigned long)json_integer_value(json_object_get(rst_state((rst_target *)(uintptr_t)t), key));
}

/* ---- plan ---- */

static snap_rc check_roles(rst_target *t, PGconn *c, json_t *plan, snap_err *err)
{
    json_t *roles = json_object_get(info_of(t), "roles");
    char *arr = json_dumps(roles ? roles : json_array(), JSON_COMPACT), *missing;
    const char *p[1] = {arr};
    PGresult *res;
    snap_rc rc = pg_query(c,
                          "SELECT coalesce(string_agg(r, ', ' ORDER BY r), '') FROM json_array_elements_text($1::json) r"
                          " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r)",
                          1, p, &res, err);

    free(arr);
    if (rc != SNAP_OK)
        return rc;
    missing = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    json_object_set_new(plan, "roles", json_incref(roles ? roles : json_null()));
    if (*missing) {
        err_set(err, SNAP_ENOTFOUND, 0, "roles the snapshot needs do not exist on this server: %s", missing);
        err_hint(err, "create them first (CREATE ROLE ...; pg_dumpall --roles-only on the source server lists them); "
                      "nothing was changed");
        rc = SNAP_ENOTFOUND;
    }
    free(missing);
    return rc;
}

/* Sessions on db this user cannot end, replication slots and subscriptions that hold it. */
static snap_rc check_blockers(PGconn *c, const char *db, json_t *plan, snap_err *err)
{
    const char *p[1] = {db};
    PGresult *res;
    snap_rc rc = pg_query(c,
        "WITH me AS (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)"
        " SELECT count(*),"
        "  count(*) FILTER (WHERE NOT ((SELECT rolsuper FROM me)"
        "   OR (NOT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = a.usesysid), false)"
        "       AND (pg_catalog.pg_has_role(current_user, a.usesysid, 'MEMBER')"
        "            OR pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'))))),"
        "  coalesce(string_agg(DISTINCT a.usename, ', ') FILTER (WHERE NOT ((SELECT rolsuper FROM me)"
        "   OR (NOT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = a.usesysid), false)"
        "       AND (pg_catalog.pg_has_role(current_user, a.usesysid, 'MEMBER')"
        "            OR pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'))))), '')"
        " FROM pg_catalog.pg_stat_activity a WHERE a.datname = $1 AND a.pid <> pg_catalog.pg_backend_pid()"
        " AND coalesce(a.backend_type, 'client backend') = 'client backend'",
        1, p, &res, err);
    long sessions, stuck;
    char *who;

    if (rc != SNAP_OK)
        return rc;
    sessions = atol(PQgetvalue(res, 0, 0));
    stuck = atol(PQgetvalue(res, 0, 1));
    who = xstrdup(PQgetvalue(res, 0, 2));
    PQclear(res);
    json_object_set_new(plan, "sessions", json_integer(sessions));
    if (stuck > 0) {
        err_set(err, SNAP_EUNREACH, 0, "%ld session%s on database %s cannot be ended by this user (held by %s)", stuck,
                stuck == 1 ? "" : "s", db, who);
        err_hint(err, "revert as a superuser, GRANT pg_signal_backend to this user, or end those sessions first; "
                      "nothing was changed");
        free(who);
        return SNAP_EUNREACH;
    }
    free(who);
    rc = pg_query(c, "SELECT coalesce(string_agg(slot_name::text, ', '), '') FROM pg_catalog.pg_replication_slots"
                     " WHERE database = $1", 1, p, &res, err);
    if (rc != SNAP_OK)
        return rc;
    if (*PQgetvalue(res, 0, 0)) {
        err_set(err, SNAP_ECONFLICT, 0, "database %s is held by replication slot %s", db, PQgetvalue(res, 0, 0));
        err_hint(err, "a renamed database would leave the slot behind: drop it (pg_drop_replication_slot) "
                      "or revert with --mode transaction; nothing was changed");
        PQclear(res);
        return SNAP_ECONFLICT;
    }
    PQclear(res);
    res = PQexecParams(c, "SELECT coalesce(string_agg(s.subname::text, ', '), '') FROM pg_catalog.pg_subscription s"
                          " JOIN pg_catalog.pg_database d ON d.oid = s.subdbid WHERE d.datname = $1",
                       1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && *PQgetvalue(res, 0, 0)) {
        err_set(err, SNAP_ECONFLICT, 0, "database %s is held by subscription %s", db, PQgetvalue(res, 0, 0));
        err_hint(err, "disable and drop the subscription first, or revert with --mode transaction; nothing was changed");
        PQclear(res);
        return SNAP_ECONFLICT;
    }
    PQclear(res);
    return SNAP_OK;
}

/* ---- what is read back: the manifest's info and the journal's state ---- */

#define NFIELDS(a) (sizeof (a) / sizeof (a)[0])

/* Every field of info that the revert reads, checked before the first use. */
static snap_rc pg_check_info(const rst_target *t, snap_err *err)
{
    static const rst_field info[] = {
        {"database_name", JSON_STRING, true, JSON_NULL},
        {"pg_dump_major", JSON_INTEGER, true, JSON_NULL},
        {"tables", JSON_ARRAY, true, JSON_OBJECT},
        {"schemas", JSON_ARRAY, false, JSON_STRING},
        {"exclude_tables", JSON_ARRAY, false, JSON_STRING},
        {"roles", JSON_ARRAY, false, JSON_STRING},
        {"database", JSON_OBJECT, false, JSON_NULL},
    };
    static const rst_field table[] = {
        {"schema", JSON_STRING, true, JSON_NULL},
        {"name", JSON_STRING, true, JSON_NULL},
        {"columns", JSON_STRING, false, JSON_NULL},
        {"rows", JSON_INTEGER, true, JSON_NULL},
    };
    static const rst_field db[] = {
        {"owner", JSON_STRING, false, JSON_NULL},
        {"encoding", JSON_STRING, false, JSON_NULL},
        {"ctype", JSON_STRING, false, JSON_NULL},
        {"collate", JSON_STRING, false, JSON_NULL},
        {"tablespace", JSON_STRING, false, JSON_NULL},
        {"locale_provider", JSON_STRING, false, JSON_NULL},
        {"icu_locale", JSON_STRING, false, JSON_NULL},
        {"comment", JSON_STRING, false, JSON_NULL},
        {"settings", JSON_ARRAY, false, JSON_STRING},
        {"role_settings", JSON_ARRAY, false, JSON_OBJECT},
        {"acl", JSON_ARRAY, false, JSON_OBJECT},
        {"acl_default", JSON_TRUE, false, JSON_NULL},
        {"connection_limit", JSON_INTEGER, false, JSON_NULL},
    };
    static const rst_field role_setting[] = {
        {"setting", JSON_STRING, true, JSON_NULL},
        {"role", JSON_STRING, true, JSON_NULL},
    };
    static const rst_field acl[] = {
        {"grantee", JSON_STRING, true, JSON_NULL},
        {"privilege", JSON_STRING, true, JSON_NULL},
        {"grantable", JSON_TRUE, false, JSON_NULL},
    };
    json_t *in = info_of(t), *v, *d;
    char what[200];
    size_t i;
    snap_rc rc;

    snprintf(what, sizeof what, "the info of component %s", rst_component_name(t));
    rc = rst_check_fields(what, in, info, NFIELDS(info), err);
    if (rc == SNAP_OK && json_string_length(json_object_get(in, "database_name")) == 0)
        rc = err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"database_name\" is empty", what);
    json_array_foreach(json_object_get(in, "tables"), i, v) {
        if (rc != SNAP_OK)
            break;
        snprintf(what, sizeof what, "the info of component %s, table %zu,", rst_component_name(t), i);
        rc = rst_check_fields(what, v, table, NFIELDS(table), err);
        if (rc == SNAP_OK && json_integer_value(json_object_get(v, "rows")) < 0)
            rc = err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"rows\" is negative", what);
    }
    d = json_object_get(in, "database");
    snprintf(what, sizeof what, "the info of component %s, database properties,", rst_component_name(t));
    if (rc == SNAP_OK && d != NULL && !json_is_null(d))
        rc = rst_check_fields(what, d, db, NFIELDS(db), err);
    json_array_foreach(json_object_get(d, "role_settings"), i, v)
        if (rc == SNAP_OK)
            rc = rst_check_fields(what, v, role_setting, NFIELDS(role_setting), err);
    json_array_foreach(json_object_get(d, "acl"), i, v)
        if (rc == SNAP_OK)
            rc = rst_check_fields(what, v, acl, NFIELDS(acl), err);
    if (rc != SNAP_OK)
        err_hint(err, "the snapshot's manifest is damaged or was changed by hand; nothing was changed");
    return rc;
}

static snap_rc pg_check_state(const json_t *st, snap_err *err)
{
    static const rst_field f[] = {
        {"dsn", JSON_STRING, false, JSON_NULL},
        {"live", JSON_STRING, true, JSON_NULL},
        {"staged", JSON_STRING, false, JSON_NULL},
        {"displaced", JSON_STRING, false, JSON_NULL},
        {"mode", JSON_STRING, true, JSON_NULL},
        {"xid", JSON_STRING, false, JSON_NULL},
        {"allow_connections", JSON_TRUE, false, JSON_NULL},
        {"blocked", JSON_TRUE, false, JSON_NULL},
        {"live_oid", JSON_INTEGER, false, JSON_NULL},
        {"staged_oid", JSON_INTEGER, false, JSON_NULL},
    };
    const char *mode;
    snap_rc rc = rst_check_fields("its state", st, f, NFIELDS(f), err);

    if (rc != SNAP_OK)
        return rc;
    mode = json_string_value(json_object_get(st, "mode"));
    if (strcmp(mode, "swap") != 0 && strcmp(mode, "transaction") != 0 && strcmp(mode, "to") != 0)
        return err_set(err, SNAP_EVERIFY, 0, "its state is damaged: \"mode\" is not swap, transaction or to");
    return SNAP_OK;
}

/* The mode, and what the snapshot allows of it; no connection to an unauthenticated
 * manifest's server (restore.c refuses first). */
static snap_rc check_mode(rst_target *t, const json_t *info, bool *tx, snap_err *err)
{
    const char *mode = rst_options(t)->mode, *to = rst_to(t), *db = jstr(info, "database_name");

    if (mode != NULL && strcmp(mode, "swap") != 0 && strcmp(mode, "transaction") != 0) {
        err_set(err, SNAP_EUSAGE, 0, "unknown --mode '%s'", mode);
        err_hint(err, "PostgreSQL reverts with --mode swap (the default) or --mode transaction");
        return SNAP_EUSAGE;
    }
    *tx = mode != NULL && strcmp(mode, "transaction") == 0;
    if (*tx && to != NULL) {
        err_set(err, SNAP_EUSAGE, 0, "--mode transaction reverts the live database in place and cannot take --to");
        err_hint(err, "drop --to, or restore beside with the default mode");
        return SNAP_EUSAGE;
    }
    if (!*db)
        return err_set(err, SNAP_EVERIFY, 0, "component %s lacks its database name", rst_component_name(t));
    /* A snapshot of part of a database cannot replace all of it. */
    if (to == NULL && !*tx && (json_array_size(json_object_get(info, "schemas")) > 0 ||
                               json_array_size(json_object_get(info, "exclude_tables")) > 0)) {
        err_set(err, SNAP_EUSAGE, 0, "snapshot %s captured part of database %s (--pg-schema or --pg-exclude-table): "
                "swapping it in would lose the rest", cat_manifest_name(rst_manifest(t)), db);
        err_hint(err, "revert with --mode transaction, which replaces only the captured schemas, or restore a copy "
                      "with --to NAME");
        return SNAP_EUSAGE;
    }
    if (*tx && json_array_size(json_object_get(info, "exclude_tables")) > 0) {
        err_set(err, SNAP_EUSAGE, 0, "snapshot %s left out tables (--pg-exclude-table): reverting the schemas in "
                "place would drop the excluded tables", cat_manifest_name(rst_manifest(t)));
        err_hint(err, "restore a copy with --to NAME and move what you need from it");
        return SNAP_EUSAGE;
    }
    if (configured_dsn(t) == NULL && !rst_trusted(t))
        return err_set(err, SNAP_EVERIFY, 0, "component %s: the snapshot is not authenticated and no [source %s] "
                       "names its server", rst_component_name(t), rst_component_name(t));
    return SNAP_OK;
}

/* The archive's schema needs a pg_restore at least as new as the pg_dump that wrote it. */
static snap_rc check_pg_restore(rst_target *t, const json_t *info, snap_err *err)
{
    char *tool = NULL;
    int major;
    json_int_t want = json_integer_value(json_object_get(info, "pg_dump_major"));
    snap_rc rc = pg_tool_find(rst_options(t)->pg_bindir, "pg_restore", &tool, &major, err);

    if (rc == SNAP_OK && major < want) {
        err_set(err, SNAP_EFAIL, 0, "%s is version %d; the snapshot's schema was written by pg_dump %lld", tool, major,
                (long long)want);
        err_hint(err, "install the client programs of PostgreSQL %lld or newer, or set [revert] pg_bindir",
                 (long long)want);
        rc = SNAP_EFAIL;
    }
    free(tool);
    return rc;
}

/* The user's rights: CREATE in the database for a transaction, CREATEDB for a swap. */
static snap_rc check_create_rights(PGconn *c, bool tx, const char *db, json_t *notes, snap_err *err)
{
    PGresult *res = NULL;
    snap_rc rc = pg_query(c, "SELECT r.rolsuper, r.rolcreatedb OR r.rolsuper, current_user,"
                             " has_database_privilege(current_database(), 'CREATE') FROM pg_catalog.pg_roles r"
                             " WHERE r.rolname = current_user", 0, NULL, &res, err);

    if (rc != SNAP_OK)
        return rc;
    if (tx && strcmp(PQgetvalue(res, 0, 0), "t") != 0 && strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
        rc = err_set(err, SNAP_EUNREACH, 0, "user %s may not create schemas in database %s", PQgetvalue(res, 0, 2), db);
        err_hint(err, "GRANT CREATE ON DATABASE to the user, or revert as the database's owner");
    } else if (tx) {
        json_array_append_new(notes, json_string("one transaction drops and recreates the captured schemas; "
                                                 "readers of those tables wait for its commit"));
    } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
        rc = err_set(err, SNAP_EUNREACH, 0, "user %s may not create databases (no CREATEDB), which swap mode needs",
                     PQgetvalue(res, 0, 2));
        err_hint(err, "use --mode transaction, which restores inside the live database, or GRANT CREATEDB");
    }
    PQclear(res);
    return rc;
}

/* The staging database's name, free; and --to's, which must be new. */
static snap_rc plan_staging(rst_target *t, PGconn *c, const char *db, char **staged, snap_err *err)
{
    const char *to = rst_to(t);
    char *suffix = xasprintf("__revert_%s", id_token(cat_manifest_id(rst_manifest(t))));
    unsigned long oid;
    snap_rc rc;

    *staged = db_with_suffix(to ? to : db, suffix);
    free(suffix);
    set_str(rst_state(t), "staged", *staged);
    set_str(rst_plan(t), "staging", *staged);
    rc = db_oid(c, *staged, &oid, err);
    if (rc == SNAP_OK && oid != 0) {
        rc = err_set(err, SNAP_ECONFLICT, 0, "staging database %s already exists", *staged);
        err_hint(err, "a revert to this snapshot is running or was interrupted: `revert --recover` removes "
                      "what an interrupted one left; otherwise DROP DATABASE %s", *staged);
    }
    if (rc == SNAP_OK && to != NULL) {
        rc = db_oid(c, to, &oid, err);
        if (rc == SNAP_OK && oid != 0) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "database %s exists; --to restores into a new database only", to);
            err_hint(err, "choose a name that is not taken, or drop that database first");
        }
    }
    return rc;
}

/* A swap renames the live database: its owner may, and its sessions end at the cut-over. */
static snap_rc plan_swap(rst_target *t, PGconn *c, const char *db, const char *staged, json_t *notes,
                         snap_err *err)
{
    json_t *st = rst_state(t), *plan = rst_plan(t);
    json_t *stats = cat_component_stats((cat_component *)(uintptr_t)rst_component(t));
    char *suffix = xasprintf("__pre_revert_%s", id_token(rst_revert_id(t)));
    char *displaced = db_with_suffix(db, suffix), *n;
    PGresult *res = NULL;
    unsigned long oid;
    json_int_t ns;
    snap_rc rc;

    free(suffix);
    set_str(st, "displaced", displaced);
    set_str(plan, "displaced", displaced);
    rc = db_oid(c, db, &oid, err);
    if (rc != SNAP_OK)
        goto out;
    json_object_set_new(st, "live_oid", json_integer((json_int_t)oid));
    rc = pg_query(c, "SELECT datallowconn, pg_catalog.pg_has_role(datdba, 'MEMBER') OR"
                     " (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)"
                     " FROM pg_catalog.pg_database WHERE datname = current_database()", 0, NULL, &res, err);
    if (rc != SNAP_OK)
        goto out;
    json_object_set_new(st, "allow_connections", json_boolean(strcmp(PQgetvalue(res, 0, 0), "t") == 0));
    if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
        rc = err_set(err, SNAP_EUNREACH, 0, "user %s does not own database %s and cannot rename it", PQuser(c), db);
        err_hint(err, "revert as the database's owner or a superuser, or use --mode transaction");
        goto out;
    }
    rc = check_blockers(c, db, plan, err);
    if (rc != SNAP_OK)
        goto out;
    ns = json_integer_value(json_object_get(plan, "sessions"));
    n = xasprintf("%lld tables, %lld rows restored into %s, then swapped in by renaming",
                  (long long)json_integer_value(json_object_get(stats, "tables")),
                  (long long)json_integer_value(json_object_get(stats, "rows")), staged);
    json_array_append_new(notes, json_string(n));
    free(n);
    if (ns > 0) {
        n = xasprintf("%lld session%s on %s will be ended at the cut-over", (long long)ns, ns == 1 ? "" : "s", db);
        json_array_append_new(notes, json_string(n));
        free(n);
    }
    n = xasprintf("the live database is renamed %s and kept as the instant undo "
                  "(--drop-old removes it)", displaced);
    json_array_append_new(notes, json_string(n));
    free(n);
out:
    PQclear(res);
    free(displaced);
    return rc;
}

/*
 * Index builds sort in [revert] pg_maintenance_work_mem when it is set; else in the
 * server's maintenance_work_mem, as pg_restore's do (NULL). More is not faster: a sort
 * that fits in memory can lose to one that merges runs sized to the caches
 * (docs/design.md).
 */
static snap_rc maintenance_mem(rst_target *t, const char **mwm, snap_err *err)
{
    const char *v = rst_options(t)->pg_maintenance_work_mem;

    if (v != NULL && (!*v || strpbrk(v, " \t\\'\"") != NULL))
        return err_set(err, SNAP_EUSAGE, 0, "[revert] pg_maintenance_work_mem must be one value such as 512MB");
    *mwm = v;
    return SNAP_OK;
}

/* A [revert] pg_maintenance_work_mem the server refuses is a configuration error, found
 * before anything is staged (exit 2), not when the first build connects. */
static snap_rc check_sort_mem(rst_target *t, PGconn *c, snap_err *err)
{
    const char *mwm;
    char *sql;
    snap_rc rc = maintenance_mem(t, &mwm, err);

    if (rc != SNAP_OK || mwm == NULL)
        return rc;
    sql = xasprintf("SET maintenance_work_mem = '%s'", mwm);
    rc = pg_exec(c, sql, err);
    free(sql);
    if (rc == SNAP_OK)
        return pg_exec(c, "RESET maintenance_work_mem", err);
    if (PQstatus(c) != CONNECTION_OK)
        return rc;
    err_prefix(err, "[revert] pg_maintenance_work_mem");
    err->code = SNAP_EUSAGE;
    err->kind = NULL;
    return SNAP_EUSAGE;
}

static snap_rc pg_plan(rst_target *t, snap_err *err)
{
    json_t *info = info_of(t), *st = rst_state(t), *plan = rst_plan(t), *notes = json_array();
    json_t *stats = cat_component_stats((cat_component *)(uintptr_t)rst_component(t));
    const char *to = rst_to(t);
    const char *db = jstr(info, "database_name");
    char *where = NULL, *staged = NULL, *lock = NULL;
    PGconn *c = NULL;
    bool tx;
    snap_rc rc;

    json_object_set_new(plan, "notes", notes);
    rc = pg_check_info(t, err);
    if (rc == SNAP_OK)
        rc = check_mode(t, info, &tx, err);
    if (rc != SNAP_OK)
        return rc;
    set_str(st, "dsn", cat_component_source(rst_component(t)) ? cat_component_source(rst_component(t)) : "");
    set_str(st, "mode", tx ? "transaction" : to ? "to" : "swap");
    set_str(st, "live", to ? to : db);
    rc = check_pg_restore(t, info, err);
    if (rc != SNAP_OK)
        return rc;

    rc = connect_db(t, db, &c, err);
    if (rc == SNAP_ENOTFOUND && to != NULL)
        rc = connect_db(t, "postgres", &c, err);
    if (rc != SNAP_OK)
        return rc;
    {
        char *w = pg_where(c), *slash = strrchr(w, '/');
        *slash = '\0';
        where = xasprintf("%s/%s", w, to ? to : db);
        free(w);
    }
    set_str(plan, "target", where);
    set_str(plan, "action", tx ? "transaction" : to ? "restore-beside" : "swap");
    json_object_set(plan, "tables", json_object_get(stats, "tables"));
    json_object_set(plan, "rows", json_object_get(stats, "rows"));
    lock = xasprintf("postgres://%s", where);
    rst_set_lock_key(t, lock);

    rc = check_roles(t, c, plan, err);
    if (rc == SNAP_OK)
        rc = check_sort_mem(t, c, err);
    if (rc == SNAP_OK)
        rc = check_create_rights(c, tx, db, notes, err);
    if (rc == SNAP_OK && !tx)
        rc = plan_staging(t, c, db, &staged, err);
    if (rc == SNAP_OK && !tx && to == NULL)
        rc = plan_swap(t, c, db, staged, notes, err);
    if (rc != SNAP_OK && strstr(err->msg, where) == NULL)
        err_prefix(err, "postgres %s", where);
    PQfinish(c);
    free(where);
    free(staged);
    free(lock);
    return rc;
}

static snap_rc pg_safety_source(rst_target *t, cfg *c, const char *section, snap_err *err)
{
    json_t *info = info_of(t), *v;
    size_t i;

    /* The source's own settings (pg_bindir ...), but for what names the live target and
     * its scope, which come from the snapshot being reverted. */
    static const char *const named[] = {"type", "dsn", "schema", "exclude_table", "pg_schema", "pg-schema",
                                        "pg_exclude_table", "pg-exclude-table", NULL};
    char *src = xasprintf("source %s", rst_component_name(t));

    (void)err;
    cfg_copy_section(c, rst_ctx(t)->cfg, src, section, named);
    free(src);
    cfg_set(c, section, "type", "postgres");
    cfg_set(c, section, "dsn", target_dsn(t));
    json_array_foreach(json_object_get(info, "schemas"), i, v)
        cfg_add(c, section, "schema", json_string_value(v));
    json_array_foreach(json_object_get(info, "exclude_tables"), i, v)
        cfg_add(c, section, "exclude_table", json_string_value(v));
    if (cfg_get(c, section, "pg_bindir") == NULL && rst_options(t)->pg_bindir != NULL)
        cfg_set(c, section, "pg_bindir", rst_options(t)->pg_bindir);
    return SNAP_OK;
}

/* Swap mode keeps the live database whole under its displaced name after the cut-over. */
static bool pg_safety_deferrable(rst_target *t)
{
    return strcmp(jstr(rst_state(t), "mode"), "swap") == 0 && *jstr(rst_state(t), "displaced") != '\0';
}

/* The displaced database, read as the live one it was. */
static snap_rc pg_displaced_source(rst_target *t, cfg *c, const char *section, snp_redirect **rd, size_t *nrd,
                                   snap_err *err)
{
    return rst_displaced_as_live(t, c, section, "displaced", rd, nrd, err);
}

/* ---- reading the archive ---- */

typedef struct schema_files {
    size_t part;      /* the part that holds them */
    int dump;         /* pg_dump's custom archive, in an anonymous temp file (-1: none) */
    char *sequences;  /* setval() statements */
} schema_files;

static void schema_files_free(schema_files *s)
{
    if (s->dump >= 0)
        close(s->dump);
    free(s->sequences);
    memset(s, 0, sizeof *s);
    s->dump = -1;
}

/* bar: the progress the bytes read count to, or NULL (the schema's first look). */
static snap_rc open_part(rst_target *t, size_t i, prg_bar *bar, arc_reader **r, snap_err *err)
{
    const char *key, *sha;
    uint64_t size, entries;

    cat_component_part(rst_component(t), i, &key, &size, &sha, &entries);
    return arc_reader_open(rst_store(t), key, size, sha, rst_ctx(t), bar, r, err);
}

/* Reads a whole entry (at most max bytes) into a NUL-terminated buffer. */
static snap_rc read_entry(arc_reader *r, struct archive_entry *e, uint64_t max, char **out, size_t *outlen,
                          snap_err *err)
{
    uint64_t size = (uint64_t)archive_entry_size(e);
    size_t len = 0, got;
    char *buf;
    snap_rc rc = SNAP_OK;

    if (size > max)
        return err_set(err, SNAP_EVERIFY, 0, "entry %s is larger than expected", archive_entry_pathname(e));
    buf = xmalloc((size_t)size + 1);
    while (rc == SNAP_OK && len < size) {
        rc = arc_reader_data(r, buf + len, (size_t)size - len, &got, err);
        if (rc == SNAP_OK && got == 0)
            rc = err_set(err, SNAP_EVERIFY, 0, "entry %s is truncated", archive_entry_pathname(e));
        len += got;
    }
    if (rc != SNAP_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return SNAP_OK;
}

/* The leader's part: postgres/snapshot.json first, then sequences and pg_dump's archive. */
static snap_rc read_schema(rst_target *t, schema_files *sf, snap_err *err)
{
    size_t n = cat_component_nparts(rst_component(t));
    arc_reader *r = NULL;
    struct archive_entry *e;
    snap_rc rc = SNAP_OK;

    memset(sf, 0, sizeof *sf);
    sf->dump = -1;
    for (size_t i = 0; i < n && rc == SNAP_OK; i++) {
        rc = open_part(t, i, NULL, &r, err);
        if (rc == SNAP_OK)
            rc = arc_reader_next(r, &e, err);
        if (rc != SNAP_OK)
            break;
        if (e == NULL || strcmp(archive_entry_pathname(e), PG_META_ENTRY) != 0) {
            arc_reader_close(r, NULL);
            r = NULL;
            continue;
        }
        sf->part = i;
        while (rc == SNAP_OK && (rc = arc_reader_next(r, &e, err)) == SNAP_OK && e != NULL) {
            const char *name = archive_entry_pathname(e);
            if (strcmp(name, PG_SEQ_ENTRY) == 0) {
                size_t len;
                rc = read_entry(r, e, 1ULL << 30, &sf->sequences, &len, err);
            } else if (strcmp(name, PG_SCHEMA_ENTRY) == 0) {
                char *buf;
                size_t got;
                if (sf->dump >= 0) {
                    rc = err_set(err, SNAP_EVERIFY, 0, "component %s has two %s entries", rst_component_name(t),
                                 PG_SCHEMA_ENTRY);
                    break;
                }
                if ((sf->dump = pg_tmpfile(err)) < 0) {
                    rc = err->code;
                    break;
                }
                buf = xmalloc(IO_CHUNK);
                while ((rc = arc_reader_data(r, buf, IO_CHUNK, &got, err)) == SNAP_OK && got > 0)
                    if (write(sf->dump, buf, got) != (ssize_t)got) {
                        rc = err_sys(err, SNAP_EFAIL, "cannot write the schema to a temporary file");
                        break;
                    }
                free(buf);
            }
        }
        if (rc == SNAP_OK)
            rc = arc_reader_close(r, err);
        else
            arc_reader_close(r, NULL);
        r = NULL;
        break;
    }
    if (rc == SNAP_OK && (sf->dump < 0 || sf->sequences == NULL)) {
        rc = err_set(err, SNAP_EVERIFY, 0, "component %s has no schema part (%s)", rst_component_name(t),
                     PG_SCHEMA_ENTRY);
        err_hint(err, "the snapshot is damaged or was not written by snap; `snap verify` checks it");
    }
    if (rc != SNAP_OK)
        schema_files_free(sf);
    return rc;
}

/* ---- loading data ---- */

typedef struct pg_load {
    rst_target *t;
    json_t *tables;        /* info.tables */
    uint64_t *rows;        /* rows loaded per table */
    size_t ntables;
    const char *db;        /* where the workers connect */
    size_t skip_part;      /* the schema part */
    size_t nparts;
    pthread_mutex_t lock; /* the counts */
    uint64_t lo_count;
    PGconn **conns;       /* per worker of the pool that runs */
    char **bufs;
    /* post-data built as the tables load (pg_post.h); the rest waits for the final pass */
    pgp_plan post;
    size_t *first, *next; /* per table its first entry, per entry the next of its table */
    bool *queued;         /* per table: its entries are in ready */
    size_t *pending;      /* per table: its entries not built yet */
    /* what the loads made ready, in the order the tables completed: an entry to build
     * (< post.n), or post.n + a table to analyze once its entries are built */
    size_t *ready, nready, taken;
    size_t loads_left;    /* parts not loaded yet */
    size_t workers, loading; /* the pool's threads, those loading a part */
    bool *prepared;       /* per worker: its connection ran pg_restore's SET header */
    rst_order *order;     /* which part a worker loads next */
    pthread_cond_t cond;  /* ready grew, or the loads are over */
} pg_load;

static void queue_table(pg_load *L, size_t id);

/* "data/000012/..." -> 12 */
static bool entry_table(const char *name, size_t ntables, size_t *id)
{
    char *end;
    unsigned long v;

    if (strncmp(name, PG_DATA_DIR, strlen(PG_DATA_DIR)) != 0)
        return false;
    v = strtoul(name + strlen(PG_DATA_DIR), &end, 10);
    if (*end != '/' || v >= ntables)
        return false;
    *id = (size_t)v;
    return true;
}

static snap_rc load_copy(pg_load *L, PGconn *c, arc_reader *r, struct archive_entry *e, size_t id, char *buf,
                         snap_err *err)
{
    json_t *tj = json_array_get(L->tables, id);
    char *sch = pg_ident(c, jstr(tj, "schema")), *nam = pg_ident(c, jstr(tj, "name")), *sql, msg[512];
    const char *cols = jstr(tj, "columns");
    PGresult *res;
    size_t got;
    snap_rc rc = SNAP_OK;

    /* an entry in binary COPY format ends in .bin, one in text format in .copy (docs/postgres.md) */
    const char *name = archive_entry_pathname(e), *dot = strrchr(name, '.');
    const char *fmt = dot != NULL && strcmp(dot, ".bin") == 0 ? " (FORMAT binary)" : "";

    sql = *cols ? xasprintf("COPY %s.%s (%s) FROM STDIN%s", sch, nam, cols, fmt)
                : xasprintf("COPY %s.%s FROM STDIN%s", sch, nam, fmt);
    res = PQexec(c, sql);
    free(sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        pg_errmsg(c, res, msg, sizeof msg);
        rc = err_set(err, PQstatus(c) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0, "cannot load %s.%s: %s", sch,
                     nam, msg);
        PQclear(res);
        goto out;
    }
    PQclear(res);
    while ((rc = arc_reader_data(r, buf, IO_CHUNK, &got, err)) == SNAP_OK && got > 0)
        if (PQputCopyData(c, buf, (int)got) != 1)
            break;
    if (rc != SNAP_OK) {
        PQputCopyEnd(c, "the archive could not be read");
        while ((res = PQgetResult(c)) != NULL)
            PQclear(res);
        goto out;
    }
    PQputCopyEnd(c, NULL);
    while ((res = PQgetResult(c)) != NULL) {
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            uint64_t n = strtoull(PQcmdTuples(res), NULL, 10);
            pthread_mutex_lock(&L->lock);
            L->rows[id] += n;
            if (L->rows[id] >= (uint64_t)json_integer_value(json_object_get(tj, "rows")))
                queue_table(L, id);
            pthread_mutex_unlock(&L->lock);
        } else if (rc == SNAP_OK) {
            pg_errmsg(c, res, msg, sizeof msg);
            rc = err_set(err, PQstatus(c) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0, "cannot load %s.%s (%s): %s",
                         sch, nam, archive_entry_pathname(e), msg);
        }
        PQclear(res);
    }
out:
    free(sch);
    free(nam);
    return rc;
}

/* lo/<oid>/<offset>: lo_create came with the schema (pre-data); write the piece. */
static snap_rc load_lo(pg_load *L, PGconn *c, arc_reader *r, struct archive_entry *e, snap_err *err)
{
    const char *name = archive_entry_pathname(e) + strlen(PG_LO_DIR);
    char oid[24], off[24], *data = NULL, msg[512];
    const char *slash = strchr(name, '/');
    size_t len;
    PGresult *res;
    snap_rc rc;

    if (slash == NULL || (size_t)(slash - name) >= sizeof oid)
        return err_set(err, SNAP_EVERIFY, 0, "unexpected entry %s in the archive", archive_entry_pathname(e));
    snprintf(oid, sizeof oid, "%.*s", (int)(slash - name), name);
    snprintf(off, sizeof off, "%llu", strtoull(slash + 1, NULL, 10));
    rc = read_entry(r, e, 1ULL << 30, &data, &len, err);
    if (rc != SNAP_OK)
        return rc;
    {
        const char *vals[3] = {oid, off, data};
        int lens[3] = {0, 0, (int)len}, fmts[3] = {0, 0, 1};
        res = PQexecParams(c, "SELECT pg_catalog.lo_put($1::oid, $2::bigint, $3::bytea)", 3, NULL, vals, lens, fmts, 0);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_errmsg(c, res, msg, sizeof msg);
        rc = err_set(err, SNAP_EFAIL, 0, "cannot restore large object %s: %s", oid, msg);
    } else if (strcmp(off, "0") == 0) {
        pthread_mutex_lock(&L->lock);
        L->lo_count++;
        pthread_mutex_unlock(&L->lock);
    }
    PQclear(res);
    free(data);
    return rc;
}

static snap_rc load_part(pg_load *L, PGconn *c, size_t part, char *buf, snap_err *err)
{
    arc_reader *r = NULL;
    struct archive_entry *e;
    snap_rc rc = open_part(L->t, part, rst_progress(L->t), &r, err);

    while (rc == SNAP_OK && (rc = arc_reader_next(r, &e, err)) == SNAP_OK && e != NULL) {
        const char *name = archive_entry_pathname(e);
        size_t id;
        if (entry_table(name, L->ntables, &id))
            rc = load_copy(L, c, r, e, id, buf, err);
        else if (strncmp(name, PG_LO_DIR, strlen(PG_LO_DIR)) == 0)
            rc = load_lo(L, c, r, e, err);
        else
            rc = err_set(err, SNAP_EVERIFY, 0, "unexpected entry %s in the archive", name);
        if (rc == SNAP_OK && ctx_interrupted(rst_ctx(L->t), err))
            rc = SNAP_EINTR;
    }
    if (r != NULL) {
        /* verifies size and checksum of the whole part */
        if (rc == SNAP_OK) {
            rc = arc_reader_close(r, err);
        } else if (rc != SNAP_EINTR && rc != SNAP_EUNREACH) {
            /* a load that failed on damaged bytes: the checksum names the real cause */
            snap_err verr;
            err_clear(&verr);
            if (arc_reader_close(r, &verr) == SNAP_EVERIFY) {
                *err = verr;
                rc = SNAP_EVERIFY;
            }
        } else {
            arc_reader_close(r, NULL);
        }
    }
    return rc;
}

/* A worker's connection, made at its first part or build. */
static snap_rc worker_conn(pg_load *L, size_t worker, snap_err *err)
{
    snap_rc rc;

    if (L->conns[worker] != NULL)
        return SNAP_OK;
    rc = connect_db(L->t, L->db, &L->conns[worker], err);
    /* the cut-over commits synchronously, which flushes everything before it */
    if (rc == SNAP_OK)
        rc = pg_exec(L->conns[worker], "SET synchronous_commit = off", err);
    return rc;
}

/* One part on one worker. */
static snap_rc load_job(pg_load *L, size_t worker, size_t part, snap_err *err)
{
    snap_rc rc;

    if (part == L->skip_part)
        return SNAP_OK;
    if (L->bufs[worker] == NULL)
        L->bufs[worker] = xmalloc(IO_CHUNK);
    rc = worker_conn(L, worker, err);
    if (rc == SNAP_OK && L->prepared[worker]) {
        /* it built before: the dump's SET header (its client_encoding above all) goes */
        rc = pg_exec(L->conns[worker], "RESET ALL; SET synchronous_commit = off", err);
        L->prepared[worker] = false;
    }
    if (rc != SNAP_OK)
        return rc;
    return load_part(L, L->conns[worker], part, L->bufs[worker], err);
}

/* Ends a worker's connection, on its own thread. */
static snap_rc load_done(pool *p, void *arg, size_t worker, snap_err *err)
{
    pg_load *L = arg;

    (void)p;
    (void)err;
    PQfinish(L->conns[worker]);
    L->conns[worker] = NULL;
    free(L->bufs[worker]);
    L->bufs[worker] = NULL;
    return SNAP_OK;
}

/*
 * The order of the loads: each part's first table, from info.part_tables (earlier versions
 * did not write it; it only orders the loads, the entries' names say where rows go). A
 * part of several tables holds small ones: its first stands for it.
 */
static rst_order *part_order(pg_load *L, size_t workers)
{
    json_t *pt = json_object_get(info_of(L->t), "part_tables");
    size_t *table;
    uint64_t *bytes;

    if (json_array_size(pt) != L->nparts || L->nparts == 0) {
        if (pt != NULL)
            log_verbose(rst_ctx(L->t), "%s: info.part_tables does not fit the parts; they load in their order",
                        rst_component_name(L->t));
        return rst_order_new(L->nparts, L->ntables, workers, NULL, NULL);
    }
    table = xmalloc(L->nparts * sizeof *table);
    bytes = xmalloc(L->nparts * sizeof *bytes);
    for (size_t i = 0; i < L->nparts; i++) {
        json_t *first = json_array_get(json_array_get(pt, i), 0);
        const char *key, *sha;
        uint64_t entries, size;
        json_int_t id = json_integer_value(first);
        /* the work of a load is in its rows, not in how well they compress */
        cat_component_part_raw(rst_component(L->t), i, &key, &size, &sha, &entries, &bytes[i]);
        if (bytes[i] == 0)
            bytes[i] = size;
        table[i] = json_is_integer(first) && id >= 0 ? (size_t)id : SIZE_MAX; /* the order checks the range */
    }
    return rst_order_new(L->nparts, L->ntables, workers, table, bytes);
}

static void load_init(pg_load *L, rst_target *t, const char *db, size_t skip_part)
{
    memset(L, 0, sizeof *L);
    L->t = t;
    L->tables = json_object_get(info_of(t), "tables");
    L->ntables = json_array_size(L->tables);
    L->rows = xcalloc(L->ntables + 1, sizeof *L->rows);
    L->db = db;
    L->skip_part = skip_part;
    L->nparts = cat_component_nparts(rst_component(t));
    pthread_mutex_init(&L->lock, NULL);
    pthread_cond_init(&L->cond, NULL);
}

static void load_free(pg_load *L)
{
    free(L->rows);
    pgp_plan_free(&L->post);
    free(L->first);
    free(L->next);
    free(L->queued);
    free(L->pending);
    free(L->ready);
    pthread_cond_destroy(&L->cond);
    pthread_mutex_destroy(&L->lock);
}

/* Row counts loaded against the manifest's: any difference stops the revert here. */
static snap_rc check_counts(pg_load *L, snap_err *err)
{
    json_t *info = info_of(L->t);
    json_int_t los = json_integer_value(json_object_get(
        cat_component_stats((cat_component *)(uintptr_t)rst_component(L->t)), "large_objects"));

    for (size_t i = 0; i < L->ntables; i++) {
        json_t *tj = json_array_get(L->tables, i);
        uint64_t want = (uint64_t)json_integer_value(json_object_get(tj, "rows"));
        if (L->rows[i] != want) {
            err_set(err, SNAP_EVERIFY, 0, "table %s.%s has %llu rows after loading, the snapshot recorded %llu",
                    jstr(tj, "schema"), jstr(tj, "name"), (unsigned long long)L->rows[i], (unsigned long long)want);
            err_hint(err, "the snapshot is damaged (`snap verify`); nothing live was changed");
            return SNAP_EVERIFY;
        }
    }
    (void)info;
    if ((json_int_t)L->lo_count != los) {
        err_set(err, SNAP_EVERIFY, 0, "%llu large objects were restored, the snapshot recorded %lld",
                (unsigned long long)L->lo_count, (long long)los);
        return SNAP_EVERIFY;
    }
    return SNAP_OK;
}

/* ---- database-level properties ---- */

static bool list_setting(const char *name)
{
    static const char *const lists[] = {"search_path", "temp_tablespaces", "session_preload_libraries",
                                        "local_preload_libraries", NULL};
    for (const char *const *l = lists; *l; l++)
        if (strcmp(*l, name) == 0)
            return true;
    return false;
}

/* "name=value" as it sits in pg_db_role_setting -> "name TO <literals>" */
static char *setting_sql(PGconn *c, const char *setting)
{
    const char *eq = strchr(setting, '=');
    char *name, *out, *lit;

    if (eq == NULL)
        return NULL;
    name = strndup(setting, (size_t)(eq - setting));
    if (!list_setting(name)) {
        lit = pg_literal(c, eq + 1);
        out = xasprintf("%s TO %s", name, lit);
        free(lit);
    } else {
        /* a list: elements separated by commas, "quoted" ones verbatim */
        size_t cap = strlen(setting) * 2 + 64, len = 0;
        const char *p = eq + 1;
        out = xmalloc(cap);
        len = (size_t)snprintf(out, cap, "%s TO ", name);
        while (*p) {
            char *el = xmalloc(strlen(p) + 1);
            size_t n = 0;
            while (*p == ' ')
                p++;
            if (*p == '"') {
                for (p++; *p; p++) {
                    if (*p == '"' && p[1] == '"')
                        el[n++] = *p++;
                    else if (*p == '"') {
                        p++;
                        break;
                    } else
                        el[n++] = *p;
                }
                while (*p && *p != ',')
                    p++;
            } else {
                while (*p && *p != ',')
                    el[n++] = *p++;
                while (n > 0 && el[n - 1] == ' ')
                    n--;
            }
            el[n] = '\0';
            lit = pg_literal(c, el);
            if (len + strlen(lit) + 3 >= cap)
                out = xrealloc(out, cap = cap * 2 + strlen(lit));
            len += (size_t)sprintf(out + len, "%s%s", out[len - 1] == ' ' ? "" : ", ", lit);
            free(lit);
            free(el);
            if (*p == ',')
                p++;
        }
    }
    free(name);
    return out;
}

/*
 * Owner, settings, comment, privileges and connection limit of the snapshot's database,
 * applied to database target. reset: the target has properties of its own to clear first.
 */
static snap_rc apply_db_props(rst_target *t, PGconn *c, const char *target, bool reset, snap_err *err)
{
    json_t *db = json_object_get(info_of(t), "database"), *v;
    char *q = qi(c, target), *lit;
    size_t i;
    snap_rc rc = SNAP_OK;

    if (db == NULL)
        goto out;
    if (reset)
        rc = execf(c, err, "cannot reset database settings", "ALTER DATABASE %s RESET ALL", q);
    if (rc == SNAP_OK && *jstr(db, "owner")) {
        char *o = qi(c, jstr(db, "owner"));
        rc = execf(c, err, "cannot set the database's owner", "ALTER DATABASE %s OWNER TO %s", q, o);
        free(o);
    }
    json_array_foreach(json_object_get(db, "settings"), i, v) {
        char *s = setting_sql(c, json_string_value(v));
        if (rc == SNAP_OK && s != NULL)
            rc = execf(c, err, "cannot apply a database setting", "ALTER DATABASE %s SET %s", q, s);
        free(s);
    }
    json_array_foreach(json_object_get(db, "role_settings"), i, v) {
        char *s = setting_sql(c, jstr(v, "setting")), *r = qi(c, jstr(v, "role"));
        if (rc == SNAP_OK && s != NULL)
            rc = execf(c, err, "cannot apply a role setting", "ALTER ROLE %s IN DATABASE %s SET %s", r, q, s);
        free(s);
        free(r);
    }
    if (rc == SNAP_OK) {
        const char *cm = json_string_value(json_object_get(db, "comment"));
        lit = cm ? pg_literal(c, cm) : xstrdup("NULL");
        rc = execf(c, err, "cannot set the database's comment", "COMMENT ON DATABASE %s IS %s", q, lit);
        free(lit);
    }
    if (rc == SNAP_OK && (reset || !json_is_true(json_object_get(db, "acl_default")))) {
        char *o = qi(c, jstr(db, "owner"));
        PGresult *res;
        /* from whatever the target has now to exactly the snapshot's list */
        const char *p[1] = {target};
        rc = pg_query(c, "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE"
                         " quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END FROM pg_catalog.pg_database d,"
                         " pg_catalog.aclexplode(d.datacl) a WHERE d.datname = $1", 1, p, &res, err);
        for (int k = 0; rc == SNAP_OK && k < PQntuples(res); k++)
            rc = execf(c, err, "cannot reset the database's privileges", "REVOKE ALL ON DATABASE %s FROM %s CASCADE", q,
                       PQgetvalue(res, k, 0));
        PQclear(res);
        if (rc == SNAP_OK)
            rc = execf(c, err, "cannot reset the database's privileges", "REVOKE ALL ON DATABASE %s FROM PUBLIC, %s", q,
                       o);
        if (json_is_true(json_object_get(db, "acl_default"))) {
            if (rc == SNAP_OK)
                rc = execf(c, err, "cannot grant", "GRANT CONNECT, TEMPORARY ON DATABASE %s TO PUBLIC", q);
            if (rc == SNAP_OK)
                rc = execf(c, err, "cannot grant", "GRANT ALL ON DATABASE %s TO %s", q, o);
        }
        json_array_foreach(json_object_get(db, "acl"), i, v) {
            const char *g = jstr(v, "grantee");
            char *gq = strcmp(g, "PUBLIC") == 0 ? xstrdup("PUBLIC") : qi(c, g);
            if (rc == SNAP_OK)
                rc = execf(c, err, "cannot grant", "GRANT %s ON DATABASE %s TO %s%s", jstr(v, "privilege"), q, gq,
                           json_is_true(json_object_get(v, "grantable")) ? " WITH GRANT OPTION" : "");
            free(gq);
        }
        free(o);
    }
    if (rc == SNAP_OK && json_is_integer(json_object_get(db, "connection_limit")))
        rc = execf(c, err, "cannot set the connection limit", "ALTER DATABASE %s CONNECTION LIMIT %lld", q,
                   (long long)json_integer_value(json_object_get(db, "connection_limit")));
out:
    free(q);
    return rc;
}

/* ---- the marker: ALTER DATABASE .. SET snap.revert = '<json>' (docs/formats.md) ---- */

#define MARK_GUC "snap.revert"

/* Sets (or, with on false, resets) the marker of database db; a failure is a warning: the
 * marker only lets `revert --recover` find what a lost journal would have named. */
static void mark_db(rst_target *t, PGconn *c, const char *db, bool on)
{
    char *q = qi(c, db), *doc = NULL, *lit = NULL;
    snap_err e;
    snap_rc rc;

    if (on) {
        json_t *m = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s}", "format", 1, "revert_id", rst_revert_id(t),
                              "snapshot", rst_manifest(t) ? cat_manifest_id(rst_manifest(t)) : "", "created",
                              (json_int_t)time(NULL), "live", jstr(rst_state(t), "live"), "host", rst_host(t));
        doc = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        lit = pg_literal(c, doc);
        rc = execf(c, &e, NULL, "ALTER DATABASE %s SET " MARK_GUC " = %s", q, lit);
    } else {
        rc = execf(c, &e, NULL, "ALTER DATABASE %s RESET " MARK_GUC, q);
    }
    if (rc != SNAP_OK)
        log_warn(rst_ctx(t), "cannot %s the revert marker of database %s: %s", on ? "set" : "reset", db, e.msg);
    free(q);
    free(doc);
    free(lit);
}

/* The advisory lock key of a live database name: (classid, objid) and as one bigint. */
static void lock_key(const char *live, char hi[16], char lo[16], char big[24])
{
    util_sha256 *h = util_sha256_new();
    char hex[65];
    uint64_t key;

    util_sha256_update(h, "snap-revert:", 12);
    util_sha256_update(h, live, strlen(live));
    util_sha256_final(h, hex);
    hex[16] = '\0';
    key = strtoull(hex, NULL, 16);
    snprintf(hi, 16, "%lu", (unsigned long)(key >> 32));
    snprintf(lo, 16, "%lu", (unsigned long)(key & 0xffffffffu));
    snprintf(big, 24, "%lld", (long long)(int64_t)key); /* held as (classid, objid) = (hi, lo) */
}

/* ---- stage ---- */

/* dump: the archive's descriptor; list: pg_restore's --use-list (-1: none); flag: --list or NULL. */
static snap_rc run_pg_restore(rst_target *t, PGconn *c, const char *db, const char *section, int jobs, int dump,
                              int list, int out_fd, const char *flag, snap_err *err)
{
    char *tool = NULL, *sec = xasprintf("--section=%s", section), *dbarg = NULL, *jarg = xasprintf("--jobs=%d", jobs);
    char *argv[11], *dumpcopy = xasprintf(PG_FD_PATH, dump), *flagcopy = flag ? xstrdup(flag) : NULL, *listarg = NULL;
    int keep[2] = {dump, list};
    size_t n = 0;
    int major;
    snap_rc rc = pg_tool_find(rst_options(t)->pg_bindir, "pg_restore", &tool, &major, err);

    if (rc != SNAP_OK)
        goto out;
    argv[n++] = tool;
    argv[n++] = sec;
    if (db != NULL) {
        /* a conninfo string: any database name passes through unharmed */
        char *esc = xmalloc(2 * strlen(db) + 1), *w = esc;
        for (const char *p = db; *p; p++) {
            if (*p == '\'' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w = '\0';
        dbarg = xasprintf("--dbname=dbname='%s'", esc);
        free(esc);
        argv[n++] = dbarg;
        argv[n++] = (char *)"--exit-on-error";
        if (jobs > 1)
            argv[n++] = jarg;
    } else {
        argv[n++] = (char *)"--file=-";
    }
    if (flagcopy != NULL)
        argv[n++] = flagcopy;
    if (list >= 0)
        argv[n++] = listarg = xasprintf("--use-list=" PG_FD_PATH, list);
    argv[n++] = dumpcopy;
    argv[n] = NULL;
    {
        const char *mwm;
        char *opt;
        rc = maintenance_mem(t, &mwm, err);
        if (rc != SNAP_OK)
            goto out;
        opt = mwm ? xasprintf("-c maintenance_work_mem=%s", mwm) : NULL;
        rc = pg_tool_run(c, db, opt, argv, out_fd, keep, list >= 0 ? 2 : 1, rst_ctx(t), err);
        free(opt);
    }
out:
    free(tool);
    free(sec);
    free(dbarg);
    free(jarg);
    free(dumpcopy);
    free(flagcopy);
    free(listarg);
    return rc;
}

/* ---- the post-data built while loading ---- */

/* Under L->lock: a table whose rows are all in queues its early post-data entries, or
 * its ANALYZE when it has none. */
static void queue_table(pg_load *L, size_t id)
{
    if (L->queued == NULL || L->queued[id]) /* transaction mode loads without a plan */
        return;
    L->queued[id] = true;
    if (L->pending[id] == 0 && L->post.analyze_early)
        L->ready[L->nready++] = L->post.n + id;
    for (size_t e = L->first[id]; e != SIZE_MAX; e = L->next[e])
        L->ready[L->nready++] = e;
    pthread_cond_broadcast(&L->cond);
}

typedef struct table_key {
    const char *schema, *name;
    size_t i;
} table_key;

typedef struct table_index {
    table_key *keys;
    size_t n;
} table_index;

static int key_cmp(const void *a, const void *b)
{
    const table_key *x = a, *y = b;
    int c = strcmp(x->schema, y->schema);

    return c ? c : strcmp(x->name, y->name);
}

static size_t find_table(const char *schema, const char *name, void *arg)
{
    const table_index *ti = arg;
    table_key k = {schema, name, 0}, *hit = bsearch(&k, ti->keys, ti->n, sizeof k, key_cmp);

    return hit ? hit->i : SIZE_MAX;
}

static snap_rc section_sql(rst_target *t, PGconn *c, int dump, const char *section, const char *flag, char **sql,
                           snap_err *err);

/*
 * Splits the post-data: indexes and constraints of the loaded tables are built on the
 * loading pool as each table completes (pg_post.h); an empty plan leaves it all to the
 * final pg_restore, as before.
 */
static snap_rc plan_post(pg_load *L, PGconn *c, int dump, snap_err *err)
{
    char *sql = NULL, *toc = NULL;
    table_index ti = {xcalloc(L->ntables + 1, sizeof *ti.keys), L->ntables};
    snap_rc rc = section_sql(L->t, c, dump, "post-data", NULL, &sql, err);

    if (rc == SNAP_OK)
        rc = section_sql(L->t, c, dump, "post-data", "--list", &toc, err);
    if (rc != SNAP_OK)
        goto out;
    for (size_t i = 0; i < L->ntables; i++) {
        json_t *tj = json_array_get(L->tables, i);
        ti.keys[i] = (table_key){jstr(tj, "schema"), jstr(tj, "name"), i};
    }
    qsort(ti.keys, ti.n, sizeof *ti.keys, key_cmp);
    pgp_plan_build(sql, toc, find_table, &ti, &L->post);
    if (L->post.analyze_early) {
        /* ANALYZE of a parent of legacy inheritance reads its children too: it waits for
         * every load when there is one */
        PGresult *res;
        rc = pg_query(c, "SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
                         "WHERE p.relkind = 'r' LIMIT 1", 0, NULL, &res, err);
        if (rc == SNAP_OK && PQntuples(res) > 0)
            L->post.analyze_early = false;
        PQclear(res);
        if (rc != SNAP_OK)
            goto out;
    }
    L->first = xmalloc((L->ntables + 1) * sizeof *L->first);
    L->next = xmalloc((L->post.n + 1) * sizeof *L->next);
    L->queued = xcalloc(L->ntables + 1, sizeof *L->queued);
    L->pending = xcalloc(L->ntables + 1, sizeof *L->pending);
    L->ready = xcalloc(L->post.n + L->ntables + 1, sizeof *L->ready);
    for (size_t i = 0; i < L->ntables; i++)
        L->first[i] = SIZE_MAX;
    for (size_t e = L->post.n; e-- > 0;) { /* each table's chain in the dump's order */
        L->next[e] = L->first[L->post.e[e].table];
        L->first[L->post.e[e].table] = e;
        L->pending[L->post.e[e].table]++;
    }
    for (size_t i = 0; i < L->ntables; i++)
        if (json_integer_value(json_object_get(json_array_get(L->tables, i), "rows")) == 0)
            queue_table(L, i);
    log_debug(rst_ctx(L->t), "%s: %zu indexes and constraints are built as their tables load",
              rst_component_name(L->t), L->post.n);
out:
    free(ti.keys);
    free(sql);
    free(toc);
    return rc;
}

/* A worker's connection ready to build: pg_restore's SET header, the sort memory. */
static snap_rc build_conn(pg_load *L, size_t worker, snap_err *err)
{
    const char *mwm;
    char *sql;
    snap_rc rc = worker_conn(L, worker, err);

    if (rc != SNAP_OK || L->prepared[worker] || L->post.prologue == NULL)
        return rc;
    rc = maintenance_mem(L->t, &mwm, err);
    if (rc != SNAP_OK)
        return rc;
    sql = mwm ? xasprintf("%s\nSET maintenance_work_mem = '%s';", L->post.prologue, mwm) : xstrdup(L->post.prologue);
    rc = pg_exec(L->conns[worker], sql, err);
    free(sql);
    L->prepared[worker] = rc == SNAP_OK;
    return rc;
}

/*
 * What worker does next: the next part of the table it loads, else a ready build (an
 * index or constraint whose table is loaded, or an ANALYZE), else a part of another table;
 * waits while there is none. An index is built while the other connections load, instead
 * of all of them at the end. False when the pool stops.
 */
static bool next_unit(pool *p, pg_load *L, size_t worker, size_t *part, size_t *item, size_t *helpers)
{
    *part = *item = SIZE_MAX;
    pthread_mutex_lock(&L->lock);
    for (;;) {
        struct timespec ts;
        if ((*part = rst_order_take(L->order, worker, true)) != SIZE_MAX)
            break;
        if (L->taken < L->nready) {
            *item = L->ready[L->taken++];
            break;
        }
        if ((*part = rst_order_take(L->order, worker, false)) != SIZE_MAX || pool_stopping(p))
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&L->cond, &L->lock, &ts);
    }
    if (*part != SIZE_MAX)
        L->loading++;
    /* parallel maintenance workers take the cores of the pool's other connections unless
     * they load: builds that end early leave theirs to the builds still running */
    *helpers = L->workers > L->loading + 1 ? L->workers - L->loading - 1 : 0;
    pthread_mutex_unlock(&L->lock);
    return *part != SIZE_MAX || *item != SIZE_MAX;
}

/* One ready item: an entry built (then its table's ANALYZE once the last is), or an ANALYZE. */
static snap_rc build_job(pg_load *L, size_t worker, size_t item, size_t helpers, snap_err *err)
{
    size_t table = item < L->post.n ? L->post.e[item].table : item - L->post.n;
    json_t *tj = json_array_get(L->tables, table);
    char *sql;
    uint64_t t0 = util_now_ms();
    snap_rc rc = build_conn(L, worker, err);

    if (rc == SNAP_OK && item < L->post.n) {
        sql = xasprintf("SET max_parallel_maintenance_workers = %zu;\n%s", helpers, L->post.e[item].sql);
        rc = pg_exec(L->conns[worker], sql, err);
        free(sql);
        if (rc != SNAP_OK)
            err_prefix(err, "cannot build an index or constraint of %s.%s", jstr(tj, "schema"), jstr(tj, "name"));
    } else if (rc == SNAP_OK) {
        /* the restored tables only: a bare ANALYZE also reads the whole catalog */
        char *sch = pg_ident(L->conns[worker], jstr(tj, "schema")), *nam = pg_ident(L->conns[worker], jstr(tj, "name"));
        rc = execf(L->conns[worker], err, NULL, "ANALYZE %s.%s", sch, nam);
        if (rc != SNAP_OK)
            err_prefix(err, "cannot analyze %s.%s", sch, nam);
        free(sch);
        free(nam);
    }
    if (rc == SNAP_OK)
        log_debug(rst_ctx(L->t), "%s: %s %s.%s in %.2f s (%zu parallel workers)", rst_component_name(L->t),
                  item < L->post.n ? "built an index or constraint of" : "analyzed", jstr(tj, "schema"),
                  jstr(tj, "name"), (double)(util_now_ms() - t0) / 1e3, helpers);
    pthread_mutex_lock(&L->lock);
    if (rc == SNAP_OK && item < L->post.n && --L->pending[table] == 0 && L->post.analyze_early) {
        L->ready[L->nready++] = L->post.n + table;
        pthread_cond_broadcast(&L->cond);
    }
    pthread_mutex_unlock(&L->lock);
    return rc;
}

/* Each job is one unit of work, a part to load or an item to build (next_unit). */
static snap_rc stage_job(pool *p, void *arg, size_t worker, size_t job, snap_err *err)
{
    pg_load *L = arg;
    size_t part, item, helpers;
    snap_rc rc;

    (void)job;
    if (!next_unit(p, L, worker, &part, &item, &helpers)) /* stopping: the cause is reported */
        return ctx_interrupted(rst_ctx(L->t), err) ? SNAP_EINTR : SNAP_OK;
    if (item != SIZE_MAX)
        return build_job(L, worker, item, helpers, err);
    if (part != L->skip_part && rst_order_table(L->order, part) != SIZE_MAX) {
        json_t *tj = json_array_get(L->tables, rst_order_table(L->order, part));
        log_debug(rst_ctx(L->t), "%s: loading part %zu, rows of %s.%s", rst_component_name(L->t), part,
                  jstr(tj, "schema"), jstr(tj, "name"));
    }
    rc = load_job(L, worker, part, err);
    if (part != L->skip_part)
        log_debug(rst_ctx(L->t), "%s: part %zu loaded", rst_component_name(L->t), part);
    pthread_mutex_lock(&L->lock);
    L->loading--;
    rst_order_done(L->order, worker);
    if (--L->loads_left == 0) /* a table short of its rows fails check_counts after */
        for (size_t i = 0; i < L->ntables; i++)
            queue_table(L, i);
    pthread_cond_broadcast(&L->cond);
    pthread_mutex_unlock(&L->lock);
    return rc;
}

/* loading: the parts, the entries and ANALYZEs they make ready; else the ANALYZEs alone */
static snap_rc parallel_load(pg_load *L, int jobs, bool loading, snap_err *err)
{
    size_t n = (size_t)(jobs > 0 ? jobs : 1);
    pool_spec spec = {.workers = n, .job = stage_job, .done = load_done, .arg = L};
    snap_rc rc;

    L->order = loading ? part_order(L, n) : rst_order_new(0, 0, n, NULL, NULL);
    if (loading) {
        spec.njobs = L->nparts + L->post.n + (L->post.analyze_early ? L->ntables : 0);
        L->loads_left = L->nparts;
    } else {
        spec.njobs = L->ntables;
        L->loads_left = 0;
        L->nready = L->taken = 0;
        for (size_t i = 0; i < L->ntables; i++)
            L->ready[L->nready++] = L->post.n + i;
    }

    L->conns = xcalloc(n, sizeof *L->conns);
    L->bufs = xcalloc(n, sizeof *L->bufs);
    L->prepared = xcalloc(n, sizeof *L->prepared);
    L->workers = n;
    rc = pool_run_spec(rst_ctx(L->t), &spec, err);
    free(L->conns);
    free(L->bufs);
    free(L->prepared);
    rst_order_free(L->order);
    L->conns = NULL;
    L->bufs = NULL;
    L->prepared = NULL;
    L->order = NULL;
    return rc;
}

/* What was not built while loading: foreign keys, triggers, attachments, comments... */
static snap_rc post_final(pg_load *L, PGconn *c, int dump, int jobs, snap_err *err)
{
    size_t len;
    int fd;
    snap_rc rc;

    if (L->post.n == 0)
        return run_pg_restore(L->t, c, L->db, "post-data", jobs, dump, -1, -1, NULL, err);
    fd = pg_tmpfile(err);
    if (fd < 0)
        return err->code;
    len = strlen(L->post.rest_list);
    if (write(fd, L->post.rest_list, len) != (ssize_t)len)
        rc = err_sys(err, SNAP_EFAIL, "cannot write pg_restore's list to a temporary file");
    else
        rc = run_pg_restore(L->t, c, L->db, "post-data", jobs, dump, fd, -1, NULL, err);
    close(fd);
    return rc;
}

static snap_rc stage_swap(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t), *info = info_of(t), *db = json_object_get(info, "database");
    const char *staged = jstr(st, "staged");
    snap_ctx *ctx = rst_ctx(t);
    schema_files sf = {.dump = -1};
    PGconn *admin = NULL, *c = NULL;
    pg_load L;
    char *q = NULL, *opts = NULL;
    unsigned long oid;
    uint64_t t0 = util_now_ms();
    snap_rc rc;

    load_init(&L, t, staged, SIZE_MAX);
    rc = read_schema(t, &sf, err);
    if (rc != SNAP_OK)
        goto out;
    L.skip_part = sf.part;
    rc = connect_maintenance(t, &admin, err);
    if (rc != SNAP_OK)
        goto out;
    /* journaled before it exists, so that a crash right after leaves a name to clean up */
    rc = rst_journal_save(t, err);
    if (rc != SNAP_OK)
        goto out;
    q = qi(admin, staged);
    {
        char *enc = pg_literal(admin, *jstr(db, "encoding") ? jstr(db, "encoding") : "UTF8");
        char *col = pg_literal(admin, jstr(db, "collate")), *ct = pg_literal(admin, jstr(db, "ctype"));
        const char *space = jstr(db, "tablespace");
        char *icu = NULL, *ts = NULL;
        /* naming pg_default would need CREATE on it, which owners of ordinary databases lack */
        if (*space && strcmp(space, "pg_default") != 0) {
            char *qt = qi(admin, space);
            ts = xasprintf(" TABLESPACE %s", qt);
            free(qt);
        }
        if (strcmp(jstr(db, "locale_provider"), "i") == 0) {
            char *il = pg_literal(admin, jstr(db, "icu_locale"));
            icu = xasprintf(" LOCALE_PROVIDER icu ICU_LOCALE %s", il);
            free(il);
        }
        opts = xasprintf("TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s%s%s", enc, col, ct,
                         icu ? icu : "", ts ? ts : "");
        free(enc);
        free(col);
        free(ct);
        free(icu);
        free(ts);
    }
    rc = execf(admin, err, NULL, "CREATE DATABASE %s %s", q, opts);
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot create staging database %s", staged);
        goto out;
    }
    rc = db_oid(admin, staged, &oid, err);
    if (rc != SNAP_OK)
        goto out;
    json_object_set_new(st, "staged_oid", json_integer((json_int_t)oid));
    mark_db(t, admin, staged, true);
    rc = rst_journal_save(t, err);
    if (rc != SNAP_OK)
        goto out;
    util_failpoint("pg-stage-created");

    rc = connect_db(t, staged, &c, err);
    if (rc == SNAP_OK) {
        log_info(ctx, "%s: restoring the schema into %s", rst_component_name(t), staged);
        rc = run_pg_restore(t, c, staged, "pre-data", 1, sf.dump, -1, -1, NULL, err);
    }
    if (rc == SNAP_OK)
        rc = plan_post(&L, c, sf.dump, err);
    if (rc == SNAP_OK) {
        log_info(ctx, "%s: loading %zu tables on %d connections", rst_component_name(t), L.ntables, ctx->jobs);
        rc = parallel_load(&L, ctx->jobs, true, err);
    }
    util_failpoint("pg-stage-loaded");
    if (rc == SNAP_OK)
        rc = pg_exec(c, sf.sequences, err);
    if (rc == SNAP_OK) {
        log_info(ctx, "%s: building indexes and constraints", rst_component_name(t));
        rc = post_final(&L, c, sf.dump, ctx->jobs, err);
    }
    if (rc == SNAP_OK && !L.post.analyze_early)
        rc = parallel_load(&L, ctx->jobs, false, err);
    if (rc == SNAP_OK)
        rc = check_counts(&L, err);
    PQfinish(c);
    c = NULL;
    if (rc == SNAP_OK)
        rc = apply_db_props(t, admin, staged, false, err);
    if (rc == SNAP_OK)
        mark_db(t, admin, staged, true); /* the snapshot's settings may have replaced it */
    if (rc == SNAP_OK) {
        json_object_set_new(rst_plan(t), "stage_ms", json_integer((json_int_t)(util_now_ms() - t0)));
        log_info(ctx, "%s: staged and verified in %.1f s", rst_component_name(t), (double)(util_now_ms() - t0) / 1e3);
    }
out:
    if (rc != SNAP_OK && strstr(err->msg, "staging") == NULL && *staged)
        err_prefix(err, "staging %s", staged);
    PQfinish(c);
    PQfinish(admin);
    schema_files_free(&sf);
    load_free(&L);
    free(q);
    free(opts);
    return rc;
}

/* Transaction mode changes nothing before the cut-over: here the parts are only verified. */
static snap_rc stage_verify(rst_target *t, snap_err *err)
{
    const cat_component *comp = rst_component(t);
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < cat_component_nparts(comp) && rc == SNAP_OK; i++) {
        const char *key, *sha;
        uint64_t size, entries, got;
        cat_component_part(comp, i, &key, &size, &sha, &entries);
        rc = arc_verify_part(rst_store(t), key, size, sha, rst_ctx(t), NULL, &got, err);
    }
    return rc;
}

static snap_rc pg_stage(rst_target *t, snap_err *err)
{
    const char *mode = jstr(rst_state(t), "mode");

    return strcmp(mode, "transaction") == 0 ? stage_verify(t, err) : stage_swap(t, err);
}

/* ---- cut-over ---- */

/* Ends every other session on db and waits until they are gone (at most ~5 s). */
static snap_rc end_sessions(PGconn *c, const char *db, long *ended, snap_err *err)
{
    const char *p[1] = {db};
    PGresult *res;
    snap_rc rc = pg_query(c, "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity"
                             " WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()", 1, p, &res, err);

    if (rc != SNAP_OK)
        return rc;
    *ended = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    for (int i = 0; i < 500; i++) {
        long left;
        rc = pg_query(c, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = $1"
                         " AND pid <> pg_catalog.pg_backend_pid()", 1, p, &res, err);
        if (rc != SNAP_OK)
            return rc;
        left = atol(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (left == 0)
            return SNAP_OK;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    err_set(err, SNAP_ECONFLICT, 0, "sessions on database %s did not end", db);
    err_hint(err, "end them (pg_terminate_backend) and run `revert --recover`");
    return SNAP_ECONFLICT;
}

static snap_rc set_allow(PGconn *c, const char *db, bool allow, snap_err *err)
{
    char *q = qi(c, db);
    snap_rc rc = execf(c, err, "cannot change ALLOW_CONNECTIONS", "ALTER DATABASE %s ALLOW_CONNECTIONS %s", q,
                       allow ? "true" : "false");
    free(q);
    return rc;
}

/* In one transaction: from (a -> b) to (b -> c): rename a to b's... see callers. */
static snap_rc rename_pair(PGconn *c, const char *a, const char *a_new, const char *b, const char *b_new,
                           snap_err *err)
{
    char *qa = qi(c, a), *qan = qi(c, a_new), *qb = qi(c, b), *qbn = qi(c, b_new);
    snap_rc rc = execf(c, err, "cannot swap the databases",
                       "BEGIN; ALTER DATABASE %s RENAME TO %s; ALTER DATABASE %s RENAME TO %s; COMMIT", qa, qan, qb, qbn);

    if (rc != SNAP_OK)
        pg_exec(c, "ROLLBACK", &(snap_err){0});
    free(qa);
    free(qan);
    free(qb);
    free(qbn);
    return rc;
}

static snap_rc cutover_swap(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *live = jstr(st, "live"), *staged = jstr(st, "staged"), *displaced = jstr(st, "displaced");
    unsigned long live_oid = st_oid(t, "live_oid"), staged_oid = st_oid(t, "staged_oid");
    bool allow = !json_is_false(json_object_get(st, "allow_connections"));
    PGconn *c = NULL;
    char *now_staged = NULL, *now_live = NULL;
    long ended = 0;
    uint64_t t0;
    snap_rc rc = connect_maintenance(t, &c, err);

    if (rc != SNAP_OK)
        return rc;
    rc = db_name(c, staged_oid, &now_staged, err);
    if (rc == SNAP_OK)
        rc = db_name(c, live_oid, &now_live, err);
    if (rc != SNAP_OK)
        goto out;
    if (now_staged != NULL && strcmp(now_staged, live) == 0) {
        /* switched already (recovery): only the displaced one's connections are left to restore */
        if (now_live != NULL && allow)
            rc = set_allow(c, now_live, true, err);
        goto out;
    }
    if (now_staged == NULL || strcmp(now_staged, staged) != 0) {
        rc = err_set(err, SNAP_EFAIL, 0, "staging database %s is gone", staged);
        goto out;
    }
    if (strcmp(jstr(st, "mode"), "to") == 0) {
        /* --to: only a name to give; nothing live is involved */
        char *qs = qi(c, staged), *ql = qi(c, live);
        t0 = util_now_ns();
        rc = execf(c, err, "cannot rename the restored database", "ALTER DATABASE %s RENAME TO %s", qs, ql);
        json_object_set_new(rst_plan(t), "cutover_ms", json_real((double)(util_now_ns() - t0) / 1e6));
        if (rc == SNAP_OK)
            mark_db(t, c, live, false);
        free(qs);
        free(ql);
        goto out;
    }
    if (now_live == NULL || strcmp(now_live, live) != 0) {
        rc = err_set(err, SNAP_EFAIL, 0, "database %s is no longer the one the revert planned for", live);
        err_hint(err, "it was dropped or renamed meanwhile; the restored copy is %s", staged);
        goto out;
    }
    json_object_set_new(st, "blocked", json_true());
    rc = rst_journal_save(t, err);
    if (rc != SNAP_OK)
        goto out;
    t0 = util_now_ns();
    rc = set_allow(c, live, false, err);
    if (rc == SNAP_OK)
        rc = end_sessions(c, live, &ended, err);
    util_failpoint("pg-cutover-blocked");
    if (rc == SNAP_OK)
        rc = rename_pair(c, live, displaced, staged, live, err);
    if (rc == SNAP_OK) {
        double ms = (double)(util_now_ns() - t0) / 1e6;
        json_object_set_new(rst_plan(t), "cutover_ms", json_real(ms));
        json_object_set_new(rst_plan(t), "sessions_ended", json_integer(ended));
        log_info(rst_ctx(t), "%s: cut-over in %.1f ms (%ld session%s ended); the previous database is %s",
                 rst_component_name(t), ms, ended, ended == 1 ? "" : "s", displaced);
        /* the one that is live now carries no marker; the displaced one is marked until dropped */
        mark_db(t, c, live, false);
        mark_db(t, c, displaced, true);
        util_failpoint("pg-cutover-renamed");
        if (allow)
            rc = set_allow(c, displaced, true, err);
    } else if (allow) {
        snap_err e2;
        if (set_allow(c, live, true, &e2) != SNAP_OK)
            log_warn(rst_ctx(t), "could not allow connections to %s again: %s", live, e2.msg);
    }
out:
    PQfinish(c);
    free(now_staged);
    free(now_live);
    return rc;
}

static snap_rc cutover_tx(rst_target *t, snap_err *err);

static snap_rc pg_cutover(rst_target *t, snap_err *err)
{
    return strcmp(jstr(rst_state(t), "mode"), "transaction") == 0 ? cutover_tx(t, err) : cutover_swap(t, err);
}

static snap_rc pg_rollback(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *live = jstr(st, "live"), *staged = jstr(st, "staged"), *displaced = jstr(st, "displaced");
    bool allow = !json_is_false(json_object_get(st, "allow_connections"));
    char *now_staged = NULL, *now_live = NULL;
    PGconn *c = NULL;
    long ended;
    snap_rc rc;

    if (strcmp(jstr(st, "mode"), "transaction") == 0) {
        PGresult *res;
        const char *xid = json_string_value(json_object_get(st, "xid"));
        const char *p[1] = {xid};
        if (xid == NULL)
            return SNAP_OK; /* it never got to commit */
        rc = connect_db(t, live, &c, err);
        if (rc == SNAP_OK)
            rc = pg_query(c, "SELECT pg_catalog.txid_status($1::bigint)", 1, p, &res, err);
        if (rc == SNAP_OK) {
            if (strcmp(PQgetvalue(res, 0, 0), "committed") == 0) {
                rc = err_set(err, SNAP_EFAIL, 0, "database %s was reverted in a transaction that committed", live);
                err_hint(err, "the safety snapshot holds the state before: revert to it");
            }
            PQclear(res);
        }
        PQfinish(c);
        return rc;
    }
    rc = connect_maintenance(t, &c, err);
    if (rc != SNAP_OK)
        return rc;
    rc = db_name(c, st_oid(t, "staged_oid"), &now_staged, err);
    if (rc == SNAP_OK)
        rc = db_name(c, st_oid(t, "live_oid"), &now_live, err);
    if (rc != SNAP_OK)
        goto out;
    if (strcmp(jstr(st, "mode"), "to") == 0) {
        if (now_staged != NULL && strcmp(now_staged, live) == 0) {
            char *ql = qi(c, live), *qs = qi(c, staged);
            rc = execf(c, err, "cannot rename back", "ALTER DATABASE %s RENAME TO %s", ql, qs);
            free(ql);
            free(qs);
        }
        goto out;
    }
    if (now_staged != NULL && strcmp(now_staged, live) == 0 && now_live != NULL && strcmp(now_live, displaced) == 0) {
        rc = set_allow(c, live, false, err);
        if (rc == SNAP_OK)
            rc = end_sessions(c, live, &ended, err);
        if (rc == SNAP_OK)
            rc = rename_pair(c, live, staged, displaced, live, err);
        if (rc == SNAP_OK) {
            mark_db(t, c, live, false);
            mark_db(t, c, staged, true);
            rc = set_allow(c, staged, true, err);
        }
        free(now_live);
        now_live = xstrdup(live);
    }
    /* the live one accepts connections again, as it did before */
    if (rc == SNAP_OK && now_live != NULL && allow && json_is_true(json_object_get(st, "blocked")))
        rc = set_allow(c, now_live, true, err);
out:
    PQfinish(c);
    free(now_staged);
    free(now_live);
    return rc;
}

static snap_rc drop_db(PGconn *c, const char *name, snap_err *err)
{
    char *q = qi(c, name);
    snap_rc rc = execf(c, err, NULL, "DROP DATABASE IF EXISTS %s WITH (FORCE)", q);

    if (rc != SNAP_OK)
        err_prefix(err, "cannot drop database %s", name);
    free(q);
    return rc;
}

static snap_rc pg_discard(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *staged = jstr(st, "staged");
    unsigned long oid = st_oid(t, "staged_oid");
    char *now = NULL;
    PGconn *c = NULL;
    snap_rc rc;

    if (!*staged || strcmp(jstr(st, "mode"), "transaction") == 0)
        return SNAP_OK;
    rc = connect_maintenance(t, &c, err);
    if (rc != SNAP_OK)
        return rc;
    if (oid != 0) {
        rc = db_name(c, oid, &now, err);
        /* only the database this revert created, under the name it has while staged */
        if (rc == SNAP_OK && now != NULL && strcmp(now, staged) == 0)
            rc = drop_db(c, staged, err);
    } else {
        rc = drop_db(c, staged, err); /* created, perhaps, but killed before its oid was saved */
    }
    PQfinish(c);
    free(now);
    return rc;
}

/* pg_database_size of the displaced database, in the state as kept_bytes for the record
 * `revert --kept` lists; none when it cannot be read. */
static void kept_size(rst_target *t, const char *displaced)
{
    const char *p[1] = {displaced};
    PGconn *c = NULL;
    PGresult *res = NULL;
    snap_err e;

    if (connect_maintenance(t, &c, &e) == SNAP_OK &&
        pg_query(c, "SELECT pg_catalog.pg_database_size($1::text)", 1, p, &res, &e) == SNAP_OK &&
        PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        json_object_set_new(rst_state(t), "kept_bytes", json_integer((json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
    PQclear(res);
    PQfinish(c);
}

static snap_rc pg_finish(rst_target *t, bool drop_old, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *displaced = jstr(st, "displaced");
    char *now = NULL;
    PGconn *c = NULL;
    snap_rc rc;

    if (strcmp(jstr(st, "mode"), "swap") != 0 || !*displaced)
        return SNAP_OK;
    if (!drop_old) {
        if (rst_manifest(t) != NULL)
            json_object_set_new(rst_plan(t), "kept", json_string(displaced));
        kept_size(t, displaced);
        return SNAP_OK;
    }
    rc = connect_maintenance(t, &c, err);
    if (rc == SNAP_OK)
        rc = db_name(c, st_oid(t, "live_oid"), &now, err);
    if (rc == SNAP_OK && now != NULL && strcmp(now, displaced) == 0)
        rc = drop_db(c, displaced, err);
    PQfinish(c);
    free(now);
    return rc;
}

/* ---- transaction mode ---- */

/* pg_restore's SQL for a section (its listing with flag "--list"), without psql's \restrict lines. */
static snap_rc section_sql(rst_target *t, PGconn *c, int dump, const char *section, const char *flag, char **sql,
                           snap_err *err)
{
    int fd = pg_tmpfile(err);
    off_t size;
    char *buf, *w;
    snap_rc rc;

    if (fd < 0)
        return err->code;
    rc = run_pg_restore(t, c, NULL, section, 1, dump, -1, fd, flag, err);
    if (rc != SNAP_OK) {
        close(fd);
        return rc;
    }
    size = lseek(fd, 0, SEEK_END);
    buf = xmalloc((size_t)size + 1);
    if (pread(fd, buf, (size_t)size, 0) != size) {
        close(fd);
        free(buf);
        return err_sys(err, SNAP_EFAIL, "cannot read pg_restore's output");
    }
    close(fd);
    buf[size] = '\0';
    /* drop backslash meta-commands (\restrict, \unrestrict): they are psql's, not SQL */
    w = buf;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (line[0] != '\\') {
            memmove(w, line, len);
            w += len;
        }
        line += len;
    }
    *w = '\0';
    *sql = buf;
    return SNAP_OK;
}

/* Drops what the snapshot will recreate: its schemas (public is recreated empty), large objects. */
static snap_rc drop_scope(rst_target *t, PGconn *c, snap_err *err)
{
    json_t *info = info_of(t), *pats = json_object_get(info, "schemas"), *v;
    char *filter = NULL, *sql;
    size_t i, len = 0;
    PGresult *res;
    snap_rc rc;

    filter = xstrdup("");
    json_array_foreach(pats, i, v) {
        char *sre, *nre, *lit, *nf;
        pg_pattern_regex(json_string_value(v), &sre, &nre);
        lit = pg_literal(c, nre);
        nf = xasprintf("%s%s n.nspname ~ %s", filter, len++ ? " OR" : " AND (", lit);
        free(filter);
        filter = nf;
        free(lit);
        free(sre);
        free(nre);
    }
    if (len > 0) {
        char *nf = xasprintf("%s)", filter);
        free(filter);
        filter = nf;
    }
    sql = xasprintf("SELECT quote_ident(n.nspname), n.nspname = 'public' FROM pg_catalog.pg_namespace n"
                    " WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'%s ORDER BY 1", filter);
    rc = pg_query(c, sql, 0, NULL, &res, err);
    free(sql);
    free(filter);
    if (rc != SNAP_OK)
        return rc;
    for (int k = 0; k < PQntuples(res) && rc == SNAP_OK; k++) {
        rc = execf(c, err, "cannot drop the captured schemas", "DROP SCHEMA %s CASCADE", PQgetvalue(res, k, 0));
        if (rc == SNAP_OK && strcmp(PQgetvalue(res, k, 1), "t") == 0)
            rc = pg_exec(c, PQserverVersion(c) >= 150000
                                ? "CREATE SCHEMA public AUTHORIZATION pg_database_owner;"
                                  " COMMENT ON SCHEMA public IS 'standard public schema';"
                                  " GRANT USAGE ON SCHEMA public TO PUBLIC"
                                : "CREATE SCHEMA public; COMMENT ON SCHEMA public IS 'standard public schema';"
                                  " GRANT ALL ON SCHEMA public TO PUBLIC",
                         err);
    }
    PQclear(res);
    if (rc == SNAP_OK && json_array_size(pats) == 0)
        rc = pg_exec(c, "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata", err);
    return rc;
}

static snap_rc cutover_tx(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *live = jstr(st, "live");
    schema_files sf = {.dump = -1};
    PGconn *c = NULL;
    PGresult *res = NULL;
    char *pre = NULL, *post = NULL;
    pg_load L;
    char *buf = NULL;
    uint64_t t0 = util_now_ns();
    snap_rc rc;

    if (rst_manifest(t) == NULL) {
        /* recovery: the transaction either committed or the server rolled it back */
        const char *xid = json_string_value(json_object_get(st, "xid"));
        const char *p[1] = {xid};
        if (xid == NULL)
            return err_set(err, SNAP_EFAIL, 0, "the transaction never committed; database %s is unchanged", live);
        rc = connect_db(t, live, &c, err);
        if (rc == SNAP_OK)
            rc = pg_query(c, "SELECT pg_catalog.txid_status($1::bigint)", 1, p, &res, err);
        if (rc == SNAP_OK && strcmp(PQgetvalue(res, 0, 0), "committed") != 0)
            rc = err_set(err, SNAP_EFAIL, 0, "the transaction did not commit; database %s is unchanged", live);
        PQclear(res);
        PQfinish(c);
        return rc;
    }
    load_init(&L, t, live, SIZE_MAX);
    rc = read_schema(t, &sf, err);
    if (rc == SNAP_OK)
        rc = connect_db(t, live, &c, err);
    if (rc == SNAP_OK)
        rc = section_sql(t, c, sf.dump, "pre-data", NULL, &pre, err);
    if (rc == SNAP_OK)
        rc = section_sql(t, c, sf.dump, "post-data", NULL, &post, err);
    if (rc != SNAP_OK)
        goto out;
    L.skip_part = sf.part;
    rc = pg_exec(c, "BEGIN", err);
    if (rc == SNAP_OK)
        rc = pg_query(c, "SELECT pg_catalog.txid_current()::text", 0, NULL, &res, err);
    if (rc == SNAP_OK) {
        set_str(st, "xid", PQgetvalue(res, 0, 0));
        PQclear(res);
        res = NULL;
        rc = rst_journal_save(t, err);
    }
    if (rc == SNAP_OK)
        rc = drop_scope(t, c, err);
    if (rc == SNAP_OK) {
        rc = pg_exec(c, pre, err);
        if (rc != SNAP_OK)
            err_prefix(err, "cannot restore the schema");
    }
    buf = xmalloc(IO_CHUNK);
    for (size_t i = 0; i < L.nparts && rc == SNAP_OK; i++)
        if (i != L.skip_part)
            rc = load_part(&L, c, i, buf, err);
    if (rc == SNAP_OK)
        rc = pg_exec(c, sf.sequences, err);
    if (rc == SNAP_OK) {
        rc = pg_exec(c, post, err);
        if (rc != SNAP_OK)
            err_prefix(err, "cannot build indexes and constraints");
    }
    if (rc == SNAP_OK)
        rc = check_counts(&L, err);
    if (rc == SNAP_OK)
        rc = apply_db_props(t, c, PQdb(c), true, err);
    util_failpoint("pg-tx-before-commit");
    if (rc == SNAP_OK)
        rc = pg_exec(c, "COMMIT", err);
    if (rc == SNAP_OK) {
        double ms = (double)(util_now_ns() - t0) / 1e6;
        json_object_set_new(rst_plan(t), "transaction_ms", json_real(ms));
        log_info(rst_ctx(t), "%s: reverted in one transaction in %.1f s", rst_component_name(t), ms / 1e3);
    } else if (c != NULL && PQstatus(c) == CONNECTION_OK) {
        pg_exec(c, "ROLLBACK", &(snap_err){0});
        json_object_del(st, "xid"); /* it did not commit: recovery has nothing to check */
    }
out:
    PQclear(res);
    PQfinish(c);
    schema_files_free(&sf);
    load_free(&L);
    free(pre);
    free(post);
    free(buf);
    return rc;
}

/* ---- the lock in the server ---- */

static void pg_unlock(void *conn)
{
    PQfinish(conn); /* the advisory lock ends with its session */
}

/* Who holds the advisory lock (classid, objid) of this database, as its application_name
 * says ("snap revert <id> on <host>") and since when its session began. */
static char *lock_holder(PGconn *c, const char *hi, const char *lo)
{
    const char *p[2] = {hi, lo};
    PGresult *res;
    char *who = NULL;
    snap_err e;

    if (pg_query(c, "SELECT a.application_name, coalesce(host(a.client_addr), 'local'),"
                    " to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                    " AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid"
                    " AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
                 2, p, &res, &e) != SNAP_OK)
        return NULL;
    if (PQntuples(res) > 0)
        who = xasprintf("%s (session from %s, since %s)", *PQgetvalue(res, 0, 0) ? PQgetvalue(res, 0, 0) : "a session",
                        PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    PQclear(res);
    return who;
}

/*
 * pg_try_advisory_lock on a key derived from the live database's name, taken in the
 * maintenance database (advisory locks belong to the database they are taken in; the live
 * one is renamed and its sessions ended), retried until --lock-wait runs out.
 */
static snap_rc pg_lock(rst_target *t, snap_err *err)
{
    json_t *st = rst_state(t);
    const char *live = rst_manifest(t) != NULL ? (rst_to(t) ? rst_to(t) : jstr(info_of(t), "database_name"))
                                               : jstr(st, "live");
    char hi[16], lo[16], big[24], *app, *lit, *who = NULL;
    uint64_t until = util_now_ns() + (uint64_t)rst_lock_wait(t) * 1000000000ull;
    const char *p[1] = {big};
    PGconn *c = NULL;
    PGresult *res;
    bool said = false;
    snap_rc rc;

    if (rst_manifest(t) != NULL && json_object_get(st, "live") == NULL) {
        /* what pg_plan records, so that the maintenance database is another */
        set_str(st, "live", live);
        set_str(st, "dsn", cat_component_source(rst_component(t)) ? cat_component_source(rst_component(t)) : "");
    }
    lock_key(live, hi, lo, big);
    rc = connect_maintenance(t, &c, err);
    /* transaction mode may run where no other database can be reached, and it never
     * renames the live one: the lock is then taken there */
    if (rc != SNAP_OK && strcmp(*jstr(st, "mode") ? jstr(st, "mode") : rst_options(t)->mode ? rst_options(t)->mode : "",
                                "transaction") == 0)
        rc = connect_db(t, live, &c, err);
    if (rc != SNAP_OK)
        return rc;
    app = xasprintf("snap revert %s on %s", rst_revert_id(t), rst_host(t));
    lit = pg_literal(c, app);
    free(app);
    app = xasprintf("SET application_name = %s", lit);
    rc = pg_exec(c, app, err);
    free(app);
    free(lit);
    while (rc == SNAP_OK) {
        rc = pg_query(c, "SELECT pg_catalog.pg_try_advisory_lock($1::bigint)", 1, p, &res, err);
        if (rc != SNAP_OK)
            break;
        bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (got) {
            rst_hold(t, c, pg_unlock);
            free(who);
            return SNAP_OK;
        }
        free(who);
        who = lock_holder(c, hi, lo);
        if (util_now_ns() >= until || ctx_interrupted(rst_ctx(t), NULL)) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "database %s is locked by %s", live, who ? who : "another revert");
            err_hint(err, "another runner is reverting it: wait for it (--lock-wait DURATION waits), then run the "
                          "command again; nothing was changed");
            err_kind(err, "locked");
            break;
        }
        if (!said)
            log_info(rst_ctx(t), "database %s is locked by %s; waiting up to %lld s", live,
                     who ? who : "another revert", (long long)rst_lock_wait(t));
        said = true;
        usleep(250000);
    }
    free(who);
    PQfinish(c);
    return rc;
}

/* ---- orphans: marked databases of a configured source when every journal is lost ---- */

/* The names a revert of live gives its staging and displaced databases. */
static void orphan_names(const char *live, const char *id, const char *snap, char **staging, char **displaced)
{
    char *sfx = xasprintf("__revert_%s", id_token(snap));

    *staging = db_with_suffix(live, sfx);
    free(sfx);
    sfx = xasprintf("__pre_revert_%s", id_token(id));
    *displaced = db_with_suffix(live, sfx);
    free(sfx);
}

/* The listing returns every marked database, other sources' too: those are passed over. */
static const rst_orphan_kind orphan_kind = {"database", false, orphan_names};

/* One marked database: dropped when it is this source's staging and its lock is free,
 * reported when it is the displaced one, left alone otherwise (rst_orphan_verdict). */
static snap_rc orphan_db(snap_ctx *ctx, PGconn *c, const char *live, const char *name, const char *val,
                         json_t *report, snap_err *err)
{
    bool staging;
    json_t *e = rst_orphan_verdict(ctx, &orphan_kind, live, name, val, report, &staging);
    char hi[16], lo[16], big[24];
    const char *p[1] = {big};
    PGresult *res = NULL;
    snap_rc rc = SNAP_OK;

    if (e == NULL || !staging)
        return SNAP_OK;
    lock_key(live, hi, lo, big);
    rc = pg_query(c, "SELECT pg_catalog.pg_try_advisory_lock($1::bigint)", 1, p, &res, err);
    if (rc == SNAP_OK && strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        log_warn(ctx, "database %s is locked by a running revert: its staging %s is left alone", live, name);
        json_object_set_new(e, "outcome", json_string("locked"));
        goto out;
    }
    if (rc == SNAP_OK)
        rc = drop_db(c, name, err);
    (void)pg_exec(c, "SELECT pg_catalog.pg_advisory_unlock_all()", &(snap_err){0});
    json_object_set_new(e, "outcome", json_string(rc == SNAP_OK ? "removed" : "failed"));
    json_object_set_new(e, "staging", json_string(name));
    if (rc == SNAP_OK)
        log_info(ctx, "removed the staging database %s that revert %s of %s left", name,
                 json_string_value(json_object_get(e, "revert_id")), live);
out:
    PQclear(res);
    return rc;
}

/* Every database of one configured source that carries a marker naming its database. */
static snap_rc orphans_of_source(snap_ctx *ctx, const char *dsn, json_t *report, snap_err *err)
{
    char *live = pg_dsn_dbname(dsn);
    const char *cands[] = {cfg_get(ctx->cfg, "revert", "pg_maintenance_db"), "postgres", "template1"};
    PGconn *c = NULL;
    PGresult *res = NULL;
    snap_rc rc = SNAP_ENOTFOUND;

    if (live == NULL)
        return SNAP_OK; /* no database named: nothing to tell staging by */
    for (size_t i = 0; i < 3 && rc == SNAP_ENOTFOUND; i++)
        if (cands[i] != NULL && strcmp(cands[i], live) != 0)
            rc = pg_connect(dsn, cands[i], &c, err);
    if (rc == SNAP_OK)
        rc = pg_query(c, "SELECT d.datname, substr(v, length('" MARK_GUC "=') + 1) FROM pg_catalog.pg_database d"
                         " JOIN pg_catalog.pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0,"
                         " unnest(s.setconfig) v WHERE v LIKE '" MARK_GUC "=%' ORDER BY 1",
                      0, NULL, &res, err);
    for (int k = 0; rc == SNAP_OK && k < PQntuples(res); k++)
        rc = orphan_db(ctx, c, live, PQgetvalue(res, k, 0), PQgetvalue(res, k, 1), report, err);
    if (rc != SNAP_OK)
        err_prefix(err, "database %s: looking for what reverts left", live);
    PQclear(res);
    PQfinish(c);
    free(live);
    return rc;
}

static snap_rc pg_orphans(snap_ctx *ctx, const char *section, json_t *report, snap_err *err)
{
    const char *dsn = cfg_get(ctx->cfg, section, "dsn");

    return orphans_of_source(ctx, dsn != NULL ? dsn : "", report, err);
}

const rst_driver rst_postgres_driver = {
    .type = "postgres",
    .plan = pg_plan,
    .safety_source = pg_safety_source,
    .safety_deferrable = pg_safety_deferrable,
    .displaced_source = pg_displaced_source,
    .stage = pg_stage,
    .cutover = pg_cutover,
    .rollback = pg_rollback,
    .discard = pg_discard,
    .finish = pg_finish,
    .check_state = pg_check_state,
    .lock = pg_lock,
    .orphans = pg_orphans,
};
