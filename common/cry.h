/*
 * cry.h: encryption at rest (docs/encryption.md): AES-256-GCM in a segmented stream,
 * key wrapping, and the key-encryption key from a key file, a command or a passphrase.
 *
 * Stored object = header (CRY_HDR_LEN bytes: magic, segment size, 32-byte salt) + segments.
 * Each segment seals up to `seg` plaintext bytes (the last may hold fewer, or none) and
 * adds a CRY_TAG_LEN tag. The object's key is HKDF-SHA256(data key, salt, "snap-aead-1
 * segment key"); segment i's nonce is 7 zero bytes, i (32 bits, big-endian) and the final
 * flag; its associated data binds the header, the store id, the object's key (its name in
 * the store), i and the final flag.
 */
#ifndef SNAP_CRYPT_H
#define SNAP_CRYPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "errors.h"

#define CRY_SCHEME "snap-aead-1"
#define CRY_KEY_LEN 32
#define CRY_SALT_LEN 32
#define CRY_HDR_LEN 44
#define CRY_TAG_LEN 16
#define CRY_SEG_DEFAULT 65536u
#define CRY_SEG_MIN 1024u
#define CRY_SEG_MAX (8u << 20)
#define CRY_ID_LEN 16

/* 32 secret bytes; cleansed when freed. */
typedef struct cry_key cry_key;

cry_key *cry_key_random(void);
/* NULL unless len is CRY_KEY_LEN. */
cry_key *cry_key_from(const unsigned char *bytes, size_t len);
cry_key *cry_key_dup(const cry_key *k);
void cry_key_free(cry_key *k);
/* The key's id: 16 hex digits of HMAC-SHA256(key, "snap-aead-1 key id"); says nothing of the key. */
void cry_key_id(const cry_key *k, char id[CRY_ID_LEN + 1]);

/*
 * Wraps k under kek (AES-256-GCM, random nonce, aad as associated data): hex of nonce,
 * ciphertext and tag (caller frees). Unwrap fails with SNAP_EVERIFY when the text was
 * changed or belongs to another aad.
 */
char *cry_wrap(const cry_key *kek, const cry_key *k, const char *aad);
snap_rc cry_unwrap(const cry_key *kek, const char *hex, const char *aad, cry_key **out, snap_err *err);

/* Stored size of a stream of plain bytes, and back (false: not a size a stream has). */
uint64_t cry_stored_size(uint64_t plain, uint32_t seg);
bool cry_plain_size(uint64_t stored, uint32_t seg, uint64_t *plain);

/* ---- the stream, write side: plain bytes in, stored bytes to sink ----------------------- */

typedef snap_rc (*cry_sink_fn)(void *arg, const void *buf, size_t len, snap_err *err);
typedef struct cry_writer cry_writer;

/* salt NULL: random (tests pass one for known answers). name is the object's key in the store. */
cry_writer *cry_writer_new(const cry_key *dk, uint32_t seg, const char *store_id, const char *name,
                           const unsigned char *salt, cry_sink_fn sink, void *arg);
snap_rc cry_writer_write(cry_writer *w, const void *buf, size_t len, snap_err *err);
/* Seals the last segment; then nothing more may be written. */
snap_rc cry_writer_finish(cry_writer *w, snap_err *err);
void cry_writer_free(cry_writer *w);

/* ---- the stream, read side: stored bytes from source, plain bytes out ------------------- */

typedef snap_rc (*cry_source_fn)(void *arg, void *buf, size_t cap, size_t *got, snap_err *err);
typedef struct cry_reader cry_reader;

/*
 * Reads the header from source, then whole segments. A ranged read passes the header it
 * read (hdr), the first segment the source starts at, the last segment of the object
 * (last_seg, known from its size; -1 when the source runs to the object's end), and how
 * many plain bytes to drop from the first segment. Nothing is returned before its segment
 * is authenticated; damage, truncation, reordering or bytes of another object fail with
 * SNAP_EVERIFY.
 */
cry_reader *cry_reader_new(const cry_key *dk, uint32_t seg, const char *store_id, const char *name,
                           cry_source_fn source, void *arg);
void cry_reader_range(cry_reader *r, const unsigned char hdr[CRY_HDR_LEN], uint64_t first_seg,
                      int64_t last_seg, size_t skip);
/* *got is 0 only at the end, after the final segment was authenticated. */
snap_rc cry_reader_read(cry_reader *r, void *buf, size_t cap, size_t *got, snap_err *err);
void cry_reader_free(cry_reader *r);

/* ---- the key-encryption key ----------------------------------------------------------- */

/*
 * The secret configured for a store: [store] key_command's output, else [store]
 * key_file's bytes (checked as auth key files are: ours, 0600), else $SNAP_PASSPHRASE.
 * Exactly 32 bytes from a file or a command are a raw key; anything else is a passphrase
 * (one trailing newline dropped) stretched with scrypt. *out is NULL when none is set.
 */
typedef struct cry_secret cry_secret;

snap_rc cry_secret_load(const cfg *c, cry_secret **out, snap_err *err);
/* The same, from a file named on the command line (snap key add/rotate --new-key-file). */
snap_rc cry_secret_from_file(const char *path, cry_secret **out, snap_err *err);
/* For tests: a secret from bytes; passphrase forces the passphrase reading. */
cry_secret *cry_secret_new(const unsigned char *b, size_t len, bool passphrase, const char *source);
void cry_secret_free(cry_secret *s);
const char *cry_secret_source(const cry_secret *s); /* "[store] key_file", for messages */
bool cry_secret_is_passphrase(const cry_secret *s);

/* New derivation parameters for s: {"alg": "none"} or scrypt with a fresh salt. */
json_t *cry_kdf_new(const cry_secret *s);
/*
 * The key-encryption key that s and kdf give. SNAP_EUSAGE when kdf does not fit the
 * secret (a raw key and scrypt parameters, or the reverse), SNAP_EVERIFY for parameters
 * out of bounds.
 */
snap_rc cry_kek_derive(const cry_secret *s, const json_t *kdf, cry_key **kek, snap_err *err);

#endif
