/* Unit tests of common/util: the StrictModes-like trust check, UTF-8 checks, escaping for
 * the terminal, paths without a cwd. */
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


static void utf8(void **state)
{
    (void)state;
    assert_true(util_utf8_valid(""));
    assert_true(util_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    assert_false(util_utf8_valid("caf\xe9"));
    assert_false(util_utf8_valid("\xc0\xaf"));         /* overlong '/' */
    assert_false(util_utf8_valid("\xed\xa0\x80"));     /* a surrogate */
    assert_false(util_utf8_valid("\xf4\x90\x80\x80")); /* beyond U+10FFFF */
    assert_false(util_utf8_valid("\xe2\x82"));         /* cut short */
}

static void lossless(void **state)
{
    char *s;
    (void)state;
    s = util_utf8_lossless("caf\xe9 \xc3\xa9\xff");
    assert_string_equal(s, "caf\\xe9 \xc3\xa9\\xff");
    free(s);
}

static void escape(void **state)
{
    char *s;
    (void)state;
    s = util_escape("a\033[2Jb\r\n\t\x7f\xc2\x9b\xe2\x80\xae\xff caf\xc3\xa9");
    assert_string_equal(s, "a\\x1b[2Jb\\r\\n\\t\\x7f\\u{009b}\\u{202e}\\xff caf\xc3\xa9");
    free(s);
    s = util_escape(NULL);
    assert_string_equal(s, "");
    free(s);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    s = util_vasprintf_esc(f, ap);
    va_end(ap);
    return s;
}

static void printf_escapes_arguments_only(void **state)
{
    char *s;
    (void)state;
    s = fmt("%s=%d\n", "k\033x", 7);
    assert_string_equal(s, "k\\x1bx=7\n");
    free(s);
    s = fmt("[%-6s|%6s|%.2s|%c|%zu|%lld|%5.1f|%%|%x]", "ab", "\033", "xyz", '\a', (size_t)3, -4LL, 2.25, 255u);
    assert_string_equal(s, "[ab    |  \\x1b|xy|\\x07|3|-4|  2.2|%|ff]");
    free(s);
    s = fmt("%*s|%-*s|", 4, "a", 3, "b");
    assert_string_equal(s, "   a|b  |");
    free(s);
}

static void abspath_without_cwd(void **state)
{
    char dir[] = "/tmp/snap-util-XXXXXX", *p;
    snap_err err;
    int here = open(".", O_RDONLY);

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_null(util_abspath("rel"));
    assert_int_equal(util_abspath_err("rel", &p, &err), SNAP_EUSAGE);
    assert_null(p);
    assert_non_null(strstr(err.msg, "cannot resolve the relative path rel"));
    p = util_abspath("/x/../y/./z");
    assert_string_equal(p, "/y/z");
    free(p);
    assert_int_equal(fchdir(here), 0);
    close(here);
}

static void one_time_parser(void **state)
{
    const char *rest = NULL;
    time_t t;

    (void)state;
    assert_int_equal(util_parse_time("2026-11-26T05:53:58.123Z", &rest), 1795672438);
    assert_string_equal(rest, "");
    assert_int_equal(util_parse_time("20261126T055358.123Z-1a2b3c4d", &rest), 1795672438);
    assert_string_equal(rest, "-1a2b3c4d");
    assert_int_equal(util_parse_time("yesterday", NULL), 0);
    assert_true(util_parse_iso8601("2026-11-26T05:53:58Z", &t));
    assert_int_equal(t, 1795672438);
    assert_false(util_parse_iso8601("2026-11-26T05:53:58", &t)); /* no zone */
    assert_false(util_parse_iso8601("2026-11-26T05:53:58Zjunk", &t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trusted_modes),
        cmocka_unit_test(trusted_owner),
        cmocka_unit_test(utf8),
        cmocka_unit_test(lossless),
        cmocka_unit_test(escape),
        cmocka_unit_test(printf_escapes_arguments_only),
        cmocka_unit_test(abspath_without_cwd),
        cmocka_unit_test(one_time_parser),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
