/*
 * ckpt.h — the dp_model plugin's checkpoint: the model's parameters (by
 * item id, so a restart with a grown catalog maps rows right), Adagrad's
 * sums, the model version and the accountant's 128-byte record.
 *
 * Not in it: the clipped sums of a DP step not yet released (raw, not
 * noised: they never leave the process) and the per-user counters (the
 * accountant's restore opens a new session instead, accountant.h).
 *
 * Layout, little-endian: "VDPM", u32 version 1, u32 d, u32 space,
 * u32 items, u64 model version, u8 has_accountant, the accountant record
 * (VEIL_ACCOUNTANT_RECORD_SIZE bytes, zero when none), then per item
 * u16 id length and the id, then V, U (items × d), E (space × d), b
 * (items), and their Adagrad sums in the same order, as f32. Version 2
 * appends u32 length and an opaque extra section (the table of model
 * updates applied, share.h); version 1 is still read.
 */
#ifndef VEIL_DP_MODEL_CKPT_H
#define VEIL_DP_MODEL_CKPT_H

#include <stddef.h>

#include "accountant.h"
#include "model.h"

/** A malloc'd checkpoint of m and acc (acc may be NULL) with extra bytes
 *  (may be NULL, 0). */
int veil_ckpt_write(const struct veil_model *m,
                    const struct veil_accountant *acc, const void *extra,
                    size_t extra_len, void **data, size_t *len);
/** Restores m from a checkpoint, and merges its accountant record into
 *  acc (the larger spend wins: ε never goes down); *extra points into data
 *  (NULL, 0 when none). Checks the whole buffer before changing anything;
 *  -VEIL_EDECODE when it is not a checkpoint of a model of this shape. */
int veil_ckpt_read(struct veil_model *m, struct veil_accountant *acc,
                   const void *data, size_t len, const void **extra,
                   size_t *extra_len, char *errstr, size_t errstr_size);

#endif
