/* Unit tests of engines/targets: which sources or components name one live target
 * (no server needed: DSNs are compared as written). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../engines/my_client.h"
#include "../../../engines/pg_client.h"
#include "../../../engines/targets.h"

static void pg_server_as_written(void **state)
{
    char *a = pg_dsn_server("dbname=a host=db1 port=5433 user=x password=secret");
    char *b = pg_dsn_server("postgresql://y:other@db1:5433/b?sslmode=require");
    (void)state;
    assert_non_null(a);
    assert_string_equal(a, "host=db1 hostaddr= port=5433 service=");
    assert_string_equal(a, b); /* user, password, options and database are not the server */
    assert_null(strstr(a, "secret"));
    free(a);
    free(b);
    a = pg_dsn_server("dbname=a");
    assert_string_equal(a, "host= hostaddr= port= service=");
    free(a);
    assert_null(pg_dsn_server("dbname='host=db2 dbname=a'")); /* dbname is a connection string */
    assert_null(pg_dsn_server("host='unterminated"));
}

static void my_server_as_written(void **state)
{
    my_dsn *d = NULL;
    snap_err err;
    char *s;
    (void)state;
    assert_int_equal(my_dsn_parse("mysql://root:pw@db1:3307/shop?socket=/run/m.sock", &d, &err), SNAP_OK);
    s = my_dsn_server(d);
    assert_string_equal(s, "host=db1 port=3307 socket=/run/m.sock defaults-file= defaults-group=");
    assert_null(strstr(s, "pw"));
    free(s);
    my_dsn_free(d);
}

static bool clash(tgt_set *s, const char *want)
{
    char msg[1024] = "";
    bool got = tgt_clash(s, msg, sizeof msg);
    if (want != NULL && strstr(msg, want) == NULL)
        fail_msg("message %s lacks %s", msg, want);
    tgt_set_free(s);
    return got;
}

static void databases(void **state)
{
    tgt_set *s;
    (void)state;
    /* the same database written two ways: one target */
    s = tgt_set_new("source");
    tgt_add_db(s, "a", "postgres", "dbname=a", NULL);
    tgt_add_db(s, "a-2", "postgres", "postgresql:///a", NULL);
    assert_true(clash(s, "sources a and a-2 both name postgres database a on one server (dbname='a'; postgresql:///a)"));
    /* another user, the password given: still one target, and no secret in the message */
    s = tgt_set_new("source");
    tgt_add_db(s, "a", "postgres", "host=db1 dbname=a", NULL);
    tgt_add_db(s, "b", "postgres", "host=db1 dbname=a user=other password=hush", NULL);
    assert_true(clash(s, NULL));
    s = tgt_set_new("source");
    tgt_add_db(s, "a", "postgres", "host=db1 dbname=a password=hush", NULL);
    tgt_add_db(s, "b", "postgres", "host=db1 dbname=a", NULL);
    {
        char msg[1024];
        assert_true(tgt_clash(s, msg, sizeof msg));
        assert_null(strstr(msg, "hush"));
    }
    tgt_set_free(s);
    /* another database, another server, another engine, a server written otherwise: not */
    s = tgt_set_new("source");
    tgt_add_db(s, "a", "postgres", "host=db1 dbname=a", NULL);
    tgt_add_db(s, "b", "postgres", "host=db1 dbname=b", NULL);
    tgt_add_db(s, "c", "postgres", "host=db2 dbname=a", NULL);
    tgt_add_db(s, "d", "postgres", "host=db1 port=5432 dbname=a", NULL);
    tgt_add_db(s, "e", "mysql", "mysql://root@db1/a", NULL);
    tgt_add_db(s, "f", "postgres", "host=db1", NULL); /* no database named: not compared */
    assert_false(clash(s, NULL));
    /* the database a component records beats the DSN's (revert) */
    s = tgt_set_new("component");
    tgt_add_db(s, "x", "mysql", "mysql://root@localhost/x?socket=/s", "shop");
    tgt_add_db(s, "y", "mysql", "mysql://app:pw@localhost/other?socket=/s", "shop");
    assert_true(clash(s, "components x and y both name mysql database shop on one server"));
    /* one owner naming a thing twice is as wrong as two owners */
    s = tgt_set_new("source");
    tgt_add_db(s, "a", "mysql", "mysql://root@db1/a", NULL);
    tgt_add_db(s, "a", "mysql", "mysql://root@db1/a", NULL);
    assert_true(clash(s, "source a names mysql://root@db1/a twice"));
}

static void paths(void **state)
{
    char dir[] = "/tmp/snap-tgt-XXXXXX", *real, *link, *in_link;
    tgt_set *s;
    (void)state;
    assert_non_null(mkdtemp(dir));
    real = xasprintf("%s/real", dir);
    link = xasprintf("%s/link", dir);
    in_link = xasprintf("%s/link/x", dir);
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink("real", link), 0);

    s = tgt_set_new("source");
    tgt_add_path(s, "etc", "/etc");
    tgt_add_path(s, "x", "/etc/x");
    assert_true(clash(s, "sources etc and x overlap: /etc/x (source x) is inside /etc (source etc)"));
    s = tgt_set_new("source");
    tgt_add_path(s, "x", "/etc/x/");
    tgt_add_path(s, "x-2", "/etc/./x");
    assert_true(clash(s, "sources x and x-2 both name /etc/x"));
    s = tgt_set_new("source");
    tgt_add_path(s, "root", "/");
    tgt_add_path(s, "x", "/srv");
    assert_true(clash(s, NULL));
    /* a parent reached through a symbolic link is the same directory */
    s = tgt_set_new("source");
    tgt_add_path(s, "a", real);
    tgt_add_path(s, "b", in_link);
    assert_true(clash(s, "is inside"));
    /* neighbours that share a prefix of their names, and the link itself, are other targets */
    s = tgt_set_new("source");
    tgt_add_path(s, "a", "/etc/app");
    tgt_add_path(s, "b", "/etc/app2");
    tgt_add_path(s, "c", link);
    tgt_add_path(s, "d", real);
    assert_false(clash(s, NULL));
    /* a database and a path never clash */
    s = tgt_set_new("source");
    tgt_add_path(s, "a", "/a");
    tgt_add_db(s, "b", "postgres", "dbname=/a", NULL);
    assert_false(clash(s, NULL));

    unlink(link);
    rmdir(real);
    rmdir(dir);
    free(real);
    free(link);
    free(in_link);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pg_server_as_written),
        cmocka_unit_test(my_server_as_written),
        cmocka_unit_test(databases),
        cmocka_unit_test(paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
