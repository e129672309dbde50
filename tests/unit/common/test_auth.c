/* Unit tests of common/auth: HMAC-SHA256 known answers, the canonical form, sign and
 * verify, key files and the host key. */
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

#include "../../../common/auth.h"
#include "../../../common/util.h"

/* RFC 4231, test cases 1 and 2. */
static void hmac_known_answers(void **state)
{
    unsigned char k1[20];
    char hex[65];

    (void)state;
    memset(k1, 0x0b, sizeof k1);
    auth_hmac_hex(k1, sizeof k1, "Hi There", 8, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    auth_hmac_hex((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void key_id_is_sha256_prefix(void **state)
{
    char id[AUTH_KEY_ID_LEN + 1];

    (void)state;
    auth_key_id((const unsigned char *)"Jefe", 4, id);
    assert_string_equal(id, "005725b48609c45e");
}

/* The canonical text: no "auth", sorted keys, compact, UTF-8; pinned by an HMAC computed
 * elsewhere (Python: json.dumps(sort_keys, compact, ensure_ascii=False), then hmac), so another implementation can check it. */
static void canonical_form(void **state)
{
    json_t *doc = json_loads("{\"b\": [1, {\"d\": true, \"c\": null}], \"auth\": [{\"x\": 1}], \"a\": \"\\u00e9\"}", 0, NULL);
    unsigned char key[32];
    char *text, hex[65];
    auth_keyring *k = auth_keyring_new();
    const char *mac;

    (void)state;
    assert_non_null(doc);
    text = auth_canonical(doc);
    assert_string_equal(text, "{\"a\":\"\xc3\xa9\",\"b\":[1,{\"c\":null,\"d\":true}]}");
    memset(key, 'k', sizeof key);
    auth_hmac_hex(key, sizeof key, text, strlen(text), hex);
    assert_string_equal(hex, "f95589b1d41d80b01011b1d11f1eda3aec27f2526a5cb3c1b09dc47d7dc2779e");
    auth_keyring_add(k, "shared", key, sizeof key);
    auth_sign(k, doc);
    mac = json_string_value(json_object_get(json_array_get(json_object_get(doc, "auth"), 0), "hmac"));
    assert_string_equal(mac, hex);
    free(text);
    auth_keyring_free(k);
    json_decref(doc);
}

static void sign_and_verify(void **state)
{
    json_t *doc = json_pack("{s:i, s:s, s:[{s:s}]}", "format", 1, "name", "s1", "components", "name", "app");
    auth_keyring *a = auth_keyring_new(), *b = auth_keyring_new(), *ab = auth_keyring_new(), *none = auth_keyring_new();
    char id[AUTH_KEY_ID_LEN + 1], ida[AUTH_KEY_ID_LEN + 1];
    const unsigned char ka[] = "0123456789abcdef0123456789abcdef", kb[] = "fedcba9876543210fedcba9876543210";
    json_t *copy;

    (void)state;
    auth_keyring_add(a, "host", ka, 32);
    auth_keyring_add(b, "shared", kb, 32);
    auth_keyring_add(ab, "host", ka, 32);
    auth_keyring_add(ab, "shared", kb, 32);
    auth_key_id(ka, 32, ida);

    assert_int_equal(auth_verify(a, doc, id), AUTH_UNSIGNED);
    auth_sign(a, doc);
    assert_int_equal(auth_verify(a, doc, id), AUTH_OK);
    assert_string_equal(id, ida);
    assert_int_equal(auth_verify(b, doc, id), AUTH_UNKNOWN);
    assert_int_equal(auth_verify(none, doc, id), AUTH_UNKNOWN);
    assert_int_equal(auth_verify(NULL, doc, id), AUTH_UNKNOWN);

    /* Signing again replaces the entries: one per key, either one verifies. */
    auth_sign(ab, doc);
    assert_int_equal(json_array_size(json_object_get(doc, "auth")), 2);
    assert_int_equal(auth_verify(b, doc, id), AUTH_OK);
    assert_int_equal(auth_verify(a, doc, id), AUTH_OK);

    /* Any change after signing: the held key no longer matches. */
    copy = json_deep_copy(doc);
    json_object_set_new(json_array_get(json_object_get(copy, "components"), 0), "name", json_string("other"));
    assert_int_equal(auth_verify(a, copy, id), AUTH_BAD);
    assert_string_equal(id, "");
    json_decref(copy);

    /* A forged entry claiming our key id, and garbage entries, verify nothing. */
    copy = json_deep_copy(doc);
    json_object_set_new(copy, "auth", json_pack("[{s:s, s:s}, {s:i}, s]", "key_id", ida, "hmac", "00", "key_id", 3, "x"));
    assert_int_equal(auth_verify(a, copy, id), AUTH_BAD);
    json_object_set_new(copy, "auth", json_string("yes"));
    assert_int_equal(auth_verify(a, copy, id), AUTH_UNSIGNED);
    json_decref(copy);

    /* An empty keyring signs nothing. */
    copy = json_pack("{s:i}", "format", 1);
    auth_sign(none, copy);
    assert_null(json_object_get(copy, "auth"));
    json_decref(copy);

    auth_keyring_free(a);
    auth_keyring_free(b);
    auth_keyring_free(ab);
    auth_keyring_free(none);
    auth_keyring_free(NULL);
    json_decref(doc);
}

static char *write_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void key_files(void **state)
{
    char dir[] = "/tmp/test_auth.XXXXXX";
    char *good, *open_to_group, *world, *shorty, *link;
    unsigned char *key;
    size_t len;
    snap_err err;

    (void)state;
    assert_non_null(mkdtemp(dir));
    good = write_file(dir, "good", "0123456789abcdef0123456789abcdef", 32, 0600);
    open_to_group = write_file(dir, "group", "0123456789abcdef0123456789abcdef", 32, 0640);
    world = write_file(dir, "world", "0123456789abcdef0123456789abcdef", 32, 0606);
    shorty = write_file(dir, "short", "abc", 3, 0600);
    link = xasprintf("%s/link", dir);
    assert_int_equal(symlink(good, link), 0);

    assert_int_equal(auth_key_file_read(good, &key, &len, &err), SNAP_OK);
    assert_int_equal(len, 32);
    assert_memory_equal(key, "0123456789abcdef", 16);
    free(key);
    assert_int_equal(auth_key_file_read(open_to_group, &key, &len, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "open to other users"));
    assert_non_null(strstr(err.hint, "chmod 600"));
    assert_null(key);
    assert_int_equal(auth_key_file_read(world, &key, &len, &err), SNAP_EUSAGE);
    assert_int_equal(auth_key_file_read(shorty, &key, &len, &err), SNAP_EUSAGE);
    assert_int_equal(auth_key_file_read(link, &key, &len, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "symbolic link"));

    /* a FIFO is refused at once, not read (which would block) */
    char *fifo = xasprintf("%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(auth_key_file_read(fifo, &key, &len, &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(fifo);
    free(fifo);

    char *missing = xasprintf("%s/missing", dir);
    assert_int_equal(auth_key_file_read(missing, &key, &len, &err), SNAP_ENOTFOUND);
    free(missing);

    unlink(good);
    unlink(open_to_group);
    unlink(world);
    unlink(shorty);
    unlink(link);
    rmdir(dir);
    free(good);
    free(open_to_group);
    free(world);
    free(shorty);
    free(link);
}

static void host_key_made_on_first_use(void **state)
{
    char dir[] = "/tmp/test_auth.XXXXXX";
    cfg *c = cfg_new();
    auth_keyring *k = NULL, *k2 = NULL;
    char *statedir, *path, *shared;
    snap_err err;
    struct stat st;
    json_t *doc = json_pack("{s:s}", "name", "x");
    char id[AUTH_KEY_ID_LEN + 1];

    (void)state;
    assert_non_null(mkdtemp(dir));
    statedir = xasprintf("%s/state", dir);
    path = xasprintf("%s/host.key", statedir);
    cfg_set(c, "revert", "state_dir", statedir);

    /* Reading only: no key yet, and none made. */
    assert_int_equal(auth_keyring_load(c, false, &k, &err), SNAP_OK);
    assert_int_equal(auth_keyring_count(k), 0);
    assert_int_not_equal(stat(path, &st), 0);
    auth_keyring_free(k);

    /* Signing: made once, 0600, the same key after. */
    assert_int_equal(auth_keyring_load(c, true, &k, &err), SNAP_OK);
    assert_int_equal(auth_keyring_count(k), 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, AUTH_HOST_KEY_LEN);
    auth_sign(k, doc);
    assert_int_equal(auth_keyring_load(c, false, &k2, &err), SNAP_OK);
    assert_int_equal(auth_verify(k2, doc, id), AUTH_OK);
    auth_keyring_free(k2);

    /* A shared key open to others is refused, naming the config key. */
    shared = write_file(dir, "shared.key", "0123456789abcdef0123456789abcdef", 32, 0644);
    cfg_set(c, "store", "auth_key_file", shared);
    assert_int_equal(auth_keyring_load(c, false, &k2, &err), SNAP_EUSAGE);
    assert_null(k2);
    assert_non_null(strstr(err.msg, "auth_key_file"));
    chmod(shared, 0600);
    assert_int_equal(auth_keyring_load(c, false, &k2, &err), SNAP_OK);
    assert_int_equal(auth_keyring_count(k2), 2);
    auth_keyring_free(k2);

    /* A host key others may read is refused as well. */
    chmod(path, 0644);
    assert_int_equal(auth_keyring_load(c, false, &k2, &err), SNAP_EUSAGE);

    auth_keyring_free(k);
    json_decref(doc);
    unlink(shared);
    unlink(path);
    rmdir(statedir);
    rmdir(dir);
    free(shared);
    free(path);
    free(statedir);
    cfg_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hmac_known_answers),
        cmocka_unit_test(key_id_is_sha256_prefix),
        cmocka_unit_test(canonical_form),
        cmocka_unit_test(sign_and_verify),
        cmocka_unit_test(key_files),
        cmocka_unit_test(host_key_made_on_first_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
