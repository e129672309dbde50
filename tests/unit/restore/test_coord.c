/*
 * Unit tests of the store journal (restore/coord.c) on a local store: what is written is
 * signed and read back as authenticated, an edit or another host's key is not, and a lease
 * is stale only when the store's clock says it ran out a lease ago.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../restore/coord.h"

#define ID "20261130T070000.000Z-0a1b2c3d"

typedef struct fixture {
    char *dir, *store_dir;
    cfg *c;
    snap_ctx ctx;
    stg *s;
    rst_coord *co;
} fixture;

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof *f);
    char tmpl[] = "/tmp/test_coord.XXXXXX", *keyfile;
    snap_err err;
    FILE *k;

    if (mkdtemp(tmpl) == NULL)
        return -1;
    f->dir = xstrdup(tmpl);
    f->store_dir = xasprintf("%s/store", f->dir);
    keyfile = xasprintf("%s/shared.key", f->dir);
    k = fopen(keyfile, "w");
    if (k == NULL)
        return -1;
    fputs("0123456789abcdef0123456789abcdef", k);
    fclose(k);
    chmod(keyfile, 0600);
    f->c = cfg_new();
    cfg_set(f->c, "revert", "state_dir", f->dir);
    cfg_set(f->c, "store", "auth_key_file", keyfile);
    free(keyfile);
    f->ctx.verbosity = -1;
    f->ctx.cfg = f->c;
    if (stg_open(f->store_dir, true, &f->ctx, &f->s, &err) != SNAP_OK)
        return -1;
    if (coord_new(&f->ctx, f->s, "runner-a", 10, &f->co, &err) != SNAP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    coord_free(f->co);
    stg_free(f->s);
    cfg_free(f->c);
    util_rm_rf(f->dir, NULL);
    free(f->store_dir);
    free(f->dir);
    free(f);
    return 0;
}

typedef struct seen {
    size_t n;
    auth_status auth;
    bool stale;
    int64_t lease;
    char host[64];
} seen;

static snap_rc note(const coord_journal *cj, void *arg, snap_err *err)
{
    seen *s = arg;

    (void)err;
    s->n++;
    s->auth = cj->auth;
    s->stale = cj->stale;
    s->lease = cj->lease;
    snprintf(s->host, sizeof s->host, "%s",
             json_string_value(json_object_get(json_object_get(cj->doc, "lease"), "host")));
    return SNAP_OK;
}

static void save(fixture *f)
{
    json_t *doc = json_pack("{s:i, s:s, s:s}", "format", 1, "revert_id", ID, "phase", "stage");
    snap_err err;

    assert_int_equal(coord_save(f->co, ID, doc, &err), SNAP_OK);
    json_decref(doc);
}

static char *object_path(fixture *f)
{
    return xasprintf("%s/journal/" ID ".json", f->store_dir);
}

static void test_saved_journal_is_authenticated_and_fresh(void **state)
{
    fixture *f = *state;
    seen s = {0};
    snap_err err;

    save(f);
    assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.auth, AUTH_OK);
    assert_false(s.stale);
    assert_int_equal(s.lease, 10);
    assert_string_equal(s.host, "runner-a");
}

static void test_edited_journal_is_not_authenticated(void **state)
{
    fixture *f = *state;
    char *path = object_path(f), *buf = NULL, *p;
    size_t len = 0;
    seen s = {0};
    snap_err err;
    FILE *fp;

    save(f);
    fp = fopen(path, "r");
    assert_non_null(fp);
    buf = xcalloc(1, 1 << 16);
    len = fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    p = strstr(buf, "\"stage\"");
    assert_non_null(p);
    memcpy(p, "\"plan\" ", 7);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fwrite(buf, 1, len, fp);
    fclose(fp);
    assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.auth, AUTH_BAD);
    free(buf);
    free(path);
}

static void test_other_key_is_not_authenticated(void **state)
{
    fixture *f = *state;
    rst_coord *other = NULL;
    seen s = {0};
    snap_err err;

    save(f);
    /* a runner without the shared key (its own host key only, in its own state directory) */
    char *elsewhere = xasprintf("%s/b", f->dir);
    assert_int_equal(mkdir(elsewhere, 0700), 0);
    cfg_set(f->c, "store", "auth_key_file", "");
    cfg_set(f->c, "revert", "state_dir", elsewhere);
    free(elsewhere);
    assert_int_equal(coord_new(&f->ctx, f->s, "runner-b", 10, &other, &err), SNAP_OK);
    assert_int_equal(coord_each(other, note, &s, &err), SNAP_OK);
    assert_int_equal(s.auth, AUTH_UNKNOWN);
    coord_free(other);
}

static void test_lease_is_stale_only_two_leases_after_renewal(void **state)
{
    fixture *f = *state;
    char *path = object_path(f);
    struct utimbuf old;
    seen s = {0};
    snap_err err;

    save(f);
    old.actime = old.modtime = time(NULL) - 15; /* expired, but not a lease ago */
    assert_int_equal(utime(path, &old), 0);
    assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    assert_false(s.stale);
    old.actime = old.modtime = time(NULL) - 25;
    assert_int_equal(utime(path, &old), 0);
    assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    assert_true(s.stale);
    /* the renewal thread rewrites it: fresh again */
    coord_lease_start(f->co);
    for (int i = 0; i < 50 && s.stale; i++) {
        usleep(100000);
        assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    }
    assert_false(s.stale);
    coord_remove(f->co, ID);
    s.n = 0;
    assert_int_equal(coord_each(f->co, note, &s, &err), SNAP_OK);
    assert_int_equal(s.n, 0);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saved_journal_is_authenticated_and_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_journal_is_not_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_key_is_not_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_is_stale_only_two_leases_after_renewal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
