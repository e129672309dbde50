/* Unit tests of common/cfg: INI loading, layering, typed values. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/cfg.h"
#include "../../../common/util.h"

static void sizes(void **state)
{
    uint64_t v;
    (void)state;
    assert_true(cfg_parse_size("4096", &v));
    assert_int_equal(v, 4096);
    assert_true(cfg_parse_size("64M", &v));
    assert_int_equal(v, 64ULL << 20);
    assert_true(cfg_parse_size("1GiB", &v));
    assert_int_equal(v, 1ULL << 30);
    assert_false(cfg_parse_size("-1", &v));
    assert_false(cfg_parse_size("12Q", &v));
    assert_false(cfg_parse_size("", &v));
    assert_false(cfg_parse_size("99999999999999999999T", &v));
    assert_false(cfg_parse_size(" -1", &v)); /* strtoull would take it as 2^64 - 1 */
    assert_false(cfg_parse_size("+1", &v));
    assert_false(cfg_parse_size("17179869184G", &v)); /* 2^64 bytes */
}

static void durations(void **state)
{
    int64_t s;
    (void)state;
    assert_true(cfg_parse_duration("90", &s));
    assert_int_equal(s, 90);
    assert_true(cfg_parse_duration("15m", &s));
    assert_int_equal(s, 900);
    assert_true(cfg_parse_duration("7d", &s));
    assert_int_equal(s, 7 * 86400);
    assert_true(cfg_parse_duration("2w", &s));
    assert_int_equal(s, 14 * 86400);
    assert_false(cfg_parse_duration("7x", &s));
    assert_false(cfg_parse_duration("-1d", &s));
    assert_false(cfg_parse_duration(" -1d", &s));
    /* beyond a thousand years: an error, never a wrapped product */
    assert_false(cfg_parse_duration("99999999999999d", &s));
    assert_false(cfg_parse_duration("106751991167301d", &s));
    assert_false(cfg_parse_duration("9223372036854775807w", &s));
    assert_false(cfg_parse_duration("99999999999999999999", &s));
    assert_true(cfg_parse_duration("52000w", &s));
    assert_int_equal(s, 52000LL * 7 * 86400);
}

static bool count(const char *v, void *arg)
{
    (void)v;
    (*(int *)arg)++;
    return true;
}

static void load_and_layer(void **state)
{
    char path[] = "/tmp/snap-cfg-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "[store]\nurl = /a\n[source app]\ntype = files\npath = /x y\npath = /z\n"
                        "[source db]\ntype = postgres\n[snap]\njobs = 9\n";
    cfg *c = cfg_new();
    snap_err err;
    long jobs;
    int n = 0;

    (void)state;
    assert_true(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    assert_int_equal(cfg_load_file(c, path, &err), SNAP_OK);
    assert_string_equal(cfg_get(c, "store", "url"), "/a");
    assert_int_equal(cfg_source_count(c), 2);
    assert_string_equal(cfg_source_name(c, 0), "app");
    assert_string_equal(cfg_source_name(c, 1), "db");
    cfg_each(c, "source app", "path", count, &n);
    assert_int_equal(n, 2);
    cfg_set(c, "store", "url", "/b"); /* a flag beats the file */
    assert_string_equal(cfg_get(c, "store", "url"), "/b");
    cfg_set(c, "snap", "jobs", "9x");
    assert_int_equal(cfg_int(c, "snap", "jobs", &jobs, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "[snap]: jobs = 9x"));
    cfg_free(c);
    unlink(path);
}

static void syntax_error_names_line(void **state)
{
    char path[] = "/tmp/snap-cfg-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "[store]\nurl = /a\nthis is not ini\n";
    cfg *c = cfg_new();
    snap_err err;

    (void)state;
    assert_true(write(fd, text, sizeof text - 1) > 0);
    close(fd);
    assert_int_equal(cfg_load_file(c, path, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "line 3"));
    cfg_free(c);
    unlink(path);
}

/* A line longer than inih's buffer is refused with its number, never split into two keys. */
static void long_line_is_refused(void **state)
{
    char path[] = "/tmp/snap-cfg-XXXXXX";
    int fd = mkstemp(path);
    char text[600];
    cfg *c = cfg_new();
    snap_err err;

    (void)state;
    snprintf(text, sizeof text, "[revert]\nurl = %0190d mode = transaction\n", 0);
    assert_true(write(fd, text, strlen(text)) > 0);
    close(fd);
    assert_int_equal(cfg_load_file(c, path, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, ":2: the line is longer than"));
    assert_null(cfg_get(c, "revert", "mode"));
    cfg_free(c);

    /* 198 characters and the newline still fit */
    c = cfg_new();
    fd = open(path, O_WRONLY | O_TRUNC);
    snprintf(text, sizeof text, "[store]\nurl=%0194d\n", 0);
    assert_true(write(fd, text, strlen(text)) > 0);
    close(fd);
    assert_int_equal(cfg_load_file(c, path, &err), SNAP_OK);
    assert_int_equal(strlen(cfg_get(c, "store", "url")), 194);
    cfg_free(c);
    unlink(path);
}

static snap_rc load_text(const char *text, cfg *c, snap_err *err)
{
    char path[] = "/tmp/snap-cfg-XXXXXX";
    int fd = mkstemp(path);
    snap_rc rc;

    assert_true(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    rc = cfg_load_file(c, path, err);
    unlink(path);
    return rc;
}

/* Unknown keys and sections, and bad values, are refused with file:line and a near name. */
static void declared_keys_only(void **state)
{
    cfg *c = cfg_new();
    snap_err err;
    bool b = false;

    (void)state;
    assert_int_equal(load_text("[store]\nurll = /a\n", c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, ":2: unknown key 'urll' in [store]"));
    assert_non_null(strstr(err.hint, "did you mean 'url'?"));
    assert_int_equal(load_text("[snap]\nzstd_levl = 3\n", c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.hint, "'zstd_level'"));
    assert_int_equal(load_text("[store]\nurl = /a\n\n[sorce web]\ntype = files\n", c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, ":4: unknown section [sorce web]"));
    assert_non_null(strstr(err.hint, "did you mean [source web]?"));
    assert_int_equal(load_text("[revert]\nallow_external_symlinks = maybe\n", c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, ":2: [revert]: allow_external_symlinks = maybe: expected a boolean"));
    assert_int_equal(load_text("[revert]\nkeep_old = 7x\n", c, &err), SNAP_EUSAGE);
    assert_int_equal(load_text("[snap]\npart_size = 12Q\n", c, &err), SNAP_EUSAGE);
    assert_int_equal(load_text("[source w]\ntype = files\nexclude = a,b\n", c, &err), SNAP_EUSAGE);
    assert_int_equal(load_text("[source w]\ntype = rsync\n", c, &err), SNAP_EUSAGE);
    assert_int_equal(cfg_file_count(c), 0); /* nothing of a refused file is kept */
    /* one boolean syntax, stored as one spelling so that every reader agrees */
    assert_int_equal(load_text("[revert]\nallow_external_symlinks = YES\npin = Off\n", c, &err), SNAP_OK);
    assert_string_equal(cfg_get(c, "revert", "allow_external_symlinks"), "true");
    assert_string_equal(cfg_get(c, "revert", "pin"), "false");
    assert_true(cfg_parse_bool("on", &b) && b);
    assert_true(cfg_parse_bool("0", &b) && !b);
    assert_false(cfg_parse_bool("maybe", &b));
    assert_false(cfg_parse_bool("", &b));
    cfg_free(c);
}

/* A later file replaces the keys it sets; origins name file:line, then the environment. */
static void layering_and_origin(void **state)
{
    cfg *c = cfg_new();
    snap_err err;

    (void)state;
    assert_int_equal(load_text("[snap]\nzstd_level = 5\njobs = 2\n[source a]\ntype = files\npath = /x\npath = /y\n",
                               c, &err), SNAP_OK);
    assert_int_equal(load_text("[snap]\nzstd_level = 7\n[source a]\npath = /z\n", c, &err), SNAP_OK);
    assert_string_equal(cfg_get(c, "snap", "zstd_level"), "7");
    assert_string_equal(cfg_get(c, "snap", "jobs"), "2");
    assert_non_null(strstr(cfg_origin(c, "snap", "zstd_level"), ":2"));
    assert_string_equal(cfg_origin(c, "snap", "zstd_threads"), "default");
    setenv("SNAP_JOBS", "3", 1);
    assert_int_equal(cfg_apply_env(c, &err), SNAP_OK);
    assert_string_equal(cfg_get(c, "snap", "jobs"), "3");
    assert_string_equal(cfg_origin(c, "snap", "jobs"), "environment $SNAP_JOBS");
    setenv("SNAP_JOBS", "lots", 1);
    assert_int_equal(cfg_apply_env(c, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "$SNAP_JOBS"));
    unsetenv("SNAP_JOBS");
    cfg_free(c);
}

/* Every key of the table has a type, a doc line and sane bounds; names are unique. */
static void table_is_sound(void **state)
{
    size_t n;
    const cfg_key *k = cfg_keys(&n);

    (void)state;
    assert_true(n > 40);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(k[i].doc);
        assert_non_null(k[i].def);
        assert_true(k[i].type != CFG_ENUM || k[i].values != NULL);
        assert_true(k[i].type != CFG_INT || k[i].min <= k[i].max);
        for (size_t j = i + 1; j < n; j++)
            assert_false(strcmp(k[i].section, k[j].section) == 0 && strcmp(k[i].name, k[j].name) == 0);
    }
}

/* Reading a key nobody declared is a bug of the program: it stops at once. */
static void undeclared_read_aborts(void **state)
{
    int status = 0;
    pid_t pid;

    (void)state;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cfg *c = cfg_new();
        freopen("/dev/null", "w", stderr);
        (void)cfg_get(c, "store", "urll");
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    assert_non_null(cfg_key_find("source web", "dsn"));
    assert_null(cfg_key_find("store", "dsn"));
}

/* The typed reads take the default and the range from the table, not from the caller. */
static void typed_reads_use_the_table(void **state)
{
    cfg *c = cfg_new();
    snap_err err;
    long n = -1;
    uint64_t size = 0;
    bool b = false;
    int64_t secs = 0;
    const char *s = NULL;
    util_strv words = {0};

    (void)state;
    /* unset: the table's defaults */
    assert_int_equal(cfg_int(c, "snap", "zstd_level", &n, &err), SNAP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(cfg_size(c, "store", "part_size", &size, &err), SNAP_OK);
    assert_int_equal(size, 16ULL << 20);
    assert_int_equal(cfg_size(c, "source db", "split_size", &size, &err), SNAP_OK);
    assert_int_equal(size, 64ULL << 20);
    assert_int_equal(cfg_bool(c, "store", "tls_verify", &b, &err), SNAP_OK);
    assert_true(b);
    assert_int_equal(cfg_duration(c, "revert", "keep_old", &secs, &err), SNAP_OK);
    assert_int_equal(secs, 7 * 86400);
    assert_int_equal(cfg_str(c, "revert", "mode", &s, &err), SNAP_OK);
    assert_string_equal(s, "swap");
    /* a default the table only describes leaves the caller's derived one */
    b = false;
    assert_int_equal(cfg_bool(c, "store", "path_style", &b, &err), SNAP_OK);
    assert_false(b);
    n = 0;
    assert_int_equal(cfg_int(c, "snap", "jobs", &n, &err), SNAP_OK);
    assert_int_equal(n, 0);
    /* set values, read through the same parse */
    assert_int_equal(load_text("[snap]\nzstd_level = 19\n[source db]\ntype = postgres\nchunk_size = 64K\n"
                               "schema = a b\nschema = c\n[source f]\ntype = files\npath = /x y\npath = /z\n",
                               c, &err), SNAP_OK);
    assert_int_equal(cfg_int(c, "snap", "zstd_level", &n, &err), SNAP_OK);
    assert_int_equal(n, 19);
    assert_int_equal(cfg_size(c, "source db", "chunk_size", &size, &err), SNAP_OK);
    assert_int_equal(size, 64 << 10);
    cfg_list(c, "source db", "schema", &words);
    assert_int_equal(words.n, 3);
    assert_string_equal(words.v[2], "c");
    util_strv_free(&words);
    cfg_list(c, "source f", "path", &words);
    assert_int_equal(words.n, 2);
    assert_string_equal(words.v[0], "/x y");
    util_strv_free(&words);
    /* out of the table's range: refused, naming where the value came from and the key */
    cfg_set_from(c, "snap", "zstd_level", "20", "/etc/snap/snap.conf:7");
    n = 5;
    assert_int_equal(cfg_int(c, "snap", "zstd_level", &n, &err), SNAP_EUSAGE);
    assert_int_equal(n, 5);
    assert_non_null(strstr(err.msg, "config file /etc/snap/snap.conf:7: [snap]: zstd_level = 20"));
    assert_non_null(strstr(err.msg, "from 1 to 19"));
    cfg_set_from(c, "source db", "chunk_size", "4095", "flag --chunk-size");
    assert_int_equal(cfg_size(c, "source db", "chunk_size", &size, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "flag --chunk-size: [source db]: chunk_size = 4095"));
    assert_non_null(strstr(err.msg, "at least 4096"));
    cfg_set_from(c, "revert", "lock_wait_timeout", "0s", "x.conf:2");
    assert_int_equal(cfg_duration(c, "revert", "lock_wait_timeout", &secs, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "x.conf:2"));
    cfg_set_from(c, "revert", "mode", "rename", "x.conf:3");
    assert_int_equal(cfg_str(c, "revert", "mode", &s, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "x.conf:3: [revert]: mode = rename: expected swap or transaction"));
    cfg_free(c);
}

/* Reading a key as another type than its declared one is a bug of the program. */
static void typed_read_of_wrong_type_aborts(void **state)
{
    int status = 0;
    pid_t pid;

    (void)state;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cfg *c = cfg_new();
        long n;
        freopen("/dev/null", "w", stderr);
        (void)cfg_int(c, "store", "part_size", &n, NULL);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes),
        cmocka_unit_test(durations),
        cmocka_unit_test(load_and_layer),
        cmocka_unit_test(syntax_error_names_line),
        cmocka_unit_test(long_line_is_refused),
        cmocka_unit_test(declared_keys_only),
        cmocka_unit_test(layering_and_origin),
        cmocka_unit_test(table_is_sound),
        cmocka_unit_test(undeclared_read_aborts),
        cmocka_unit_test(typed_reads_use_the_table),
        cmocka_unit_test(typed_read_of_wrong_type_aborts),
    };
    return cmocka_run_group_tests_name("cfg", tests, NULL, NULL);
}
