/* Unit tests of an encrypted store through the store interface (mem://): what is sealed,
 * what is refused, sizes, and ranged reads that start and end inside segments. */
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

#include "../../../storage/storage_int.h"

#define ID "20261130T070620.415Z-0196fe77"
#define PART "data/" ID "/app.0000.tar.zst.enc"
#define LEN 300000

typedef struct fixture {
    snap_ctx ctx;
    cfg *c;
    stg *s;
    char dir[64], key[96];
    unsigned char *data;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snap_err err;
    FILE *k;

    snprintf(f->dir, sizeof f->dir, "/tmp/test-enc.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->key, sizeof f->key, "%s/key", f->dir);
    k = fopen(f->key, "w");
    fputs("0123456789abcdef0123456789abcdef", k); /* 32 bytes: a raw key */
    fclose(k);
    chmod(f->key, 0600);
    f->c = cfg_new();
    cfg_set(f->c, "store", "key_file", f->key);
    f->ctx.cfg = f->c;
    if (stg_open("mem://enc", true, &f->ctx, &f->s, &err) != SNAP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    f->data = malloc(LEN);
    for (size_t i = 0; i < LEN; i++)
        f->data[i] = (unsigned char)(i * 31 + (i >> 9));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    stg_free(f->s);
    cfg_free(f->c);
    unlink(f->key);
    rmdir(f->dir);
    free(f->data);
    free(f);
    return 0;
}

static void sealed_and_sized(void **state)
{
    fixture *f = *state;
    snap_err err;
    uint64_t size = 0;
    char *buf = NULL;
    size_t len = 0;

    assert_true(stg_encrypted(f->s));
    assert_int_equal(stg_snapshot_key_new(f->s, ID, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, PART, f->data, LEN, 0, &err), SNAP_OK);
    assert_int_equal(stg_stat(f->s, PART, &size, &err), SNAP_OK);
    assert_int_equal(size, LEN); /* the plain size, as the manifest records it */
    assert_int_equal(stg_get(f->s, PART, 1 << 20, &buf, &len, &err), SNAP_OK);
    assert_int_equal(len, LEN);
    assert_memory_equal(buf, f->data, LEN);
    free(buf);
    /* anything else must not be written in the clear */
    assert_int_equal(stg_put(f->s, "catalog/x.json", "{}", 2, 0, &err), SNAP_EFAIL);
    assert_int_equal(stg_put(f->s, "reverts/y.json", "{}", 2, 0, &err), SNAP_EFAIL);
    /* a snapshot without a data key cannot be written */
    assert_int_equal(stg_put(f->s, "data/20261130T000000.000Z-00000000/a.enc", "x", 1, 0, &err), SNAP_EVERIFY);
}

static void ranged_reads(void **state)
{
    fixture *f = *state;
    static const uint64_t ranges[][2] = {
        {0, 10}, {1, 65535}, {65535, 2}, {65536, 65536}, {100000, 0}, {299999, 1}, {131071, 70000}, {290000, 50000},
    };
    unsigned char *buf = malloc(LEN);
    snap_err err;

    assert_int_equal(stg_snapshot_key_new(f->s, ID, &err), SNAP_OK);
    assert_int_equal(stg_put(f->s, PART, f->data, LEN, 0, &err), SNAP_OK);
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        uint64_t off = ranges[i][0], want = ranges[i][1] == 0 || off + ranges[i][1] > LEN ? LEN - off : ranges[i][1];
        stg_reader *r;
        size_t n = 0, got;

        assert_int_equal(stg_reader_open(f->s, PART, off, ranges[i][1], &r, &err), SNAP_OK);
        do {
            assert_int_equal(stg_read(r, buf + n, LEN - n, &got, &err), SNAP_OK);
            n += got;
        } while (got > 0);
        stg_reader_free(r);
        assert_int_equal(n, want);
        assert_memory_equal(buf, f->data + off, n);
    }
    free(buf);
}

/* The seal of an envelope binds its name: moved elsewhere it does not open. */
static void envelopes_bind_their_name(void **state)
{
    fixture *f = *state;
    char *b64 = NULL, *text = NULL;
    size_t len;
    snap_err err;

    assert_int_equal(stg_snapshot_key_new(f->s, ID, &err), SNAP_OK);
    assert_int_equal(stg_seal(f->s, ID, "catalog/a.json", "{\"x\": 1}", 8, &b64, &err), SNAP_OK);
    assert_int_equal(stg_unseal(f->s, ID, "catalog/a.json", b64, 1024, &text, &len, &err), SNAP_OK);
    assert_string_equal(text, "{\"x\": 1}");
    free(text);
    assert_int_equal(stg_unseal(f->s, ID, "catalog/b.json", b64, 1024, &text, &len, &err), SNAP_EVERIFY);
    free(b64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sealed_and_sized, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(envelopes_bind_their_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
