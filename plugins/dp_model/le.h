/*
 * le.h — little-endian integers in byte buffers, for the dp_model's
 * persisted formats (the accountant record, the checkpoint): one copy of
 * the shifts, independent of the host's byte order. The writers return
 * the byte after the value.
 */
#ifndef VEIL_DP_MODEL_LE_H
#define VEIL_DP_MODEL_LE_H

#include <stdint.h>

static inline unsigned char *veil_le_put32(unsigned char *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                *p++ = (unsigned char)(v >> (8 * i));
        return p;
}

static inline unsigned char *veil_le_put64(unsigned char *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                *p++ = (unsigned char)(v >> (8 * i));
        return p;
}

static inline uint32_t veil_le_get32(const unsigned char *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
}

static inline uint64_t veil_le_get64(const unsigned char *p) {
        return (uint64_t)veil_le_get32(p) |
               (uint64_t)veil_le_get32(p + 4) << 32;
}

#endif
