/*
 * keyring.h — the host's pseudonymization keys and the keyed pseudonym.
 *
 * Key files. A key file's whole content, byte for byte (no trimming, no
 * decoding), is the key material: 32 to 4096 bytes, mode 0600 or stricter,
 * a regular file. The material is hashed (BLAKE2b-256, personalized) into a
 * 32-byte master key, so any length in that range works and a hex or base64
 * text file is as good as a binary one as long as it carries ≥ 256 bits of
 * entropy. `veil_keyring_keygen` writes 32 raw random bytes. Because the
 * content is used verbatim, adding or removing a trailing newline changes
 * the key: copy key files as files (kubectl create secret --from-file),
 * never by pasting them.
 *
 * Pseudonyms. "<keyid>.<22 base64url chars>": the first 128 bits of
 * HMAC-SHA-256 under a subkey derived from the key and the purpose (domain).
 * The key id in clear lets old pseudonyms be recognized after a rotation.
 *
 * Threads. veil_keyring_pseudonym*, veil_keyring_active_id and
 * veil_keyring_set_active may run concurrently from any number of threads;
 * add_file may run concurrently with them; destroy may not.
 */
#ifndef VEIL_KEYRING_H
#define VEIL_KEYRING_H

#include <stddef.h>

#include "veil/veil.h"

#define VEIL_KEYRING_KEY_ID_MAX 16      /**< chars of a key id, [a-z0-9_-] */
#define VEIL_KEYRING_KEY_MIN 32         /**< bytes of a key file, at least */
#define VEIL_KEYRING_KEY_MAX 4096       /**< bytes of a key file, at most */
#define VEIL_KEYRING_MAX_KEYS 16        /**< keys held at once */
#define VEIL_KEYRING_DOMAIN_MAX 255     /**< bytes of a domain string */
#define VEIL_KEYRING_PSEUDONYM_BYTES 16 /**< MAC bytes kept (128 bits) */

struct veil_keyring;

int veil_keyring_new(struct veil_keyring **kr, char *errstr,
                     size_t errstr_size);
/** Loads a key file under `key_id`. The first key added becomes active. */
int veil_keyring_add_file(struct veil_keyring *kr, const char *key_id,
                          const char *path, char *errstr, size_t errstr_size);
/** Adds a key of random material drawn from libsodium's CSPRNG straight
 *  into locked memory, never written anywhere (keys: {ephemeral: true}):
 *  it lives and dies with the keyring. */
int veil_keyring_add_random(struct veil_keyring *kr, const char *key_id,
                            char *errstr, size_t errstr_size);
/** Makes `key_id` the key new pseudonyms are computed with (rotation). */
int veil_keyring_set_active(struct veil_keyring *kr, const char *key_id,
                            char *errstr, size_t errstr_size);
/** The active key's id, or NULL when no key was added. Valid until destroy. */
const char *veil_keyring_active_id(const struct veil_keyring *kr);
/** The keys held, and key i's id (valid until destroy): erase and export
 *  look for data under every key, not only the active one. */
size_t veil_keyring_n_keys(const struct veil_keyring *kr);
const char *veil_keyring_key_id(const struct veil_keyring *kr, size_t i);
/** Wipes every key and derived subkey, then frees. NULL is a no-op. */
void veil_keyring_destroy(struct veil_keyring *kr);

/** Pseudonym of `id` (id_len ≥ 1 bytes, any content) for the purpose
 *  `domain` (1..VEIL_KEYRING_DOMAIN_MAX bytes) under the active key.
 *  Returns the length written to `out` (terminator excluded; out_size must
 *  hold it plus the terminator, VEIL_PSEUDONYM_MAX always does), or
 *  -VEIL_EINVAL (bad argument, buffer too small), -VEIL_ESTATE (no key),
 *  -VEIL_ENOMEM. */
int veil_keyring_pseudonym(const struct veil_keyring *kr, const char *domain,
                           const void *id, size_t id_len, char *out,
                           size_t out_size);
/** The same under a named key, active or not: during a rotation, erase and
 *  export must find data held under an older key's pseudonym.
 *  -VEIL_ENOENT when the keyring holds no such key. */
int veil_keyring_pseudonym_key(const struct veil_keyring *kr,
                               const char *key_id, const char *domain,
                               const void *id, size_t id_len, char *out,
                               size_t out_size);
/** Copies the key id of a pseudonym ("k1" of "k1.AbC…") into `out`.
 *  Returns its length, or -VEIL_EINVAL when `pseudonym` does not have the
 *  shape of one (valid id, '.', 22 base64url chars) or `out` is too small. */
int veil_keyring_key_id_of(const char *pseudonym, char *out, size_t out_size);

/** Writes a new key file of 32 random bytes with mode 0600. Never
 *  overwrites: an existing path (file, symlink, anything) is refused. */
int veil_keyring_keygen(const char *path, char *errstr, size_t errstr_size);

/** 1 when `key_id` is a valid key id. */
int veil_keyring_key_id_valid(const char *key_id);

/** HMAC-SHA-256 (RFC 2104) — internal, exposed so the RFC 4231 known-answer
 *  test runs the very code the pseudonym path uses. Returns 0. */
int veil_keyring_mac(const void *key, size_t key_len, const void *msg,
                     size_t msg_len, unsigned char out[32]);

#endif
