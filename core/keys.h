/*
 * keys.h — the pipeline's `keys:` section to a keyring.
 *
 *   keys:
 *     active: k2                     # the key new pseudonyms are made with
 *     files: {k1: /etc/veil/keys/k1, k2: /etc/veil/keys/k2}  # Secret mount
 *   # or, for demos only:
 *   keys: {ephemeral: true}          # a random key for this run, never stored
 */
#ifndef VEIL_KEYS_H
#define VEIL_KEYS_H

#include "config.h"

struct veil_keyring;

/** Checks the section's shape without reading a key file (veil notice):
 *  what veil_keys_load refuses before it reads one. 0 without a section. */
int veil_keys_check(const struct veil_config *cfg, char *errstr,
                    size_t errstr_size);

/** Whether the section asks for a throw-away key (after veil_keys_check). */
int veil_keys_ephemeral(const struct veil_config *cfg);

/** Builds the keyring; *kr is NULL when the pipeline has no keys section. */
int veil_keys_load(const struct veil_config *cfg, struct veil_keyring **kr,
                   char *errstr, size_t errstr_size);

#endif
