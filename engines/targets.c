/* targets.c: which sources or components name the same live target. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "my_client.h"
#include "pg_client.h"
#include "targets.h"

typedef struct tgt {
    char *owner;
    char *key;   /* paths: the canonical path; databases: type, server and database */
    char *shown; /* what a message says of a database: its redacted DSN (a path: NULL, the key says it) */
    char *db;    /* NULL for a path */
    const char *type;
} tgt;

struct tgt_set {
    const char *noun;
    tgt *v;
    size_t n, cap;
};

tgt_set *tgt_set_new(const char *noun)
{
    tgt_set *s = xcalloc(1, sizeof *s);
    s->noun = noun;
    return s;
}

void tgt_set_free(tgt_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].owner);
        free(s->v[i].key);
        free(s->v[i].shown);
        free(s->v[i].db);
    }
    free(s->v);
    free(s);
}

static void push(tgt_set *s, const char *owner, const char *type, char *key, char *shown, char *db)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = (tgt){.owner = xstrdup(owner), .key = key, .shown = shown, .db = db, .type = type};
}

void tgt_add_path(tgt_set *s, const char *owner, const char *path)
{
    char *abs = util_abspath(path), *parent, *base, *real;

    if (abs == NULL)
        return;
    if (strcmp(abs, "/") == 0) {
        push(s, owner, NULL, abs, NULL, NULL);
        return;
    }
    parent = util_dirname(abs);
    base = util_basename(abs);
    real = realpath(parent, NULL);
    if (real != NULL) {
        free(abs);
        abs = xasprintf("%s/%s", strcmp(real, "/") ? real : "", base);
    }
    push(s, owner, NULL, abs, NULL, NULL);
    free(real);
    free(parent);
    free(base);
}

void tgt_add_db(tgt_set *s, const char *owner, const char *type, const char *dsn, const char *db)
{
    char *server = NULL, *shown = NULL, *own_db = NULL;

    if (strcmp(type, "postgres") == 0) {
        server = pg_dsn_server(dsn);
        shown = pg_redact_dsn(dsn);
        own_db = pg_dsn_dbname(dsn);
    } else if (strcmp(type, "mysql") == 0) {
        my_dsn *d = NULL;
        snap_err ignored;
        if (my_dsn_parse(dsn, &d, &ignored) == SNAP_OK) {
            server = my_dsn_server(d);
            shown = my_dsn_redacted(d);
            if (my_dsn_db(d) != NULL && my_dsn_db(d)[0] != '\0')
                own_db = xstrdup(my_dsn_db(d));
        }
        my_dsn_free(d);
    }
    if (db != NULL && db[0] != '\0') {
        free(own_db);
        own_db = xstrdup(db);
    }
    if (server == NULL || shown == NULL || own_db == NULL) {
        free(server);
        free(shown);
        free(own_db);
        return;
    }
    push(s, owner, type, xasprintf("%s\n%s\n%s", type, server, own_db), shown, own_db);
    free(server);
}

/* What a message says of t: the path, or the redacted DSN. */
static const char *shown_of(const tgt *t)
{
    return t->shown != NULL ? t->shown : t->key;
}

/* Whether path lies strictly inside dir. */
static bool inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    if (strcmp(dir, "/") == 0)
        return strcmp(path, "/") != 0;
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static bool clash_pair(const tgt_set *s, const tgt *a, const tgt *b, char *msg, size_t n)
{
    if ((a->db == NULL) != (b->db == NULL))
        return false;
    if (strcmp(a->key, b->key) == 0) {
        if (strcmp(a->owner, b->owner) == 0)
            snprintf(msg, n, "%s %s names %s twice", s->noun, a->owner, shown_of(a));
        else if (a->db != NULL)
            snprintf(msg, n, "%ss %s and %s both name %s database %s on one server (%s; %s)", s->noun, a->owner,
                     b->owner, a->type, a->db, a->shown, b->shown);
        else
            snprintf(msg, n, "%ss %s and %s both name %s", s->noun, a->owner, b->owner, shown_of(a));
        return true;
    }
    if (a->db != NULL)
        return false;
    if (inside(b->key, a->key) || inside(a->key, b->key)) {
        const tgt *outer = inside(b->key, a->key) ? a : b, *inner = outer == a ? b : a;
        if (strcmp(a->owner, b->owner) == 0)
            snprintf(msg, n, "%s %s names %s inside %s", s->noun, a->owner, shown_of(inner), shown_of(outer));
        else
            snprintf(msg, n, "%ss %s and %s overlap: %s (%s %s) is inside %s (%s %s)", s->noun, a->owner,
                     b->owner, shown_of(inner), s->noun, inner->owner, shown_of(outer), s->noun, outer->owner);
        return true;
    }
    return false;
}

bool tgt_clash(const tgt_set *s, char *msg, size_t n)
{
    for (size_t i = 0; i < s->n; i++)
        for (size_t k = i + 1; k < s->n; k++)
            if (clash_pair(s, &s->v[i], &s->v[k], msg, n))
                return true;
    return false;
}
