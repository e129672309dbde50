/* Unit tests of common/pg: DSN redaction and pg_dump-style name patterns (no server needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/pg.h"

static void redacts(const char *in, const char *want)
{
    char *got = pg_redact_dsn(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void redact_uri(void **state)
{
    (void)state;
    redacts("postgresql://app:s3cret@db1:5432/app", "postgresql://app@db1:5432/app");
    redacts("postgres://app@db1/app", "postgres://app@db1/app");
    redacts("postgresql://app:p%40ss@db1/app?sslmode=require", "postgresql://app@db1/app?sslmode=require");
    redacts("postgresql://db1/app?password=x&sslmode=require", "postgresql://db1/app?sslmode=require");
    redacts("postgresql://db1/app?sslmode=require&password=x", "postgresql://db1/app?sslmode=require");
    redacts("postgresql://db1/app?password=x", "postgresql://db1/app");
    redacts("postgresql:///app", "postgresql:///app");
}

static void redact_keywords(void **state)
{
    char *got;
    (void)state;
    got = pg_redact_dsn("host=db1 password='it\\'s secret' dbname=app user=o\\'k");
    assert_non_null(got);
    assert_null(strstr(got, "secret"));
    assert_null(strstr(got, "password"));
    assert_non_null(strstr(got, "host='db1'"));
    assert_non_null(strstr(got, "dbname='app'"));
    assert_non_null(strstr(got, "user='o\\'k'"));
    free(got);
    redacts("", "");
    assert_null(pg_redact_dsn("host=db1 nonsense"));
    assert_null(pg_redact_dsn("postgresql://db1/app?bogus_option=1"));
}

/* The database a revert target's DSN names, to compare with the manifest's. */
static void dsn_dbname(void **state)
{
    char *db;

    (void)state;
    unsetenv("PGDATABASE");
    db = pg_dsn_dbname("postgresql://u@h:5432/app?sslmode=require");
    assert_string_equal(db, "app");
    free(db);
    db = pg_dsn_dbname("host=h dbname='my db' user=u");
    assert_string_equal(db, "my db");
    free(db);
    assert_null(pg_dsn_dbname("host=h user=u"));
    assert_null(pg_dsn_dbname("host='unterminated"));
    setenv("PGDATABASE", "fromenv", 1);
    db = pg_dsn_dbname("host=h");
    assert_string_equal(db, "fromenv");
    free(db);
    db = pg_dsn_dbname("dbname=explicit");
    assert_string_equal(db, "explicit");
    free(db);
    unsetenv("PGDATABASE");
}

static void pattern(const char *pat, const char *want_schema, const char *want_name)
{
    char *s, *n;
    pg_pattern_regex(pat, &s, &n);
    if (want_schema == NULL)
        assert_null(s);
    else
        assert_string_equal(s, want_schema);
    assert_string_equal(n, want_name);
    free(s);
    free(n);
}

static void patterns(void **state)
{
    (void)state;
    pattern("app", NULL, "^(app)$");
    pattern("App*", NULL, "^(app.*)$");
    pattern("a?c", NULL, "^(a.c)$");
    pattern("app.big*", "^(app)$", "^(big.*)$");
    pattern("\"My.Schema\".t", "^(My\\.Schema)$", "^(t)$");
    pattern("\"a\"\"b\"", NULL, "^(a\"b)$");
    pattern("x$y(z)", NULL, "^(x\\$y\\(z\\))$");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redact_uri),
        cmocka_unit_test(redact_keywords),
        cmocka_unit_test(patterns),
        cmocka_unit_test(dsn_dbname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
