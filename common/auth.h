/* auth.h: manifest authentication: HMAC-SHA256 with the keys this host holds. */
#ifndef SNAP_AUTH_H
#define SNAP_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "errors.h"

/*
 * A manifest carries "auth": [{"alg": "hmac-sha256", "key_id": ID, "hmac": HEX}, ...], one
 * entry per key that signed it. The HMAC covers the canonical text of the manifest without
 * its "auth" member (auth_canonical). A key id is the first 16 hex digits of the SHA-256
 * of the key. See docs/formats.md.
 */
#define AUTH_KEY_ID_LEN 16
#define AUTH_HOST_KEY_LEN 32
#define AUTH_KEY_MIN 16
#define AUTH_KEY_MAX 4096

typedef struct auth_keyring auth_keyring;

typedef enum auth_status {
    AUTH_OK = 0,     /* a held key verified it */
    AUTH_UNSIGNED,   /* no "auth" member (earlier versions) */
    AUTH_UNKNOWN,    /* signed only by keys this host does not hold */
    AUTH_BAD         /* a held key's HMAC does not match: edited after signing */
} auth_status;

auth_keyring *auth_keyring_new(void);
void auth_keyring_free(auth_keyring *k);
/* Adds a key (copied); kind says where it came from ("host", "shared"). */
void auth_keyring_add(auth_keyring *k, const char *kind, const unsigned char *key, size_t len);
size_t auth_keyring_count(const auth_keyring *k);

/*
 * The keys of this host: the host key, <state dir>/host.key (made on first use when
 * create_host_key, 32 random bytes, 0600), and the shared key of [store] auth_key_file.
 * Key files owned by another user or open to group or others are refused (SNAP_EUSAGE).
 */
snap_rc auth_keyring_load(const cfg *c, bool create_host_key, auth_keyring **out, snap_err *err);

/* Reads one key file, checking its owner and mode; *key is malloc'ed. */
snap_rc auth_key_file_read(const char *path, unsigned char **key, size_t *len, snap_err *err);

/* Signs doc with every key of k, replacing its "auth" member. */
void auth_sign(const auth_keyring *k, json_t *doc);

/* Checks doc's "auth" against k; on AUTH_OK, key_id (AUTH_KEY_ID_LEN + 1) names the key. */
auth_status auth_verify(const auth_keyring *k, const json_t *doc, char key_id[AUTH_KEY_ID_LEN + 1]);
const char *auth_status_text(auth_status s);

/* The text the HMAC covers: doc without "auth", compact, sorted keys, UTF-8 (caller frees). */
char *auth_canonical(const json_t *doc);
/* HMAC-SHA256 of msg under key, as 64 lowercase hex digits. */
void auth_hmac_hex(const unsigned char *key, size_t keylen, const void *msg, size_t len, char hex[65]);
void auth_key_id(const unsigned char *key, size_t len, char id[AUTH_KEY_ID_LEN + 1]);

#endif
