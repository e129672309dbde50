/*
 * mysql.c: MySQL and MariaDB capture.
 *
 * One consistent point across parallel workers: the main connection takes the global
 * read lock (FLUSH TABLES WITH READ LOCK), every worker starts START TRANSACTION WITH
 * CONSISTENT SNAPSHOT, the binlog and GTID positions and the AUTO_INCREMENT counters are
 * read, and the lock is released; it is held for milliseconds. The schema comes from the
 * server (SHOW CREATE of every object, with the sql_mode and character set each was
 * created under) and is the first entry of the component's first part (schema.json).
 * Data is streamed with mysql_use_result into the LOAD DATA text format (tab between
 * fields, newline after rows, backslash escapes, \N for NULL), cut into archive entries of
 * at most chunk_size bytes held in memory: memory is bounded by jobs x chunk_size. Tables
 * with a single-column integer primary key that are larger than split_size are read as
 * several primary-key ranges, so a big table is dumped by every worker at once.
 *
 * Entries: schema.json, then data/<table>/<range>-<piece>.tsv (the table name with bytes
 * outside [A-Za-z0-9_$-] written as %XX).
 */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/pool.h"
#include "../common/util.h"
#include "../engines/my_client.h"
#include "snapshot.h"

/* ------------------------------------------------------------------------------------ */
/* Capture                                                                              */

#define DEFAULT_CHUNK (8u << 20) /* the table: "[snap] pg_chunk_size; MySQL 8M" */
#define MAX_RANGES 256
#define MY_PART_RAW(cap) (4 * (uint64_t)(cap)->chunk) /* a part's rows, before compression */

typedef struct my_table {
    char *name;
    char *enc; /* archive path component */
    char *engine;
    bool transactional;
    uint64_t data_length;
    char *auto_increment; /* under the lock, or NULL */
    char **cols;
    size_t ncols;
    char *pk;        /* single integer primary key column, or NULL */
    bool pk_unsigned;
    uint64_t rows;   /* counted by the workers under cap->mu */
    uint64_t bytes;
} my_table;

typedef struct my_item {
    size_t table, ntables; /* tables [table, table + ntables): small whole ones go together */
    unsigned range;
    bool has_lo, has_hi;
    long long lo, hi; /* lo <= pk < hi */
} my_item;

typedef struct my_cap {
    snp_capture *c;
    snap_ctx *ctx;
    my_dsn *dsn;
    const char *db; /* the schema as recorded: the live one a deferred safety snapshot reads displaced */
    MYSQL *main;
    size_t chunk;
    my_table *tables;
    size_t ntables;
    my_item *items;
    size_t nitems;
    pthread_mutex_t mu; /* the tables' counts */
    snp_holds *holds;   /* which tables each part holds */
} my_cap;

typedef struct my_worker {
    my_cap *cap;
    MYSQL *m;
    arc_writer *w;
    char *buf;
    size_t len, cap_bytes;
    uint64_t since_cut; /* bytes in the open part */
    snp_held held;      /* its last entry's part and table */
    pool *pool;
} my_worker;

static void table_free(my_table *t)
{
    free(t->name);
    free(t->enc);
    free(t->engine);
    free(t->auto_increment);
    for (size_t i = 0; i < t->ncols; i++)
        free(t->cols[i]);
    free(t->cols);
    free(t->pk);
}

static my_table *find_table(my_cap *cap, const char *name)
{
    for (size_t i = 0; i < cap->ntables; i++)
        if (strcmp(cap->tables[i].name, name) == 0)
            return &cap->tables[i];
    return NULL;
}

static bool is_int_type(const char *t)
{
    static const char *const ints[] = {"tinyint", "smallint", "mediumint", "int", "bigint"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcasecmp(t, ints[i]) == 0)
            return true;
    return false;
}

/* The base tables of the schema, their engines, sizes, loaded columns and primary keys. */
static snap_rc list_tables(my_cap *cap, snap_err *err)
{
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc;

    rc = my_query(cap->main, err, "list tables",
                  "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE, ''), "
                  "COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES "
                  "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
                  &r);
    if (rc != SNAP_OK)
        return rc;
    cap->tables = xcalloc(mysql_num_rows(r) + 1, sizeof *cap->tables);
    while ((row = mysql_fetch_row(r)) != NULL) {
        my_table *t;
        if (strcmp(row[1], "VIEW") == 0 || strcmp(row[1], "SYSTEM VIEW") == 0)
            continue;
        if (strcmp(row[1], "BASE TABLE") != 0) {
            err_set(err, SNAP_EFAIL, 0, "table %s is a %s, which snap cannot capture yet",
                    row[0], row[1]);
            err_hint(err, "sequences and system-versioned tables are not supported");
            mysql_free_result(r);
            return SNAP_EFAIL;
        }
        t = &cap->tables[cap->ntables++];
        t->name = xstrdup(row[0]);
        t->enc = my_path_encode(row[0]);
        t->engine = xstrdup(row[2]);
        t->transactional = strcasecmp(row[2], "InnoDB") == 0 ||
                           strcasecmp(row[2], "RocksDB") == 0 ||
                           strcasecmp(row[2], "TokuDB") == 0;
        t->data_length = strtoull(row[3], NULL, 10);
    }
    mysql_free_result(r);

    rc = my_query(cap->main, err, "list columns",
                  "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
                  "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
                  &r);
    if (rc != SNAP_OK)
        return rc;
    while ((row = mysql_fetch_row(r)) != NULL) {
        my_table *t = find_table(cap, row[0]);
        /* a view's column, or a generated one; MySQL 8 also says DEFAULT_GENERATED for an
         * expression default, which is a column like any other */
        if (t == NULL || (row[2] != NULL && (strstr(row[2], "VIRTUAL GENERATED") != NULL ||
                                             strstr(row[2], "STORED GENERATED") != NULL ||
                                             strstr(row[2], "PERSISTENT GENERATED") != NULL)))
            continue;
        t->cols = xrealloc(t->cols, (t->ncols + 1) * sizeof *t->cols);
        t->cols[t->ncols++] = xstrdup(row[1]);
    }
    mysql_free_result(r);

    rc = my_query(cap->main, err, "list primary keys",
                  "SELECT k.TABLE_NAME, MIN(k.COLUMN_NAME), COUNT(*), MIN(c.DATA_TYPE), "
                  "MIN(c.COLUMN_TYPE) FROM information_schema.KEY_COLUMN_USAGE k "
                  "JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = k.TABLE_SCHEMA "
                  "AND c.TABLE_NAME = k.TABLE_NAME AND c.COLUMN_NAME = k.COLUMN_NAME "
                  "WHERE k.TABLE_SCHEMA = DATABASE() AND k.CONSTRAINT_NAME = 'PRIMARY' "
                  "GROUP BY k.TABLE_NAME",
                  &r);
    if (rc != SNAP_OK)
        return rc;
    while ((row = mysql_fetch_row(r)) != NULL) {
        my_table *t = find_table(cap, row[0]);
        if (t == NULL || strcmp(row[2], "1") != 0 || !is_int_type(row[3]))
            continue;
        t->pk = xstrdup(row[1]);
        t->pk_unsigned = strstr(row[4], "unsigned") != NULL;
    }
    mysql_free_result(r);
    return SNAP_OK;
}

/* Replaces the AUTO_INCREMENT=N table option by the value read under the lock. */
static char *patch_auto_increment(const char *create, const char *value)
{
    const char *opts = strstr(create, "\n) ");
    const char *ai, *eng, *end;
    char *out;

    if (opts == NULL)
        return xstrdup(create);
    ai = strstr(opts, " AUTO_INCREMENT=");
    if (ai != NULL) {
        end = ai + strlen(" AUTO_INCREMENT=");
        while (*end >= '0' && *end <= '9')
            end++;
        char *tmp = xasprintf("%.*s%s", (int)(ai - create), create, end);
        out = patch_auto_increment(tmp, value);
        free(tmp);
        return out;
    }
    if (value == NULL || strcmp(value, "1") == 0 || strcmp(value, "0") == 0)
        return xstrdup(create);
    eng = strstr(opts, " ENGINE=");
    if (eng == NULL)
        return xstrdup(create);
    end = eng + strlen(" ENGINE=");
    while (*end != '\0' && *end != ' ' && *end != '\n')
        end++;
    return xasprintf("%.*s AUTO_INCREMENT=%s%s", (int)(end - create), create, value, end);
}

/* SHOW CREATE <kind> `name`: an object with the named columns of the one row. */
static snap_rc show_create(my_cap *cap, const char *kind, const char *name, const char *const *cols,
                           const char *const *keys, size_t n, json_t *obj, snap_err *err)
{
    char *id = my_ident(name), *sql = xasprintf("SHOW CREATE %s %s", kind, id);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    MYSQL_FIELD *f;
    unsigned nf;
    snap_rc rc;
    char *what = xasprintf("show create %s %s", kind, name);

    for (char *p = what; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    rc = my_query(cap->main, err, what, sql, &r);
    if (rc != SNAP_OK)
        goto out;
    row = mysql_fetch_row(r);
    f = mysql_fetch_fields(r);
    nf = mysql_num_fields(r);
    if (row == NULL) {
        rc = err_set(err, SNAP_EFAIL, 0, "%s: no row returned", what);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        for (unsigned j = 0; j < nf; j++) {
            if (strcasecmp(f[j].name, cols[i]) != 0)
                continue;
            if (row[j] == NULL) {
                if (strcmp(keys[i], "create") == 0) {
                    rc = err_set(err, SNAP_EUNREACH, 0,
                                 "%s: the definition is hidden from this user", what);
                    err_hint(err, "grant SELECT on mysql.proc (MariaDB) or SHOW_ROUTINE, or "
                                  "connect as the definer");
                    goto out;
                }
                json_object_set_new(obj, keys[i], json_null());
                break;
            }
            json_t *s = json_string(row[j]);
            if (s == NULL) {
                rc = err_set(err, SNAP_EFAIL, 0, "%s: the definition is not valid UTF-8", what);
                goto out;
            }
            json_object_set_new(obj, keys[i], s);
            break;
        }
    }
out:
    mysql_free_result(r);
    free(what);
    free(sql);
    free(id);
    return rc;
}

/* One query's rows as a list of names (first column). */
static snap_rc list_names(my_cap *cap, const char *what, const char *sql, json_t *into,
                          const char *type_key, snap_err *err)
{
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = my_query(cap->main, err, what, sql, &r);

    if (rc != SNAP_OK)
        return rc;
    while ((row = mysql_fetch_row(r)) != NULL) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(row[0]));
        if (type_key != NULL && mysql_num_fields(r) > 1)
            json_object_set_new(o, type_key, json_string(row[1] ? row[1] : ""));
        json_array_append_new(into, o);
    }
    mysql_free_result(r);
    return SNAP_OK;
}

/* The database's defaults: character set, collation, sql_mode. */
static snap_rc schema_defaults(my_cap *cap, json_t *doc, snap_err *err)
{
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_rc rc = my_query(cap->main, err, "read the schema defaults",
                          "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, @@sql_mode "
                          "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
                          &r);

    if (rc != SNAP_OK)
        return rc;
    if ((row = mysql_fetch_row(r)) != NULL) {
        json_object_set_new(doc, "charset", json_string(row[0]));
        json_object_set_new(doc, "collation", json_string(row[1]));
        json_object_set_new(doc, "sql_mode", json_string(row[2] ? row[2] : ""));
    }
    mysql_free_result(r);
    return SNAP_OK;
}

/* Each table's CREATE (with the AUTO_INCREMENT read under the lock), engine and columns. */
static snap_rc schema_tables(my_cap *cap, json_t *doc, snap_err *err)
{
    json_t *arr = json_array();

    json_object_set_new(doc, "tables", arr);
    for (size_t i = 0; i < cap->ntables; i++) {
        my_table *t = &cap->tables[i];
        json_t *o = json_object(), *cols = json_array();
        static const char *const c[] = {"Create Table"}, *const k[] = {"create"};
        char *patched;
        snap_rc rc;
        json_array_append_new(arr, o);
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "engine", json_string(t->engine));
        json_object_set_new(o, "columns", cols);
        rc = show_create(cap, "TABLE", t->name, c, k, 1, o, err);
        if (rc != SNAP_OK)
            return rc;
        patched = patch_auto_increment(json_string_value(json_object_get(o, "create")), t->auto_increment);
        json_object_set_new(o, "create", json_string(patched));
        free(patched);
        if (t->auto_increment)
            json_object_set_new(o, "auto_increment", json_string(t->auto_increment));
        for (size_t j = 0; j < t->ncols; j++)
            json_array_append_new(cols, json_string(t->cols[j]));
        json_object_set_new(o, "path", json_string(t->enc));
    }
    return SNAP_OK;
}

/* One kind of object: the names a query lists, then SHOW CREATE of each. */
typedef struct obj_kind {
    const char *key, *what, *sql, *type_key, *show; /* show NULL: a routine, by its type */
    const char *cols[6], *keys[6];
    size_t n;
} obj_kind;

static const obj_kind obj_kinds[] = {
    /* views, in the order the server lists them; the restore retries on dependencies */
    {"views", "list views",
     "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME", NULL,
     "VIEW", {"Create View", "character_set_client", "collation_connection"},
     {"create", "character_set_client", "collation_connection"}, 3},
    /* triggers, in their action order per table */
    {"triggers", "list triggers",
     "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
     "WHERE TRIGGER_SCHEMA = DATABASE() "
     "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
     "table", "TRIGGER",
     {"SQL Original Statement", "sql_mode", "character_set_client", "collation_connection", "Database Collation"},
     {"create", "sql_mode", "character_set_client", "collation_connection", "collation_database"}, 5},
    /* procedures and functions */
    {"routines", "list routines",
     "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
     "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
     "type", NULL, {NULL, "sql_mode", "character_set_client", "collation_connection", "Database Collation"},
     {"create", "sql_mode", "character_set_client", "collation_connection", "collation_database"}, 5},
    {"events", "list events",
     "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE() ORDER BY EVENT_NAME", NULL,
     "EVENT", {"Create Event", "sql_mode", "time_zone", "character_set_client", "collation_connection",
               "Database Collation"},
     {"create", "sql_mode", "time_zone", "character_set_client", "collation_connection", "collation_database"}, 6},
};

static snap_rc schema_objects(my_cap *cap, const obj_kind *kind, json_t *doc, snap_err *err)
{
    json_t *arr = json_array();
    snap_rc rc;

    json_object_set_new(doc, kind->key, arr);
    rc = list_names(cap, kind->what, kind->sql, arr, kind->type_key, err);
    for (size_t i = 0; rc == SNAP_OK && i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        const char *cols[6], *show = kind->show;
        memcpy(cols, kind->cols, sizeof cols);
        if (show == NULL) {
            bool proc = strcmp(json_string_value(json_object_get(o, "type")), "PROCEDURE") == 0;
            cols[0] = proc ? "Create Procedure" : "Create Function";
            show = proc ? "PROCEDURE" : "FUNCTION";
        }
        rc = show_create(cap, show, json_string_value(json_object_get(o, "name")), cols, kind->keys, kind->n, o,
                         err);
    }
    return rc;
}

/* The whole schema document: database defaults, tables, views, triggers, routines, events. */
static snap_rc capture_schema(my_cap *cap, json_t **out, snap_err *err)
{
    json_t *doc = json_object();
    snap_rc rc;

    *out = NULL;
    json_object_set_new(doc, "format", json_integer(MY_FORMAT));
    json_object_set_new(doc, "database", json_string(cap->db));
    rc = schema_defaults(cap, doc, err);
    if (rc == SNAP_OK)
        rc = schema_tables(cap, doc, err);
    for (size_t k = 0; rc == SNAP_OK && k < sizeof obj_kinds / sizeof obj_kinds[0]; k++)
        rc = schema_objects(cap, &obj_kinds[k], doc, err);
    if (rc != SNAP_OK) {
        json_decref(doc);
        return rc;
    }
    *out = doc;
    return SNAP_OK;
}

/* ---- data ---- */

static const unsigned char esc_table[256] = {
    ['\0'] = '0', ['\b'] = 'b', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', [26] = 'Z',
    ['\\'] = '\\',
};

/* The row buffer holds one chunk and the row that ends it: chunk_size plus 64 KiB, more
 * only for a row larger than that. */
static void buf_reserve(my_worker *w, size_t more)
{
    if (w->len + more <= w->cap_bytes)
        return;
    size_t n = w->cap->chunk + 65536;
    if (n < w->len + more)
        n = w->len + more;
    w->buf = xrealloc(w->buf, n);
    w->cap_bytes = n;
}

/* Appends one row in the LOAD DATA text format. */
static void append_row(my_worker *w, MYSQL_ROW row, const unsigned long *lens, unsigned n)
{
    size_t need = n + 1;
    for (unsigned i = 0; i < n; i++)
        need += row[i] ? 2 * (size_t)lens[i] : 2;
    buf_reserve(w, need);
    char *o = w->buf + w->len;
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            *o++ = '\t';
        if (row[i] == NULL) {
            *o++ = '\\';
            *o++ = 'N';
            continue;
        }
        const unsigned char *s = (const unsigned char *)row[i];
        for (unsigned long j = 0; j < lens[i]; j++) {
            unsigned char e = esc_table[s[j]];
            if (e) {
                *o++ = '\\';
                *o++ = (char)e;
            } else {
                *o++ = (char)s[j];
            }
        }
    }
    *o++ = '\n';
    w->len = (size_t)(o - w->buf);
}

/*
 * The buffered rows as the table's next entry. The part ends at a row that marks one
 * (snp_row_mark, after a quarter part), or after four parts' rows whatever they are: not
 * after the compressed size that zstd's timing decides. An unchanged stretch of a table
 * is cut into the same entries and parts in every snap, and its parts are reused.
 */
static snap_rc flush_chunk(my_worker *w, const my_table *t, unsigned range, unsigned *piece,
                           bool part_mark, snap_err *err)
{
    char path[512];
    snap_rc rc;

    snprintf(path, sizeof path, "data/%s/%05u-%05u.tsv", t->enc, range, *piece);
    if (strlen(t->enc) > 400)
        return err_set(err, SNAP_EFAIL, 0, "table name too long for an archive path: %s",
                       t->name);
    rc = arc_write_buffer(w->w, path, w->buf, w->len, 0600, SNP_DB_MTIME, err);
    if (rc == SNAP_OK)
        snp_holds_note(w->cap->holds, w->w, &w->held, (size_t)(t - w->cap->tables));
    (*piece)++;
    w->since_cut += w->len;
    w->len = 0;
    if (rc == SNAP_OK && ((part_mark && w->since_cut >= MY_PART_RAW(w->cap) / 4) ||
                          w->since_cut >= 4 * MY_PART_RAW(w->cap))) {
        w->since_cut = 0;
        rc = arc_writer_cut(w->w, err);
    }
    return rc;
}

static snap_rc dump_item(my_worker *w, const my_item *it, snap_err *err)
{
    my_cap *cap = w->cap;
    my_table *t = &cap->tables[it->table];
    char *sql, *tid = my_ident(t->name), *cols = xstrdup(""), *where = xstrdup("");
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    unsigned piece = 0;
    uint64_t rows = 0, bytes = 0;
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < t->ncols; i++) {
        char *id = my_ident(t->cols[i]), *n = xasprintf("%s%s%s", cols, i ? "," : "", id);
        free(cols);
        free(id);
        cols = n;
    }
    if (it->has_lo || it->has_hi) {
        char *pk = my_ident(t->pk), lo[48] = "", hi[48] = "";
        if (it->has_lo)
            snprintf(lo, sizeof lo, "%s >= %lld", pk, it->lo);
        if (it->has_hi)
            snprintf(hi, sizeof hi, "%s < %lld", pk, it->hi);
        free(where);
        where = xasprintf(" WHERE %s%s%s", lo, it->has_lo && it->has_hi ? " AND " : "", hi);
        free(pk);
    }
    sql = xasprintf("SELECT %s FROM %s%s", t->ncols ? cols : "1", tid, where);
    if (mysql_real_query(w->m, sql, strlen(sql)) != 0 ||
        (r = mysql_use_result(w->m)) == NULL) {
        char *what = xasprintf("read table %s", t->name);
        rc = my_fail(w->m, err, what);
        free(what);
        goto out;
    }
    unsigned nf = mysql_num_fields(r);
    while ((row = mysql_fetch_row(r)) != NULL) {
        size_t start = w->len;
        bool mark;
        append_row(w, row, mysql_fetch_lengths(r), nf);
        rows++;
        /* entries end at rows that mark one too: the same rows, the same entries */
        mark = w->len >= cap->chunk / 8 && snp_row_mark(w->buf + start, w->len - start, cap->chunk / 4);
        if (w->len >= cap->chunk || mark) {
            bytes += w->len;
            rc = flush_chunk(w, t, it->range, &piece,
                             mark && snp_row_mark(w->buf + start, w->len - start, MY_PART_RAW(cap)), err);
            if (rc != SNAP_OK)
                goto out;
            if (ctx_interrupted(cap->ctx, err)) {
                rc = SNAP_EINTR;
                goto out;
            }
            if (pool_stopping(w->pool)) {
                rc = err_set(err, SNAP_EFAIL, 0, "stopped");
                goto out;
            }
        }
    }
    if (mysql_errno(w->m) != 0) {
        char *what = xasprintf("read table %s", t->name);
        rc = my_fail(w->m, err, what);
        free(what);
        goto out;
    }
    if (w->len > 0) {
        bytes += w->len;
        rc = flush_chunk(w, t, it->range, &piece, false, err);
        if (rc != SNAP_OK)
            goto out;
    }
    pthread_mutex_lock(&cap->mu);
    t->rows += rows;
    t->bytes += bytes;
    pthread_mutex_unlock(&cap->mu);
out:
    mysql_free_result(r); /* fetches the rest of an unfinished result */
    free(sql);
    free(tid);
    free(cols);
    free(where);
    return rc;
}

/* The capture's pool: one item on one worker, each with its connection and writer. */
typedef struct my_run {
    my_cap *cap;
    my_worker *workers;
} my_run;

/* An item ends its part: a part's bytes do not depend on the order workers took items in. */
static snap_rc dump_job(pool *p, void *arg, size_t worker, size_t job, snap_err *err)
{
    my_run *run = arg;
    my_worker *w = &run->workers[worker];
    const my_item *it = &run->cap->items[job];
    snap_rc rc = SNAP_OK;

    w->pool = p;
    for (size_t k = 0; k < it->ntables && rc == SNAP_OK; k++) {
        my_item one = *it;
        one.table = it->table + k;
        rc = dump_item(w, &one, err);
    }
    w->since_cut = 0;
    if (rc == SNAP_OK)
        rc = arc_writer_cut(w->w, err);
    return rc;
}

/* A worker's last part, unless the capture is failing anyway. */
static snap_rc dump_done(pool *p, void *arg, size_t worker, snap_err *err)
{
    my_run *run = arg;

    return pool_stopping(p) ? SNAP_OK : arc_writer_finish(run->workers[worker].w, err);
}

static int cmp_size_desc(const void *a, const void *b)
{
    const my_table *x = a, *y = b;
    if (x->data_length != y->data_length)
        return x->data_length > y->data_length ? -1 : 1;
    return strcmp(x->name, y->name);
}

/*
 * Whether table i joins the item before it, a group of small whole tables that share a
 * part. The groups depend on the tables' names and sizes only, so that an unchanged
 * database is cut into the same parts every time.
 */
static bool join_group(const my_cap *cap, size_t i)
{
    const my_item *prev = cap->nitems > 0 ? &cap->items[cap->nitems - 1] : NULL;
    uint64_t sum = 0;

    if (prev == NULL || prev->has_lo || prev->has_hi || prev->table + prev->ntables != i ||
        snp_group_mark(cap->tables[i].name))
        return false;
    for (size_t k = prev->table; k <= i; k++)
        sum += cap->tables[k].data_length;
    return sum <= MY_PART_RAW(cap) / 2;
}

/* Work items: big tables with an integer primary key become several ranges. */
static snap_rc plan_items(my_cap *cap, uint64_t split, snap_err *err)
{
    cap->items = NULL;
    cap->nitems = 0;
    for (size_t i = 0; i < cap->ntables; i++) {
        my_table *t = &cap->tables[i];
        unsigned n = 1;
        long long lo = 0, hi = 0;

        if (t->pk != NULL && t->data_length > split) {
            char *pk = my_ident(t->pk), *tid = my_ident(t->name);
            char *sql = xasprintf("SELECT MIN(%s), MAX(%s) FROM %s", pk, pk, tid);
            MYSQL_RES *r;
            MYSQL_ROW row;
            snap_rc rc = my_query(cap->main, err, "read primary key bounds", sql, &r);
            free(sql);
            free(pk);
            free(tid);
            if (rc != SNAP_OK)
                return rc;
            row = mysql_fetch_row(r);
            if (row != NULL && row[0] != NULL && row[1] != NULL && row[1][0] != '\0') {
                char *e1, *e2;
                errno = 0;
                lo = strtoll(row[0], &e1, 10);
                hi = strtoll(row[1], &e2, 10);
                if (errno == 0 && *e1 == '\0' && *e2 == '\0' && hi > lo) {
                    /* DATA_LENGTH is the server's estimate, which drifts as statistics are
                     * recalculated: a power of two keeps the count, and with it every range's
                     * bounds and the bytes of its parts (reuse), through most of that drift */
                    uint64_t want = t->data_length / split + 1, pow2 = 1;
                    while (pow2 < want && pow2 < MAX_RANGES)
                        pow2 *= 2;
                    n = (unsigned)pow2;
                    if ((unsigned long long)(hi - lo) < n)
                        n = 1;
                }
            }
            mysql_free_result(r);
        }
        if (n == 1 && join_group(cap, i)) {
            cap->items[cap->nitems - 1].ntables++;
            continue;
        }
        cap->items = xrealloc(cap->items, (cap->nitems + n) * sizeof *cap->items);
        for (unsigned k = 0; k < n; k++) {
            my_item *it = &cap->items[cap->nitems++];
            memset(it, 0, sizeof *it);
            it->table = i;
            it->ntables = 1;
            it->range = k;
            if (n > 1) {
                /* boundaries lo + (hi - lo) * k / n without overflow */
                long double span = (long double)hi - (long double)lo;
                it->has_lo = k > 0;
                it->has_hi = k + 1 < n;
                it->lo = lo + (long long)(span * k / n);
                it->hi = lo + (long long)(span * (k + 1) / n);
            }
        }
    }
    return SNAP_OK;
}

/* The binlog file and position and the GTID position, read under the lock. */
static void read_positions(my_cap *cap, json_t *info, bool mariadb)
{
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;
    snap_err e;

    if (my_query(cap->main, &e, "show master status", "SHOW MASTER STATUS", &r) != SNAP_OK) {
        /* no BINLOG MONITOR / REPLICATION CLIENT, or MySQL 8.4: the snap goes on without */
        log_warn(cap->ctx, "the binlog position is not recorded: %s", e.msg);
    } else if (r != NULL && (row = mysql_fetch_row(r)) != NULL) {
        json_object_set_new(info, "binlog_file", json_string(row[0]));
        json_object_set_new(info, "binlog_position", json_integer(strtoll(row[1], NULL, 10)));
    }
    mysql_free_result(r);
    r = NULL;
    if (my_query(cap->main, &e, "read the gtid position",
                 mariadb ? "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_current_pos"
                         : "SELECT @@GLOBAL.gtid_executed, NULL",
                 &r) == SNAP_OK &&
        r != NULL && (row = mysql_fetch_row(r)) != NULL) {
        if (row[0] != NULL)
            json_object_set_new(info, "gtid_position", json_string(row[0]));
        if (row[1] != NULL)
            json_object_set_new(info, "gtid_current_pos", json_string(row[1]));
    }
    mysql_free_result(r);
}

static snap_rc read_auto_increment(my_cap *cap, snap_err *err)
{
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc;
    snap_err ignore;

    /* MySQL 8 caches these statistics; ask for the live value */
    my_exec(cap->main, &ignore, "", "SET SESSION information_schema_stats_expiry = 0");
    rc = my_query(cap->main, err, "read auto_increment counters",
                  "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES "
                  "WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT IS NOT NULL",
                  &r);
    if (rc != SNAP_OK)
        return rc;
    while ((row = mysql_fetch_row(r)) != NULL) {
        my_table *t = find_table(cap, row[0]);
        if (t != NULL) {
            free(t->auto_increment);
            t->auto_increment = xstrdup(row[1]);
        }
    }
    mysql_free_result(r);
    return SNAP_OK;
}

/*
 * FLUSH TABLES WITH READ LOCK waits for running queries while it blocks every new write:
 * a query that has run for long would stall the server. Refuse instead (what the user can
 * see: with the PROCESS privilege every session, without it only its own).
 */
static snap_rc long_query_guard(my_cap *cap, long guard, const char *source, snap_err *err)
{
    char *sql = xasprintf("SELECT ID, TIME, USER FROM information_schema.PROCESSLIST "
                          "WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', "
                          "'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL', 'Slave_worker') "
                          "AND USER <> 'system user' AND ID <> CONNECTION_ID() AND TIME >= %ld "
                          "ORDER BY TIME DESC LIMIT 1",
                          guard);
    MYSQL_RES *r;
    MYSQL_ROW row;
    snap_rc rc = my_query(cap->main, err, "look for long queries", sql, &r);

    free(sql);
    if (rc != SNAP_OK)
        return rc;
    if ((row = mysql_fetch_row(r)) != NULL) {
        rc = err_set(err, SNAP_ECONFLICT, 0,
                     "session %s of %s has run a statement for %s s; the global read lock would "
                     "wait for it while blocking every write",
                     row[0], row[2] ? row[2] : "?", row[1]);
        err_hint(err, "wait for it to end (or KILL QUERY %s), or raise long_query_guard in "
                      "[source %s]",
                 row[0], source);
    }
    mysql_free_result(r);
    return rc;
}

/*
 * A safety snapshot of a schema that does not exist (revert --to a new name): an empty
 * schema document, so that reverting to it leaves the schema without tables.
 */
static snap_rc capture_absent(my_cap *cap, snap_err *err)
{
    json_t *doc = json_pack("{s:i,s:s,s:b,s:[],s:[],s:[],s:[],s:[]}", "format", MY_FORMAT,
                            "database", cap->db, "absent", 1, "tables", "views",
                            "triggers", "routines", "events");
    char *text = json_dumps(doc, JSON_SORT_KEYS);
    json_t *info = cat_component_info(snp_component(cap->c));
    json_t *stats = cat_component_stats(snp_component(cap->c));
    arc_writer *w = NULL;
    snap_rc rc;

    err_clear(err);
    rc = snp_writer_new(cap->c, &w, err);
    if (rc == SNAP_OK)
        rc = arc_write_buffer(w, MY_SCHEMA_ENTRY, text, strlen(text), 0600, SNP_DB_MTIME, err);
    if (rc == SNAP_OK)
        rc = arc_writer_finish(w, err);
    arc_writer_free(w);
    json_object_set_new(info, "database", json_string(cap->db));
    json_object_set_new(info, "absent", json_true());
    json_object_set_new(info, "format", json_integer(MY_FORMAT));
    json_object_set_new(stats, "tables", json_integer(0));
    json_object_set_new(stats, "rows", json_integer(0));
    json_object_set_new(stats, "table_rows", json_object());
    free(text);
    json_decref(doc);
    return rc;
}

/* The source's settings: sizes of parts and ranges, how long to wait for the lock. */
typedef struct my_opts {
    uint64_t chunk, split;
    long lock_timeout, guard;
} my_opts;

/* From the source's typed options, checked against the table when they were parsed. */
static void read_options(snp_capture *c, my_opts *o)
{
    const src_opts *so = snp_opts(c);

    o->chunk = so->chunk_size != 0 ? so->chunk_size : DEFAULT_CHUNK;
    o->split = so->split_size;
    o->lock_timeout = (long)so->lock_wait_timeout;
    o->guard = (long)so->long_query_guard;
}

/* Parses the dsn and names the source in the manifest, its password left out. */
static snap_rc open_dsn(my_cap *cap, const char *dsn_s, snap_err *err)
{
    char *redacted;
    snap_rc rc = my_dsn_parse(dsn_s, &cap->dsn, err);

    if (rc != SNAP_OK)
        return rc;
    if (my_dsn_db(cap->dsn) != NULL && !util_utf8_valid(my_dsn_db(cap->dsn))) {
        /* the manifest and the schema document hold it as UTF-8, as the server does */
        rc = err_set(err, SNAP_EUSAGE, 0, "[source %s]: the database name is not valid UTF-8",
                     snp_source_name(cap->c));
        err_hint(err, "MySQL names are UTF-8 (utf8mb4): give the name in UTF-8");
        return rc;
    }
    redacted = my_dsn_redacted(cap->dsn);
    cat_component_set_source(snp_component(cap->c), redacted);
    free(redacted);
    cap->db = my_dsn_db(cap->dsn);
    if (snp_redirect_of(cap->c, NULL) != NULL) {
        /* a deferred safety snapshot: read the displaced schema, record the live one */
        cap->db = snp_redirect_of(cap->c, NULL)->live;
        my_dsn_set_db(cap->dsn, snp_redirect_of(cap->c, NULL)->from);
    }
    return SNAP_OK;
}

/* Every worker connects before the lock, so that the lock is held only for statements. */
static snap_rc open_workers(my_cap *cap, uint64_t split, my_worker **out, size_t *nout, snap_err *err)
{
    size_t nworkers = cap->ctx->jobs > 0 ? (size_t)cap->ctx->jobs : 1, items = 0;
    my_worker *workers;
    snap_rc rc = SNAP_OK;

    /* no more workers than work items: a table, or each range of a big one */
    for (size_t i = 0; i < cap->ntables; i++) {
        uint64_t n = cap->tables[i].pk && cap->tables[i].data_length > split ? cap->tables[i].data_length / split + 1
                                                                              : 1;
        items += n > MAX_RANGES ? MAX_RANGES : (size_t)n;
    }
    if (nworkers > items && items > 0)
        nworkers = items;
    if (nworkers > 64)
        nworkers = 64;
    if (nworkers == 0)
        nworkers = 1;
    workers = xcalloc(nworkers, sizeof *workers);
    *out = workers;
    *nout = nworkers;
    for (size_t i = 0; i < nworkers && rc == SNAP_OK; i++) {
        workers[i].cap = cap;
        rc = my_connect(cap->dsn, my_dsn_db(cap->dsn), &workers[i].m, err);
        if (rc == SNAP_OK)
            rc = my_exec(workers[i].m, err, "set the worker session",
                         "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        if (rc == SNAP_OK)
            rc = my_exec(workers[i].m, err, "set the worker session",
                         "SET character_set_results = NULL, SESSION net_write_timeout = 600");
    }
    return rc;
}

/*
 * The consistent point: under the global read lock every worker and the leader start
 * their snapshot, and the leader reads the binary log position and the counters. The
 * lock is released before this returns, also on an error.
 */
static snap_rc take_consistent_point(my_cap *cap, my_worker *workers, size_t nworkers, const my_opts *o,
                                     bool mariadb, uint64_t *lock_ms, snap_err *err)
{
    const char *name = snp_source_name(cap->c);
    uint64_t t0;
    snap_rc rc = my_execf(cap->main, err, "set lock_wait_timeout", "SET SESSION lock_wait_timeout = %ld",
                          o->lock_timeout);

    if (rc == SNAP_OK)
        rc = long_query_guard(cap, o->guard, name, err);
    if (rc != SNAP_OK)
        return rc;
    t0 = util_now_ms();
    rc = my_exec(cap->main, err, "take the global read lock (FLUSH TABLES WITH READ LOCK)",
                 "FLUSH TABLES WITH READ LOCK");
    if (rc != SNAP_OK) {
        if (mysql_errno(cap->main) == ER_SPECIFIC_ACCESS_DENIED_ERROR)
            err_hint(err, "the consistent point of parallel workers needs the RELOAD "
                          "privilege: GRANT RELOAD ON *.* TO the user of the dsn");
        else if (mysql_errno(cap->main) == ER_LOCK_WAIT_TIMEOUT)
            err_hint(err, "a long query or lock blocked the global read lock; retry, or raise "
                          "lock_wait_timeout in [source %s]", name);
        return rc;
    }
    util_failpoint("snap-mysql-locked");
    for (size_t i = 0; i < nworkers && rc == SNAP_OK; i++)
        rc = my_exec(workers[i].m, err, "start the consistent snapshot",
                     "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    if (rc == SNAP_OK)
        rc = my_exec(cap->main, err, "start the consistent snapshot",
                     "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    if (rc == SNAP_OK) {
        read_positions(cap, cat_component_info(snp_component(cap->c)), mariadb);
        rc = read_auto_increment(cap, err);
    }
    if (rc != SNAP_OK) {
        snap_err ignore;
        my_exec(cap->main, &ignore, "", "UNLOCK TABLES");
        return rc;
    }
    rc = my_exec(cap->main, err, "release the global read lock", "UNLOCK TABLES");
    if (rc != SNAP_OK)
        return rc;
    *lock_ms = util_now_ms() - t0;
    log_debug(cap->ctx, "%s: global read lock held %" PRIu64 " ms", name, *lock_ms);
    return SNAP_OK;
}

/* The schema alone in the first part: revert reads it before any data. */
static snap_rc write_schema(my_cap *cap, json_t **schema, snap_err *err)
{
    arc_writer *w = NULL;
    char *text = NULL;
    snap_rc rc = my_exec(cap->main, err, "set the session", "SET NAMES utf8mb4");

    if (rc == SNAP_OK)
        rc = capture_schema(cap, schema, err);
    if (rc != SNAP_OK)
        return rc;
    text = json_dumps(*schema, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (text == NULL)
        return err_set(err, SNAP_EFAIL, ENOMEM, "cannot encode the schema");
    rc = snp_writer_new(cap->c, &w, err);
    if (rc == SNAP_OK)
        rc = arc_write_buffer(w, MY_SCHEMA_ENTRY, text, strlen(text), 0600, SNP_DB_MTIME, err);
    if (rc == SNAP_OK)
        rc = arc_writer_finish(w, err);
    arc_writer_free(w);
    free(text);
    return rc;
}

/* The data: each item on a worker of the pool, with the worker's connection and writer. */
static snap_rc dump_data(my_cap *cap, my_worker *workers, size_t nworkers, snap_err *err)
{
    my_run run = {.cap = cap, .workers = workers};
    pool_spec spec = {.workers = nworkers, .njobs = cap->nitems, .job = dump_job, .done = dump_done, .arg = &run};
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < nworkers && rc == SNAP_OK; i++)
        rc = snp_writer_new(cap->c, &workers[i].w, err);
    if (rc == SNAP_OK)
        rc = pool_run_spec(cap->ctx, &spec, err);
    return rc;
}

/* A table of info.part_tables: its name, as in table_rows. */
static json_t *table_name(size_t table, void *arg)
{
    const my_cap *cap = arg;
    json_t *v = json_string(cap->tables[table].name);

    return v ? v : json_null();
}

/* The manifest: positions, counters, row counts, what was consistent only under lock. */
static void record_manifest(my_cap *cap, const json_t *schema, bool mariadb, uint64_t lock_ms)
{
    json_t *info = cat_component_info(snp_component(cap->c)), *stats = cat_component_stats(snp_component(cap->c));
    json_t *rows_obj = json_object(), *ai_obj = json_object(), *nontx = json_array();
    uint64_t total_rows = 0;

    json_object_set_new(info, "flavour", json_string(mariadb ? "mariadb" : "mysql"));
    json_object_set_new(info, "server_version", json_string(mysql_get_server_info(cap->main)));
    json_object_set_new(info, "database", json_string(cap->db));
    json_object_set_new(info, "lock_ms", json_integer((json_int_t)lock_ms));
    json_object_set_new(info, "format", json_integer(MY_FORMAT));
    for (size_t i = 0; i < cap->ntables; i++) {
        my_table *t = &cap->tables[i];
        json_object_set_new(rows_obj, t->name, json_integer((json_int_t)t->rows));
        total_rows += t->rows;
        if (t->auto_increment)
            json_object_set_new(ai_obj, t->name, json_integer(strtoll(t->auto_increment, NULL, 10)));
        if (!t->transactional)
            json_array_append_new(nontx, json_string(t->name));
    }
    json_object_set_new(info, "auto_increment", ai_obj);
    json_object_set_new(info, "part_tables", snp_holds_json(cap->holds, cap->c, table_name, cap));
    json_object_set_new(info, "non_transactional", nontx);
    json_object_set_new(info, "objects",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "tables", (json_int_t)cap->ntables,
                                  "views", (json_int_t)json_array_size(json_object_get(schema, "views")),
                                  "triggers", (json_int_t)json_array_size(json_object_get(schema, "triggers")),
                                  "routines", (json_int_t)json_array_size(json_object_get(schema, "routines")),
                                  "events", (json_int_t)json_array_size(json_object_get(schema, "events"))));
    json_object_set_new(stats, "tables", json_integer((json_int_t)cap->ntables));
    json_object_set_new(stats, "rows", json_integer((json_int_t)total_rows));
    json_object_set_new(stats, "table_rows", rows_obj);
    if (json_array_size(nontx) > 0)
        log_warn(cap->ctx, "%s: %zu table(s) are not transactional (%s ...) and are consistent "
                           "only if nobody wrote to them during the snap",
                 snp_source_name(cap->c), json_array_size(nontx), json_string_value(json_array_get(nontx, 0)));
}

static snap_rc my_capture(snp_capture *c, snap_err *err)
{
    my_cap cap;
    my_opts o;
    my_worker *workers = NULL;
    size_t nworkers = 0;
    json_t *schema = NULL;
    const char *dsn_s = snp_opts(c)->dsn;
    uint64_t lock_ms = 0;
    bool mariadb;
    snap_rc rc;

    memset(&cap, 0, sizeof cap);
    pthread_mutex_init(&cap.mu, NULL);
    cap.holds = snp_holds_new();
    cap.c = c;
    cap.ctx = snp_ctx(c);
    if (dsn_s == NULL) {
        rc = err_set(err, SNAP_EUSAGE, 0, "source %s: no dsn", snp_source_name(c));
        err_hint(err, "set dsn = mysql://user@host:port/db in [source %s]", snp_source_name(c));
        goto out;
    }
    read_options(c, &o);
    rc = open_dsn(&cap, dsn_s, err);
    if (rc != SNAP_OK)
        goto out;
    cap.chunk = o.chunk;

    rc = my_connect(cap.dsn, my_dsn_db(cap.dsn), &cap.main, err);
    if (rc == SNAP_ENOTFOUND && snp_allow_missing(c)) {
        rc = capture_absent(&cap, err);
        goto out;
    }
    if (rc != SNAP_OK) {
        if (rc == SNAP_ENOTFOUND)
            err_hint(err, "database %s does not exist on the server", my_dsn_db(cap.dsn));
        goto out;
    }
    mariadb = my_is_mariadb(cap.main);
    rc = list_tables(&cap, err);
    if (rc == SNAP_OK)
        rc = open_workers(&cap, o.split, &workers, &nworkers, err);
    if (rc == SNAP_OK)
        rc = take_consistent_point(&cap, workers, nworkers, &o, mariadb, &lock_ms, err);
    if (rc == SNAP_OK)
        rc = write_schema(&cap, &schema, err);
    if (rc != SNAP_OK)
        goto out;

    qsort(cap.tables, cap.ntables, sizeof *cap.tables, cmp_size_desc);
    rc = plan_items(&cap, o.split, err);
    if (rc != SNAP_OK)
        goto out;
    /* the planning read ends; the workers keep their own snapshots */
    my_exec(cap.main, err, "end the planning transaction", "COMMIT");
    util_failpoint("snap-mysql-before-data");

    rc = dump_data(&cap, workers, nworkers, err);
    if (rc != SNAP_OK)
        goto out;
    record_manifest(&cap, schema, mariadb, lock_ms);
out:
    for (size_t i = 0; i < nworkers; i++) {
        arc_writer_free(workers[i].w);
        mysql_close(workers[i].m);
        free(workers[i].buf);
    }
    free(workers);
    mysql_close(cap.main);
    for (size_t i = 0; i < cap.ntables; i++)
        table_free(&cap.tables[i]);
    free(cap.tables);
    free(cap.items);
    my_dsn_free(cap.dsn);
    json_decref(schema);
    snp_holds_free(cap.holds);
    pthread_mutex_destroy(&cap.mu);
    return rc;
}

/* The data of the database's tables, as the server counts it (information_schema). */
static uint64_t my_estimate(snp_capture *c)
{
    const char *dsn_s = snp_opts(c)->dsn;
    my_dsn *d = NULL;
    MYSQL *m = NULL;
    MYSQL_RES *res = NULL;
    MYSQL_ROW row;
    uint64_t total = 0;
    snap_err ignored;

    if (dsn_s != NULL && my_dsn_parse(dsn_s, &d, &ignored) == SNAP_OK && my_dsn_db(d) != NULL &&
        my_connect(d, my_dsn_db(d), &m, &ignored) == SNAP_OK &&
        my_query(m, &ignored, "count the tables' size",
                 "SELECT COALESCE(SUM(data_length), 0) FROM information_schema.TABLES"
                 " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'", &res) == SNAP_OK &&
        (row = mysql_fetch_row(res)) != NULL && row[0] != NULL)
        total = strtoull(row[0], NULL, 10);
    if (res != NULL)
        mysql_free_result(res);
    if (m != NULL)
        mysql_close(m);
    my_dsn_free(d);
    return total;
}

const snp_driver snp_mysql_driver = {
    .type = "mysql",
    .capture = my_capture,
    .estimate = my_estimate,
};
