/* auth.c: manifest authentication: HMAC-SHA256 (OpenSSL) with the host key and a shared key. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "state.h"
#include "util.h"

#define HOST_KEY_NAME "host.key"

typedef struct auth_key {
    char kind[16];
    char id[AUTH_KEY_ID_LEN + 1];
    unsigned char *key;
    size_t len;
} auth_key;

struct auth_keyring {
    auth_key *keys;
    size_t n;
};

auth_keyring *auth_keyring_new(void)
{
    return xcalloc(1, sizeof(auth_keyring));
}

void auth_keyring_free(auth_keyring *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n; i++) {
        OPENSSL_cleanse(k->keys[i].key, k->keys[i].len);
        free(k->keys[i].key);
    }
    free(k->keys);
    free(k);
}

void auth_keyring_add(auth_keyring *k, const char *kind, const unsigned char *key, size_t len)
{
    auth_key *e;

    k->keys = xrealloc(k->keys, (k->n + 1) * sizeof *k->keys);
    e = &k->keys[k->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    e->key = xmalloc(len ? len : 1);
    memcpy(e->key, key, len);
    e->len = len;
    auth_key_id(key, len, e->id);
}

size_t auth_keyring_count(const auth_keyring *k)
{
    return k != NULL ? k->n : 0;
}

void auth_key_id(const unsigned char *key, size_t len, char id[AUTH_KEY_ID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        abort();
    util_hex(md, mdlen, hex);
    memcpy(id, hex, AUTH_KEY_ID_LEN);
    id[AUTH_KEY_ID_LEN] = '\0';
}

void auth_hmac_hex(const unsigned char *key, size_t keylen, const void *msg, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (HMAC(EVP_sha256(), key, (int)keylen, msg, len, md, &mdlen) == NULL || mdlen != 32)
        abort();
    util_hex(md, mdlen, hex);
}

char *auth_canonical(const json_t *doc)
{
    json_t *copy = json_copy((json_t *)(uintptr_t)doc);
    char *text;

    if (copy == NULL)
        abort();
    json_object_del(copy, "auth");
    text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(copy);
    if (text == NULL)
        abort();
    return text;
}

void auth_sign(const auth_keyring *k, json_t *doc)
{
    json_t *entries = json_array();
    char *text = auth_canonical(doc);
    size_t len = strlen(text);

    for (size_t i = 0; k != NULL && i < k->n; i++) {
        char hex[65];
        auth_hmac_hex(k->keys[i].key, k->keys[i].len, text, len, hex);
        json_array_append_new(entries, json_pack("{s:s, s:s, s:s}", "alg", "hmac-sha256", "key_id",
                                                  k->keys[i].id, "hmac", hex));
    }
    free(text);
    if (json_array_size(entries) > 0)
        json_object_set_new(doc, "auth", entries);
    else
        json_decref(entries);
}

auth_status auth_verify(const auth_keyring *k, const json_t *doc, char key_id[AUTH_KEY_ID_LEN + 1])
{
    const json_t *entries = json_object_get(doc, "auth"), *e;
    auth_status st = AUTH_UNSIGNED;
    char *text = NULL;
    size_t i;

    key_id[0] = '\0';
    if (!json_is_array(entries) || json_array_size(entries) == 0)
        return AUTH_UNSIGNED;
    st = AUTH_UNKNOWN;
    json_array_foreach(entries, i, e) {
        const char *alg = json_string_value(json_object_get(e, "alg"));
        const char *id = json_string_value(json_object_get(e, "key_id"));
        const char *mac = json_string_value(json_object_get(e, "hmac"));
        if (id == NULL || mac == NULL || (alg != NULL && strcmp(alg, "hmac-sha256") != 0))
            continue;
        for (size_t j = 0; k != NULL && j < k->n; j++) {
            char hex[65];
            if (strcmp(k->keys[j].id, id) != 0)
                continue;
            if (text == NULL)
                text = auth_canonical(doc);
            auth_hmac_hex(k->keys[j].key, k->keys[j].len, text, strlen(text), hex);
            if (strlen(mac) == 64 && CRYPTO_memcmp(hex, mac, 64) == 0) {
                snprintf(key_id, AUTH_KEY_ID_LEN + 1, "%s", id);
                st = AUTH_OK;
                goto out;
            }
            st = AUTH_BAD;
        }
    }
out:
    free(text);
    return st;
}

const char *auth_status_text(auth_status s)
{
    switch (s) {
    case AUTH_OK:
        return "authenticated";
    case AUTH_UNSIGNED:
        return "not signed";
    case AUTH_UNKNOWN:
        return "signed only by keys this host does not hold";
    case AUTH_BAD:
        return "its signature does not match (the manifest changed after it was signed)";
    }
    return "unknown";
}

/* ---- key files -------------------------------------------------------------------- */

/* Owned by us, a regular file, nothing for group or others: as ssh judges private keys. */
static snap_rc check_key_file(const char *path, const struct stat *st, snap_err *err)
{
    if (!S_ISREG(st->st_mode)) {
        err_set(err, SNAP_EUSAGE, 0, "key file %s is not a regular file", path);
        err_hint(err, "point [store] auth_key_file at a file of random bytes");
        return SNAP_EUSAGE;
    }
    if (st->st_uid != geteuid()) {
        err_set(err, SNAP_EUSAGE, 0, "key file %s is owned by uid %u, not by the user running this (uid %u)",
                path, (unsigned)st->st_uid, (unsigned)geteuid());
        err_hint(err, "chown it to this user, or use a key file of your own");
        return SNAP_EUSAGE;
    }
    if ((st->st_mode & 077) != 0) {
        err_set(err, SNAP_EUSAGE, 0, "key file %s is open to other users (mode %04o)", path,
                (unsigned)(st->st_mode & 07777));
        err_hint(err, "run `chmod 600 %s`: a key others can read or replace authenticates nothing", path);
        return SNAP_EUSAGE;
    }
    return SNAP_OK;
}

snap_rc auth_key_file_read(const char *path, unsigned char **key, size_t *len, snap_err *err)
{
    unsigned char *buf = NULL;
    size_t got = 0;
    struct stat st;
    snap_rc rc = SNAP_OK;
    /* O_NONBLOCK: a FIFO in place of the key must not hang us before fstat says what it is. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    *key = NULL;
    *len = 0;
    if (fd < 0) {
        if (errno == ELOOP) {
            err_set(err, SNAP_EUSAGE, ELOOP, "key file %s is a symbolic link", path);
            err_hint(err, "name the key file itself");
            return SNAP_EUSAGE;
        }
        return err_sys(err, err_from_errno(errno), "cannot read key file %s", path);
    }
    if (fstat(fd, &st) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "cannot read key file %s", path);
        goto out;
    }
    rc = check_key_file(path, &st, err);
    if (rc == SNAP_OK) /* and every directory above it: nobody else may rename it away */
        rc = util_check_trusted(path, "key file", SNAP_EUSAGE, err);
    if (rc != SNAP_OK)
        goto out;
    if (st.st_size < AUTH_KEY_MIN || st.st_size > AUTH_KEY_MAX) {
        rc = err_set(err, SNAP_EUSAGE, 0, "key file %s holds %lld bytes; a key has %d to %d", path,
                     (long long)st.st_size, AUTH_KEY_MIN, AUTH_KEY_MAX);
        err_hint(err, "make one with `head -c 32 /dev/urandom > %s && chmod 600 %s`", path, path);
        goto out;
    }
    buf = xmalloc((size_t)st.st_size);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = err_sys(err, SNAP_EFAIL, "cannot read key file %s", path);
            goto out;
        }
        got += (size_t)n;
    }
    *key = buf;
    *len = got;
    buf = NULL;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, (size_t)st.st_size);
        free(buf);
    }
    close(fd);
    return rc;
}

/* Writes 32 random bytes to path, create-only (another process may win: then its key stays). */
static snap_rc make_host_key(const char *path, snap_err *err)
{
    unsigned char key[AUTH_HOST_KEY_LEN];
    char *tmp = NULL, rnd[17];
    snap_rc rc = SNAP_OK;
    int fd;

    if (RAND_bytes(key, sizeof key) != 1)
        return err_set(err, SNAP_EFAIL, 0, "cannot make a host key: no random bytes");
    util_random_hex(rnd, 8);
    tmp = xasprintf("%s.%s.tmp", path, rnd);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_sys(err, err_from_errno(errno), "cannot make the host key %s", path);
        goto out;
    }
    if (!util_write_all(fd, key, sizeof key))
        rc = err_sys(err, SNAP_EFAIL, "cannot write the host key %s", tmp);
    if (rc == SNAP_OK && fsync(fd) != 0)
        rc = err_sys(err, SNAP_EFAIL, "cannot write the host key %s", tmp);
    close(fd);
    if (rc == SNAP_OK && link(tmp, path) != 0 && errno != EEXIST)
        rc = err_sys(err, err_from_errno(errno), "cannot make the host key %s", path);
    unlink(tmp);
    if (rc == SNAP_OK) {
        char *dir = util_dirname(path);
        rc = util_fsync_dir(dir, err);
        free(dir);
    }
out:
    OPENSSL_cleanse(key, sizeof key);
    free(tmp);
    return rc;
}

static snap_rc load_host_key(const cfg *c, bool create, auth_keyring *k, snap_err *err)
{
    char *dir = NULL, *path = NULL;
    unsigned char *key = NULL;
    size_t len = 0;
    snap_rc rc;

    /* The state directory is where the host key lives: no other user may write it. */
    rc = state_subdir(c, NULL, &dir, err);
    if (rc != SNAP_OK) {
        if (!create && rc == SNAP_EUSAGE) {
            err_clear(err); /* no state directory: this host has no key to check with */
            return SNAP_OK;
        }
        return rc;
    }
    path = xasprintf("%s/%s", dir, HOST_KEY_NAME);
    if (create) {
        struct stat st;
        if (lstat(path, &st) != 0 && errno == ENOENT)
            rc = make_host_key(path, err);
        if (rc != SNAP_OK) {
            err_hint(err, "snap signs its manifests with a key kept in the state directory: set [revert] state_dir "
                          "or $SNAP_STATE_DIR to a directory this user may write");
            goto out;
        }
    }
    rc = auth_key_file_read(path, &key, &len, err);
    if (rc == SNAP_ENOTFOUND && !create) {
        rc = SNAP_OK; /* this host has not signed anything yet */
        err_clear(err);
        goto out;
    }
    if (rc != SNAP_OK) {
        if (err->hint[0] == '\0')
            err_hint(err, "the host key authenticates this host's snapshots; check the state directory %s", dir);
        goto out;
    }
    auth_keyring_add(k, "host", key, len);
out:
    if (key != NULL) {
        OPENSSL_cleanse(key, len);
        free(key);
    }
    free(path);
    free(dir);
    return rc;
}

snap_rc auth_keyring_load(const cfg *c, bool create_host_key, auth_keyring **out, snap_err *err)
{
    auth_keyring *k = auth_keyring_new();
    const char *shared = c != NULL ? cfg_get(c, "store", "auth_key_file") : NULL;
    unsigned char *key = NULL;
    size_t len = 0;
    snap_rc rc = load_host_key(c, create_host_key, k, err);

    if (rc == SNAP_OK && shared != NULL && shared[0] != '\0') {
        rc = auth_key_file_read(shared, &key, &len, err);
        if (rc != SNAP_OK) {
            err_prefix(err, "[store] auth_key_file");
            if (err->hint[0] == '\0')
                err_hint(err, "the shared key authenticates the snapshots of the hosts that hold it: "
                              "copy the same file to each of them, owned by the user running the tools, mode 0600");
        } else {
            auth_keyring_add(k, "shared", key, len);
        }
    }
    if (key != NULL) {
        OPENSSL_cleanse(key, len);
        free(key);
    }
    if (rc != SNAP_OK) {
        auth_keyring_free(k);
        k = NULL;
    }
    *out = k;
    return rc;
}
