/*
 * pg.c: the PostgreSQL source. One consistent point, read in parallel:
 *
 *   leader: BEGIN REPEATABLE READ -> pg_export_snapshot() -> catalog reads (tables,
 *           sequences, database properties, roles) -> pg_dump --snapshot for the DDL
 *   workers (--jobs): BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT -> COPY TO STDOUT,
 *           big tables split by ctid ranges, output cut into entries of chunk_size
 *
 * Memory is bounded by jobs x chunk_size. The layout of the archive is in docs/postgres.md.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engines/pg_client.h"
#include "snapshot.h"
#include "../common/pool.h"
#include "../common/util.h"

#define BLOCK 8192ULL

typedef struct pg_table {
    char *schema, *name, *qname; /* qname: "schema"."name" */
    char *cols;                  /* quoted column list without generated ones; "" for none */
    bool binary;                 /* COPY in binary format (copy_table, docs/formats.md) */
    uint64_t blocks;
    uint64_t rows, bytes, entries; /* filled by workers under cap.lock */
} pg_table;

enum { ITEM_TABLE, ITEM_LOBS };

typedef struct pg_item {
    int kind;
    size_t table, ntables;       /* tables [table, table + ntables): small ones go together */
    unsigned no;                 /* item number within its table */
    uint64_t from, to;           /* block range; to == 0: to the end */
    uint64_t est;                /* estimated bytes, largest first */
} pg_item;

typedef struct pg_cap {
    snp_capture *c;
    snap_ctx *ctx;
    const char *dsn;
    const snp_redirect *from; /* a deferred safety snapshot: the displaced database */
    char snapshot[64];
    uint64_t chunk;
    bool split;  /* split big tables by block ranges ([snap] pg_split_tables) */
    bool binary; /* [snap] pg_copy_format = binary: tables whose every column allows it */
    int server_num;
    pg_table *tables;
    size_t ntables;
    pg_item *items;
    size_t nitems;
    char **lobs; /* oids, as text */
    size_t nlobs;
    uint64_t lo_bytes;
    snp_holds *holds; /* which tables each part holds */

    pthread_mutex_t lock; /* the tables' counts */
} pg_cap;

typedef struct pg_worker {
    pg_cap *cap;
    pool *pool;
    arc_writer *w;
    PGconn *conn;
    char *buf;
    size_t bufsize, len, start; /* start: the header's bytes at buf's front */
    bool binary;       /* the table being copied is in binary format */
    uint64_t since_cut;
    snp_held held;     /* its last entry's part and table */
} pg_worker;

/* The binary COPY format's header (signature, flags 0, no extension) and trailer. */
#define COPY_BIN_HEADER "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0"
#define COPY_BIN_HEADER_LEN 19
#define COPY_BIN_SIG_LEN 11
#define COPY_BIN_TRAILER "\377\377"
#define COPY_BIN_TRAILER_LEN 2

/* A new entry in buf: empty, or the binary header. */
static void entry_start(pg_worker *wk)
{
    wk->start = wk->binary ? COPY_BIN_HEADER_LEN : 0;
    memcpy(wk->buf, COPY_BIN_HEADER, wk->start);
    wk->len = wk->start;
}

/* Takes the binary header off the server's first message: the signature, flags with no
 * critical bit (16-31) set, and the extension area, which is skipped. */
static snap_rc copy_bin_header(char **row, size_t *n, const char *table, snap_err *err)
{
    const unsigned char *p = (const unsigned char *)*row;
    uint32_t flags, ext;

    if (*n >= COPY_BIN_HEADER_LEN && memcmp(p, COPY_BIN_HEADER, COPY_BIN_SIG_LEN) == 0) {
        flags = (uint32_t)p[11] << 24 | (uint32_t)p[12] << 16 | (uint32_t)p[13] << 8 | p[14];
        ext = (uint32_t)p[15] << 24 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 8 | p[18];
        if ((flags & 0xffff0000u) == 0 && ext <= *n - COPY_BIN_HEADER_LEN) {
            *row += COPY_BIN_HEADER_LEN + ext;
            *n -= COPY_BIN_HEADER_LEN + ext;
            return SNAP_OK;
        }
    }
    return err_set(err, SNAP_EFAIL, 0, "cannot copy table %s: the server sent no binary COPY header", table);
}

/* ---- name patterns ---- */

/* A value may hold several patterns separated by spaces or commas (as the command line
 * has always taken them). */
static bool pat_add(const char *value, void *arg)
{
    char *copy = xstrdup(value), *save = NULL;

    for (char *t = strtok_r(copy, " ,", &save); t != NULL; t = strtok_r(NULL, " ,", &save))
        util_strv_push(arg, xstrdup(t));
    free(copy);
    return true;
}

/* The configured patterns: the key as the command line writes it, and its variants. */
static void source_patterns(const util_strv *words, util_strv *out)
{
    for (size_t i = 0; i < words->n; i++)
        pat_add(words->v[i], out);
}

/* SQL: "AND (...)" restricting nspname/relname to the scope (schemas in, tables out). */
static char *scope_sql(PGconn *conn, const util_strv *schemas, const util_strv *excl, const char *nsp,
                       const char *rel)
{
    util_buf s = {0};

    if (schemas->n > 0) {
        util_buf_adds(&s, " AND (false");
        for (size_t i = 0; i < schemas->n; i++) {
            char *sre, *nre, *lit, *piece;
            pg_pattern_regex(schemas->v[i], &sre, &nre);
            lit = pg_literal(conn, nre); /* a schema pattern's own name part */
            piece = xasprintf(" OR %s ~ %s", nsp, lit);
            util_buf_adds(&s, piece);
            free(piece);
            free(lit);
            free(sre);
            free(nre);
        }
        util_buf_adds(&s, ")");
    }
    for (size_t i = 0; i < excl->n; i++) {
        char *sre, *nre, *slit = NULL, *nlit, *piece;
        pg_pattern_regex(excl->v[i], &sre, &nre);
        nlit = pg_literal(conn, nre);
        if (sre != NULL) {
            slit = pg_literal(conn, sre);
            piece = xasprintf(" AND NOT (%s ~ %s AND %s ~ %s)", nsp, slit, rel, nlit);
        } else {
            piece = xasprintf(" AND NOT (%s ~ %s)", rel, nlit);
        }
        util_buf_adds(&s, piece);
        free(piece);
        free(slit);
        free(nlit);
        free(sre);
        free(nre);
    }
    return util_buf_take(&s);
}

/* ---- the leader's catalog reads ---- */

#define NOT_SYSTEM_NSP \
    " n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'" \
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass" \
    " AND d.objid = c.oid AND d.deptype = 'e')"

static snap_rc read_tables(pg_cap *cap, PGconn *conn, const char *scope, snap_err *err)
{
    char *sql = xasprintf(
        "SELECT n.nspname, c.relname, format('%%I.%%I', n.nspname, c.relname),"
        " coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)"
        "   FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
        "   AND NOT a.attisdropped AND a.attgenerated = ''), ''),"
        " pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int,"
        /* Binary COPY only where it means the same in any database and version: types whose
         * OID PostgreSQL's source fixes (below 10000; initdb numbers the rest, and arrays
         * carry their element's OID), with binary input and output, not composite (a row
         * type's columns differ between versions), and not the reg* types, whose binary
         * form is an OID where their text is a name. */
        " NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
        "   JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid"
        "   LEFT JOIN pg_catalog.pg_type el ON el.oid = ty.typelem"
        "   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''"
        "   AND (ty.oid >= 10000 OR ty.typsend = 0 OR ty.typreceive = 0 OR ty.typtype = 'c'"
        "     OR ty.typname LIKE 'reg%%' OR (el.oid IS NOT NULL AND (el.oid >= 10000 OR el.typsend = 0"
        "       OR el.typreceive = 0 OR el.typtype = 'c' OR el.typname LIKE 'reg%%'))))"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND %s%s"
        /* a standby cannot read unlogged tables: their data is left out, as pg_dump does */
        " AND (c.relpersistence <> 'u' OR NOT pg_catalog.pg_is_in_recovery())"
        " ORDER BY n.nspname, c.relname",
        NOT_SYSTEM_NSP, scope);
    PGresult *res;
    snap_rc rc = pg_query(conn, sql, 0, NULL, &res, err);

    free(sql);
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot list tables");
        return rc;
    }
    cap->ntables = (size_t)PQntuples(res);
    cap->tables = xcalloc(cap->ntables, sizeof *cap->tables);
    for (size_t i = 0; i < cap->ntables; i++) {
        pg_table *t = &cap->tables[i];
        t->schema = xstrdup(PQgetvalue(res, (int)i, 0));
        t->name = xstrdup(PQgetvalue(res, (int)i, 1));
        t->qname = xstrdup(PQgetvalue(res, (int)i, 2));
        t->cols = xstrdup(PQgetvalue(res, (int)i, 3));
        t->blocks = strtoull(PQgetvalue(res, (int)i, 4), NULL, 10);
        t->binary = cap->binary && strcmp(PQgetvalue(res, (int)i, 5), "t") == 0;
    }
    PQclear(res);
    return SNAP_OK;
}

/* Locks the tables against DROP and ALTER while the snap runs, as pg_dump does. */
static snap_rc lock_tables(pg_cap *cap, PGconn *conn, snap_err *err)
{
    util_buf s = {0};
    snap_rc rc = SNAP_OK;

    for (size_t i = 0; i < cap->ntables && rc == SNAP_OK; i++) {
        util_buf_adds(&s, s.len == 0 ? "LOCK TABLE ONLY " : ", ");
        util_buf_adds(&s, cap->tables[i].qname);
        if ((i + 1) % 500 == 0 || i + 1 == cap->ntables) {
            util_buf_adds(&s, " IN ACCESS SHARE MODE");
            rc = pg_exec(conn, s.p, err);
            s.len = 0;
        }
    }
    util_buf_free(&s);
    if (rc != SNAP_OK)
        err_prefix(err, "cannot lock the tables");
    return rc;
}

/* setval() of every sequence in scope, read in the snapshot: the SQL the revert runs. */
static snap_rc read_sequences(PGconn *conn, const char *scope, char **out, size_t *outlen,
                              size_t *count, snap_err *err)
{
    char *sql = xasprintf("SELECT format('%%I.%%I', n.nspname, c.relname)"
                          " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                          " WHERE c.relkind = 'S' AND %s%s ORDER BY 1",
                          NOT_SYSTEM_NSP, scope);
    PGresult *res, *v;
    util_buf b = {0};
    snap_rc rc = pg_query(conn, sql, 0, NULL, &res, err);

    free(sql);
    *out = NULL;
    *outlen = 0;
    *count = 0;
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot list sequences");
        return rc;
    }
    for (int i = 0; i < PQntuples(res) && rc == SNAP_OK; i++) {
        const char *q = PQgetvalue(res, i, 0);
        char *lit, *line;
        sql = xasprintf("SELECT last_value, is_called FROM %s", q);
        rc = pg_query(conn, sql, 0, NULL, &v, err);
        free(sql);
        if (rc != SNAP_OK) {
            err_prefix(err, "cannot read sequence %s", q);
            break;
        }
        lit = pg_literal(conn, q);
        line = xasprintf("SELECT pg_catalog.setval(%s, %s, %s);\n", lit, PQgetvalue(v, 0, 0),
                         strcmp(PQgetvalue(v, 0, 1), "t") == 0 ? "true" : "false");
        util_buf_adds(&b, line);
        free(line);
        free(lit);
        PQclear(v);
        (*count)++;
    }
    PQclear(res);
    *outlen = b.len;
    *out = util_buf_take(&b);
    return rc;
}

/* owner, encoding and locale, settings, comment, privileges, connection limit */
static snap_rc read_database(pg_cap *cap, PGconn *conn, json_t *info, snap_err *err)
{
    const char *locale = cap->server_num >= 150000
                             ? "d.datlocprovider::text, 'icu_locale', d.daticulocale,"
                             : "'c'::text, 'icu_locale', NULL::text,";
    char *sql = xasprintf(
        "SELECT json_build_object("
        " 'name', d.datname, 'owner', pg_catalog.pg_get_userbyid(d.datdba),"
        " 'encoding', pg_catalog.pg_encoding_to_char(d.encoding), 'collate', d.datcollate,"
        " 'ctype', d.datctype, 'locale_provider', %s 'connection_limit', d.datconnlimit,"
        " 'allow_connections', d.datallowconn, 'tablespace', t.spcname,"
        " 'comment', pg_catalog.shobj_description(d.oid, 'pg_database'),"
        " 'acl_default', d.datacl IS NULL,"
        " 'acl', (SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0"
        "   THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type,"
        "   'grantable', a.is_grantable) ORDER BY a.grantee, a.privilege_type), '[]')"
        "   FROM pg_catalog.aclexplode(d.datacl) a),"
        " 'settings', (SELECT coalesce(json_agg(s), '[]') FROM pg_catalog.pg_db_role_setting r,"
        "   unnest(r.setconfig) s WHERE r.setdatabase = d.oid AND r.setrole = 0),"
        " 'role_settings', (SELECT coalesce(json_agg(json_build_object('role',"
        "   pg_catalog.pg_get_userbyid(r.setrole), 'setting', s)), '[]')"
        "   FROM pg_catalog.pg_db_role_setting r, unnest(r.setconfig) s"
        "   WHERE r.setdatabase = d.oid AND r.setrole <> 0))::text"
        " FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace"
        " WHERE d.datname = current_database()",
        locale);
    PGresult *res;
    json_t *db;
    snap_rc rc = pg_query(conn, sql, 0, NULL, &res, err);

    free(sql);
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot read the database's properties");
        return rc;
    }
    db = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (db == NULL)
        return err_set(err, SNAP_EFAIL, 0, "cannot parse the database's properties");
    json_object_set_new(info, "database", db);
    return SNAP_OK;
}

/* The roles the dump names (owners, grantees, policy roles, role settings): revert checks them. */
static snap_rc read_roles(PGconn *conn, json_t *info, snap_err *err)
{
    static const char sql[] =
        "WITH db AS (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
        " SELECT coalesce(json_agg(DISTINCT r.rolname ORDER BY r.rolname), '[]')::text FROM ("
        "  SELECT s.refobjid AS oid FROM pg_catalog.pg_shdepend s, db"
        "   WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass AND (s.dbid = db.oid"
        "   OR (s.dbid = 0 AND s.classid = 'pg_catalog.pg_database'::regclass AND s.objid = db.oid))"
        "  UNION SELECT d.datdba FROM pg_catalog.pg_database d, db WHERE d.oid = db.oid"
        "  UNION SELECT setrole FROM pg_catalog.pg_db_role_setting, db WHERE setdatabase = db.oid"
        "   AND setrole <> 0"
        " ) o JOIN pg_catalog.pg_roles r ON r.oid = o.oid";
    PGresult *res;
    snap_rc rc = pg_query(conn, sql, 0, NULL, &res, err);

    if (rc != SNAP_OK) {
        err_prefix(err, "cannot list the roles the database needs");
        return rc;
    }
    json_object_set_new(info, "roles", json_loads(PQgetvalue(res, 0, 0), 0, NULL));
    PQclear(res);
    return SNAP_OK;
}

static snap_rc read_lobs(pg_cap *cap, PGconn *conn, snap_err *err)
{
    PGresult *res;
    /* sizes come from pg_largeobject, which only superusers read: otherwise the list alone */
    bool sizes;
    snap_rc rc = pg_query(conn, "SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')", 0, NULL,
                          &res, err);

    if (rc != SNAP_OK) {
        err_prefix(err, "cannot list large objects");
        return rc;
    }
    sizes = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    rc = pg_query(conn,
                  sizes ? "SELECT l.oid::text, (SELECT coalesce(sum(length(p.data)), 0) FROM"
                          " pg_catalog.pg_largeobject p WHERE p.loid = l.oid)"
                          " FROM pg_catalog.pg_largeobject_metadata l ORDER BY l.oid"
                        : "SELECT oid::text, 0 FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
                  0, NULL, &res, err);

    if (rc != SNAP_OK) {
        err_prefix(err, "cannot list large objects");
        return rc;
    }
    cap->nlobs = (size_t)PQntuples(res);
    cap->lobs = xcalloc(cap->nlobs, sizeof *cap->lobs);
    for (size_t i = 0; i < cap->nlobs; i++) {
        cap->lobs[i] = xstrdup(PQgetvalue(res, (int)i, 0));
        cap->lo_bytes += strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
    }
    PQclear(res);
    return SNAP_OK;
}

static int by_est_desc(const void *a, const void *b)
{
    const pg_item *x = a, *y = b;

    if (x->est != y->est)
        return x->est < y->est ? 1 : -1;
    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    return x->no < y->no ? -1 : x->no > y->no;
}

/*
 * Whether table i joins the item before it, a group of small whole tables: every item
 * ends its worker's part, so that what a part holds does not depend on which worker took
 * which item, and small tables share a part instead of one each. The groups depend on the
 * tables' names and sizes only: an unchanged database is cut the same way every time.
 */
static bool join_group(const pg_cap *cap, size_t n, size_t i)
{
    const pg_item *prev = n > 0 ? &cap->items[n - 1] : NULL;
    uint64_t est = cap->tables[i].blocks * BLOCK + 1;

    return prev != NULL && prev->kind == ITEM_TABLE && prev->from == 0 && prev->to == 0 &&
           prev->table + prev->ntables == i && prev->est + est <= cap->chunk / 2 &&
           !snp_group_mark(cap->tables[i].name);
}

/* Work items: a table, or a block range of a big one (TID range scans, PostgreSQL 14+). */
static void plan_items(pg_cap *cap)
{
    uint64_t per = cap->chunk / BLOCK;
    size_t n = 0, alloc = cap->ntables + 1;

    if (per == 0)
        per = 1;
    cap->items = xcalloc(alloc, sizeof *cap->items);
    for (size_t i = 0; i < cap->ntables; i++) {
        const pg_table *t = &cap->tables[i];
        uint64_t ranges = cap->split && cap->server_num >= 140000 && t->blocks > 2 * per
                              ? (t->blocks + per - 1) / per
                              : 1;
        if (ranges == 1 && join_group(cap, n, i)) {
            cap->items[n - 1].ntables++;
            cap->items[n - 1].est += t->blocks * BLOCK + 1;
            continue;
        }
        for (uint64_t r = 0; r < ranges; r++) {
            if (n == alloc)
                cap->items = xrealloc(cap->items, (alloc *= 2) * sizeof *cap->items);
            pg_item *it = &cap->items[n++];
            it->kind = ITEM_TABLE;
            it->table = i;
            it->ntables = 1;
            it->no = (unsigned)r;
            if (ranges > 1) {
                it->from = r * per;
                it->to = r + 1 == ranges ? 0 : (r + 1) * per; /* the last range is open */
            }
            it->est = (ranges > 1 ? per : t->blocks) * BLOCK + 1;
        }
    }
    if (cap->nlobs > 0) {
        if (n == alloc)
            cap->items = xrealloc(cap->items, (alloc + 1) * sizeof *cap->items);
        cap->items[n].kind = ITEM_LOBS;
        cap->items[n].est = cap->lo_bytes + 1;
        n++;
    }
    cap->nitems = n;
    qsort(cap->items, n, sizeof *cap->items, by_est_desc);
}

/* ---- workers ---- */

/*
 * Writes the buffered rows as one entry; closes the part at a row that marks one (after a
 * quarter chunk), or after four chunks whatever the rows. Entries end at marked rows too
 * (copy_table): an unchanged stretch of a table is cut into the same entries and parts in
 * every snap, even after a row before it changed, and its parts are reused.
 */
static snap_rc flush_entry(pg_worker *wk, size_t table, const char *path, bool part_mark, snap_err *err)
{
    snap_rc rc;
    uint64_t chunk = wk->cap->chunk;

    if (wk->binary) { /* each entry a whole binary COPY file: header, rows, trailer */
        memcpy(wk->buf + wk->len, COPY_BIN_TRAILER, COPY_BIN_TRAILER_LEN);
        wk->len += COPY_BIN_TRAILER_LEN;
    }
    rc = arc_write_buffer(wk->w, path, wk->buf, wk->len, 0644, SNP_DB_MTIME, err);
    if (rc != SNAP_OK)
        return rc;
    snp_holds_note(wk->cap->holds, wk->w, &wk->held, table);
    wk->since_cut += wk->len;
    entry_start(wk);
    if ((part_mark && wk->since_cut >= chunk / 4) || wk->since_cut >= 4 * chunk) {
        wk->since_cut = 0;
        rc = arc_writer_cut(wk->w, err);
    }
    return rc;
}

/* The entries of a table in binary COPY format end in .bin, in text format in .copy. */
static char *entry_path(const pg_worker *wk, const pg_item *it, unsigned seq)
{
    return xasprintf(PG_DATA_DIR "%06zu/%06u-%06u.%s", it->table, it->no, seq, wk->binary ? "bin" : "copy");
}

typedef struct pg_copied {
    unsigned seq;
    uint64_t bytes, entries;
} pg_copied;

/* The rows buffered so far as the table's next entry; on failure the COPY is cancelled. */
static snap_rc copy_entry(pg_worker *wk, const pg_item *it, pg_copied *cp, bool part_mark, snap_err *err)
{
    char *path = entry_path(wk, it, cp->seq++);
    snap_rc rc;

    cp->bytes += wk->len - wk->start;
    cp->entries++;
    rc = flush_entry(wk, it->table, path, part_mark, err);
    free(path);
    if (rc == SNAP_OK && ctx_interrupted(wk->cap->ctx, err))
        rc = SNAP_EINTR;
    else if (rc == SNAP_OK && pool_stopping(wk->pool))
        rc = err_set(err, SNAP_EFAIL, 0, "stopped");
    if (rc != SNAP_OK) {
        /* stop the server sending the rest; drain what is in flight */
        PGcancel *cc = PQgetCancel(wk->conn);
        char ebuf[128];
        PQcancel(cc, ebuf, sizeof ebuf);
        PQfreeCancel(cc);
    }
    return rc;
}

static snap_rc copy_table(pg_worker *wk, const pg_item *it, snap_err *err)
{
    pg_cap *cap = wk->cap;
    pg_table *t = &cap->tables[it->table];
    char *sql, msg[512];
    PGresult *res;
    uint64_t rows = 0;
    pg_copied cp = {0};
    snap_rc rc = SNAP_OK;

    const char *fmt = t->binary ? " (FORMAT binary)" : "";
    bool header_done = !t->binary; /* binary: the header, sent with the first message, is taken off */

    if (it->from == 0 && it->to == 0)
        sql = *t->cols ? xasprintf("COPY %s (%s) TO STDOUT%s", t->qname, t->cols, fmt)
                       : xasprintf("COPY %s TO STDOUT%s", t->qname, fmt);
    else if (it->to == 0)
        sql = xasprintf("COPY (SELECT %s FROM ONLY %s WHERE ctid >= '(%llu,0)'::tid) TO STDOUT%s", t->cols,
                        t->qname, (unsigned long long)it->from, fmt);
    else
        sql = xasprintf("COPY (SELECT %s FROM ONLY %s WHERE ctid >= '(%llu,0)'::tid AND ctid < '(%llu,0)'::tid)"
                        " TO STDOUT%s",
                        t->cols, t->qname, (unsigned long long)it->from, (unsigned long long)it->to, fmt);
    res = PQexec(wk->conn, sql);
    free(sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        bool denied = strcmp(pg_sqlstate(res), "42501") == 0;
        pg_errmsg(wk->conn, res, msg, sizeof msg);
        PQclear(res);
        err_set(err, PQstatus(wk->conn) != CONNECTION_OK || denied ? SNAP_EUNREACH : SNAP_EFAIL, 0,
                "cannot copy table %s: %s", t->qname, msg);
        if (denied)
            err_hint(err, "snap as the database's owner or a role that may read every table, "
                          "or leave the table out with --pg-exclude-table");
        return err->code;
    }
    PQclear(res);
    wk->binary = t->binary;
    entry_start(wk);
    for (;;) {
        char *msgbuf = NULL, *row;
        int got = PQgetCopyData(wk->conn, &msgbuf, 0);
        size_t n;
        if (got == -1)
            break;
        if (got < 0) {
            pg_errmsg(wk->conn, NULL, msg, sizeof msg);
            rc = err_set(err, SNAP_EUNREACH, 0, "cannot copy table %s: %s", t->qname, msg);
            break;
        }
        row = msgbuf;
        n = (size_t)got;
        if (rc == SNAP_OK && !header_done)
            rc = copy_bin_header(&row, &n, t->qname, err);
        header_done = true;
        /* binary: the trailer comes as a message of its own; each entry gets its own */
        if (rc != SNAP_OK || n == 0 || (wk->binary && n == COPY_BIN_TRAILER_LEN &&
                                        memcmp(row, COPY_BIN_TRAILER, COPY_BIN_TRAILER_LEN) == 0)) {
            PQfreemem(msgbuf);
            continue;
        }
        if (wk->len > wk->start && wk->len + n > cap->chunk)
            rc = copy_entry(wk, it, &cp, false, err);
        if (rc == SNAP_OK) {
            if (wk->len + n + COPY_BIN_TRAILER_LEN > wk->bufsize) { /* a single row bigger than a chunk */
                wk->bufsize = wk->len + n + COPY_BIN_TRAILER_LEN;
                wk->buf = xrealloc(wk->buf, wk->bufsize);
            }
            memcpy(wk->buf + wk->len, row, n);
            wk->len += n;
            rows++;
            if (wk->len >= cap->chunk / 8 && snp_row_mark(row, n, cap->chunk / 4))
                rc = copy_entry(wk, it, &cp, snp_row_mark(row, n, cap->chunk), err);
        }
        PQfreemem(msgbuf);
    }
    /* the COPY's final status */
    while ((res = PQgetResult(wk->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == SNAP_OK) {
            pg_errmsg(wk->conn, res, msg, sizeof msg);
            rc = err_set(err, PQstatus(wk->conn) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0,
                         "cannot copy table %s: %s", t->qname, msg);
        }
        PQclear(res);
    }
    if (rc == SNAP_OK && (wk->len > wk->start || cp.seq == 0)) {
        /* the last entry; an empty table or range still leaves one, so revert sees it */
        char *path = entry_path(wk, it, cp.seq++);
        cp.bytes += wk->len - wk->start;
        cp.entries++;
        rc = flush_entry(wk, it->table, path, false, err);
        free(path);
    }
    if (wk->bufsize > cap->chunk + COPY_BIN_TRAILER_LEN) { /* back to a chunk after a bigger row */
        wk->bufsize = cap->chunk + COPY_BIN_TRAILER_LEN;
        wk->buf = xrealloc(wk->buf, wk->bufsize);
    }
    wk->len = 0;
    if (rc == SNAP_OK) {
        pthread_mutex_lock(&cap->lock);
        t->rows += rows;
        t->bytes += cp.bytes;
        t->entries += cp.entries;
        pthread_mutex_unlock(&cap->lock);
    }
    return rc;
}

/* Large objects, read with lo_get in pieces of at most a chunk: lo/<oid>/<offset>. */
static snap_rc copy_lobs(pg_worker *wk, snap_err *err)
{
    pg_cap *cap = wk->cap;
    const int piece = (int)(cap->chunk < (64ULL << 20) ? cap->chunk : (64ULL << 20));
    char len_s[24], msg[512];
    snap_rc rc = SNAP_OK;

    snprintf(len_s, sizeof len_s, "%d", piece);
    for (size_t i = 0; i < cap->nlobs && rc == SNAP_OK; i++) {
        for (unsigned long long off = 0;;) {
            char off_s[24], *path;
            const char *params[3] = {cap->lobs[i], off_s, len_s};
            PGresult *res;
            size_t n;

            snprintf(off_s, sizeof off_s, "%llu", off);
            res = PQexecParams(wk->conn, "SELECT pg_catalog.lo_get($1::oid, $2::bigint, $3::int)", 3, NULL,
                               params, NULL, NULL, 1);
            if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                pg_errmsg(wk->conn, res, msg, sizeof msg);
                PQclear(res);
                rc = err_set(err, PQstatus(wk->conn) == CONNECTION_OK ? SNAP_EFAIL : SNAP_EUNREACH, 0,
                             "cannot read large object %s: %s", cap->lobs[i], msg);
                break;
            }
            n = (size_t)PQgetlength(res, 0, 0);
            if (n == 0 && off > 0) {
                PQclear(res);
                break;
            }
            path = xasprintf(PG_LO_DIR "%s/%012llu", cap->lobs[i], off);
            rc = arc_write_buffer(wk->w, path, PQgetvalue(res, 0, 0), n, 0644, SNP_DB_MTIME, err);
            free(path);
            PQclear(res);
            wk->since_cut += n;
            off += n;
            if (rc != SNAP_OK || n < (size_t)piece)
                break;
        }
        if (rc == SNAP_OK && ctx_interrupted(cap->ctx, err))
            rc = SNAP_EINTR;
    }
    if (rc == SNAP_OK && wk->since_cut >= cap->chunk) {
        wk->since_cut = 0;
        rc = arc_writer_cut(wk->w, err);
    }
    return rc;
}

static snap_rc worker_begin(pg_worker *wk, snap_err *err)
{
    char *sql;
    snap_rc rc = pg_connect(wk->cap->dsn, wk->cap->from ? wk->cap->from->from : NULL, &wk->conn, err);

    if (rc != SNAP_OK)
        return rc;
    /* a synchronized scan starts where another scan of the table is: rows in another order;
     * an empty search_path prints reg* values schema-qualified, as pg_dump does */
    rc = pg_exec(wk->conn, "SET synchronize_seqscans = off; SELECT pg_catalog.set_config('search_path', '', false)",
                 err);
    if (rc == SNAP_OK)
        rc = pg_exec(wk->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err);
    if (rc == SNAP_OK) {
        sql = xasprintf("SET TRANSACTION SNAPSHOT '%s'", wk->cap->snapshot);
        rc = pg_exec(wk->conn, sql, err);
        free(sql);
        if (rc != SNAP_OK)
            err_prefix(err, "cannot import snapshot %s", wk->cap->snapshot);
    }
    return rc;
}

/* The capture's pool: the workers copy the items while the leader dumps the schema. */
typedef struct pg_run {
    pg_cap *cap;
    pg_worker *workers;
    PGconn *conn; /* the leader's */
    const util_strv *schemas, *excl;
    arc_writer *lw;
} pg_run;

/* One item on one worker; the worker connects, in the exported snapshot, at its first. */
static snap_rc copy_item(pool *p, void *arg, size_t worker, size_t job, snap_err *err)
{
    pg_run *run = arg;
    pg_worker *wk = &run->workers[worker];
    pg_item *it = &run->cap->items[job];
    snap_rc rc;

    wk->pool = p;
    if (wk->buf == NULL) {
        wk->bufsize = run->cap->chunk + COPY_BIN_TRAILER_LEN;
        wk->buf = xmalloc(wk->bufsize);
    }
    if (wk->conn == NULL && (rc = worker_begin(wk, err)) != SNAP_OK)
        return rc;
    rc = SNAP_OK;
    if (it->kind == ITEM_LOBS)
        rc = copy_lobs(wk, err);
    else
        for (size_t k = 0; k < it->ntables && rc == SNAP_OK; k++) {
            pg_item one = *it;
            one.table = it->table + k;
            rc = copy_table(wk, &one, err);
        }
    if (rc == SNAP_OK && ctx_interrupted(run->cap->ctx, err))
        rc = SNAP_EINTR;
    /* an item ends its part: a part's bytes do not depend on the order workers took items in */
    wk->since_cut = 0;
    if (rc == SNAP_OK)
        rc = arc_writer_cut(wk->w, err);
    return rc;
}

/* A worker's last part, unless the capture is failing anyway; then its connection. */
static snap_rc worker_done(pool *p, void *arg, size_t worker, snap_err *err)
{
    pg_worker *wk = &((pg_run *)arg)->workers[worker];
    snap_rc rc = SNAP_OK;

    if (!pool_stopping(p))
        rc = arc_writer_finish(wk->w, err);
    free(wk->buf);
    wk->buf = NULL;
    PQfinish(wk->conn);
    wk->conn = NULL;
    return rc;
}

/* ---- the leader ---- */

static snap_rc dump_schema(pg_cap *cap, PGconn *conn, const util_strv *schemas, const util_strv *excl,
                           arc_writer *w, snap_err *err)
{
    const char *bindir = snp_opts(cap->c)->pg_bindir;
    char *tool = NULL, *snap_arg = NULL, **argv = NULL;
    size_t n = 0;
    int major, fd = -1;
    struct archive_entry *e;
    off_t size;
    snap_rc rc = pg_tool_find(bindir, "pg_dump", &tool, &major, err);

    if (rc != SNAP_OK)
        return rc;
    argv = xcalloc(12 + 2 * (schemas->n + excl->n), sizeof *argv);
    snap_arg = xasprintf("--snapshot=%s", cap->snapshot);
    argv[n++] = tool;
    argv[n++] = (char *)"--format=custom";
    argv[n++] = (char *)"--compress=0";
    argv[n++] = (char *)"--section=pre-data";
    argv[n++] = (char *)"--section=post-data";
    argv[n++] = snap_arg;
    argv[n++] = (char *)"--no-sync";
    for (size_t i = 0; i < schemas->n; i++) {
        argv[n++] = (char *)"--schema";
        argv[n++] = schemas->v[i];
    }
    for (size_t i = 0; i < excl->n; i++) {
        argv[n++] = (char *)"--exclude-table";
        argv[n++] = excl->v[i];
    }
    argv[n] = NULL;
    fd = pg_tmpfile(err);
    if (fd < 0) {
        rc = err->code;
        goto out;
    }
    rc = pg_tool_run(conn, NULL, NULL, argv, fd, NULL, 0, cap->ctx, err);
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot dump the schema");
        goto out;
    }
    size = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    e = archive_entry_new();
    archive_entry_set_pathname(e, PG_SCHEMA_ENTRY);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, size);
    archive_entry_set_mtime(e, SNP_DB_MTIME, 0);
    archive_entry_set_nlink(e, 1);
    rc = arc_write_entry(w, e, fd, err);
    archive_entry_free(e);
out:
    if (fd >= 0)
        close(fd);
    free(snap_arg);
    free(argv);
    free(tool);
    return rc;
}

/* the DDL, in the same snapshot, while the workers copy */
static snap_rc lead_schema(pool *p, void *arg, snap_err *err)
{
    pg_run *run = arg;
    snap_rc rc = dump_schema(run->cap, run->conn, run->schemas, run->excl, run->lw, err);

    (void)p;
    if (rc == SNAP_OK)
        rc = arc_writer_finish(run->lw, err);
    return rc;
}

/* pg_dump must be at least the server's major version to dump it faithfully. */
static snap_rc check_pg_dump(pg_cap *cap, json_t *info, snap_err *err)
{
    char *tool = NULL;
    int major;
    snap_rc rc = pg_tool_find(snp_opts(cap->c)->pg_bindir, "pg_dump", &tool, &major, err);

    if (rc != SNAP_OK)
        return rc;
    if (major < cap->server_num / 10000) {
        err_set(err, SNAP_EFAIL, 0, "%s is version %d, older than the server (%d): it cannot dump it faithfully",
                tool, major, cap->server_num / 10000);
        err_hint(err, "install the client programs of PostgreSQL %d or newer (Debian: postgresql-client-%d), "
                      "or set pg_bindir to their directory",
                 cap->server_num / 10000, cap->server_num / 10000);
        rc = SNAP_EFAIL;
    }
    json_object_set_new(info, "pg_dump_major", json_integer(major));
    free(tool);
    return rc;
}

/* The dsn (named in the manifest without its password) and the sizes of the parts. */
static snap_rc read_options(pg_cap *cap, snap_err *err)
{
    snp_capture *c = cap->c;
    char *redacted;
    const char *format = NULL;
    snap_rc rc;

    cap->dsn = snp_opts(c)->dsn;
    if (cap->dsn == NULL)
        cap->dsn = ""; /* libpq's defaults: PG* variables, the service file */
    redacted = pg_redact_dsn(cap->dsn);
    if (redacted == NULL) {
        rc = err_set(err, SNAP_EUSAGE, 0, "invalid postgres dsn");
        err_hint(err, "use postgresql://user@host:port/dbname or key=value pairs (host=... dbname=...);"
                      " a '/', '@', '?' or '#' in a URI's password must be %%-encoded, or better,"
                      " leave the password to ~/.pgpass or PGPASSWORD");
        return rc;
    }
    cat_component_set_source(snp_component(c), redacted);
    free(redacted);
    rc = cfg_size(cap->ctx->cfg, "snap", "pg_chunk_size", &cap->chunk, err);
    if (snp_opts(c)->chunk_size != 0)
        cap->chunk = snp_opts(c)->chunk_size;
    /*
     * A TID range scan costs the server about twice a plain COPY per row (PostgreSQL 15):
     * splitting big tables pays only with more cores than the table count can use.
     */
    if (rc == SNAP_OK)
        rc = cfg_bool(cap->ctx->cfg, "snap", "pg_split_tables", &cap->split, err);
    if (rc == SNAP_OK)
        rc = cfg_str(cap->ctx->cfg, "snap", "pg_copy_format", &format, err);
    cap->binary = rc == SNAP_OK && strcmp(format, "binary") == 0;
    if (rc == SNAP_OK && cap->chunk < 65536)
        rc = err_set(err, SNAP_EUSAGE, 0, "the postgres chunk size must be at least 64K");
    return rc;
}

/* The consistent point: a snapshot exported for the workers, and what the manifest says of
 * the server. Names a SQL_ASCII server or the command line hands us may not be UTF-8: the
 * manifest cannot hold them, and a field that is left out fails the revert later. */
static snap_rc export_snapshot(pg_cap *cap, PGconn *conn, const char *where, const util_strv *schemas,
                               const util_strv *excl, json_t *info, snap_err *err)
{
    PGresult *res = NULL;
    bool bad = false;
    json_t *js, *jx;
    snap_rc rc = pg_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err);

    if (rc == SNAP_OK)
        rc = pg_query(conn,
                      "SELECT pg_catalog.pg_export_snapshot(), current_database(),"
                      " current_setting('server_version'), pg_catalog.pg_is_in_recovery(),"
                      " CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()"
                      " ELSE pg_catalog.pg_current_wal_lsn() END::text, current_user",
                      0, NULL, &res, err);
    if (rc != SNAP_OK) {
        err_prefix(err, "cannot export a snapshot on %s", where);
        PQclear(res);
        return rc;
    }
    snprintf(cap->snapshot, sizeof cap->snapshot, "%s", PQgetvalue(res, 0, 0));
    js = json_array();
    jx = json_array();
    json_object_set_new(info, "server_version", cat_json_text(PQgetvalue(res, 0, 2), &bad));
    json_object_set_new(info, "server_version_num", json_integer(cap->server_num));
    /* the displaced database is recorded as the live one it was */
    json_object_set_new(info, "database_name", cat_json_text(cap->from ? cap->from->live : PQgetvalue(res, 0, 1), &bad));
    json_object_set_new(info, "standby", json_boolean(strcmp(PQgetvalue(res, 0, 3), "t") == 0));
    json_object_set_new(info, "wal_lsn", cat_json_text(PQgetvalue(res, 0, 4), &bad));
    json_object_set_new(info, "user", cat_json_text(PQgetvalue(res, 0, 5), &bad));
    for (size_t i = 0; i < schemas->n; i++)
        json_array_append_new(js, cat_json_text(schemas->v[i], &bad));
    for (size_t i = 0; i < excl->n; i++)
        json_array_append_new(jx, cat_json_text(excl->v[i], &bad));
    json_object_set_new(info, "schemas", js);
    json_object_set_new(info, "exclude_tables", jx);
    PQclear(res);
    if (bad) {
        rc = err_set(err, SNAP_EUSAGE, 0, "%s: the database name, user or a schema pattern is not valid UTF-8",
                     where);
        err_hint(err, "the manifest holds names as UTF-8: rename the database or user, or give patterns in UTF-8");
        return rc;
    }
    log_debug(cap->ctx, "postgres %s: snapshot %s", where, cap->snapshot);
    return SNAP_OK;
}

/* What the snapshot holds: tables (locked against DDL), the database, roles, sequences,
 * large objects; then the items the workers copy. */
static snap_rc read_catalog(pg_cap *cap, PGconn *conn, const util_strv *schemas, const util_strv *excl, json_t *info,
                            char **seq_sql, size_t *seq_len, size_t *nseq, snap_err *err)
{
    char *scope = scope_sql(conn, schemas, excl, "n.nspname", "c.relname");
    snap_rc rc = read_tables(cap, conn, scope, err);

    if (rc == SNAP_OK)
        rc = lock_tables(cap, conn, err);
    if (rc == SNAP_OK)
        rc = read_database(cap, conn, info, err);
    if (rc == SNAP_OK)
        rc = read_roles(conn, info, err);
    if (rc == SNAP_OK)
        rc = read_sequences(conn, scope, seq_sql, seq_len, nseq, err);
    if (rc == SNAP_OK && schemas->n == 0) /* pg_dump leaves large objects out of a schema-scoped dump too */
        rc = read_lobs(cap, conn, err);
    if (rc == SNAP_OK)
        plan_items(cap);
    free(scope);
    return rc;
}

/* The leader's part comes first: the revert reads the schema before any data. */
static snap_rc write_meta(pg_cap *cap, arc_writer *lw, json_t *info, const char *seq_sql, size_t seq_len,
                          snap_err *err)
{
    json_t *meta = json_pack("{s:i, s:s, s:O, s:O, s:O}", "format", 1, "snapshot", cap->snapshot, "server_version",
                             json_object_get(info, "server_version"), "database",
                             json_object_get(info, "database_name"), "wal_lsn", json_object_get(info, "wal_lsn"));
    char *meta_txt = json_dumps(meta, JSON_INDENT(2));
    snap_rc rc;

    json_decref(meta);
    rc = arc_write_buffer(lw, PG_META_ENTRY, meta_txt, strlen(meta_txt), 0644, SNP_DB_MTIME, err);
    if (rc == SNAP_OK)
        rc = arc_write_buffer(lw, PG_SEQ_ENTRY, seq_sql, seq_len, 0644, SNP_DB_MTIME, err);
    free(meta_txt);
    return rc;
}

/* The data on the workers, each with a writer of its own, while the leader dumps the DDL. */
static snap_rc copy_data(pg_cap *cap, PGconn *conn, const util_strv *schemas, const util_strv *excl, arc_writer *lw,
                         snap_err *err)
{
    size_t nworkers = (size_t)(cap->ctx->jobs > 0 ? cap->ctx->jobs : 1), nwriters = 0;
    pg_worker *workers;
    snap_rc rc = SNAP_OK;

    if (nworkers > cap->nitems)
        nworkers = cap->nitems;
    workers = xcalloc(nworkers ? nworkers : 1, sizeof *workers);
    for (size_t i = 0; i < nworkers && rc == SNAP_OK; i++) {
        workers[i].cap = cap;
        rc = snp_writer_new(cap->c, &workers[i].w, err);
        if (rc == SNAP_OK)
            nwriters++;
    }
    if (rc == SNAP_OK) {
        pg_run run = {.cap = cap, .workers = workers, .conn = conn, .schemas = schemas, .excl = excl, .lw = lw};
        pool_spec spec = {.workers = nworkers, .njobs = cap->nitems, .job = copy_item, .done = worker_done,
                          .lead = lead_schema, .arg = &run};
        rc = pool_run_spec(cap->ctx, &spec, err);
    }
    for (size_t i = 0; i < nwriters; i++)
        arc_writer_free(workers[i].w);
    free(workers);
    return rc;
}

static json_t *table_id(size_t table, void *arg)
{
    (void)arg;
    return json_integer((json_int_t)table);
}

/* The tables and counts in the manifest. */
static snap_rc record_tables(pg_cap *cap, cat_component *comp, size_t nseq, const char *where, snap_err *err)
{
    json_t *info = cat_component_info(comp), *stats = cat_component_stats(comp), *tables = json_array();
    uint64_t total_rows = 0, total_bytes = 0;
    snap_rc rc = SNAP_OK;

    bool binary = false;

    for (size_t i = 0; i < cap->ntables; i++) {
        pg_table *t = &cap->tables[i];
        json_t *tj = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:s}", "id", (json_int_t)i, "schema", t->schema,
                               "name", t->name, "columns", t->cols, "rows", (json_int_t)t->rows, "bytes",
                               (json_int_t)t->bytes, "copy_format", t->binary ? "binary" : "text");
        if (tj == NULL && rc == SNAP_OK) { /* a name that is not UTF-8: the table would be lost */
            rc = err_set(err, SNAP_EUSAGE, 0, "%s: the name of table %zu or of its columns is not valid UTF-8",
                         where, i);
            err_hint(err, "the manifest holds names as UTF-8: rename the table, or leave it out with "
                          "--pg-exclude-table");
        }
        json_array_append_new(tables, tj);
        binary = binary || t->binary;
        total_rows += t->rows;
        total_bytes += t->bytes;
    }
    json_object_set_new(info, "tables", tables);
    if (rc != SNAP_OK)
        return rc;
    if (binary) /* readers before format 3 would load binary entries as text: they refuse it */
        cat_component_require_format(comp, CAT_FORMAT_BINCOPY);
    json_object_set_new(info, "chunk_size", json_integer((json_int_t)cap->chunk));
    json_object_set_new(info, "part_tables", snp_holds_json(cap->holds, cap->c, table_id, NULL));
    json_object_set_new(stats, "tables", json_integer((json_int_t)cap->ntables));
    json_object_set_new(stats, "rows", json_integer((json_int_t)total_rows));
    json_object_set_new(stats, "bytes", json_integer((json_int_t)total_bytes));
    json_object_set_new(stats, "sequences", json_integer((json_int_t)nseq));
    json_object_set_new(stats, "large_objects", json_integer((json_int_t)cap->nlobs));
    log_debug(cap->ctx, "postgres %s: %zu tables, %llu rows", where, cap->ntables, (unsigned long long)total_rows);
    return SNAP_OK;
}

static void cap_free(pg_cap *cap)
{
    for (size_t i = 0; i < cap->ntables; i++) {
        free(cap->tables[i].schema);
        free(cap->tables[i].name);
        free(cap->tables[i].qname);
        free(cap->tables[i].cols);
    }
    free(cap->tables);
    free(cap->items);
    snp_holds_free(cap->holds);
    for (size_t i = 0; i < cap->nlobs; i++)
        free(cap->lobs[i]);
    free(cap->lobs);
    pthread_mutex_destroy(&cap->lock);
}

static snap_rc capture(snp_capture *c, snap_err *err)
{
    pg_cap cap = {0};
    PGconn *conn = NULL;
    util_strv schemas = {0}, excl = {0};
    char *seq_sql = NULL, *where = NULL;
    size_t seq_len = 0, nseq = 0;
    arc_writer *lw = NULL;
    cat_component *comp = snp_component(c);
    json_t *info = cat_component_info(comp);
    snap_rc rc;

    cap.c = c;
    cap.ctx = snp_ctx(c);
    pthread_mutex_init(&cap.lock, NULL);
    cap.holds = snp_holds_new();
    rc = read_options(&cap, err);
    if (rc != SNAP_OK)
        goto out;
    source_patterns(&snp_opts(c)->schema, &schemas);
    source_patterns(&snp_opts(c)->exclude_table, &excl);

    cap.from = snp_redirect_of(c, NULL);
    rc = pg_connect(cap.dsn, cap.from ? cap.from->from : NULL, &conn, err);
    if (rc != SNAP_OK)
        goto out;
    where = pg_where(conn);
    cap.server_num = PQserverVersion(conn);
    if (cap.server_num < 100000) {
        rc = err_set(err, SNAP_EFAIL, 0, "postgres %s runs version %d.%d; snap needs PostgreSQL 10 or newer", where,
                     cap.server_num / 10000, cap.server_num / 100 % 100);
        goto out;
    }
    rc = check_pg_dump(&cap, info, err);
    if (rc == SNAP_OK)
        rc = export_snapshot(&cap, conn, where, &schemas, &excl, info, err);
    if (rc == SNAP_OK)
        rc = read_catalog(&cap, conn, &schemas, &excl, info, &seq_sql, &seq_len, &nseq, err);
    if (rc == SNAP_OK)
        rc = snp_writer_new(c, &lw, err);
    if (rc == SNAP_OK)
        rc = write_meta(&cap, lw, info, seq_sql, seq_len, err);
    if (rc == SNAP_OK)
        rc = copy_data(&cap, conn, &schemas, &excl, lw, err);
    if (rc != SNAP_OK)
        goto out;
    /* still the same server and the snapshot still held: nothing restarted under us */
    rc = pg_exec(conn, "COMMIT", err);
    if (rc != SNAP_OK) {
        err_prefix(err, "the snapshot's transaction on %s ended early", where);
        goto out;
    }
    rc = record_tables(&cap, comp, nseq, where, err);
out:
    if (rc != SNAP_OK && where != NULL && strstr(err->msg, where) == NULL)
        err_prefix(err, "postgres %s", where);
    arc_writer_free(lw);
    PQfinish(conn);
    cap_free(&cap);
    util_strv_free(&schemas);
    util_strv_free(&excl);
    free(seq_sql);
    free(where);
    return rc;
}

/* The size of the database's tables (heap and TOAST, no indexes: what COPY reads). */
static uint64_t estimate(snp_capture *c)
{
    const char *dsn = snp_opts(c)->dsn;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    uint64_t total = 0;
    snap_err ignored;

    if (pg_connect(dsn != NULL ? dsn : "", NULL, &conn, &ignored) == SNAP_OK &&
        pg_query(conn, "SELECT coalesce(sum(pg_catalog.pg_table_size(c.oid)), 0)::text"
                       " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                       " WHERE c.relkind IN ('r', 'm') AND n.nspname <> 'information_schema'"
                       " AND n.nspname !~ '^pg_'", 0, NULL, &res, &ignored) == SNAP_OK)
        total = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    PQfinish(conn);
    return total;
}

const snp_driver snp_postgres_driver = {
    .type = "postgres",
    .capture = capture,
    .estimate = estimate,
};
