/* cry_keys.c: the key-encryption key: key file, key command or passphrase; scrypt. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "cry.h"
#include "util.h"

#define SECRET_MAX 4096
/* scrypt: what a new passphrase gets (about 100 ms and 32 MiB), and what a store may ask. */
#define SCRYPT_N 32768
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_N_MAX (1u << 20)
#define SCRYPT_R_MAX 16
#define SCRYPT_P_MAX 4
#define SCRYPT_MAXMEM (1200ULL << 20)

struct cry_secret {
    unsigned char *b;
    size_t len;
    bool passphrase;
    char source[64];
};

cry_secret *cry_secret_new(const unsigned char *b, size_t len, bool passphrase, const char *source)
{
    cry_secret *s = xcalloc(1, sizeof *s);

    /* A file or a command of exactly 32 bytes holds a raw key; text is a passphrase. */
    s->passphrase = passphrase || len != CRY_KEY_LEN;
    if (s->passphrase && len > 0 && b[len - 1] == '\n')
        len--;
    if (s->passphrase && len > 0 && b[len - 1] == '\r')
        len--;
    s->b = xmalloc(len ? len : 1);
    memcpy(s->b, b, len);
    s->len = len;
    snprintf(s->source, sizeof s->source, "%s", source);
    return s;
}

void cry_secret_free(cry_secret *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s->b, s->len);
    free(s->b);
    free(s);
}

const char *cry_secret_source(const cry_secret *s)
{
    return s->source;
}

bool cry_secret_is_passphrase(const cry_secret *s)
{
    return s->passphrase;
}

static snap_rc secret_done(unsigned char *b, size_t len, bool passphrase, const char *source, cry_secret **out,
                           snap_err *err)
{
    snap_rc rc = SNAP_OK;

    *out = cry_secret_new(b, len, passphrase, source);
    if ((*out)->len == 0) {
        cry_secret_free(*out);
        *out = NULL;
        rc = err_set(err, SNAP_EUSAGE, 0, "%s gives an empty key", source);
        err_hint(err, "a key is 32 random bytes (`head -c 32 /dev/urandom`) or a passphrase");
    }
    OPENSSL_cleanse(b, len);
    free(b);
    return rc;
}

snap_rc cry_secret_from_file(const char *path, cry_secret **out, snap_err *err)
{
    unsigned char *b = NULL;
    size_t len = 0;
    snap_rc rc = auth_key_file_read(path, &b, &len, err);

    *out = NULL;
    if (rc != SNAP_OK)
        return rc;
    return secret_done(b, len, false, "the key file", out, err);
}

/* Reads what the child prints, at most SECRET_MAX bytes. */
static snap_rc read_child(int fd, unsigned char *buf, size_t *len, snap_err *err)
{
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, SECRET_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_sys(err, SNAP_EUNREACH, "cannot read the output of [store] key_command");
        if (n == 0)
            return SNAP_OK;
        *len += (size_t)n;
        if (*len > SECRET_MAX)
            return err_set(err, SNAP_EUNREACH, 0, "[store] key_command printed more than %d bytes", SECRET_MAX);
    }
}

/* Runs cmd with /bin/sh; its standard output is the secret, its standard error is the user's. */
static snap_rc run_key_command(const char *cmd, cry_secret **out, snap_err *err)
{
    int fds[2], status = 0;
    unsigned char *buf = xmalloc(SECRET_MAX + 1);
    size_t len = 0;
    pid_t pid;
    snap_rc rc;

    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(buf);
        return err_sys(err, SNAP_EFAIL, "cannot run [store] key_command");
    }
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    rc = pid < 0 ? err_sys(err, SNAP_EFAIL, "cannot run [store] key_command") : read_child(fds[0], buf, &len, err);
    close(fds[0]);
    if (pid > 0) {
        if (rc != SNAP_OK)
            kill(pid, SIGTERM);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (rc == SNAP_OK && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        rc = err_set(err, SNAP_EUNREACH, 0, "[store] key_command failed (%s %d); no key, so nothing was read or written",
                     WIFEXITED(status) ? "exit status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    if (rc != SNAP_OK) {
        OPENSSL_cleanse(buf, SECRET_MAX + 1);
        free(buf);
        if (err->hint[0] == '\0')
            err_hint(err, "run the command by hand: it must print the key (or passphrase) and exit 0");
        return err_kind(err, "key_unavailable");
    }
    return secret_done(buf, len, false, "[store] key_command", out, err);
}

snap_rc cry_secret_load(const cfg *c, cry_secret **out, snap_err *err)
{
    const char *cmd = cfg_get(c, "store", "key_command"), *file = cfg_get(c, "store", "key_file");
    const char *pass = getenv("SNAP_PASSPHRASE");
    snap_rc rc;

    *out = NULL;
    if (cmd != NULL && cmd[0] != '\0' && file != NULL && file[0] != '\0') {
        err_set(err, SNAP_EUSAGE, 0, "[store] key_command and [store] key_file are both set");
        err_hint(err, "keep one of them: the key comes from one place");
        return SNAP_EUSAGE;
    }
    if (cmd != NULL && cmd[0] != '\0')
        return run_key_command(cmd, out, err);
    if (file != NULL && file[0] != '\0') {
        rc = cry_secret_from_file(file, out, err);
        if (rc != SNAP_OK) {
            err_prefix(err, "[store] key_file");
            if (rc == SNAP_ENOTFOUND || rc == SNAP_EUNREACH)
                err_kind(err, "key_unavailable");
        } else {
            snprintf((*out)->source, sizeof (*out)->source, "[store] key_file");
        }
        return rc;
    }
    if (pass != NULL && pass[0] != '\0') {
        *out = cry_secret_new((const unsigned char *)pass, strlen(pass), true, "$SNAP_PASSPHRASE");
        return SNAP_OK;
    }
    return SNAP_OK;
}

json_t *cry_kdf_new(const cry_secret *s)
{
    char salt[33];

    if (!s->passphrase)
        return json_pack("{s:s}", "alg", "none");
    util_random_hex(salt, 16);
    return json_pack("{s:s, s:s, s:i, s:i, s:i}", "alg", "scrypt", "salt", salt, "n", SCRYPT_N, "r", SCRYPT_R, "p",
                     SCRYPT_P);
}

snap_rc cry_kek_derive(const cry_secret *s, const json_t *kdf, cry_key **kek, snap_err *err)
{
    const char *alg = json_string_value(json_object_get(kdf, "alg"));
    const char *salt = json_string_value(json_object_get(kdf, "salt"));
    json_int_t n = json_integer_value(json_object_get(kdf, "n"));
    json_int_t r = json_integer_value(json_object_get(kdf, "r"));
    json_int_t p = json_integer_value(json_object_get(kdf, "p"));
    unsigned char out[CRY_KEY_LEN];

    *kek = NULL;
    if (alg != NULL && strcmp(alg, "none") == 0) {
        if (s->passphrase)
            return err_set(err, SNAP_EUSAGE, 0, "this key of the store is a raw key, and %s gives a passphrase",
                           s->source);
        *kek = cry_key_from(s->b, s->len);
        return SNAP_OK;
    }
    if (alg == NULL || strcmp(alg, "scrypt") != 0 || salt == NULL || strlen(salt) < 16 || n < 2 ||
        n > SCRYPT_N_MAX || (n & (n - 1)) != 0 || r < 1 || r > SCRYPT_R_MAX || p < 1 || p > SCRYPT_P_MAX)
        return err_set(err, SNAP_EVERIFY, 0, "the store's key derivation parameters are not ones snap accepts");
    if (!s->passphrase)
        return err_set(err, SNAP_EUSAGE, 0, "this key of the store is a passphrase, and %s gives a raw key",
                       s->source);
    if (EVP_PBE_scrypt((const char *)s->b, s->len, (const unsigned char *)salt, strlen(salt), (uint64_t)n,
                       (uint64_t)r, (uint64_t)p, SCRYPT_MAXMEM, out, sizeof out) != 1)
        return err_set(err, SNAP_EFAIL, 0, "cannot derive the key from the passphrase (scrypt)");
    *kek = cry_key_from(out, sizeof out);
    OPENSSL_cleanse(out, sizeof out);
    return SNAP_OK;
}
