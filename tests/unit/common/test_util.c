/* Unit tests of common/util: util_check_trusted, the StrictModes-like check. */
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

static char *fresh_dir(void)
{
    char tmpl[] = "/tmp/test_util.XXXXXX";
    char *d = mkdtemp(tmpl);

    assert_non_null(d);
    return xstrdup(d);
}

static void touch(const char *path, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void trusted_modes(void **state)
{
    char *d = fresh_dir(), *f = xasprintf("%s/snap.conf", d), *sub = xasprintf("%s/open", d);
    char *inner = xasprintf("%s/open/snap.conf", d), *missing = xasprintf("%s/none", d);
    snap_err err = {0};
    (void)state;

    touch(f, 0600);
    assert_int_equal(util_check_trusted(f, "config file", SNAP_EUSAGE, &err), SNAP_OK);
    assert_int_equal(util_check_trusted(missing, "store", SNAP_EUNREACH, &err), SNAP_OK);
    assert_int_equal(util_check_trusted(d, "store", SNAP_EUNREACH, &err), SNAP_OK);

    chmod(f, 0620);
    assert_int_equal(util_check_trusted(f, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "may be written by group or others"));
    assert_non_null(strstr(err.hint, "chmod go-w"));
    chmod(f, 0602);
    assert_int_equal(util_check_trusted(f, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);

    /* the directory holding it counts, unless it is sticky */
    assert_int_equal(mkdir(sub, 0700), 0);
    touch(inner, 0600);
    chmod(sub, 0777);
    assert_int_equal(util_check_trusted(inner, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "which group or others may write"));
    chmod(sub, 01777);
    assert_int_equal(util_check_trusted(inner, "config file", SNAP_EUSAGE, &err), SNAP_OK);
    /* a sticky directory is no excuse for the entry itself */
    assert_int_equal(util_check_trusted(sub, "store", SNAP_EUNREACH, &err), SNAP_EUNREACH);

    unlink(inner);
    rmdir(sub);
    unlink(f);
    rmdir(d);
    free(d), free(f), free(sub), free(inner), free(missing);
}

static void trusted_owner(void **state)
{
    char *d = fresh_dir(), *f = xasprintf("%s/snap.conf", d), *link = xasprintf("%s/link.conf", d);
    snap_err err = {0};
    (void)state;

    if (geteuid() != 0) {
        rmdir(d);
        free(d), free(f), free(link);
        skip();
    }
    touch(f, 0644);
    assert_int_equal(symlink(f, link), 0);
    assert_int_equal(chown(f, 65534, 65534), 0);
    assert_int_equal(util_check_trusted(f, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "is owned by uid 65534 (neither root nor you)"));
    /* judged where it leads */
    assert_int_equal(util_check_trusted(link, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);
    assert_int_equal(chown(f, 0, 0), 0);
    assert_int_equal(util_check_trusted(link, "config file", SNAP_EUSAGE, &err), SNAP_OK);
    assert_int_equal(chown(d, 65534, 65534), 0);
    assert_int_equal(util_check_trusted(f, "config file", SNAP_EUSAGE, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "which is owned by uid 65534"));

    unlink(link);
    unlink(f);
    rmdir(d);
    free(d), free(f), free(link);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trusted_modes),
        cmocka_unit_test(trusted_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
