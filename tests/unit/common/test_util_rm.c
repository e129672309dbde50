/* Unit tests of common/util's removal: it never leaves the tree it removes. */
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

static char base[64];

static void put(const char *rel, const char *text)
{
    char *p = xasprintf("%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static void dir(const char *rel, mode_t mode)
{
    char *p = xasprintf("%s/%s", base, rel);
    assert_int_equal(mkdir(p, mode), 0);
    free(p);
}

static bool there(const char *rel)
{
    struct stat st;
    char *p = xasprintf("%s/%s", base, rel);
    bool ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof base, "/tmp/test_util_rm.XXXXXX");
    assert_non_null(mkdtemp(base));
    return 0;
}

static int teardown(void **state)
{
    snap_err err;
    (void)state;
    return util_rm_rf(base, &err) == SNAP_OK ? 0 : -1;
}

/* Symlinks inside the tree are removed, never followed: what they point to stays. */
static void symlinks_are_not_followed(void **state)
{
    snap_err err;
    char *out, *victim;
    (void)state;
    dir("victim", 0755);
    put("victim/keep", "keep");
    dir("tree", 0755);
    dir("tree/a", 0755);
    dir("tree/a/b", 0500); /* not writable: removed all the same */
    put("tree/a/b/f", "f");
    put("tree/a/f", "f");
    victim = xasprintf("%s/victim", base);
    out = xasprintf("%s/tree/a/link", base);
    assert_int_equal(symlink(victim, out), 0);
    free(out);
    out = xasprintf("%s/tree/a/b/dirlink", base);
    assert_int_equal(symlink(victim, out), 0);
    free(out);
    out = xasprintf("%s/tree", base);
    assert_int_equal(util_rm_rf(out, &err), SNAP_OK);
    free(out);
    free(victim);
    assert_false(there("tree"));
    assert_true(there("victim/keep"));
}

/* A path that is a symlink to a directory loses the link only. */
static void top_symlink_is_not_followed(void **state)
{
    snap_err err;
    char *victim, *link;
    (void)state;
    dir("victim", 0755);
    put("victim/keep", "keep");
    victim = xasprintf("%s/victim", base);
    link = xasprintf("%s/link", base);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(util_rm_rf(link, &err), SNAP_OK);
    assert_false(there("link"));
    assert_true(there("victim/keep"));
    free(victim);
    free(link);
}

static void missing_is_fine(void **state)
{
    snap_err err;
    char *p = xasprintf("%s/nothing/here", base);
    (void)state;
    assert_int_equal(util_rm_rf(p, &err), SNAP_OK);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(symlinks_are_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(top_symlink_is_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_is_fine, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
