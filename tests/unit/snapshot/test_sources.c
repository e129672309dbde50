/* Unit tests of snapshot/sources.c: two sources that name one target are refused before
 * anything is captured (no server or store needed: nothing is opened). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../snapshot/snapshot.h"

static void source(cfg *c, const char *name, const char *type, const char *key, const char *value)
{
    char *section = xasprintf("source %s", name);
    cfg_set(c, section, "type", type);
    cfg_add(c, section, key, value);
    free(section);
}

static snap_rc check(cfg *c, snap_err *err)
{
    snap_ctx ctx = {0};
    snap_rc rc;

    ctx.cfg = c;
    memset(err, 0, sizeof *err);
    rc = snp_check_targets(&ctx, err);
    cfg_free(c);
    return rc;
}

static void distinct_sources_pass(void **state)
{
    cfg *c = cfg_new();
    snap_err err;
    (void)state;
    source(c, "app", "files", "path", "/srv/app");
    source(c, "app2", "files", "paths", "/srv/app2 /srv/app3");
    source(c, "shop", "postgres", "dsn", "host=db1 dbname=shop");
    source(c, "shop-2", "postgres", "dsn", "host=db2 dbname=shop");
    source(c, "ledger", "mysql", "dsn", "mysql://root@db1/shop");
    source(c, "deploy", "images", "manifests", "/srv/deploy");
    assert_int_equal(check(c, &err), SNAP_OK);
}

static void one_target_twice_is_a_usage_error(void **state)
{
    cfg *c = cfg_new();
    snap_err err;
    (void)state;
    /* one source naming a path and one inside it: a revert would swap one inside the other */
    source(c, "etc", "files", "paths", "/etc /etc/x");
    assert_int_equal(check(c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "source etc names /etc/x inside /etc"));
    c = cfg_new();
    source(c, "shop", "postgres", "dsn", "host=db1 dbname=shop");
    source(c, "shop-2", "postgres", "dsn", "postgresql://app:hush@db1/shop");
    assert_int_equal(check(c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "sources shop and shop-2 both name postgres database shop on one server"));
    assert_null(strstr(err.msg, "hush"));
    assert_non_null(strstr(err.hint, "name each target once"));

    c = cfg_new();
    source(c, "ledger", "mysql", "dsn", "mysql://root@db1:3307/shop");
    source(c, "other", "mysql", "dsn", "mysql://app@db1:3307/shop?ssl-mode=required");
    assert_int_equal(check(c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "sources ledger and other both name mysql database shop"));

    /* a files root inside an images root */
    c = cfg_new();
    source(c, "deploy", "images", "manifests", "/srv/deploy");
    source(c, "k8s", "files", "paths", "/srv/x /srv/deploy/k8s");
    assert_int_equal(check(c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "sources deploy and k8s overlap: /srv/deploy/k8s (source k8s) is inside "
                                    "/srv/deploy (source deploy)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distinct_sources_pass),
        cmocka_unit_test(one_target_twice_is_a_usage_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
