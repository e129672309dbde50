/* Unit tests of common/crypt: known answers of the construction (computed with Python's
 * cryptography package from docs/encryption.md, not with this code), and every way a
 * stored object can be damaged or moved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/cry.h"
#include "../../../common/util.h"

#define SEG 1024u
#define STORE "0123456789abcdef0123456789abcdef"
#define NAME "data/20261130T070620.415Z-0196fe77/app.0000.tar.zst.enc"

typedef struct blob {
    unsigned char *p;
    size_t len, off;
} blob;

static snap_rc sink(void *arg, const void *buf, size_t len, snap_err *err)
{
    blob *b = arg;

    (void)err;
    b->p = realloc(b->p, b->len + len);
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return SNAP_OK;
}

/* Hands out at most 100 bytes at a time: segments never arrive whole. */
static snap_rc source(void *arg, void *buf, size_t cap, size_t *got, snap_err *err)
{
    blob *b = arg;

    (void)err;
    *got = b->len - b->off < cap ? b->len - b->off : cap;
    if (*got > 100)
        *got = 100;
    memcpy(buf, b->p + b->off, *got);
    b->off += *got;
    return SNAP_OK;
}

static cry_key *test_key(void)
{
    unsigned char b[32];
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    return cry_key_from(b, sizeof b);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 7) & 0xff);
    return p;
}

/* Seals n pattern bytes in writes of 333 bytes with the fixed salt 0xa5... */
static blob seal(size_t n, const char *name)
{
    unsigned char salt[CRY_SALT_LEN], *pt = pattern(n);
    cry_key *k = test_key();
    blob b = {0};
    snap_err err;
    cry_writer *w;

    memset(salt, 0xa5, sizeof salt);
    w = cry_writer_new(k, SEG, STORE, name, salt, sink, &b);
    for (size_t off = 0; off < n; off += 333)
        assert_int_equal(cry_writer_write(w, pt + off, n - off < 333 ? n - off : 333, &err), SNAP_OK);
    assert_int_equal(cry_writer_finish(w, &err), SNAP_OK);
    cry_writer_free(w);
    cry_key_free(k);
    free(pt);
    return b;
}

/* Opens b as name; returns the rc and the plain bytes read (in *out, *n). */
static snap_rc open_blob(blob *b, const char *name, unsigned char **out, size_t *n, snap_err *err)
{
    cry_key *k = test_key();
    cry_reader *r = cry_reader_new(k, SEG, STORE, name, source, b);
    unsigned char buf[700];
    size_t got;
    snap_rc rc;

    *out = NULL;
    *n = 0;
    b->off = 0;
    do {
        rc = cry_reader_read(r, buf, sizeof buf, &got, err);
        if (rc == SNAP_OK && got > 0) {
            *out = realloc(*out, *n + got);
            memcpy(*out + *n, buf, got);
            *n += got;
        }
    } while (rc == SNAP_OK && got > 0);
    cry_reader_free(r);
    cry_key_free(k);
    return rc;
}

static void known_answers(void **state)
{
    static const struct {
        size_t n, stored;
        const char *sha;
    } v[] = {
        {2500, 2592, "685e18d72d3330388fbeba0fdca5cb15dc682cc37ff52bb91e9511736160ddef"},
        {2048, 2124, "256a2c1e4cf647b9cd756da6bea38f47fbeef6ea6faab1b5fcd7dcf63ea21e81"}, /* last segment full */
        {0, 60, "2a3a6e9ecff7acc8a7f9138061921a506f56d4bb171dd49c0a1f0ffe1fb60b2b"},      /* one empty final segment */
    };
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        blob b = seal(v[i].n, NAME);
        util_sha256 *h = util_sha256_new();
        char hex[65];
        unsigned char *pt, *want = pattern(v[i].n);
        size_t n;
        snap_err err;

        util_sha256_update(h, b.p, b.len);
        util_sha256_final(h, hex);
        assert_int_equal(b.len, v[i].stored);
        assert_int_equal(cry_stored_size(v[i].n, SEG), v[i].stored);
        assert_true(cry_plain_size(v[i].stored, SEG, &n));
        assert_int_equal(n, v[i].n);
        assert_string_equal(hex, v[i].sha);
        assert_int_equal(open_blob(&b, NAME, &pt, &n, &err), SNAP_OK);
        assert_int_equal(n, v[i].n);
        assert_memory_equal(pt, want, n);
        free(pt);
        free(want);
        free(b.p);
    }
}

static void key_id_and_scrypt(void **state)
{
    cry_key *k = test_key(), *kek = NULL;
    char id[CRY_ID_LEN + 1];
    const char *pass = "correct horse battery staple\n";
    cry_secret *s = cry_secret_new((const unsigned char *)pass, strlen(pass), false, "test");
    json_t *kdf = json_pack("{s:s, s:s, s:i, s:i, s:i}", "alg", "scrypt", "salt", "0123456789abcdef", "n", 1024, "r",
                            8, "p", 1);
    cry_key *want;
    unsigned char wb[32];
    const char *hex = "ec09f322cc31c048a7a70cfe9edc9d9dd61f5473ef3800a65fd56fa3c84ed6a3";
    char id2[CRY_ID_LEN + 1];
    snap_err err;

    (void)state;
    cry_key_id(k, id);
    assert_string_equal(id, "bb7a6fb5cd9796c3");
    /* 29 bytes with a newline: a passphrase, the newline dropped; scrypt as Python's hashlib */
    assert_true(cry_secret_is_passphrase(s));
    assert_int_equal(cry_kek_derive(s, kdf, &kek, &err), SNAP_OK);
    for (int i = 0; i < 32; i++)
        sscanf(hex + 2 * i, "%2hhx", &wb[i]);
    want = cry_key_from(wb, 32);
    cry_key_id(want, id);
    cry_key_id(kek, id2);
    assert_string_equal(id, id2);
    /* parameters a hostile STORE.json might ask for are refused */
    json_object_set_new(kdf, "n", json_integer(1 << 30));
    cry_key_free(kek);
    assert_int_equal(cry_kek_derive(s, kdf, &kek, &err), SNAP_EVERIFY);
    json_decref(kdf);
    cry_key_free(want);
    cry_key_free(k);
    cry_secret_free(s);
}

static void wrap_binds_its_context(void **state)
{
    cry_key *kek = cry_key_random(), *k = cry_key_random(), *got = NULL, *other = cry_key_random();
    char *w = cry_wrap(kek, k, "ctx-a"), a[CRY_ID_LEN + 1], b[CRY_ID_LEN + 1];
    snap_err err;

    (void)state;
    assert_int_equal(cry_unwrap(kek, w, "ctx-a", &got, &err), SNAP_OK);
    cry_key_id(k, a);
    cry_key_id(got, b);
    assert_string_equal(a, b);
    cry_key_free(got);
    assert_int_equal(cry_unwrap(kek, w, "ctx-b", &got, &err), SNAP_EVERIFY);
    assert_int_equal(cry_unwrap(other, w, "ctx-a", &got, &err), SNAP_EVERIFY);
    w[30] = w[30] == '0' ? '1' : '0';
    assert_int_equal(cry_unwrap(kek, w, "ctx-a", &got, &err), SNAP_EVERIFY);
    free(w);
    cry_key_free(kek);
    cry_key_free(k);
    cry_key_free(other);
}

static void expect_refused(blob *b, const char *name)
{
    unsigned char *pt;
    size_t n;
    snap_err err;

    assert_int_equal(open_blob(b, name, &pt, &n, &err), SNAP_EVERIFY);
    free(pt);
}

static void tampering_is_detected(void **state)
{
    const size_t seg_len = SEG + CRY_TAG_LEN, offs[] = {3, 20, CRY_HDR_LEN + 5, CRY_HDR_LEN + seg_len + 7, 2590};
    blob b = seal(2500, NAME), t;
    unsigned char tmp[SEG + CRY_TAG_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) { /* magic, salt, segments, last tag */
        b.p[offs[i]] ^= 0x01;
        expect_refused(&b, NAME);
        b.p[offs[i]] ^= 0x01;
    }
    expect_refused(&b, "data/20261130T070620.415Z-0196fe77/app.0001.tar.zst.enc"); /* another object's name */
    t = b;
    t.len = CRY_HDR_LEN + 2 * seg_len; /* truncated at a segment boundary */
    expect_refused(&t, NAME);
    t.len = 2500; /* truncated inside the last segment */
    expect_refused(&t, NAME);
    memcpy(tmp, b.p + CRY_HDR_LEN, seg_len); /* two segments swapped */
    memmove(b.p + CRY_HDR_LEN, b.p + CRY_HDR_LEN + seg_len, seg_len);
    memcpy(b.p + CRY_HDR_LEN + seg_len, tmp, seg_len);
    expect_refused(&b, NAME);
    free(b.p);
    b = seal(2500, NAME); /* bytes appended after the final segment */
    b.p = realloc(b.p, b.len + 16);
    memset(b.p + b.len, 0, 16);
    b.len += 16;
    expect_refused(&b, NAME);
    free(b.p);
}

/* A ranged read starts at the segment that holds its first byte and drops what is before. */
static void ranged_read(void **state)
{
    blob b = seal(2500, NAME), tail;
    cry_key *k = test_key();
    cry_reader *r;
    unsigned char buf[4096], *want = pattern(2500);
    size_t got, n = 0;
    snap_err err;

    (void)state;
    tail.p = b.p + CRY_HDR_LEN + (SEG + CRY_TAG_LEN);
    tail.len = b.len - CRY_HDR_LEN - (SEG + CRY_TAG_LEN);
    tail.off = 0;
    r = cry_reader_new(k, SEG, STORE, NAME, source, &tail);
    cry_reader_range(r, b.p, 1, 2, 100);
    do {
        assert_int_equal(cry_reader_read(r, buf + n, sizeof buf - n, &got, &err), SNAP_OK);
        n += got;
    } while (got > 0);
    assert_int_equal(n, 2500 - SEG - 100);
    assert_memory_equal(buf, want + SEG + 100, n);
    cry_reader_free(r);
    /* the same bytes claimed to be segment 0 fail */
    tail.off = 0;
    r = cry_reader_new(k, SEG, STORE, NAME, source, &tail);
    cry_reader_range(r, b.p, 0, 1, 0);
    assert_int_equal(cry_reader_read(r, buf, sizeof buf, &got, &err), SNAP_EVERIFY);
    cry_reader_free(r);
    cry_key_free(k);
    free(want);
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),
        cmocka_unit_test(key_id_and_scrypt),
        cmocka_unit_test(wrap_binds_its_context),
        cmocka_unit_test(tampering_is_detected),
        cmocka_unit_test(ranged_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
