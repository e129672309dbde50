/* Unit tests of common/util: UTF-8 checks, escaping for the terminal, paths without a cwd. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8),
        cmocka_unit_test(lossless),
        cmocka_unit_test(escape),
        cmocka_unit_test(printf_escapes_arguments_only),
        cmocka_unit_test(abspath_without_cwd),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
