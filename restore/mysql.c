/*
 * mysql.c: MySQL and MariaDB revert: stage into a new schema, switch with one RENAME TABLE.
 *
 * plan     connects, checks that the staging and displaced schema names are free, that
 *          local_infile is on and that the user holds the privileges every step needs;
 *          changes nothing.
 * stage    CREATE DATABASE <live>__revert_<id>, the tables (secondary indexes held back
 *          where that is safe), data in parallel through LOAD DATA LOCAL INFILE fed from
 *          the archive stream by mysql_set_local_infile_handler; each table's held-back
 *          indexes as soon as it holds its rows, while other tables load; every part's
 *          SHA-256 and every table's row count are checked.
 * cutover  drops the live triggers and views (a table with triggers cannot move to another
 *          schema), then one RENAME TABLE moves every live table to <live>__pre_revert_<id>
 *          and every staged table into <live>: the server does that atomically. Then the
 *          snapshot's triggers, views, routines and events are created in <live>. Those
 *          objects are the ones not switched in the atomic statement; the window is
 *          measured and reported. The displaced objects are recreated beside the displaced
 *          tables (events excepted), so the displaced schema is a complete undo.
 * rollback renames back and recreates the live objects, from the journal alone.
 *
 * The journal state holds the schema names, the phase, the snapshot's object definitions
 * and those of the live schema before the switch, so that recovery needs neither the
 * manifest nor the store.
 */
#include "../engines/my_client.h"
#include "order.h"
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../catalog/arc.h"
#include "../common/pool.h"
#include "../common/util.h"

#define SCHEMA_MAX (256u << 20)
#define LOAD_SQL_MODE "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

typedef struct my_rst {
    rst_target *t;
    snap_ctx *ctx;
    my_dsn *dsn;
    MYSQL *m;
    json_t *state; /* borrowed */
    const char *live, *staging, *old; /* from the state */
} my_rst;

static cat_component *component(rst_target *t)
{
    return (cat_component *)(uintptr_t)rst_component(t);
}

static const char *state_str(json_t *state, const char *key)
{
    return json_string_value(json_object_get(state, key));
}

static void rst_close(my_rst *R)
{
    mysql_close(R->m);
    my_dsn_free(R->dsn);
    memset(R, 0, sizeof *R);
}

/* The DSN of the target: the configured source (it may carry a password), else the journal
 * or the manifest (redacted: the password then comes from MYSQL_PWD or ~/.my.cnf). */
static snap_rc target_dsn(rst_target *t, my_dsn **out, snap_err *err)
{
    const src_opts *so = rst_source(t);
    const char *dsn = so->type != NULL && strcmp(so->type, "mysql") == 0 ? so->dsn : NULL;
    snap_rc rc;

    if (dsn == NULL)
        dsn = state_str(rst_state(t), "dsn");
    /* The manifest's server only when the manifest is authenticated (restore.c refuses first). */
    if (dsn == NULL && rst_component(t) != NULL && rst_trusted(t))
        dsn = cat_component_source(rst_component(t));
    if (dsn == NULL)
        return err_set(err, SNAP_EUSAGE, 0, "component %s: no mysql dsn to revert onto",
                       rst_component_name(t));
    rc = my_dsn_parse(dsn, out, err);
    return rc;
}

static snap_rc rst_open(rst_target *t, my_rst *R, snap_err *err)
{
    snap_rc rc;

    memset(R, 0, sizeof *R);
    R->t = t;
    R->ctx = rst_ctx(t);
    R->state = rst_state(t);
    rc = target_dsn(t, &R->dsn, err);
    if (rc != SNAP_OK)
        return rc;
    R->live = state_str(R->state, "live");
    R->staging = state_str(R->state, "staging");
    R->old = state_str(R->state, "old");
    if (R->live != NULL)
        my_dsn_set_db(R->dsn, R->live);
    rc = my_connect(R->dsn, NULL, &R->m, err);
    if (rc == SNAP_OK)
        rc = my_exec(R->m, err, "set the session",
                     "SET SESSION foreign_key_checks = 0, SESSION sql_mode = '" LOAD_SQL_MODE "'");
    if (rc != SNAP_OK)
        rst_close(R);
    return rc;
}

static bool schema_exists(MYSQL *m, const char *name, snap_err *err, snap_rc *rc)
{
    char *lit = my_literal(m, name);
    char *sql = xasprintf("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", lit);
    MYSQL_RES *r;
    bool found = false;

    *rc = my_query(m, err, "look up a schema", sql, &r);
    if (*rc == SNAP_OK) {
        found = mysql_num_rows(r) > 0;
        mysql_free_result(r);
    }
    free(sql);
    free(lit);
    return found;
}

/* ---- the marker: the schema COMMENT (MariaDB 10.5 and later; docs/formats.md) ---- */

#define MARK_MAX 1024 /* what a schema comment holds */

/* Whether the server keeps schema comments: MariaDB from 10.5 on; MySQL has none, and its
 * staging and displaced schemas go unmarked (recovery then leaves them to the journal). */
static bool keeps_schema_comments(MYSQL *m)
{
    MYSQL_RES *r = NULL;
    snap_err e;
    bool yes = false;

    if (my_query(m, &e, "look for schema comments",
                 "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'information_schema' "
                 "AND TABLE_NAME = 'SCHEMATA' AND COLUMN_NAME = 'SCHEMA_COMMENT'",
                 &r) == SNAP_OK) {
        yes = mysql_num_rows(r) > 0;
        mysql_free_result(r);
    }
    return yes;
}

/* " COMMENT = '<marker>'" for CREATE DATABASE of a schema this revert makes beside live
 * (caller frees); "" where the server keeps no schema comment. */
static char *mark_clause(rst_target *t, MYSQL *m, const char *live)
{
    json_t *doc;
    char *text, *lit, *out;

    if (!keeps_schema_comments(m)) {
        log_debug(rst_ctx(t), "the server keeps no schema comments: schemas beside %s go unmarked", live);
        return xstrdup("");
    }
    doc = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s}", "format", 1, "revert_id", rst_revert_id(t), "snapshot",
                    rst_manifest(t) ? cat_manifest_id(rst_manifest(t)) : "", "created", (json_int_t)time(NULL),
                    "live", live, "host", rst_host(t));
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL; /* NULL: a name that is not UTF-8 */
    if (text != NULL && strlen(text) > MARK_MAX) { /* a long host name is what can be left out */
        free(text);
        json_object_del(doc, "host");
        text = json_dumps(doc, JSON_COMPACT);
    }
    if (text == NULL) {
        log_warn(rst_ctx(t), "schemas beside %s go unmarked: a name in the marker is not UTF-8", live);
        json_decref(doc);
        return xstrdup("");
    }
    lit = my_literal(m, text);
    out = strlen(text) <= MARK_MAX ? xasprintf(" COMMENT = %s", lit) : xstrdup("");
    json_decref(doc);
    free(text);
    free(lit);
    return out;
}

/* Base table names of a schema, as a JSON array. */
static snap_rc base_tables(MYSQL *m, const char *db, json_t **out, snap_err *err)
{
    char *lit = my_literal(m, db);
    char *sql = xasprintf("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                          "%s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                          lit);
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = my_query(m, err, "list tables", sql, &r);

    *out = json_array();
    if (rc == SNAP_OK) {
        while ((row = mysql_fetch_row(r)) != NULL)
            json_array_append_new(*out, json_string(row[0]));
        mysql_free_result(r);
    }
    free(sql);
    free(lit);
    return rc;
}

static bool array_has(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

/* A character set or collation name from the archive, before it goes into a statement. */
static const char *charset_name(const char *s, const char *def)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 64)
        return def;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return def;
    return s;
}

/* ---- objects: triggers, views, routines, events ---- */

/* One SHOW CREATE row into obj (the live schema's objects, before the switch). */
static snap_rc show_into(MYSQL *m, const char *sql, const char *const *cols,
                         const char *const *keys, size_t n, json_t *obj, snap_err *err)
{
    MYSQL_RES *r;
    MYSQL_ROW row;
    MYSQL_FIELD *f;
    snap_rc rc = my_query(m, err, "read a live definition", sql, &r);

    if (rc != SNAP_OK)
        return rc;
    row = mysql_fetch_row(r);
    f = mysql_fetch_fields(r);
    for (size_t i = 0; row != NULL && i < n; i++)
        for (unsigned j = 0; j < mysql_num_fields(r); j++)
            if (strcasecmp(f[j].name, cols[i]) == 0 && row[j] != NULL) {
                json_t *s = json_string(row[j]);
                if (s != NULL)
                    json_object_set_new(obj, keys[i], s);
                break;
            }
    mysql_free_result(r);
    if (json_object_get(obj, "create") == NULL)
        return err_set(err, SNAP_EUNREACH, 0, "cannot read the definition of %s",
                       json_string_value(json_object_get(obj, "name")));
    return SNAP_OK;
}

/* The triggers, views, routines and events of a live schema, as schema.json has them. */
static snap_rc live_objects(MYSQL *m, const char *db, json_t **out, snap_err *err)
{
    json_t *doc = json_object();
    char *lit = my_literal(m, db), *qdb = my_ident(db), *sql;
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc;
    static const char *const tc[] = {"SQL Original Statement", "sql_mode", "character_set_client",
                                     "collation_connection", "Database Collation"};
    static const char *const tk[] = {"create", "sql_mode", "character_set_client",
                                     "collation_connection", "collation_database"};
    static const char *const vc[] = {"Create View", "character_set_client", "collation_connection"};
    static const char *const vk[] = {"create", "character_set_client", "collation_connection"};
    static const char *const ec[] = {"Create Event", "sql_mode", "time_zone", "character_set_client",
                                     "collation_connection", "Database Collation"};
    static const char *const ek[] = {"create", "sql_mode", "time_zone", "character_set_client",
                                     "collation_connection", "collation_database"};
    struct {
        const char *key, *list;
    } kinds[] = {
        {"triggers", "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
                     "WHERE TRIGGER_SCHEMA = %s ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, "
                     "ACTION_TIMING, ACTION_ORDER"},
        {"views", "SELECT TABLE_NAME, NULL FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s "
                  "ORDER BY TABLE_NAME"},
        {"routines", "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
                     "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME"},
        {"events", "SELECT EVENT_NAME, NULL FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
                   "ORDER BY EVENT_NAME"},
    };

    *out = NULL;
    /* from inside the schema, SHOW CREATE VIEW leaves its own tables unqualified */
    rc = my_execf(m, err, "use the live schema", "USE %s", qdb);
    if (rc != SNAP_OK)
        goto out;
    for (size_t k = 0; k < 4; k++) {
        json_t *arr = json_array();
        json_object_set_new(doc, kinds[k].key, arr);
        sql = xasprintf(kinds[k].list, lit);
        rc = my_query(m, err, "list live objects", sql, &r);
        free(sql);
        if (rc != SNAP_OK)
            goto out;
        while ((row = mysql_fetch_row(r)) != NULL) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(row[0]));
            if (row[1] != NULL)
                json_object_set_new(o, k == 0 ? "table" : "type", json_string(row[1]));
            json_array_append_new(arr, o);
        }
        mysql_free_result(r);
        r = NULL;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *o = json_array_get(arr, i);
            char *id = my_ident(json_string_value(json_object_get(o, "name")));
            if (k == 0) {
                sql = xasprintf("SHOW CREATE TRIGGER %s.%s", qdb, id);
                rc = show_into(m, sql, tc, tk, 5, o, err);
            } else if (k == 1) {
                sql = xasprintf("SHOW CREATE VIEW %s.%s", qdb, id);
                rc = show_into(m, sql, vc, vk, 3, o, err);
            } else if (k == 2) {
                bool proc = strcmp(json_string_value(json_object_get(o, "type")), "PROCEDURE") == 0;
                const char *rc_cols[] = {proc ? "Create Procedure" : "Create Function", "sql_mode",
                                         "character_set_client", "collation_connection",
                                         "Database Collation"};
                sql = xasprintf("SHOW CREATE %s %s.%s", proc ? "PROCEDURE" : "FUNCTION", qdb, id);
                rc = show_into(m, sql, rc_cols, tk, 5, o, err);
            } else {
                sql = xasprintf("SHOW CREATE EVENT %s.%s", qdb, id);
                rc = show_into(m, sql, ec, ek, 6, o, err);
            }
            free(sql);
            free(id);
            if (rc != SNAP_OK)
                goto out;
        }
    }
    *out = doc;
    doc = NULL;
    rc = SNAP_OK;
out:
    mysql_free_result(r);
    json_decref(doc);
    free(lit);
    free(qdb);
    return rc;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Runs one CREATE of an object in db under the sql_mode and character set it was made with. */
static snap_rc create_object(MYSQL *m, const char *db, json_t *o, unsigned *myerr, snap_err *err)
{
    const char *mode = json_string_value(json_object_get(o, "sql_mode"));
    const char *cs = json_string_value(json_object_get(o, "character_set_client"));
    const char *coll = json_string_value(json_object_get(o, "collation_connection"));
    const char *tz = json_string_value(json_object_get(o, "time_zone"));
    const char *create = json_string_value(json_object_get(o, "create"));
    char *qdb = my_ident(db), *lmode = NULL, *lcs = NULL, *lcoll = NULL, *ltz = NULL;
    snap_rc rc;

    /* the text is UTF-8 (read under SET NAMES utf8mb4); another client character set is
     * only right for text that is plain ASCII in it */
    if (cs != NULL && strncmp(cs, "utf8", 4) != 0 && !is_ascii(create))
        cs = coll = NULL;
    lmode = my_literal(m, mode ? mode : "");
    lcs = my_literal(m, cs ? cs : "utf8mb4");
    lcoll = my_literal(m, coll ? coll : "utf8mb4_general_ci");
    ltz = my_literal(m, tz ? tz : "+00:00");
    rc = my_execf(m, err, "prepare the session for a definition",
                  "SET SESSION sql_mode = %s, character_set_client = %s, "
                  "collation_connection = %s, time_zone = %s",
                  lmode, lcs, lcoll, ltz);
    if (rc == SNAP_OK)
        rc = my_execf(m, err, "use the schema", "USE %s", qdb);
    if (rc == SNAP_OK && create != NULL) {
        char *what = xasprintf("create %s", json_string_value(json_object_get(o, "name")));
        rc = my_exec(m, err, what, create);
        free(what);
    }
    *myerr = rc == SNAP_OK ? 0 : mysql_errno(m);
    snap_err e2;
    snap_rc rc2 = my_exec(m, rc == SNAP_OK ? err : &e2, "restore the session",
                          "SET NAMES utf8mb4, time_zone = '+00:00', "
                          "SESSION sql_mode = '" LOAD_SQL_MODE "'");
    if (rc == SNAP_OK)
        rc = rc2;
    free(qdb);
    free(lmode);
    free(lcs);
    free(lcoll);
    free(ltz);
    return rc;
}

/* DROP ... IF EXISTS of every object of one kind in objs, in db. */
static snap_rc drop_objects(MYSQL *m, const char *db, json_t *objs, const char *kind, snap_err *err)
{
    json_t *arr = json_object_get(objs, kind), *o;
    char *qdb = my_ident(db);
    size_t i;
    snap_rc rc = SNAP_OK;

    json_array_foreach(arr, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *what = strcmp(kind, "triggers") == 0 ? "TRIGGER"
                           : strcmp(kind, "views") == 0  ? "VIEW"
                           : strcmp(kind, "events") == 0 ? "EVENT"
                                                         : (type ? type : "PROCEDURE");
        char *id = my_ident(name);
        rc = my_execf(m, err, "drop an object", "DROP %s IF EXISTS %s.%s", what, qdb, id);
        free(id);
        if (rc != SNAP_OK)
            break;
    }
    free(qdb);
    return rc;
}

/*
 * Creates the objects of one kind; views are retried while they depend on each other. With
 * skip_errors an object that fails is named in a warning and the others still come.
 */
static snap_rc create_objects(MYSQL *m, const char *db, json_t *objs, const char *kind,
                              bool skip_errors, const snap_ctx *ctx, snap_err *err)
{
    json_t *arr = json_object_get(objs, kind), *o;
    size_t n = json_array_size(arr), i, left = n;
    bool *done = xcalloc(n + 1, 1), views = strcmp(kind, "views") == 0;
    snap_err last;
    snap_rc rc = SNAP_OK;

    while (left > 0) {
        size_t before = left;
        json_array_foreach(arr, i, o) {
            if (done[i])
                continue;
            unsigned no;
            rc = create_object(m, db, o, &no, &last);
            if (rc == SNAP_OK) {
                done[i] = true;
                left--;
                continue;
            }
            if (views && (no == ER_NO_SUCH_TABLE || no == ER_VIEW_INVALID))
                continue; /* may depend on a view not made yet: next pass */
            if (!skip_errors)
                goto out;
            log_warn(ctx, "could not recreate %s in %s: %s", kind, db, last.msg);
            done[i] = true;
            left--;
        }
        rc = SNAP_OK;
        if (left == before) { /* views that no pass can make */
            if (!skip_errors) {
                rc = last.code ? last.code : SNAP_EFAIL;
                goto out;
            }
            log_warn(ctx, "could not recreate %zu view(s) in %s: %s", left, db, last.msg);
            break;
        }
    }
out:
    if (rc != SNAP_OK)
        *err = last;
    free(done);
    return rc;
}

static const char *const kinds_order[] = {"triggers", "views", "routines", "events"};

/* ---- what is read back: info, the schema document, the journal's state ---- */

#define NFIELDS(a) (sizeof (a) / sizeof (a)[0])

static snap_rc my_check_info(const rst_target *t, const json_t *info, snap_err *err)
{
    static const rst_field f[] = {
        {"database", JSON_STRING, true, JSON_NULL},
        {"non_transactional", JSON_ARRAY, false, JSON_STRING},
    };
    char what[200];
    snap_rc rc;

    snprintf(what, sizeof what, "the info of component %s", rst_component_name(t));
    rc = rst_check_fields(what, info, f, NFIELDS(f), err);
    if (rc == SNAP_OK && json_string_length(json_object_get(info, "database")) == 0)
        rc = err_set(err, SNAP_EVERIFY, 0, "%s is damaged: \"database\" is empty", what);
    if (rc != SNAP_OK)
        err_hint(err, "the snapshot's manifest is damaged or was changed by hand; nothing was changed");
    return rc;
}

/* Every field of the schema document that plan and stage read. */
static snap_rc my_check_schema(const rst_target *t, const json_t *doc, snap_err *err)
{
    static const rst_field top[] = {
        {"tables", JSON_ARRAY, true, JSON_OBJECT},
        {"triggers", JSON_ARRAY, false, JSON_OBJECT},
        {"views", JSON_ARRAY, false, JSON_OBJECT},
        {"routines", JSON_ARRAY, false, JSON_OBJECT},
        {"events", JSON_ARRAY, false, JSON_OBJECT},
        {"charset", JSON_STRING, false, JSON_NULL},
        {"collation", JSON_STRING, false, JSON_NULL},
    };
    static const rst_field table[] = {
        {"name", JSON_STRING, true, JSON_NULL},
        {"create", JSON_STRING, true, JSON_NULL},
        {"path", JSON_STRING, false, JSON_NULL},
        {"columns", JSON_ARRAY, false, JSON_STRING},
    };
    static const rst_field object[] = {
        {"name", JSON_STRING, true, JSON_NULL},
        {"create", JSON_STRING, false, JSON_NULL},
        {"type", JSON_STRING, false, JSON_NULL},
        {"sql_mode", JSON_STRING, false, JSON_NULL},
        {"time_zone", JSON_STRING, false, JSON_NULL},
        {"character_set_client", JSON_STRING, false, JSON_NULL},
        {"collation_connection", JSON_STRING, false, JSON_NULL},
    };
    char what[200];
    const json_t *o;
    size_t i;
    snap_rc rc;

    snprintf(what, sizeof what, "the schema document of component %s", rst_component_name(t));
    rc = rst_check_fields(what, doc, top, NFIELDS(top), err);
    json_array_foreach(json_object_get(doc, "tables"), i, o)
        if (rc == SNAP_OK)
            rc = rst_check_fields(what, o, table, NFIELDS(table), err);
    for (size_t k = 0; k < NFIELDS(kinds_order) && rc == SNAP_OK; k++)
        json_array_foreach(json_object_get(doc, kinds_order[k]), i, o)
            if (rc == SNAP_OK)
                rc = rst_check_fields(what, o, object, NFIELDS(object), err);
    if (rc != SNAP_OK)
        err_hint(err, "the snapshot is damaged or was changed by hand; nothing was changed");
    return rc;
}

static snap_rc my_check_state(const json_t *st, snap_err *err)
{
    static const rst_field f[] = {
        {"live", JSON_STRING, true, JSON_NULL},
        {"staging", JSON_STRING, true, JSON_NULL},
        {"old", JSON_STRING, true, JSON_NULL},
        {"phase", JSON_STRING, true, JSON_NULL},
        {"dsn", JSON_STRING, false, JSON_NULL},
        {"load", JSON_STRING, false, JSON_NULL},
        {"charset", JSON_STRING, false, JSON_NULL},
        {"collation", JSON_STRING, false, JSON_NULL},
        {"created_live", JSON_TRUE, false, JSON_NULL},
        {"renamed", JSON_TRUE, false, JSON_NULL},
        {"tables", JSON_ARRAY, false, JSON_NULL},
        {"live_tables", JSON_ARRAY, false, JSON_NULL},
        {"objects", JSON_OBJECT, false, JSON_NULL},
        {"live_objects", JSON_OBJECT, false, JSON_NULL},
    };
    return rst_check_fields("its state", st, f, NFIELDS(f), err);
}

/* ---- the schema document from the archive ---- */

static snap_rc read_schema(rst_target *t, json_t **out, snap_err *err)
{
    const cat_component *comp = rst_component(t);
    const char *key, *sha;
    uint64_t size, entries;
    arc_reader *r = NULL;
    struct archive_entry *e;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    json_error_t je;
    snap_rc rc;

    *out = NULL;
    if (cat_component_nparts(comp) == 0)
        return err_set(err, SNAP_EVERIFY, 0, "component %s has no parts", rst_component_name(t));
    cat_component_part(comp, 0, &key, &size, &sha, &entries);
    rc = arc_reader_open(rst_store(t), key, size, sha, rst_ctx(t), NULL, &r, err);
    if (rc != SNAP_OK)
        return rc;
    rc = arc_reader_next(r, &e, err);
    if (rc == SNAP_OK && (e == NULL || strcmp(archive_entry_pathname(e), MY_SCHEMA_ENTRY) != 0))
        rc = err_set(err, SNAP_EVERIFY, 0, "part %s does not start with %s", key, MY_SCHEMA_ENTRY);
    while (rc == SNAP_OK) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            if (cap > SCHEMA_MAX) {
                rc = err_set(err, SNAP_EVERIFY, 0, "%s in %s is larger than 256 MiB",
                             MY_SCHEMA_ENTRY, key);
                break;
            }
            buf = xrealloc(buf, cap);
        }
        rc = arc_reader_data(r, buf + len, cap - len, &got, err);
        if (rc != SNAP_OK || got == 0)
            break;
        len += got;
    }
    if (rc == SNAP_OK)
        rc = arc_reader_close(r, err);
    else
        arc_reader_close(r, NULL);
    if (rc == SNAP_OK) {
        *out = json_loadb(buf, len, 0, &je);
        if (*out == NULL || json_integer_value(json_object_get(*out, "format")) != MY_FORMAT)
            rc = err_set(err, SNAP_EVERIFY, 0, "%s in %s is not a schema document this version reads",
                         MY_SCHEMA_ENTRY, key);
        else
            rc = my_check_schema(t, *out, err);
        if (rc != SNAP_OK) {
            json_decref(*out);
            *out = NULL;
        }
    }
    free(buf);
    return rc;
}

/* ---- plan ---- */

static void short_id(const char *revert_id, char out[16])
{
    /* the random tail of the revert id: names stay short (schema names hold 64 chars) */
    size_t n = strlen(revert_id), k = 0;
    const char *s = n > 8 ? revert_id + n - 8 : revert_id;
    for (; *s && k < 8; s++)
        if ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
            out[k++] = *s;
    out[k] = '\0';
}

/* The privileges the user lacks on one schema, appended to missing. */
static snap_rc check_privs(MYSQL *m, const char *grantee, const char *schema,
                           const char *const *need, size_t n, json_t *missing, snap_err *err)
{
    char *lg = my_literal(m, grantee), *ls = my_literal(m, schema);
    char *sql = xasprintf("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                          "WHERE GRANTEE = %s UNION SELECT PRIVILEGE_TYPE FROM "
                          "information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s AND %s LIKE "
                          "TABLE_SCHEMA",
                          lg, lg, ls);
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = my_query(m, err, "read the privileges", sql, &r);

    if (rc == SNAP_OK) {
        bool *have = xcalloc(n + 1, 1);
        while ((row = mysql_fetch_row(r)) != NULL)
            for (size_t i = 0; i < n; i++)
                if (strcasecmp(row[0], need[i]) == 0)
                    have[i] = true;
        mysql_free_result(r);
        for (size_t i = 0; i < n; i++)
            if (!have[i]) {
                char *s = xasprintf("%s on %s", need[i], schema);
                json_array_append_new(missing, json_string(s));
                free(s);
            }
        free(have);
    }
    free(sql);
    free(lg);
    free(ls);
    return rc;
}

/* A name already taken: a previous revert's leftovers, or someone else's schema; and an
 * abandoned staging schema of an earlier revert, which holds space and a name. */
static snap_rc check_names_free(MYSQL *m, const char *live, const char *staging, const char *old, snap_err *err)
{
    const char *names[] = {staging, old};
    char *pat, *lit, *sql, *esc = xmalloc(2 * strlen(live) + 1);
    size_t n = 0;
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < 2; i++) {
        bool taken = schema_exists(m, names[i], err, &rc);
        if (rc != SNAP_OK)
            goto out;
        if (taken) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "schema %s already exists on the server", names[i]);
            err_hint(err, "a previous revert may have left it: run `revert --recover`, or drop "
                          "it if nothing needs it");
            goto out;
        }
    }
    for (const char *p = live; *p; p++) {
        if (*p == '_' || *p == '%' || *p == '\\')
            esc[n++] = '\\';
        esc[n++] = *p;
    }
    esc[n] = '\0';
    pat = xasprintf("%s\\_\\_revert\\_%%", esc);
    lit = my_literal(m, pat);
    sql = xasprintf("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
                    "LIMIT 1",
                    lit);
    rc = my_query(m, err, "look for staging leftovers", sql, &r);
    free(sql);
    free(lit);
    free(pat);
    if (rc == SNAP_OK && (row = mysql_fetch_row(r)) != NULL) {
        rc = err_set(err, SNAP_ECONFLICT, 0, "staging schema %s already exists on the server", row[0]);
        err_hint(err, "an interrupted revert left it: run `revert --recover`; if that finds "
                      "nothing, no revert uses it: DROP DATABASE `%s`. Nothing was changed",
                 row[0]);
    }
out:
    mysql_free_result(r);
    free(esc);
    return rc;
}

/* --to restores into a new or empty schema. */
static snap_rc check_to_empty(MYSQL *m, const char *live, snap_err *err)
{
    json_t *tabs;
    snap_rc rc = base_tables(m, live, &tabs, err);

    if (rc == SNAP_OK && json_array_size(tabs) > 0) {
        rc = err_set(err, SNAP_ECONFLICT, 0, "schema %s already exists and holds tables", live);
        err_hint(err, "--to restores into a new or empty schema: choose another name");
    }
    json_decref(tabs);
    return rc;
}

/* LOAD DATA LOCAL needs the server's consent; without it, the exact, slower path (multi-row
 * INSERT of binary string literals) unless [revert] mysql_require_local_infile. Gives the
 * current user (caller frees). */
static snap_rc check_load_path(rst_target *t, MYSQL *m, char **user, snap_err *err)
{
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc = my_query(m, err, "read local_infile", "SELECT @@GLOBAL.local_infile, CURRENT_USER()", &r);

    if (rc != SNAP_OK)
        return rc;
    row = mysql_fetch_row(r);
    if (row == NULL || row[0] == NULL || strcmp(row[0], "1") != 0) {
        if (rst_options(t)->mysql_require_local_infile) {
            rc = err_set(err, SNAP_EUNREACH, 0, "the server has local_infile disabled, which fast loading needs");
            err_hint(err, "SET GLOBAL local_infile = 1 on the server (or local-infile = 1 in its "
                          "configuration) and run the revert again; nothing was changed");
            mysql_free_result(r);
            return rc;
        }
        json_object_set_new(rst_state(t), "load", json_string("insert"));
    }
    *user = xstrdup(row != NULL && row[1] != NULL ? row[1] : "");
    mysql_free_result(r);
    return SNAP_OK;
}

/* Privileges: every step's, named before anything changes. */
static snap_rc check_privileges(MYSQL *m, const char *cu, const char *live, const char *staging, const char *old,
                                json_t *plan, snap_err *err)
{
    const char *at = strrchr(cu, '@');
    char *grantee = at ? xasprintf("'%.*s'@'%s'", (int)(at - cu), cu, at + 1) : xasprintf("'%s'", cu);
    static const char *const need_stage[] = {"CREATE", "DROP", "ALTER", "INSERT", "SELECT", "INDEX", "REFERENCES"};
    static const char *const need_old[] = {"CREATE", "DROP", "ALTER", "INSERT"};
    static const char *const need_live[] = {"CREATE", "DROP", "ALTER", "INSERT", "SELECT",
                                            "TRIGGER", "CREATE VIEW", "CREATE ROUTINE",
                                            "ALTER ROUTINE", "EVENT"};
    json_t *missing = json_array();
    snap_rc rc = check_privs(m, grantee, staging, need_stage, 7, missing, err);

    if (rc == SNAP_OK)
        rc = check_privs(m, grantee, old, need_old, 4, missing, err);
    if (rc == SNAP_OK)
        rc = check_privs(m, grantee, live, need_live, 10, missing, err);
    if (rc == SNAP_OK && json_array_size(missing) > 0) {
        size_t i;
        json_t *v;
        char msg[512] = "";
        json_array_foreach(missing, i, v) {
            if (strlen(msg) + strlen(json_string_value(v)) + 3 >= sizeof msg)
                break;
            if (i)
                strcat(msg, ", ");
            strcat(msg, json_string_value(v));
        }
        rc = err_set(err, SNAP_EUNREACH, 0, "%s lacks privileges the revert needs: %s", grantee, msg);
        err_hint(err, "grant them (for example GRANT ALL ON `%s%%`.* TO %s) and run the revert "
                      "again; nothing was changed",
                 live, grantee);
        json_object_set_new(plan, "missing_privileges", missing);
    } else {
        json_decref(missing);
    }
    free(grantee);
    return rc;
}

/* The plan for a person: what moves atomically, what does not, what stays. */
static json_t *plan_notes(const json_t *plan, const json_t *info, const json_t *state, const json_t *schema,
                          const json_t *outside, const char *staging, const char *old)
{
    json_t *notes = json_array(), *nontx = json_object_get(info, "non_transactional");
    char *s = xasprintf("%zu table(s), %" PRId64 " row(s): staged in %s, switched by one "
                        "RENAME TABLE; the tables now live stay in %s",
                        json_array_size(json_object_get(schema, "tables")),
                        (int64_t)json_integer_value(json_object_get(plan, "rows")), staging, old);

    json_array_append_new(notes, json_string(s));
    free(s);
    for (size_t k = 0; k < 4; k++) {
        json_t *arr = json_object_get(outside, kinds_order[k]), *v;
        size_t i;
        char *list = NULL;
        json_array_foreach(arr, i, v) {
            char *n = xasprintf("%s%s%s", list ? list : "", list ? ", " : "", json_string_value(v));
            free(list);
            list = n;
        }
        if (list != NULL) {
            s = xasprintf("%s recreated outside the atomic switch: %s", kinds_order[k], list);
            json_array_append_new(notes, json_string(s));
            free(s);
            free(list);
        }
    }
    if (json_array_size(nontx) > 0) {
        s = xasprintf("%zu table(s) of the snapshot are not transactional and were consistent "
                      "only if nobody wrote to them during the snap",
                      json_array_size(nontx));
        json_array_append_new(notes, json_string(s));
        free(s);
    }
    if (json_is_string(json_object_get(state, "load")))
        json_array_append_new(notes, json_string(
            "the server has local_infile off: data is loaded by INSERT statements, which is "
            "slower (SET GLOBAL local_infile = 1 for LOAD DATA)"));
    return notes;
}

/* What the plan shows: names, counts, the actions, and what is outside the atomic switch. */
static void describe_plan(rst_target *t, const json_t *schema, const char *target, const char *live,
                          const char *staging, const char *old, bool live_exists)
{
    json_t *plan = rst_plan(t), *outside = json_object();

    for (size_t k = 0; k < 4; k++) {
        json_t *names_arr = json_array(), *arr = json_object_get(schema, kinds_order[k]), *o;
        size_t i;
        json_array_foreach(arr, i, o) json_array_append(names_arr, json_object_get(o, "name"));
        json_object_set_new(outside, kinds_order[k], names_arr);
    }
    json_object_set_new(plan, "target", json_string(target));
    json_object_set_new(plan, "schema", json_string(live));
    json_object_set_new(plan, "staging", json_string(staging));
    json_object_set_new(plan, "displaced", json_string(old));
    json_object_set_new(plan, "tables", json_integer((json_int_t)json_array_size(json_object_get(schema, "tables"))));
    json_object_set(plan, "rows", json_object_get(cat_component_stats(component(t)), "rows"));
    json_object_set_new(plan, "outside_atomic_switch", outside);
    json_object_set_new(plan, "actions",
                        json_pack("[s,s,s,s,s]", "create the staging schema and load it",
                                  "check row counts and checksums",
                                  "drop live triggers and views",
                                  "RENAME TABLE every live table to the displaced schema and every "
                                  "staged table into the live one, in one statement",
                                  "create the snapshot's triggers, views, routines and events"));
    if (!live_exists)
        json_object_set_new(plan, "creates_schema", json_true());
    json_object_set_new(plan, "action", json_string(rst_to(t) ? "restore-beside" : "swap"));
    json_object_set_new(plan, "notes", plan_notes(plan, cat_component_info(component(t)), rst_state(t), schema,
                                                  outside, staging, old));
}

/* How many events the live schema has (see my_safety_deferrable). */
static snap_rc count_events(MYSQL *m, const char *db, json_t *state, snap_err *err)
{
    char *lit = my_literal(m, db);
    char *sql = xasprintf("SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", lit);
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = my_query(m, err, "count the live events", sql, &r);

    if (rc == SNAP_OK) {
        row = mysql_fetch_row(r);
        json_object_set_new(state, "live_events", json_integer(row && row[0] ? strtoll(row[0], NULL, 10) : 1));
        mysql_free_result(r);
    }
    free(sql);
    free(lit);
    return rc;
}

static snap_rc my_plan(rst_target *t, snap_err *err)
{
    my_rst R;
    json_t *state = rst_state(t), *info, *schema = NULL;
    const char *db, *to = rst_to(t);
    char sid[16], *live = NULL, *staging = NULL, *old = NULL, *redacted = NULL, *lock = NULL, *user = NULL;
    bool live_exists;
    snap_rc rc;

    info = cat_component_info(component(t));
    rc = my_check_info(t, info, err);
    if (rc != SNAP_OK)
        return rc;
    db = json_string_value(json_object_get(info, "database"));
    live = xstrdup(to ? to : db);
    short_id(rst_revert_id(t), sid);
    staging = xasprintf("%s__revert_%s", live, sid);
    old = xasprintf("%s__pre_revert_%s", live, sid);
    json_object_set_new(state, "live", json_string(live));
    json_object_set_new(state, "staging", json_string(staging));
    json_object_set_new(state, "old", json_string(old));
    json_object_set_new(state, "phase", json_string("planned"));
    rc = rst_open(t, &R, err);
    if (rc != SNAP_OK)
        goto out;
    redacted = my_dsn_redacted(R.dsn);
    json_object_set_new(state, "dsn", json_string(redacted));
    if (strlen(old) > 64) {
        rc = err_set(err, SNAP_EUSAGE, 0, "schema name %s is too long for the staging names", live);
        err_hint(err, "MySQL schema names hold 64 characters; revert with --to SHORTER_NAME");
        goto out;
    }
    rc = check_names_free(R.m, live, staging, old, err);
    if (rc != SNAP_OK)
        goto out;
    live_exists = schema_exists(R.m, live, err, &rc);
    if (rc == SNAP_OK && to != NULL && live_exists)
        rc = check_to_empty(R.m, live, err);
    if (rc == SNAP_OK && to == NULL)
        rc = count_events(R.m, live, state, err);
    if (rc == SNAP_OK)
        rc = check_load_path(t, R.m, &user, err);
    if (rc == SNAP_OK)
        rc = check_privileges(R.m, user, live, staging, old, rst_plan(t), err);
    if (rc == SNAP_OK)
        rc = read_schema(t, &schema, err);
    if (rc != SNAP_OK)
        goto out;
    my_dsn_set_db(R.dsn, live);
    free(redacted);
    redacted = my_dsn_redacted(R.dsn);
    describe_plan(t, schema, redacted, live, staging, old, live_exists);
    lock = xasprintf("mysql:%s", redacted);
    rst_set_lock_key(t, lock);
out:
    json_decref(schema);
    if (R.m != NULL || R.dsn != NULL)
        rst_close(&R);
    free(live);
    free(staging);
    free(old);
    free(redacted);
    free(lock);
    free(user);
    return rc;
}

/* ---- safety snapshot ---- */

static snap_rc my_safety_source(rst_target *t, cfg *c, const char *section, snap_err *err)
{
    my_dsn *d = NULL;
    snap_ctx *ctx = rst_ctx(t);
    char *src = xasprintf("source %s", rst_component_name(t));
    const char *configured = rst_source(t)->dsn;
    const char *live = state_str(rst_state(t), "live");
    snap_rc rc = target_dsn(t, &d, err);

    if (rc == SNAP_OK) {
        /* The source's own settings (chunk_size, split_size, long_query_guard ...), but
         * for what names the live target. */
        static const char *const named[] = {"type", "dsn", NULL};
        cfg_copy_section(c, ctx->cfg, src, section, named);
        cfg_set(c, section, "type", "mysql");
        if (configured != NULL && strcmp(my_dsn_db(d), live) == 0) {
            cfg_set(c, section, "dsn", configured);
        } else {
            char *r;
            my_dsn_set_db(d, live);
            r = my_dsn_redacted(d);
            cfg_set(c, section, "dsn", r);
            free(r);
        }
    }
    my_dsn_free(d);
    free(src);
    return rc;
}

/* The displaced schema is a complete undo but for events, which stay out of it (they would
 * run there): a live schema with events takes its safety snapshot first. */
static bool my_safety_deferrable(rst_target *t)
{
    json_t *st = rst_state(t);

    return rst_to(t) == NULL && json_is_integer(json_object_get(st, "live_events")) &&
           json_integer_value(json_object_get(st, "live_events")) == 0;
}

/* The displaced schema, read as the live one it was (an absent one: recorded absent). */
static snap_rc my_displaced_source(rst_target *t, cfg *c, const char *section, snp_redirect **rd, size_t *nrd,
                                   snap_err *err)
{
    return rst_displaced_as_live(t, c, section, "old", rd, nrd, err);
}

/* ---- stage ---- */

typedef struct ld_table {
    const char *name, *path, *cols; /* cols: (`a`,`b`) */
    char *alter;                    /* held-back indexes, or NULL */
    uint64_t want;                  /* the rows the manifest records */
    uint64_t loaded;                /* under the shared mutex, with finished */
    bool finished;                  /* its indexes and its count are done or due */
    uint64_t have;                  /* the rows the staged table holds, once counted */
} ld_table;

typedef struct ld_shared {
    my_rst *R;
    prg_bar *bar; /* stored bytes read */
    bool use_insert; /* local_infile is off on the server */
    ld_table *tables;
    size_t ntables;
    pthread_mutex_t mu;
    size_t nparts;
    rst_order *order; /* which part a worker loads next; its part k is part k + 1 */
    struct ld_worker *workers;
    size_t nworkers;
} ld_shared;

typedef struct ld_worker {
    ld_shared *sh;
    MYSQL *m;
    arc_reader *r;
    bool read_failed;
    snap_err read_err;
    util_buf held; /* the entry being loaded, when it is held for a retry */
    size_t held_off;
    bool from_held;
    struct ld_table **due; /* tables this worker finishes once its part is read (room for all) */
    size_t ndue;
} ld_worker;

static int infile_init(void **ptr, const char *filename, void *userdata)
{
    (void)filename;
    *ptr = userdata;
    return 0;
}

static int infile_read(void *ptr, char *buf, unsigned int len)
{
    ld_worker *w = ptr;
    size_t got = 0;

    if (w->from_held) {
        got = w->held.len - w->held_off < len ? w->held.len - w->held_off : len;
        memcpy(buf, w->held.p + w->held_off, got);
        w->held_off += got;
        return (int)got;
    }
    if (arc_reader_data(w->r, buf, len, &got, &w->read_err) != SNAP_OK) {
        w->read_failed = true;
        return -1;
    }
    return (int)got;
}

static void infile_end(void *ptr)
{
    (void)ptr;
}

static int infile_error(void *ptr, char *msg, unsigned int len)
{
    ld_worker *w = ptr;
    snprintf(msg, len, "%s", w->read_failed ? w->read_err.msg : "cannot read the archive");
    return 2000; /* CR_UNKNOWN_ERROR */
}

static ld_table *ld_find(ld_shared *sh, const char *path)
{
    for (size_t i = 0; i < sh->ntables; i++)
        if (strcmp(sh->tables[i].path, path) == 0)
            return &sh->tables[i];
    return NULL;
}

#define INSERT_MAX (1u << 20)

static snap_rc check_warnings(MYSQL *m, const char *table, snap_err *err)
{
    unsigned warnings = mysql_warning_count(m);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_err e2;
    char first[256] = "";

    if (warnings == 0)
        return SNAP_OK;
    if (my_query(m, &e2, "show warnings", "SHOW WARNINGS LIMIT 1", &r) == SNAP_OK && r &&
        (row = mysql_fetch_row(r)) != NULL)
        snprintf(first, sizeof first, "%s", row[2] ? row[2] : "");
    mysql_free_result(r);
    err_set(err, SNAP_EVERIFY, 0, "loading table %s gave %u warning(s), the first: %s", table,
            warnings, first);
    err_hint(err, "the staged copy would differ from the snapshot; nothing live was changed");
    return SNAP_EVERIFY;
}

/* Adds a loaded table's held-back indexes and counts its rows (check_row_counts). */
static snap_rc finish_table(MYSQL *m, ld_table *lt, snap_err *err)
{
    char *what = xasprintf("add the indexes of %s", lt->name);
    char *tid = my_ident(lt->name), *sql = xasprintf("SELECT COUNT(*) FROM %s", tid);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc = lt->alter != NULL ? my_exec(m, err, what, lt->alter) : SNAP_OK;

    if (rc == SNAP_OK)
        rc = my_query(m, err, "count the staged rows", sql, &r);
    if (rc == SNAP_OK && (row = mysql_fetch_row(r)) != NULL && row[0] != NULL)
        lt->have = strtoull(row[0], NULL, 10);
    mysql_free_result(r);
    free(sql);
    free(tid);
    free(what);
    return rc;
}

/*
 * A table is due as soon as it holds the rows its manifest records: the worker that loaded
 * its last rows builds its indexes once it has read its part (finish_due), while the others
 * go on loading. The count only starts the work early: should more rows come (a manifest
 * that lies), they load into the indexed table and check_row_counts refuses the revert.
 */
static void finish_if_loaded(ld_worker *w, ld_table *lt)
{
    bool now;

    pthread_mutex_lock(&w->sh->mu);
    now = !lt->finished && lt->want > 0 && lt->loaded == lt->want;
    lt->finished = lt->finished || now;
    pthread_mutex_unlock(&w->sh->mu);
    if (now) /* once per table: finished stays set */
        w->due[w->ndue++] = lt;
}

/* The tables due to this worker, after its part (no part is left open meanwhile). */
static snap_rc finish_due(ld_worker *w, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < w->ndue && rc == SNAP_OK; i++) {
        log_debug(w->sh->R->ctx, "%s: loaded; its indexes are built while other tables load", w->due[i]->name);
        rc = finish_table(w->m, w->due[i], err);
    }
    w->ndue = 0;
    return rc;
}

/* Sends the INSERT built so far; counts its rows. */
static snap_rc insert_flush(ld_worker *w, ld_table *lt, char **sql, size_t *len, size_t head,
                            snap_err *err)
{
    snap_rc rc;

    if (*len == head)
        return SNAP_OK;
    if (mysql_real_query(w->m, *sql, *len) != 0) {
        char *what = xasprintf("insert into %s", lt->name);
        rc = my_fail(w->m, err, what);
        free(what);
        return rc;
    }
    rc = check_warnings(w->m, lt->name, err);
    if (rc != SNAP_OK)
        return rc;
    pthread_mutex_lock(&w->sh->mu);
    lt->loaded += mysql_affected_rows(w->m);
    pthread_mutex_unlock(&w->sh->mu);
    *len = head;
    return SNAP_OK;
}

/*
 * Without local_infile: the entry (at most chunk_size bytes plus one row) is read whole and
 * sent as multi-row INSERTs of _binary'...' literals, which store the same bytes as LOAD
 * DATA ... CHARACTER SET binary does.
 */
static snap_rc insert_entry(ld_worker *w, ld_table *lt, snap_err *err)
{
    char *data = NULL, *sql = NULL, *field = NULL;
    size_t len = 0, cap = 0, got, head, slen = 0, scap;
    char *tid = my_ident(lt->name);
    snap_rc rc = SNAP_OK;

    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            data = xrealloc(data, cap);
        }
        rc = arc_reader_data(w->r, data + len, cap - len, &got, err);
        if (rc != SNAP_OK)
            goto out;
        if (got == 0)
            break;
        len += got;
    }
    char *prefix = xasprintf("INSERT INTO %s %s VALUES ", tid, lt->cols);
    head = strlen(prefix);
    scap = INSERT_MAX + head + 65536;
    sql = xmalloc(scap);
    memcpy(sql, prefix, head);
    free(prefix);
    slen = head;
    field = xmalloc(len + 1);
    for (size_t p = 0; p < len;) {
        /* one row: fields separated by tabs, escapes undone */
        bool row_first = true;
        if (slen > head)
            sql[slen++] = ',';
        sql[slen++] = '(';
        for (;;) {
            size_t f = 0;
            bool null = false;
            if (p + 1 < len && data[p] == '\\' && data[p + 1] == 'N' &&
                (p + 2 == len || data[p + 2] == '\t' || data[p + 2] == '\n')) {
                null = true;
                p += 2;
            } else {
                while (p < len && data[p] != '\t' && data[p] != '\n') {
                    char c = data[p++];
                    if (c == '\\' && p < len) {
                        c = data[p++];
                        switch (c) {
                        case '0': c = '\0'; break;
                        case 'b': c = '\b'; break;
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'Z': c = 26; break;
                        default: break;
                        }
                    }
                    field[f++] = c;
                }
            }
            size_t need = slen + 2 * f + 16;
            if (need > scap) {
                scap = need * 2;
                sql = xrealloc(sql, scap);
            }
            if (!row_first)
                sql[slen++] = ',';
            row_first = false;
            if (null) {
                memcpy(sql + slen, "NULL", 4);
                slen += 4;
            } else {
                memcpy(sql + slen, "_binary'", 8);
                slen += 8;
                slen += mysql_real_escape_string(w->m, sql + slen, field, (unsigned long)f);
                sql[slen++] = '\'';
            }
            if (p >= len || data[p] == '\n') {
                p++;
                break;
            }
            p++; /* the tab */
        }
        sql[slen++] = ')';
        if (slen - head >= INSERT_MAX) {
            rc = insert_flush(w, lt, &sql, &slen, head, err);
            if (rc != SNAP_OK)
                goto out;
        }
    }
    rc = insert_flush(w, lt, &sql, &slen, head, err);
    if (rc == SNAP_OK)
        finish_if_loaded(w, lt);
out:
    free(data);
    free(sql);
    free(field);
    free(tid);
    return rc;
}

/* An entry of at most this many bytes is held in memory while it loads, so that a load
 * that InnoDB chose as a deadlock victim (and rolled back whole) can run again. Entries
 * are chunk_size bytes and a row at most, so memory stays jobs x chunk_size. */
#define LOAD_HOLD_MAX (256u << 20)
#define LOAD_TRIES 5

/* The entry's bytes into w->held; false (nothing held) when it is larger than we keep. */
static snap_rc hold_entry(ld_worker *w, int64_t size, bool *held, snap_err *err)
{
    char buf[65536];
    size_t got;
    snap_rc rc;

    *held = false;
    w->held.len = 0;
    if (size < 0 || (uint64_t)size > LOAD_HOLD_MAX)
        return SNAP_OK;
    while ((rc = arc_reader_data(w->r, buf, sizeof buf, &got, err)) == SNAP_OK && got > 0)
        util_buf_add(&w->held, buf, got);
    *held = rc == SNAP_OK;
    return rc;
}

static snap_rc load_entry(ld_worker *w, ld_table *lt, int64_t size, snap_err *err)
{
    char *tid = my_ident(lt->name);
    char *sql = xasprintf("LOAD DATA LOCAL INFILE 'snap.tsv' INTO TABLE %s CHARACTER SET binary "
                          "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' %s",
                          tid, lt->cols);
    snap_rc rc = SNAP_OK;
    bool held = false;
    int ok;

    if (w->sh->use_insert) {
        free(sql);
        free(tid);
        return insert_entry(w, lt, err);
    }
    rc = hold_entry(w, size, &held, err);
    if (rc != SNAP_OK)
        goto out;
    w->read_failed = false;
    w->from_held = held;
    for (int tries = 1;; tries++) {
        unsigned code;
        w->held_off = 0;
        ok = mysql_real_query(w->m, sql, strlen(sql)) == 0;
        code = ok ? 0 : mysql_errno(w->m);
        if (ok || !held || tries == LOAD_TRIES || (code != ER_LOCK_DEADLOCK && code != ER_LOCK_WAIT_TIMEOUT))
            break;
        log_debug(w->sh->R->ctx, "load table %s: %s; again (%d)", lt->name, mysql_error(w->m), tries);
        usleep((useconds_t)(100000 * tries));
    }
    w->from_held = false;
    if (!ok) {
        if (w->read_failed) {
            *err = w->read_err;
            rc = err->code != SNAP_OK ? err->code : SNAP_EVERIFY;
        } else {
            char *what = xasprintf("load table %s", lt->name);
            rc = my_fail(w->m, err, what);
            free(what);
        }
        goto out;
    }
    uint64_t n = mysql_affected_rows(w->m);
    rc = check_warnings(w->m, lt->name, err);
    if (rc != SNAP_OK)
        goto out;
    pthread_mutex_lock(&w->sh->mu);
    lt->loaded += n;
    pthread_mutex_unlock(&w->sh->mu);
    finish_if_loaded(w, lt);
out:
    free(sql);
    free(tid);
    return rc;
}

static snap_rc load_part(ld_worker *w, size_t part, snap_err *err)
{
    ld_shared *sh = w->sh;
    const char *key, *sha;
    uint64_t size, entries;
    struct archive_entry *e;
    snap_rc rc;

    cat_component_part(rst_component(sh->R->t), part, &key, &size, &sha, &entries);
    rc = arc_reader_open(rst_store(sh->R->t), key, size, sha, sh->R->ctx, sh->bar, &w->r, err);
    if (rc != SNAP_OK)
        return rc;
    for (;;) {
        rc = arc_reader_next(w->r, &e, err);
        if (rc != SNAP_OK || e == NULL)
            break;
        const char *path = archive_entry_pathname(e);
        if (strcmp(path, MY_SCHEMA_ENTRY) == 0)
            continue;
        const char *slash;
        if (strncmp(path, "data/", 5) != 0 || (slash = strchr(path + 5, '/')) == NULL) {
            rc = err_set(err, SNAP_EVERIFY, 0, "unexpected entry %s in part %s", path, key);
            break;
        }
        char *enc = xasprintf("%.*s", (int)(slash - path - 5), path + 5);
        ld_table *lt = ld_find(sh, enc);
        free(enc);
        if (lt == NULL) {
            rc = err_set(err, SNAP_EVERIFY, 0, "entry %s in part %s names no table of the schema",
                         path, key);
            break;
        }
        rc = load_entry(w, lt, archive_entry_size_is_set(e) ? archive_entry_size(e) : -1, err);
        if (rc != SNAP_OK)
            break;
        if (ctx_interrupted(sh->R->ctx, err)) {
            rc = SNAP_EINTR;
            break;
        }
    }
    /* the SHA-256 of the whole part is checked here: a corrupt part stops the revert */
    if (rc == SNAP_OK)
        rc = arc_reader_close(w->r, err);
    else
        arc_reader_close(w->r, NULL);
    w->r = NULL;
    if (rc == SNAP_OK)
        rc = finish_due(w, err);
    if (rc != SNAP_OK && strstr(err->msg, key) == NULL)
        err_prefix(err, "part %s", key);
    return rc;
}

/* Loads one part, the one the order gives (part 0 holds the schema). */
static snap_rc load_job(pool *p, void *arg, size_t worker, size_t job, snap_err *err)
{
    ld_shared *sh = arg;
    size_t k, tb;
    snap_rc rc;

    (void)p;
    (void)job;
    pthread_mutex_lock(&sh->mu);
    if ((k = rst_order_take(sh->order, worker, true)) == SIZE_MAX)
        k = rst_order_take(sh->order, worker, false);
    pthread_mutex_unlock(&sh->mu);
    if (k == SIZE_MAX) /* a job per part: none is left over */
        return SNAP_OK;
    if ((tb = rst_order_table(sh->order, k)) != SIZE_MAX)
        log_debug(sh->R->ctx, "loading part %zu, rows of %s", k + 1, sh->tables[tb].name);
    rc = load_part(&sh->workers[worker], k + 1, err);
    pthread_mutex_lock(&sh->mu);
    rst_order_done(sh->order, worker);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/*
 * The order of the loads, from info.part_tables (each part's first table by name; earlier
 * versions did not write it, and it only orders: the entries' names say where rows go).
 */
static rst_order *part_order(ld_shared *sh)
{
    json_t *pt = json_object_get(cat_component_info(component(sh->R->t)), "part_tables");
    size_t n = sh->nparts > 0 ? sh->nparts - 1 : 0, *table;
    uint64_t *bytes;

    if (json_array_size(pt) != sh->nparts || n == 0) {
        if (pt != NULL)
            log_verbose(sh->R->ctx, "%s: info.part_tables does not fit the parts; they load in their order",
                        sh->R->live);
        return rst_order_new(n, sh->ntables, sh->nworkers, NULL, NULL);
    }
    table = xmalloc(n * sizeof *table);
    bytes = xmalloc(n * sizeof *bytes);
    for (size_t k = 0; k < n; k++) {
        const char *name = json_string_value(json_array_get(json_array_get(pt, k + 1), 0)), *key, *sha;
        uint64_t entries, size;
        cat_component_part_raw(rst_component(sh->R->t), k + 1, &key, &size, &sha, &entries, &bytes[k]);
        if (bytes[k] == 0)
            bytes[k] = size;
        table[k] = SIZE_MAX;
        for (size_t i = 0; name != NULL && i < sh->ntables; i++)
            if (strcmp(sh->tables[i].name, name) == 0)
                table[k] = i;
    }
    return rst_order_new(n, sh->ntables, sh->nworkers, table, bytes);
}

/* The tables that finish_if_loaded did not finish: every part is loaded now. */
static snap_rc finish_job(pool *p, void *arg, size_t worker, size_t job, snap_err *err)
{
    ld_shared *sh = arg;
    ld_table *lt = &sh->tables[job];
    bool mine;

    (void)p;
    pthread_mutex_lock(&sh->mu);
    mine = !lt->finished;
    lt->finished = true;
    pthread_mutex_unlock(&sh->mu);
    return mine ? finish_table(sh->workers[worker].m, lt, err) : SNAP_OK;
}

/*
 * Splits CREATE TABLE into the statement run before the load and an ALTER TABLE adding
 * the plain secondary indexes after it. Only where that is safe and gives back the same
 * SHOW CREATE: no foreign keys on or to the table, no fulltext or spatial index, not
 * partitioned.
 */
static char *split_create(const char *name, const char *create, json_t *tables, char **alter)
{
    char *out, *a = NULL, *line, *save = NULL, *copy;
    size_t i;
    json_t *o;
    char *ref = NULL, *qname = my_ident(name);

    *alter = NULL;
    if (strstr(create, "FOREIGN KEY") || strstr(create, "FULLTEXT KEY") ||
        strstr(create, "SPATIAL KEY") || strstr(create, "PARTITION BY") ||
        strstr(create, "ENGINE=MEMORY")) {
        free(qname);
        return xstrdup(create);
    }
    ref = xasprintf("REFERENCES %s ", qname);
    json_array_foreach(tables, i, o) {
        if (strstr(json_string_value(json_object_get(o, "create")), ref)) {
            free(ref);
            free(qname);
            return xstrdup(create);
        }
    }
    free(ref);
    copy = xstrdup(create);
    out = xmalloc(strlen(create) + 2);
    out[0] = '\0';
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "  KEY ", 6) == 0 || strncmp(line, "  UNIQUE KEY ", 13) == 0) {
            size_t l = strlen(line);
            char *def = xasprintf("%.*s", (int)(line[l - 1] == ',' ? l - 3 : l - 2), line + 2);
            char *n = a ? xasprintf("%s, ADD %s", a, def) : xasprintf("ALTER TABLE %s ADD %s", qname, def);
            free(a);
            free(def);
            a = n;
            continue;
        }
        if (line[0] == ')') {
            /* the line before the closing parenthesis ends without a comma */
            size_t l = strlen(out);
            if (l >= 2 && out[l - 2] == ',')
                memmove(out + l - 2, out + l - 1, 2);
        }
        strcat(out, line);
        strcat(out, "\n");
    }
    size_t l = strlen(out);
    if (l > 0 && out[l - 1] == '\n')
        out[l - 1] = '\0';
    free(copy);
    free(qname);
    *alter = a;
    return out;
}

/* What recovery needs to finish or undo the switch without the store, journaled. */
static snap_rc journal_objects(rst_target *t, my_rst *R, json_t *schema, snap_err *err)
{
    json_t *names = json_array(), *objs = json_object(), *o;
    size_t i;

    json_array_foreach(json_object_get(schema, "tables"), i, o) json_array_append(names, json_object_get(o, "name"));
    json_object_set_new(R->state, "tables", names);
    for (size_t k = 0; k < 4; k++)
        json_object_set(objs, kinds_order[k], json_object_get(schema, kinds_order[k]));
    json_object_set_new(R->state, "objects", objs);
    json_object_set(R->state, "charset", json_object_get(schema, "charset"));
    json_object_set(R->state, "collation", json_object_get(schema, "collation"));
    json_object_set_new(R->state, "phase", json_string("staging"));
    return rst_journal_save(t, err);
}

/* The staging schema, in the snapshot's character set, and its tables (their plain
 * secondary indexes held back for after the load). */
static snap_rc create_staging(my_rst *R, json_t *schema, ld_shared *sh, snap_err *err)
{
    json_t *tables = json_object_get(schema, "tables"), *o;
    json_t *rows = json_object_get(cat_component_stats(component(R->t)), "table_rows");
    const char *cs = json_string_value(json_object_get(schema, "charset"));
    const char *coll = json_string_value(json_object_get(schema, "collation"));
    char *qs = my_ident(R->staging), *mark = mark_clause(R->t, R->m, R->live);
    size_t i;
    snap_rc rc = my_execf(R->m, err, "create the staging schema", "CREATE DATABASE %s CHARACTER SET %s COLLATE %s%s",
                          qs, charset_name(cs, "utf8mb4"), charset_name(coll, "utf8mb4_general_ci"), mark);

    free(mark);

    if (rc == SNAP_OK) {
        util_failpoint("revert-mysql-staging-created");
        rc = my_execf(R->m, err, "use the staging schema", "USE %s", qs);
    }
    free(qs);
    if (rc != SNAP_OK)
        return rc;
    sh->ntables = json_array_size(tables);
    sh->tables = xcalloc(sh->ntables + 1, sizeof *sh->tables);
    json_array_foreach(tables, i, o) {
        ld_table *lt = &sh->tables[i];
        json_t *cols = json_object_get(o, "columns"), *c;
        size_t j;
        char *list = xstrdup("("), *create, *what;
        lt->name = json_string_value(json_object_get(o, "name"));
        lt->path = json_string_value(json_object_get(o, "path"));
        lt->want = (uint64_t)json_integer_value(json_object_get(rows, lt->name));
        json_array_foreach(cols, j, c) {
            char *id = my_ident(json_string_value(c)), *n = xasprintf("%s%s%s", list, j ? "," : "", id);
            free(id);
            free(list);
            list = n;
        }
        lt->cols = xasprintf("%s)", list);
        free(list);
        create = split_create(lt->name, json_string_value(json_object_get(o, "create")), tables, &lt->alter);
        what = xasprintf("create table %s", lt->name);
        rc = my_exec(R->m, err, what, create);
        free(what);
        free(create);
        if (rc != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

/* One loading connection per worker, into the staging schema. */
static snap_rc open_loaders(my_rst *R, ld_shared *sh, snap_err *err)
{
    snap_rc rc = SNAP_OK;

    sh->nworkers = R->ctx->jobs > 0 ? (size_t)R->ctx->jobs : 1;
    if (sh->nworkers > 64)
        sh->nworkers = 64;
    sh->workers = xcalloc(sh->nworkers, sizeof *sh->workers);
    for (size_t i = 0; i < sh->nworkers && rc == SNAP_OK; i++) {
        sh->workers[i].sh = sh;
        sh->workers[i].due = xcalloc(sh->ntables + 1, sizeof *sh->workers[i].due);
        rc = my_connect(R->dsn, R->staging, &sh->workers[i].m, err);
        if (rc == SNAP_OK)
            rc = my_exec(sh->workers[i].m, err, "set the loading session",
                         "SET SESSION foreign_key_checks = 0, SESSION unique_checks = 0, "
                         "SESSION sql_mode = '" LOAD_SQL_MODE "'");
        if (rc == SNAP_OK)
            mysql_set_local_infile_handler(sh->workers[i].m, infile_init, infile_read, infile_end, infile_error,
                                           &sh->workers[i]);
    }
    return rc;
}

/* The data, in parallel (one reader per part; part 0 holds the schema), then the
 * held-back indexes, in parallel too. */
static snap_rc load_data(rst_target *t, my_rst *R, ld_shared *sh, snap_err *err)
{
    uint64_t t_load = util_now_ms();
    char *label = xasprintf("stage %s", R->live);
    pool_spec load = {.workers = sh->nworkers, .njobs = sh->nparts > 0 ? sh->nparts - 1 : 0, .job = load_job,
                      .arg = sh};
    pool_spec finish = {.workers = sh->nworkers, .njobs = sh->ntables, .job = finish_job, .arg = sh};
    snap_rc rc;

    sh->bar = prg_new(R->ctx, label, cat_component_bytes(rst_component(t)));
    free(label);
    sh->order = part_order(sh);
    rc = pool_run_spec(R->ctx, &load, err);
    rst_order_free(sh->order);
    sh->order = NULL;
    prg_free(sh->bar);
    sh->bar = NULL;
    if (rc != SNAP_OK)
        return rc;
    log_debug(R->ctx, "%s: data loaded in %" PRIu64 " ms", R->live, util_now_ms() - t_load);
    t_load = util_now_ms();
    util_failpoint("revert-mysql-loaded");
    rc = pool_run_spec(R->ctx, &finish, err);
    if (rc == SNAP_OK)
        log_debug(R->ctx, "%s: the other held-back indexes built in %" PRIu64 " ms", R->live,
                  util_now_ms() - t_load);
    return rc;
}

/* The recorded row counts: what was loaded and what the staged tables hold (finish_table
 * counted them). */
static snap_rc check_row_counts(rst_target *t, const ld_shared *sh, snap_err *err)
{
    json_t *stats = json_object_get(cat_component_stats(component(t)), "table_rows");

    for (size_t i = 0; i < sh->ntables; i++) {
        const ld_table *lt = &sh->tables[i];
        json_t *want = json_object_get(stats, lt->name);
        uint64_t have = lt->have;

        if (want == NULL || (uint64_t)json_integer_value(want) != have || lt->loaded != have) {
            err_set(err, SNAP_EVERIFY, 0,
                    "table %s: the snapshot recorded %" PRId64 " rows, %" PRIu64
                    " were loaded and the staged table holds %" PRIu64,
                    lt->name, want ? (int64_t)json_integer_value(want) : (int64_t)-1, lt->loaded, have);
            err_hint(err, "the snapshot is damaged or incomplete; nothing live was changed");
            return SNAP_EVERIFY;
        }
    }
    return SNAP_OK;
}

static snap_rc my_stage(rst_target *t, snap_err *err)
{
    my_rst R;
    json_t *schema = NULL;
    ld_shared sh;
    snap_rc rc;

    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    rc = rst_open(t, &R, err);
    if (rc != SNAP_OK)
        goto out_nolock;
    sh.R = &R;
    sh.nparts = cat_component_nparts(rst_component(t));
    sh.use_insert = json_is_string(json_object_get(R.state, "load"));
    rc = read_schema(t, &schema, err);
    if (rc == SNAP_OK)
        rc = journal_objects(t, &R, schema, err);
    if (rc == SNAP_OK)
        rc = create_staging(&R, schema, &sh, err);
    if (rc == SNAP_OK)
        rc = open_loaders(&R, &sh, err);
    if (rc == SNAP_OK)
        rc = load_data(t, &R, &sh, err);
    if (rc == SNAP_OK)
        rc = check_row_counts(t, &sh, err);
    if (rc == SNAP_OK) {
        json_object_set_new(R.state, "phase", json_string("staged"));
        rc = rst_journal_save(t, err);
    }
    for (size_t i = 0; i < sh.nworkers; i++) {
        mysql_close(sh.workers[i].m);
        util_buf_free(&sh.workers[i].held);
        free(sh.workers[i].due);
    }
    free(sh.workers);
    for (size_t i = 0; i < sh.ntables; i++) {
        free((char *)(uintptr_t)sh.tables[i].cols);
        free(sh.tables[i].alter);
    }
    free(sh.tables);
    prg_free(sh.bar);
    json_decref(schema);
    rst_close(&R);
out_nolock:
    pthread_mutex_destroy(&sh.mu);
    return rc;
}

/* ---- cut-over, rollback, discard, finish ---- */

/* How many of names are base tables of db. */
static snap_rc count_in(MYSQL *m, const char *db, json_t *names, size_t *n, snap_err *err)
{
    json_t *have;
    size_t i;
    json_t *v;
    snap_rc rc = base_tables(m, db, &have, err);

    *n = 0;
    if (rc == SNAP_OK)
        json_array_foreach(names, i, v) if (array_has(have, json_string_value(v)))(*n)++;
    json_decref(have);
    return rc;
}

/* RENAME TABLE a.x TO b.x, ..., c.y TO d.y in one statement. */
static snap_rc rename_all(MYSQL *m, const char *from1, const char *to1, json_t *names1,
                          const char *from2, const char *to2, json_t *names2, snap_err *err)
{
    char *sql = xstrdup("RENAME TABLE ");
    bool first = true;
    const char *from[2] = {from1, from2}, *to[2] = {to1, to2};
    json_t *names[2] = {names1, names2};
    snap_rc rc = SNAP_OK;

    for (int k = 0; k < 2; k++) {
        char *qf = my_ident(from[k]), *qt = my_ident(to[k]);
        size_t i;
        json_t *v;
        json_array_foreach(names[k], i, v) {
            char *id = my_ident(json_string_value(v));
            char *n = xasprintf("%s%s%s.%s TO %s.%s", sql, first ? "" : ", ", qf, id, qt, id);
            free(id);
            free(sql);
            sql = n;
            first = false;
        }
        free(qf);
        free(qt);
    }
    if (!first)
        rc = my_exec(m, err, "switch the tables (RENAME TABLE)", sql);
    free(sql);
    return rc;
}

static snap_rc create_all_objects(MYSQL *m, const char *db, json_t *objs, bool best_effort,
                                  bool with_events, const snap_ctx *ctx, snap_err *err)
{
    snap_rc rc = SNAP_OK;
    for (size_t k = 0; k < 4 && rc == SNAP_OK; k++) {
        if (!with_events && strcmp(kinds_order[k], "events") == 0)
            continue;
        rc = drop_objects(m, db, objs, kinds_order[k], err);
        if (rc == SNAP_OK)
            rc = create_objects(m, db, objs, kinds_order[k], best_effort, ctx, err);
    }
    return rc;
}

/* Before the switch: what is live now (created if it is not there), the displaced schema
 * in the live one's defaults, and the phase "switching", journaled. */
static snap_rc prepare_switch(rst_target *t, my_rst *R, json_t **live_tables, json_t **live_objs, snap_err *err)
{
    char *qo, *lit, *sql, *mark;
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = SNAP_OK;
    bool exists = schema_exists(R->m, R->live, err, &rc);

    if (rc != SNAP_OK)
        return rc;
    if (exists) {
        rc = base_tables(R->m, R->live, live_tables, err);
        if (rc == SNAP_OK)
            rc = live_objects(R->m, R->live, live_objs, err);
        if (rc != SNAP_OK)
            return rc;
    } else {
        const char *cs = state_str(R->state, "charset"), *coll = state_str(R->state, "collation");
        char *ql = my_ident(R->live);
        *live_tables = json_array();
        *live_objs = json_object();
        rc = my_execf(R->m, err, "create the schema", "CREATE DATABASE %s CHARACTER SET %s COLLATE %s", ql,
                      charset_name(cs, "utf8mb4"), charset_name(coll, "utf8mb4_general_ci"));
        free(ql);
        if (rc != SNAP_OK)
            return rc;
        json_object_set_new(R->state, "created_live", json_true());
    }
    json_object_set(R->state, "live_tables", *live_tables);
    json_object_set(R->state, "live_objects", *live_objs);
    qo = my_ident(R->old);
    mark = mark_clause(t, R->m, R->live);
    lit = my_literal(R->m, R->live);
    sql = xasprintf("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                    "information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                    lit);
    rc = my_query(R->m, err, "read the schema defaults", sql, &r);
    if (rc == SNAP_OK) {
        row = mysql_fetch_row(r);
        rc = my_execf(R->m, err, "create the displaced schema",
                      "CREATE DATABASE IF NOT EXISTS %s CHARACTER SET %s COLLATE %s%s", qo,
                      row ? row[0] : "utf8mb4", row ? row[1] : "utf8mb4_general_ci", mark);
        mysql_free_result(r);
    }
    free(sql);
    free(lit);
    free(qo);
    free(mark);
    if (rc != SNAP_OK)
        return rc;
    json_object_set_new(R->state, "phase", json_string("switching"));
    return rst_journal_save(t, err);
}

/* A long transaction on a live table must not stall the switch (and every query queued
 * behind its pending lock): wait a bounded time, then fail and roll back. */
static snap_rc set_lock_wait(rst_target *t, my_rst *R, snap_err *err)
{
    return my_execf(R->m, err, "set lock_wait_timeout", "SET SESSION lock_wait_timeout = %lld",
                    (long long)rst_options(t)->lock_wait_timeout);
}

/* The one RENAME TABLE, unless a run before a crash made it: tables with triggers cannot
 * move to another schema and views do not move at all, so those go first. */
static snap_rc switch_tables(my_rst *R, json_t *tables, json_t *live_tables, json_t *live_objs, uint64_t *t_rename,
                             snap_err *err)
{
    size_t in_staging = 0;
    bool renamed;
    uint64_t r0;
    snap_rc rc = count_in(R->m, R->staging, tables, &in_staging, err);

    if (rc != SNAP_OK)
        return rc;
    renamed = json_array_size(tables) > 0 ? in_staging == 0 : json_is_true(json_object_get(R->state, "renamed"));
    if (renamed)
        return SNAP_OK;
    rc = drop_objects(R->m, R->live, live_objs, "triggers", err);
    if (rc == SNAP_OK)
        rc = drop_objects(R->m, R->live, live_objs, "views", err);
    if (rc == SNAP_OK) {
        r0 = util_now_ms();
        rc = rename_all(R->m, R->live, R->old, live_tables, R->staging, R->live, tables, err);
        *t_rename = util_now_ms() - r0;
    }
    if (rc != SNAP_OK && mysql_errno(R->m) == ER_LOCK_WAIT_TIMEOUT)
        err_hint(err, "a transaction or lock held a live table longer than "
                      "lock_wait_timeout; the switch is rolled back, retry when it ends");
    return rc;
}

/* Reports exactly what was not switched in the one statement, and for how long. */
static void report_cutover(rst_target *t, my_rst *R, json_t *tables, json_t *objs, uint64_t t_rename,
                           uint64_t window)
{
    json_t *plan = rst_plan(t), *outside = json_array();
    size_t n = 0;

    for (size_t k = 0; k < 4; k++) {
        json_t *arr = json_object_get(objs, kinds_order[k]), *o;
        size_t i;
        json_array_foreach(arr, i, o) {
            char *s = xasprintf("%.*s %s", (int)strlen(kinds_order[k]) - 1, kinds_order[k],
                                json_string_value(json_object_get(o, "name")));
            json_array_append_new(outside, json_string(s));
            free(s);
            n++;
        }
    }
    json_object_set_new(plan, "cutover",
                        json_pack("{s:I,s:I,s:I,s:o}", "tables", (json_int_t)json_array_size(tables), "rename_ms",
                                  (json_int_t)t_rename, "window_ms", (json_int_t)window, "not_in_atomic_switch",
                                  outside));
    log_info(R->ctx, "%s: RENAME TABLE switched %zu table(s) in %" PRIu64 " ms; %zu trigger(s), "
                     "view(s), routine(s) and event(s) were switched outside it, within %" PRIu64 " ms",
             R->live, json_array_size(tables), t_rename, n, window);
}

static snap_rc my_cutover(rst_target *t, snap_err *err)
{
    my_rst R;
    json_t *tables, *live_tables = NULL, *objs, *live_objs = NULL;
    const char *phase;
    uint64_t t0, t_rename = 0, t_end;
    snap_rc rc = rst_open(t, &R, err);

    if (rc != SNAP_OK)
        return rc;
    phase = state_str(R.state, "phase");
    tables = json_object_get(R.state, "tables");
    objs = json_object_get(R.state, "objects");
    if (phase == NULL || tables == NULL || objs == NULL) {
        rc = err_set(err, SNAP_EFAIL, 0, "%s: cut-over before staging", R.live);
        goto out;
    }
    if (strcmp(phase, "switched") == 0)
        goto out; /* done before a crash */
    if (strcmp(phase, "switching") != 0)
        rc = prepare_switch(t, &R, &live_tables, &live_objs, err);
    if (rc == SNAP_OK)
        rc = set_lock_wait(t, &R, err);
    if (rc != SNAP_OK)
        goto out;
    live_tables = live_tables ? live_tables : json_incref(json_object_get(R.state, "live_tables"));
    live_objs = live_objs ? live_objs : json_incref(json_object_get(R.state, "live_objects"));
    util_failpoint("revert-mysql-before-rename");

    t0 = util_now_ms();
    rc = switch_tables(&R, tables, live_tables, live_objs, &t_rename, err);
    if (rc != SNAP_OK)
        goto out;
    json_object_set_new(R.state, "renamed", json_true());
    util_failpoint("revert-mysql-after-rename");
    /* routines and events do not move: replace them in place */
    rc = drop_objects(R.m, R.live, live_objs, "routines", err);
    if (rc == SNAP_OK)
        rc = drop_objects(R.m, R.live, live_objs, "events", err);
    if (rc == SNAP_OK)
        rc = create_all_objects(R.m, R.live, objs, false, true, R.ctx, err);
    if (rc != SNAP_OK)
        goto out;
    t_end = util_now_ms();
    json_object_set_new(R.state, "phase", json_string("switched"));
    rc = rst_journal_save(t, err);
    if (rc != SNAP_OK)
        goto out;
    report_cutover(t, &R, tables, objs, t_rename, t_end - t0);
    /* the displaced schema as a complete undo: its triggers, views and routines beside its
     * tables (events stay out: they would run there) */
    create_all_objects(R.m, R.old, live_objs, true, false, R.ctx, err);
    err_clear(err);
    rc = SNAP_OK;
out:
    json_decref(live_tables);
    json_decref(live_objs);
    rst_close(&R);
    return rc;
}

static snap_rc drop_if_no_tables(MYSQL *m, const char *db, snap_err *err)
{
    json_t *tabs;
    snap_rc rc;
    bool exists = schema_exists(m, db, err, &rc);

    if (rc != SNAP_OK || !exists)
        return rc;
    rc = base_tables(m, db, &tabs, err);
    if (rc == SNAP_OK && json_array_size(tabs) == 0) {
        char *q = my_ident(db);
        rc = my_execf(m, err, "drop a schema", "DROP DATABASE IF EXISTS %s", q);
        free(q);
    }
    json_decref(tabs);
    return rc;
}

static snap_rc my_rollback(rst_target *t, snap_err *err)
{
    my_rst R;
    json_t *tables, *live_tables, *objs, *live_objs;
    const char *phase;
    size_t in_staging = 0, in_old = 0;
    snap_rc rc = rst_open(t, &R, err);

    if (rc != SNAP_OK)
        return rc;
    phase = state_str(R.state, "phase");
    if (phase == NULL || (strcmp(phase, "switching") != 0 && strcmp(phase, "switched") != 0))
        goto out; /* nothing live was touched */
    tables = json_object_get(R.state, "tables");
    live_tables = json_object_get(R.state, "live_tables");
    objs = json_object_get(R.state, "objects");
    live_objs = json_object_get(R.state, "live_objects");
    rc = count_in(R.m, R.staging, tables, &in_staging, err);
    if (rc == SNAP_OK && schema_exists(R.m, R.old, err, &rc) && rc == SNAP_OK)
        rc = count_in(R.m, R.old, live_tables, &in_old, err);
    if (rc != SNAP_OK)
        goto out;
    bool renamed = json_array_size(tables) > 0 ? in_staging == 0
                                               : (json_array_size(live_tables) > 0 && in_old > 0);
    /* the snapshot's objects leave the live schema */
    for (size_t k = 0; k < 4 && rc == SNAP_OK; k++)
        rc = drop_objects(R.m, R.live, objs, kinds_order[k], err);
    if (rc == SNAP_OK && renamed) {
        /* the copies made beside the displaced tables go too, so the tables can move */
        for (size_t k = 0; k < 4 && rc == SNAP_OK; k++)
            rc = drop_objects(R.m, R.old, live_objs, kinds_order[k], err);
        if (rc == SNAP_OK)
            rc = rename_all(R.m, R.live, R.staging, tables, R.old, R.live, live_tables, err);
    }
    /* the live objects come back; one that no longer can (a view of a table dropped since)
     * is named in a warning rather than leaving the tables half way */
    if (rc == SNAP_OK)
        rc = create_all_objects(R.m, R.live, live_objs, true, true, R.ctx, err);
    if (rc != SNAP_OK)
        goto out;
    if (json_is_true(json_object_get(R.state, "created_live")))
        rc = drop_if_no_tables(R.m, R.live, err);
    if (rc == SNAP_OK)
        rc = drop_if_no_tables(R.m, R.old, err);
    if (rc == SNAP_OK) {
        json_object_set_new(R.state, "phase", json_string("rolled_back"));
        rc = rst_journal_save(t, err);
    }
out:
    rst_close(&R);
    return rc;
}

static snap_rc my_discard(rst_target *t, snap_err *err)
{
    my_rst R;
    snap_rc rc;
    const char *phase = state_str(rst_state(t), "phase");

    if (state_str(rst_state(t), "staging") == NULL)
        return SNAP_OK; /* the plan never got as far as naming it */
    if (phase != NULL && strcmp(phase, "switched") == 0)
        return SNAP_OK; /* the staged tables are live now */
    if (phase != NULL && strcmp(phase, "switching") == 0) {
        /* a switch that stopped half-way: put the live objects back first (idempotent) */
        rc = my_rollback(t, err);
        if (rc != SNAP_OK)
            return rc;
    }
    /* cleanup after a failure that may have been the server restarting: wait for it */
    for (int i = 0;; i++) {
        rc = rst_open(t, &R, err);
        snap_err ie;
        if (rc != SNAP_EUNREACH || i >= 20 || ctx_interrupted(rst_ctx(t), &ie))
            break;
        struct timespec ts = {0, 500000000};
        nanosleep(&ts, NULL);
    }
    if (rc != SNAP_OK)
        return rc;
    char *q = my_ident(R.staging);
    rc = my_execf(R.m, err, "drop the staging schema", "DROP DATABASE IF EXISTS %s", q);
    free(q);
    if (rc == SNAP_OK)
        rc = drop_if_no_tables(R.m, R.old, err);
    rst_close(&R);
    return rc;
}

/* The bytes of the displaced schema's tables (data and indexes, as the server counts them),
 * in the state as kept_bytes for the record `revert --kept` lists; none when unknown. */
static void kept_size(my_rst *R, const char *db)
{
    char *lit = my_literal(R->m, db);
    char *sql = xasprintf("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES "
                          "WHERE TABLE_SCHEMA = %s", lit);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_err e;

    if (my_query(R->m, &e, "measure the displaced schema", sql, &r) == SNAP_OK && (row = mysql_fetch_row(r)) != NULL &&
        row[0] != NULL)
        json_object_set_new(R->state, "kept_bytes", json_integer((json_int_t)strtoll(row[0], NULL, 10)));
    if (r != NULL)
        mysql_free_result(r);
    free(sql);
    free(lit);
}

static snap_rc my_finish(rst_target *t, bool drop_old, snap_err *err)
{
    my_rst R;
    snap_rc rc = rst_open(t, &R, err);
    char *qs, *qo;

    if (rc != SNAP_OK)
        return rc;
    qs = my_ident(R.staging);
    qo = my_ident(R.old);
    rc = my_execf(R.m, err, "drop the empty staging schema", "DROP DATABASE IF EXISTS %s", qs);
    if (rc == SNAP_OK && drop_old) {
        rc = my_execf(R.m, err, "drop the displaced schema", "DROP DATABASE IF EXISTS %s", qo);
    } else if (rc == SNAP_OK) {
        json_t *tabs = NULL;
        rc = base_tables(R.m, R.old, &tabs, err);
        if (rc == SNAP_OK && json_array_size(tabs) == 0)
            rc = my_execf(R.m, err, "drop the empty displaced schema", "DROP DATABASE IF EXISTS %s", qo);
        else if (rc == SNAP_OK) {
            kept_size(&R, R.old);
            json_object_set_new(rst_plan(t), "kept", json_string(R.old));
            log_info(R.ctx, "%s: the previous tables stay in schema %s (drop it when no longer "
                            "needed, or revert with --drop-old)",
                     R.live, R.old);
        }
        json_decref(tabs);
    }
    free(qs);
    free(qo);
    rst_close(&R);
    return rc;
}

/* ---- the lock in the server ---- */

static void my_unlock(void *m)
{
    mysql_close(m); /* GET_LOCK's lock ends with its session */
}

/* The session that holds lock (a quoted literal): its id, client host and how long it has
 * been idle, which for a lock holder is since it took the lock. */
static char *my_lock_holder(MYSQL *m, const char *lit)
{
    char *sql = xasprintf("SELECT p.ID, p.HOST, p.TIME FROM information_schema.PROCESSLIST p"
                          " WHERE p.ID = IS_USED_LOCK(%s)", lit);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    char *who = NULL;
    snap_err e;

    if (my_query(m, &e, "look up the lock holder", sql, &r) == SNAP_OK && (row = mysql_fetch_row(r)) != NULL &&
        row[0] != NULL) {
        char since[32];
        util_iso8601(time(NULL) - (row[2] ? atol(row[2]) : 0), since);
        who = xasprintf("session %s from %s (since %s)", row[0], row[1] ? row[1] : "?", since);
    }
    if (r != NULL)
        mysql_free_result(r);
    free(sql);
    return who;
}

/* The GET_LOCK name of a live schema (server-wide, 64 characters at most); caller frees. */
static char *lock_name(const char *live)
{
    char hex[65];
    util_sha256 *h = util_sha256_new();

    util_sha256_update(h, live, strlen(live));
    util_sha256_final(h, hex);
    hex[32] = '\0';
    return xasprintf("snap-revert:%s", hex);
}

/* GET_LOCK on the live schema's lock_name, retried until --lock-wait runs out. */
static snap_rc my_lock(rst_target *t, snap_err *err)
{
    json_t *info = rst_manifest(t) != NULL ? cat_component_info(component(t)) : NULL;
    const char *live = rst_manifest(t) != NULL ? (rst_to(t) ? rst_to(t) : json_string_value(json_object_get(info, "database")))
                                               : state_str(rst_state(t), "live");
    uint64_t until = util_now_ns() + (uint64_t)rst_lock_wait(t) * 1000000000ull;
    char *name, *lit = NULL, *sql = NULL, *who = NULL;
    my_dsn *d = NULL;
    MYSQL *m = NULL;
    bool said = false;
    snap_rc rc;

    if (live == NULL)
        live = "";
    name = lock_name(live);
    rc = target_dsn(t, &d, err);
    if (rc == SNAP_OK)
        rc = my_connect(d, NULL, &m, err);
    if (rc == SNAP_OK) {
        lit = my_literal(m, name);
        sql = xasprintf("SELECT GET_LOCK(%s, 0)", lit);
    }
    while (rc == SNAP_OK) {
        MYSQL_RES *r = NULL;
        MYSQL_ROW row;
        bool got = false;
        rc = my_query(m, err, "take the revert lock", sql, &r);
        if (rc != SNAP_OK)
            break;
        row = mysql_fetch_row(r);
        got = row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0;
        mysql_free_result(r);
        if (got) {
            rst_hold(t, m, my_unlock);
            m = NULL;
            break;
        }
        free(who);
        who = my_lock_holder(m, lit);
        if (util_now_ns() >= until || ctx_interrupted(rst_ctx(t), NULL)) {
            rc = err_set(err, SNAP_ECONFLICT, 0, "schema %s is locked by %s", live, who ? who : "another revert");
            err_hint(err, "another runner is reverting it: wait for it (--lock-wait DURATION waits), then run the "
                          "command again; nothing was changed");
            err_kind(err, "locked");
            break;
        }
        if (!said)
            log_info(rst_ctx(t), "schema %s is locked by %s; waiting up to %lld s", live,
                     who ? who : "another revert", (long long)rst_lock_wait(t));
        said = true;
        usleep(250000);
    }
    if (m != NULL)
        mysql_close(m);
    my_dsn_free(d);
    free(who);
    free(sql);
    free(lit);
    free(name);
    return rc;
}

/* ---- orphans: marked schemas beside a configured source's schema when every journal is lost ---- */

/* Whether GET_LOCK(name) is this session's now (it is released with RELEASE_LOCK or the session). */
static bool try_lock(MYSQL *m, const char *name, snap_err *err, snap_rc *rc)
{
    char *lit = my_literal(m, name), *sql = xasprintf("SELECT GET_LOCK(%s, 0)", lit);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    bool got = false;

    *rc = my_query(m, err, "take the revert lock", sql, &r);
    if (*rc == SNAP_OK) {
        row = mysql_fetch_row(r);
        got = row != NULL && row[0] != NULL && strcmp(row[0], "1") == 0;
        mysql_free_result(r);
    }
    free(sql);
    free(lit);
    return got;
}

/* Drops one marked staging schema of live under live's lock; "removed", "locked" or "failed". */
static snap_rc drop_orphan(snap_ctx *ctx, MYSQL *m, const char *live, const char *name, json_t *e, snap_err *err)
{
    char *lock = lock_name(live), *q = my_ident(name), *lit = my_literal(m, lock);
    snap_rc rc;

    if (!try_lock(m, lock, err, &rc)) {
        if (rc == SNAP_OK)
            log_warn(ctx, "schema %s is locked by a running revert: its staging %s is left alone", live, name);
        json_object_set_new(e, "outcome", json_string(rc == SNAP_OK ? "locked" : "failed"));
        goto out;
    }
    rc = my_execf(m, err, "drop the staging schema", "DROP DATABASE IF EXISTS %s", q);
    (void)my_execf(m, &(snap_err){0}, "release the revert lock", "DO RELEASE_LOCK(%s)", lit);
    json_object_set_new(e, "outcome", json_string(rc == SNAP_OK ? "removed" : "failed"));
    json_object_set_new(e, "staging", json_string(name));
out:
    free(lock);
    free(q);
    free(lit);
    return rc;
}

/* The names a revert of live gives its staging and displaced schemas: made from live and
 * the revert id alone, so the marker names nothing itself. */
static void orphan_names(const char *live, const char *id, const char *snap, char **staging, char **displaced)
{
    char sid[16];

    (void)snap;
    short_id(id, sid);
    *staging = xasprintf("%s__revert_%s", live, sid);
    *displaced = xasprintf("%s__pre_revert_%s", live, sid);
}

/* The listing is by live's names: a schema there without live's marker is worth a word. */
static const rst_orphan_kind orphan_kind = {"schema", true, orphan_names};

/* One schema named like live's staging or displaced one: dropped when it is marked staging
 * of a revert no journal names and live's lock is free, reported when it is the marked
 * displaced one, left alone otherwise (rst_orphan_verdict). */
static snap_rc orphan_schema(snap_ctx *ctx, MYSQL *m, const char *live, const char *name, const char *comment,
                             json_t *report, snap_err *err)
{
    bool staging;
    json_t *e = rst_orphan_verdict(ctx, &orphan_kind, live, name, comment, report, &staging);
    snap_rc rc;

    if (e == NULL || !staging)
        return SNAP_OK;
    rc = drop_orphan(ctx, m, live, name, e, err);
    if (rc == SNAP_OK && strcmp(json_string_value(json_object_get(e, "outcome")), "removed") == 0)
        log_info(ctx, "removed the staging schema %s that revert %s of %s left", name,
                 json_string_value(json_object_get(e, "revert_id")), live);
    return rc;
}

/* The schemas named <live>__revert_* or <live>__pre_revert_* of one configured source, with
 * their comments (none where the server keeps none). */
static snap_rc my_orphans(snap_ctx *ctx, const char *section, json_t *report, snap_err *err)
{
    const char *dsn = cfg_get(ctx->cfg, section, "dsn");
    my_dsn *d = NULL;
    MYSQL *m = NULL;
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    char *live = NULL, *esc = NULL, *lr = NULL, *lp = NULL, *sql = NULL;
    snap_rc rc = my_dsn_parse(dsn != NULL ? dsn : "", &d, err);

    if (rc != SNAP_OK || my_dsn_db(d) == NULL || my_dsn_db(d)[0] == '\0')
        goto out; /* no schema named: nothing to tell staging by */
    live = xstrdup(my_dsn_db(d));
    rc = my_connect(d, NULL, &m, err);
    if (rc == SNAP_OK) {
        size_t n = 0;
        esc = xmalloc(2 * strlen(live) + 1);
        for (const char *p = live; *p; p++) {
            if (*p == '_' || *p == '%' || *p == '\\')
                esc[n++] = '\\';
            esc[n++] = *p;
        }
        esc[n] = '\0';
        char *pr = xasprintf("%s\\_\\_revert\\_%%", esc), *pp = xasprintf("%s\\_\\_pre\\_revert\\_%%", esc);
        lr = my_literal(m, pr);
        lp = my_literal(m, pp);
        free(pr);
        free(pp);
        sql = xasprintf("SELECT SCHEMA_NAME, %s FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR "
                        "SCHEMA_NAME LIKE %s ORDER BY 1",
                        keeps_schema_comments(m) ? "SCHEMA_COMMENT" : "NULL", lr, lp);
        rc = my_query(m, err, "look for what reverts left", sql, &r);
    }
    while (rc == SNAP_OK && (row = mysql_fetch_row(r)) != NULL)
        rc = orphan_schema(ctx, m, live, row[0], row[1], report, err);
    if (rc != SNAP_OK)
        err_prefix(err, "schema %s: looking for what reverts left", live);
out:
    if (r != NULL)
        mysql_free_result(r);
    mysql_close(m);
    my_dsn_free(d);
    free(live);
    free(esc);
    free(lr);
    free(lp);
    free(sql);
    return rc;
}

const rst_driver rst_mysql_driver = {
    .type = "mysql",
    .plan = my_plan,
    .safety_source = my_safety_source,
    .safety_deferrable = my_safety_deferrable,
    .displaced_source = my_displaced_source,
    .stage = my_stage,
    .cutover = my_cutover,
    .rollback = my_rollback,
    .discard = my_discard,
    .finish = my_finish,
    .check_state = my_check_state,
    .lock = my_lock,
    .orphans = my_orphans,
};
