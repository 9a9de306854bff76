/*
 * geohash.c — a coordinate cut to a geohash cell.
 *
 * Bisection on the exact interval bounds, longitude first, a bit per halving,
 * five bits per base-32 character, as in the original geohash.org scheme. A
 * coordinate on a split goes to the upper half, which keeps 90 and 180 (the
 * closed upper ends) inside the grid.
 */
#include "generalize.h"

static const char base32[] = "0123456789bcdefghjkmnpqrstuvwxyz";

int veil_geohash_encode(double lat, double lon, int precision, char *out,
                        size_t out_size) {
        double lat_lo = -90.0, lat_hi = 90.0, lon_lo = -180.0, lon_hi = 180.0;
        int even = 1; /* bit 0 of the hash is a longitude bit */

        if (!out || !out_size)
                return -VEIL_EINVAL;
        out[0] = '\0';
        /* The negated comparisons also refuse NaN. */
        if (!(lat >= -90.0 && lat <= 90.0) || !(lon >= -180.0 && lon <= 180.0))
                return -VEIL_EINVAL;
        if (precision < 1 || precision > VEIL_GEOHASH_MAX ||
            (size_t)precision >= out_size)
                return -VEIL_EINVAL;
        for (int i = 0; i < precision; i++) {
                int ch = 0;
                for (int b = 0; b < 5; b++) {
                        double *lo = even ? &lon_lo : &lat_lo;
                        double *hi = even ? &lon_hi : &lat_hi;
                        double v = even ? lon : lat;
                        double mid = (*lo + *hi) / 2;
                        ch <<= 1;
                        if (v >= mid) {
                                ch |= 1;
                                *lo = mid;
                        } else {
                                *hi = mid;
                        }
                        even = !even;
                }
                out[i] = base32[ch];
        }
        out[precision] = '\0';
        return precision;
}
