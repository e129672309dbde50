/* Unit tests of common/pg: DSN redaction and pg_dump-style name patterns (no server needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../engines/pg_client.h"

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
    db = pg_dsn_dbname("dbname=explicit");
    assert_string_equal(db, "explicit");
    free(db);
}

/* No trace of the secret however it is written: libpq's parse decides, not the text. */
static void lacks(const char *in, const char *secret)
{
    char *got = pg_redact_dsn(in);
    assert_non_null(got);
    if (strstr(got, secret) != NULL || strstr(got, "password") != NULL)
        fail_msg("%s redacted to %s", in, got);
    assert_true(pg_dsn_has_secret(in));
    assert_false(pg_dsn_has_secret(got));
    free(got);
}

static void redact_hard_cases(void **state)
{
    (void)state;
    lacks("postgresql://app:s3?cret@db1/app", "cret");
    lacks("postgresql://app:s3%3Fcret@db1/app?sslmode=require", "cret");
    lacks("postgresql://app@db1/app?pass%77ord=s3cret", "s3cret");
    lacks("postgresql://app@db1/app?%70%61%73%73%77%6f%72%64=s3cret&application_name=x", "s3cret");
    lacks("postgresql://app@db1/app?sslpassword=s3cret", "s3cret");
    lacks("host=db1 sslpassword=s3cret dbname=app", "s3cret");
    lacks("host=db1 password = 's3 cret' dbname=app", "cret");
    lacks("dbname='postgresql://app:s3cret@db1/app'", "s3cret");
    redacts("postgresql://app:s3?cret@db1/app", "postgresql://app@db1/app");
    redacts("postgresql://app@db1/app?%70assword=x&sslmode=require", "postgresql://app@db1/app?sslmode=require");
    redacts("postgresql://app@[::1]:5433/app", "postgresql://app@[::1]:5433/app");
    redacts("postgresql://app@/app?host=/var/run/postgresql", "postgresql://app@/app?host=/var/run/postgresql");
    redacts("postgresql://app@h1:5432,h2:5433/app", "postgresql://app@/app?host=h1,h2&port=5432,5433");
    assert_false(pg_dsn_has_secret("postgresql://app@db1/app"));
    /* a '/' in an unencoded password: libpq refuses it, nothing of it is kept */
    assert_null(pg_redact_dsn("postgresql://app:pa/ss@db1/app"));
    assert_null(pg_dsn_dbname("postgresql://app:pa/ss@db1/app"));
}

static void dbname(void **state)
{
    char *d;
    (void)state;
    d = pg_dsn_dbname("postgresql://app:s%2Fx@db1/my%20db?sslmode=disable");
    assert_string_equal(d, "my db");
    free(d);
    d = pg_dsn_dbname("host=db1 dbname=shop password=x");
    assert_string_equal(d, "shop");
    free(d);
    assert_null(pg_dsn_dbname("host=db1"));
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
        cmocka_unit_test(redact_hard_cases),
        cmocka_unit_test(dbname),
        cmocka_unit_test(patterns),
        cmocka_unit_test(dsn_dbname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
