/* Unit tests of cmd/opts: whole-name long options, near-miss hints, scopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../cmd/opts.h"

static const opt_def defs[] = {
    {"store", 0, "URL", "TEST_OPTS_STORE", "store", NULL},
    {"files", 0, "PATH", NULL, "files", "create"},
    {"dry-run", 'n', NULL, NULL, "dry run", "prune gc"},
    {"quiet", 'q', NULL, NULL, "quiet", NULL},
    {"jobs", 'j', "N", NULL, "jobs", "create"},
    {"keep-last", 0, "N", NULL, "keep", "prune"},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

/* Parses the words of line (split at spaces); returns the result code. */
static snap_rc parse(const char *line, opts *o, snap_err *err)
{
    static char buf[256];
    static char *argv[32];
    int argc = 0;

    strcpy(buf, line);
    argv[argc++] = (char *)"prog";
    for (char *w = strtok(buf, " "); w != NULL && argc < 31; w = strtok(NULL, " "))
        argv[argc++] = w;
    argv[argc] = NULL;
    return opts_parse(defs, argc, argv, o, err);
}

static void whole_names_only(void **unused)
{
    opts o;
    snap_err err;

    (void)unused;
    assert_int_equal(parse("create --file x p", &o, &err), SNAP_EUSAGE);
    assert_string_equal(err.msg, "unknown option --file");
    assert_non_null(strstr(err.hint, "did you mean --files?"));
    opts_free(&o);
    assert_int_equal(parse("gc --dry", &o, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.hint, "did you mean --dry-run?"));
    opts_free(&o);
    assert_int_equal(parse("gc --dry-runn", &o, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.hint, "did you mean --dry-run?"));
    opts_free(&o);
    assert_int_equal(parse("gc --qiuet", &o, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.hint, "did you mean --quiet?"));
    opts_free(&o);
    assert_int_equal(parse("gc --zzzzzz", &o, &err), SNAP_EUSAGE);
    assert_null(strstr(err.hint, "did you mean"));
    opts_free(&o);
    assert_int_equal(parse("gc --quiet=1", &o, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "takes no value"));
    opts_free(&o);
    assert_int_equal(parse("gc --store", &o, &err), SNAP_EUSAGE);
    assert_string_equal(err.msg, "option --store needs a value");
    opts_free(&o);
    assert_int_equal(parse("gc -x", &o, &err), SNAP_EUSAGE);
    assert_string_equal(err.msg, "unknown option -x");
    opts_free(&o);
}

static void forms_that_stay(void **unused)
{
    opts o;
    snap_err err;

    (void)unused;
    setenv("TEST_OPTS_STORE", "/from/env", 1);
    assert_int_equal(parse("create --files=a p -qnj3 --files b -- --keep-last", &o, &err), SNAP_OK);
    assert_int_equal(o.nwords, 3);
    assert_string_equal(o.words[0], "create");
    assert_string_equal(o.words[1], "p");
    assert_string_equal(o.words[2], "--keep-last");
    assert_true(opts_has(&o, "quiet"));
    assert_true(opts_has(&o, "dry-run"));
    assert_string_equal(opts_get(&o, "jobs"), "3");
    size_t n;
    const char **all = opts_all(&o, "files", &n);
    assert_int_equal(n, 2);
    assert_string_equal(all[0], "a");
    assert_string_equal(all[1], "b");
    free(all);
    assert_string_equal(opts_get(&o, "store"), "/from/env");
    opts_free(&o);
    /* a value may begin with a dash, as with getopt; a flag beats the environment */
    assert_int_equal(parse("list --store -odd -j 2", &o, &err), SNAP_OK);
    assert_string_equal(opts_get(&o, "store"), "-odd");
    assert_string_equal(opts_get(&o, "jobs"), "2");
    opts_free(&o);
    unsetenv("TEST_OPTS_STORE");
}

static void nearest_and_scope(void **unused)
{
    static const char *const cmds[] = {"create", "list", "show", "verify", "delete", "prune", "gc"};

    (void)unused;
    assert_string_equal(opts_nearest("lst", 3, cmds, 7), "list");
    assert_string_equal(opts_nearest("crate", 5, cmds, 7), "create");
    assert_string_equal(opts_nearest("del", 3, cmds, 7), "delete");
    assert_string_equal(opts_nearest("verfiy", 6, cmds, 7), "verify");
    assert_string_equal(opts_nearest("lsit", 4, cmds, 7), "list");
    assert_null(opts_nearest("frobnicate", 10, cmds, 7));
    assert_null(opts_nearest("", 0, cmds, 7));
    assert_true(opts_in_scope(&defs[2], "prune"));
    assert_true(opts_in_scope(&defs[2], "gc"));
    assert_false(opts_in_scope(&defs[2], "g"));
    assert_false(opts_in_scope(&defs[2], "create"));
    assert_true(opts_in_scope(&defs[0], "anything"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_names_only),
        cmocka_unit_test(forms_that_stay),
        cmocka_unit_test(nearest_and_scope),
    };
    return cmocka_run_group_tests_name("opts", tests, NULL, NULL);
}
