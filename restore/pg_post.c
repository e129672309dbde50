/* pg_post.c: the post-data entries built while the tables load (pg_post.h). */
#include "pg_post.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

/* One entry of pg_restore's SQL: its header fields and where its text lies. */
typedef struct sql_entry {
    char *type, *schema, *name;
    char *state; /* SET default_tablespace / default_table_access_method in force */
    util_buf body;
} sql_entry;

typedef struct sql_doc {
    util_buf prologue;
    sql_entry *e;
    size_t n, cap;
} sql_doc;

static const char *const state_sets[] = {"SET default_tablespace = ", "SET default_table_access_method = "};

static char *between(const char *s, const char *from, const char *to)
{
    const char *a = strstr(s, from), *b;

    if (a == NULL)
        return NULL;
    a += strlen(from);
    b = to ? strstr(a, to) : a + strlen(a);
    if (b == NULL)
        return NULL;
    char *r = xmalloc((size_t)(b - a) + 1);
    memcpy(r, a, (size_t)(b - a));
    r[b - a] = '\0';
    return r;
}

/* "-- Name: N; Type: T; Schema: S; Owner: O[; Tablespace: X]" (or "-- Data for Name: ..."). */
static bool parse_header(const char *line, sql_entry *e)
{
    const char *h = strncmp(line, "-- Name: ", 9) == 0 ? line + 3 : line + 12;

    e->name = between(h, "Name: ", "; Type: ");
    e->type = between(h, "; Type: ", "; Schema: ");
    e->schema = between(h, "; Schema: ", "; Owner: ");
    return e->name != NULL && e->type != NULL && e->schema != NULL;
}

static bool is_header(const char *l1, const char *l2, const char *l3)
{
    return l1 != NULL && l2 != NULL && l3 != NULL && strcmp(l1, "--") == 0 && strcmp(l3, "--") == 0 &&
           (strncmp(l2, "-- Name: ", 9) == 0 || strncmp(l2, "-- Data for Name: ", 18) == 0);
}

static void doc_free(sql_doc *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->e[i].type);
        free(d->e[i].schema);
        free(d->e[i].name);
        free(d->e[i].state);
        util_buf_free(&d->e[i].body);
    }
    free(d->e);
    util_buf_free(&d->prologue);
}

static bool ident(const char **p, char **out);

/* Whether a SET line of state_sets is exactly as pg_restore writes it: '' or one identifier,
 * then ';' and nothing more. Any other, like one inside a literal that an object's owner
 * wrote, makes the caller give the whole section to pg_restore. */
static bool state_line_ok(const char *v)
{
    char *id = NULL;

    if (strcmp(v, "'';") == 0)
        return true;
    if (!ident(&v, &id))
        return false;
    free(id);
    return strcmp(v, ";") == 0;
}

/* text's lines, without their newlines (a last newline ends the last line) */
static void lines_of(const char *text, util_strv *out)
{
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *l = xmalloc(len + 1);
        memcpy(l, p, len);
        l[len] = '\0';
        util_strv_push(out, l);
        p += len + (nl != NULL);
    }
}

static bool is_state(const char *l)
{
    for (size_t k = 0; k < sizeof state_sets / sizeof *state_sets; k++)
        if (strncmp(l, state_sets[k], strlen(state_sets[k])) == 0)
            return true;
    return false;
}

/* pg_restore writes the state lines of an entry just before its header: only blank lines
 * and other state lines lie between them. */
static bool state_before_header(const util_strv *lines, size_t i)
{
    size_t j = i + 1;

    while (j < lines->n && (lines->v[j][0] == '\0' || is_state(lines->v[j])))
        j++;
    return j + 2 < lines->n && is_header(lines->v[j], lines->v[j + 1], lines->v[j + 2]);
}

/*
 * Splits the SQL into entries; false when a header does not parse, or when a line that
 * sets the state carried into every later entry is not where pg_restore writes one (just
 * before a header) or not in its exact form: such a line lies inside a statement's
 * literal, and neither it nor what follows it may run as state.
 */
static bool doc_parse(const char *sql, sql_doc *d)
{
    util_strv lines = {0};
    char *state[2] = {NULL, NULL};
    bool ok = true;

    lines_of(sql, &lines);
    for (size_t i = 0; i < lines.n && ok; i++) {
        const char *l = lines.v[i];
        bool set = false;
        if (is_header(l, i + 1 < lines.n ? lines.v[i + 1] : NULL, i + 2 < lines.n ? lines.v[i + 2] : NULL)) {
            if (d->n == d->cap)
                d->e = xrealloc(d->e, (d->cap = d->cap ? 2 * d->cap : 64) * sizeof *d->e);
            sql_entry *e = &d->e[d->n++];
            memset(e, 0, sizeof *e);
            ok = parse_header(lines.v[i + 1], e);
            e->state = xasprintf("%s\n%s\n", state[0] ? state[0] : "", state[1] ? state[1] : "");
            i += 2;
            continue;
        }
        util_buf *b = d->n ? &d->e[d->n - 1].body : &d->prologue;
        for (size_t k = 0; k < 2; k++)
            if (strncmp(l, state_sets[k], strlen(state_sets[k])) == 0) {
                ok = ok && state_before_header(&lines, i) && state_line_ok(l + strlen(state_sets[k]));
                state[k] = lines.v[i];
                set = true;
            }
        if (set)
            continue;
        util_buf_adds(b, l);
        util_buf_addc(b, '\n');
    }
    util_strv_free(&lines);
    return ok;
}

/* ---- reading a statement ---- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* The keyword w, then white space. */
static bool word(const char **p, const char *w)
{
    const char *s = skip_ws(*p);
    size_t n = strlen(w);

    if (strncmp(s, w, n) != 0 || (s[n] != ' ' && s[n] != '\n' && s[n] != '\t'))
        return false;
    *p = s + n;
    return true;
}

/* An identifier as pg_dump writes it: "quoted" ("" for a quote) or plain lower case. */
static bool ident(const char **p, char **out)
{
    const char *s = *p;
    util_buf b = {0};

    if (*s == '"') {
        for (s++;; s++) {
            if (*s == '\0') {
                util_buf_free(&b);
                return false;
            }
            if (*s == '"' && s[1] == '"')
                s++;
            else if (*s == '"')
                break;
            util_buf_addc(&b, *s);
        }
        s++;
    } else {
        while ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '$')
            util_buf_addc(&b, *s++);
    }
    if (b.len == 0) {
        util_buf_free(&b);
        return false;
    }
    *out = util_buf_take(&b);
    util_buf_free(&b);
    *p = s;
    return true;
}

static bool qualified(const char **p, char **schema, char **name)
{
    *p = skip_ws(*p);
    if (!ident(p, schema))
        return false;
    if (**p == '.') {
        (*p)++;
        if (ident(p, name))
            return true;
    }
    free(*schema);
    *schema = NULL;
    return false;
}

/* The table an INDEX or CONSTRAINT entry is built on, or false; *only: an index of a
 * partitioned table alone (ON ONLY), never a loaded table's. */
static bool entry_table(const sql_entry *e, char **schema, char **name, bool *only)
{
    const char *p = e->body.p ? e->body.p : "";
    char *idx = NULL;

    *schema = *name = NULL;
    *only = false;
    if (strcmp(e->type, "INDEX") == 0) {
        if (!word(&p, "CREATE"))
            return false;
        word(&p, "UNIQUE");
        if (!word(&p, "INDEX"))
            return false;
        p = skip_ws(p);
        if (!ident(&p, &idx))
            return false;
        free(idx);
        /* ON ONLY: a partitioned table's own index, attached to its partitions' later */
        if (!word(&p, "ON"))
            return false;
        if (word(&p, "ONLY")) {
            *only = true;
            return false;
        }
        return qualified(&p, schema, name) && word(&p, "USING");
    }
    if (strcmp(e->type, "CONSTRAINT") == 0)
        return word(&p, "ALTER") && word(&p, "TABLE") && word(&p, "ONLY") && qualified(&p, schema, name) &&
               word(&p, "ADD") && word(&p, "CONSTRAINT");
    return false;
}

/* Entries that change nothing ANALYZE of a loaded table computes (an index or extended
 * statistics would: those wait, and the ANALYZE with them). */
static bool stats_neutral(const char *type)
{
    static const char *const types[] = {"FK CONSTRAINT", "CHECK CONSTRAINT", "TRIGGER", "INDEX ATTACH", "COMMENT",
                                        "RULE", "POLICY", "ROW SECURITY", "EVENT TRIGGER", "MATERIALIZED VIEW DATA",
                                        "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "SECURITY LABEL", "ACL"};

    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return false;
}

/* ---- pairing with the TOC ---- */

/* "ID; TABLEOID OID TYPE SCHEMA NAME OWNER": the entry's own line of the listing. */
static bool toc_matches(const char *line, const sql_entry *e)
{
    const char *p = strchr(line, ';');
    char *want;
    bool ok;

    if (p == NULL)
        return false;
    p++;
    for (int k = 0; k < 2; k++) {
        p = skip_ws(p);
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != ' ')
        return false;
    want = xasprintf("%s %s %s", e->type, e->schema, e->name);
    ok = strncmp(p + 1, want, strlen(want)) == 0 && (p[1 + strlen(want)] == ' ' || p[1 + strlen(want)] == '\0');
    free(want);
    return ok;
}

void pgp_plan_build(const char *sql, const char *toc, pgp_table_fn find, void *arg, pgp_plan *out)
{
    sql_doc d = {0};
    util_buf list = {0};
    util_strv toc_lines = {0};
    size_t k = 0;
    bool ok;

    memset(out, 0, sizeof *out);
    out->analyze_early = true;
    ok = doc_parse(sql, &d);
    lines_of(toc, &toc_lines);
    for (size_t i = 0; ok && i < toc_lines.n; i++) {
        const char *l = toc_lines.v[i];
        char *sch = NULL, *nam = NULL;
        size_t table = SIZE_MAX;
        bool only = false;
        if (l[0] == '\0' || l[0] == ';') {
            util_buf_adds(&list, l);
            util_buf_addc(&list, '\n');
            continue;
        }
        ok = k < d.n && toc_matches(l, &d.e[k]);
        if (ok && entry_table(&d.e[k], &sch, &nam, &only))
            table = find(sch, nam, arg);
        else { /* an entry whose statement did not read as expected is not on a known table */
            free(sch);
            free(nam);
            sch = nam = NULL;
        }
        if (ok && table == SIZE_MAX && sch == NULL && !only && !stats_neutral(d.e[k].type))
            out->analyze_early = false;
        if (ok && table != SIZE_MAX) {
            out->e = xrealloc(out->e, (out->n + 1) * sizeof *out->e);
            out->e[out->n].sql = xasprintf("%s%s", d.e[k].state, d.e[k].body.p ? d.e[k].body.p : "");
            out->e[out->n++].table = table;
            util_buf_addc(&list, ';');
        }
        util_buf_adds(&list, l);
        util_buf_addc(&list, '\n');
        free(sch);
        free(nam);
        k++;
    }
    util_strv_free(&toc_lines);
    if (ok && k == d.n && out->n > 0) {
        out->prologue = util_buf_take(&d.prologue);
        out->rest_list = util_buf_take(&list);
    } else {
        pgp_plan_free(out);
        out->analyze_early = false;
    }
    util_buf_free(&list);
    doc_free(&d);
}

void pgp_plan_free(pgp_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->e[i].sql);
    free(p->e);
    free(p->prologue);
    free(p->rest_list);
    memset(p, 0, sizeof *p);
}
