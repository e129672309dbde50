/* Unit tests of common/util's file operations: removal never leaves the tree it removes; a
 * whole-file write replaces its file, with its mode, through no name a symlink could
 * redirect, and leaves nothing else in its directory; a temporary file has no name. */
#include <dirent.h>
#include <fcntl.h>
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
    snprintf(base, sizeof base, "/tmp/test_util_files.XXXXXX");
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

/* The names in dir, sorted and joined by spaces ("" when empty). */
static char *names(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    util_buf b = {0};

    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") != 0 && strcmp(list[i]->d_name, "..") != 0) {
            if (b.len > 0)
                util_buf_addc(&b, ' ');
            util_buf_adds(&b, list[i]->d_name);
        }
        free(list[i]);
    }
    free(list);
    return util_buf_take(&b);
}

static char *slurp(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return xstrdup(buf);
}

static void replaces_whole_with_its_mode(void **state)
{
    char *p = xasprintf("%s/lock.json", base), *text, *list;
    struct stat st;
    snap_err err = {0};
    (void)state;

    assert_int_equal(util_write_file(p, "one\n", 4, 0644, &err), SNAP_OK);
    assert_int_equal(util_write_file(p, "two, longer\n", 12, 0600, &err), SNAP_OK);
    text = slurp(p);
    assert_string_equal(text, "two, longer\n");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    list = names(base);
    assert_string_equal(list, "lock.json"); /* no temporary file beside it */
    free(list);
    free(text);
    free(p);
}

/* A symlink where the file goes is replaced, not followed: its target keeps its bytes. */
static void symlink_is_replaced_not_followed(void **state)
{
    char *p = xasprintf("%s/out.json", base), *victim = xasprintf("%s/victim", base), *text;
    struct stat st;
    snap_err err = {0};
    int fd = open(victim, O_WRONLY | O_CREAT, 0600);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    assert_int_equal(symlink(victim, p), 0);
    assert_int_equal(util_write_file(p, "new", 3, 0644, &err), SNAP_OK);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    text = slurp(victim);
    assert_string_equal(text, "keep");
    free(text);
    free(victim);
    free(p);
}

static void missing_directory_is_an_error_and_leaves_nothing(void **state)
{
    char *p = xasprintf("%s/none/lock.json", base), *list;
    snap_err err = {0};
    (void)state;

    assert_int_equal(util_write_file(p, "x", 1, 0644, &err), SNAP_ENOTFOUND);
    assert_non_null(strstr(err.msg, p));
    list = names(base);
    assert_string_equal(list, "");
    free(list);
    free(p);
}

static void tmpfile_has_no_name(void **state)
{
    char buf[8] = "", *list;
    int fd = util_tmpfile(base, O_RDWR, 0600);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    list = names(base);
    assert_string_equal(list, "");
    assert_int_equal(pwrite(fd, "abc", 3, 0), 3);
    assert_int_equal(pread(fd, buf, sizeof buf - 1, 0), 3);
    assert_string_equal(buf, "abc");
    close(fd);
    free(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(symlinks_are_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(top_symlink_is_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(replaces_whole_with_its_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(symlink_is_replaced_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_directory_is_an_error_and_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(tmpfile_has_no_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
