/* fuzz_sealed.c: the stored bytes of a sealed object as the reader of an encrypted store
 * takes them (cry_reader): header, segments, truncation, trailing bytes. The key is fixed,
 * so the seed (a valid object sealed with it) opens and its mutations must fail cleanly. */
#include "fuzz.h"
#include "../../common/cry.h"

typedef struct src {
    const uint8_t *p;
    size_t len, off;
} src;

static snap_rc source(void *arg, void *buf, size_t cap, size_t *got, snap_err *err)
{
    src *s = arg;

    (void)err;
    *got = s->len - s->off < cap ? s->len - s->off : cap;
    if (*got > 333)
        *got = 333; /* segments never arrive whole */
    memcpy(buf, s->p + s->off, *got);
    s->off += *got;
    return SNAP_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char k[CRY_KEY_LEN], buf[4096];
    char *copy = fuzz_copy(data, size);
    src s = {(const uint8_t *)copy, size, 0};
    cry_key *key;
    cry_reader *r;
    size_t got;
    snap_err err;

    for (int i = 0; i < CRY_KEY_LEN; i++)
        k[i] = (unsigned char)i;
    key = cry_key_from(k, sizeof k);
    r = cry_reader_new(key, 1024, "0123456789abcdef0123456789abcdef", "data/x/app.0000.tar.zst.enc", source, &s);
    while (cry_reader_read(r, buf, sizeof buf, &got, &err) == SNAP_OK && got > 0)
        ;
    cry_reader_free(r);
    cry_key_free(key);
    free(copy);
    return 0;
}
