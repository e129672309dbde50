/* Unit tests of the MySQL DSN parser, its redaction and the archive path encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../../engines/my_client.h"

static void parse_full(void **state)
{
    my_dsn *d = NULL;
    snap_err err;
    char *r;

    (void)state;
    assert_int_equal(my_dsn_parse("mysql://shop:p%40ss:w@db2:3307/shop?ssl-mode=required&socket=/run/m.sock",
                                  &d, &err),
                     SNAP_OK);
    assert_string_equal(my_dsn_db(d), "shop");
    r = my_dsn_redacted(d);
    assert_string_equal(r, "mysql://shop@db2:3307/shop?socket=/run/m.sock&ssl-mode=required");
    assert_null(strstr(r, "p@ss"));
    free(r);
    my_dsn_set_db(d, "shop_check");
    r = my_dsn_redacted(d);
    assert_string_equal(r, "mysql://shop@db2:3307/shop_check?socket=/run/m.sock&ssl-mode=required");
    free(r);
    my_dsn_free(d);
}

static void parse_minimal(void **state)
{
    my_dsn *d = NULL;
    snap_err err;
    char *r;

    (void)state;
    assert_int_equal(my_dsn_parse("mysql://localhost/app", &d, &err), SNAP_OK);
    r = my_dsn_redacted(d);
    assert_string_equal(r, "mysql://localhost/app");
    free(r);
    my_dsn_free(d);
    assert_int_equal(my_dsn_parse("mysql://u@[::1]:3306/a%20b", &d, &err), SNAP_OK);
    assert_string_equal(my_dsn_db(d), "a b");
    r = my_dsn_redacted(d);
    assert_string_equal(r, "mysql://u@[::1]:3306/a%20b");
    free(r);
    my_dsn_free(d);
}

/* Redaction works on the parse: however the password is written, it is not written back. */
static void redact_hard_cases(void **state)
{
    static const char *const in[] = {
        "mysql://shop:s3?cret@db2/shop",
        "mysql://shop:s3%3Fc%2Fret@db2/shop?ssl-mode=required",
        "mysql://shop@db2/shop?pass%77ord=s3cret&ssl%2Dmode=required",
        "mysql://shop@db2/shop?password=s3cret",
    };
    my_dsn *d = NULL;
    snap_err err;
    char *r;

    (void)state;
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        assert_int_equal(my_dsn_parse(in[i], &d, &err), SNAP_OK);
        assert_true(my_dsn_has_password(d));
        assert_string_equal(my_dsn_db(d), "shop");
        r = my_dsn_redacted(d);
        if (strstr(r, "s3") != NULL || strstr(r, "ret") != NULL || strstr(r, "pass") != NULL)
            fail_msg("%s redacted to %s", in[i], r);
        free(r);
        my_dsn_free(d);
        d = NULL;
    }
    /* an unencoded '/' in the password: refused, and the message holds none of it */
    assert_int_equal(my_dsn_parse("mysql://shop:s3/cret@db2/shop", &d, &err), SNAP_EUSAGE);
    assert_null(strstr(err.msg, "cret"));
    assert_null(d);
}

static void parse_errors(void **state)
{
    static const char *const bad[] = {
        "postgresql://x/y",          /* another scheme */
        "mysql://host",              /* no database */
        "mysql://host/",             /* empty database */
        "mysql://host:99999/db",     /* port out of range */
        "mysql://host:12x/db",       /* port not a number */
        "mysql://u:%zz@host/db",     /* bad escape in the password */
        "mysql://host/db?nosuch=1",  /* unknown option */
        "mysql://host/db?ssl-mode=x" /* unknown ssl mode */
    };
    my_dsn *d;
    snap_err err;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = NULL;
        assert_int_equal(my_dsn_parse(bad[i], &d, &err), SNAP_EUSAGE);
        assert_null(d);
        assert_non_null(strstr(err.msg, "invalid mysql dsn"));
        assert_null(strstr(err.msg, "%zz")); /* never echo what may be a password */
    }
}

static void path_encoding(void **state)
{
    char *e, *d;

    (void)state;
    e = my_path_encode("order items/2024 ☃");
    assert_string_equal(e, "order%20items%2F2024%20%E2%98%83");
    d = my_path_decode(e);
    assert_string_equal(d, "order items/2024 ☃");
    free(e);
    free(d);
    e = my_path_encode("plain_Name-1$");
    assert_string_equal(e, "plain_Name-1$");
    free(e);
}

static void identifiers(void **state)
{
    char *q;

    (void)state;
    q = my_ident("we`ird");
    assert_string_equal(q, "`we``ird`");
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_full),
        cmocka_unit_test(parse_minimal),
        cmocka_unit_test(parse_errors),
        cmocka_unit_test(redact_hard_cases),
        cmocka_unit_test(path_encoding),
        cmocka_unit_test(identifiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
