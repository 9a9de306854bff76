/*
 * timebucket.c — durations from configuration, and timestamps cut to
 * buckets of them.
 *
 * One integer and one unit, nothing else: "1h30m", "1.5h" or " 1h" are
 * refused rather than half-read, because a bucket silently parsed as 1 ms
 * would keep timestamps at full precision.
 */
#include "generalize.h"

#include <string.h>

struct unit {
        const char *name;
        int64_t ms;
};

static const struct unit units[] = {
        {"ms", 1},           {"s", 1000},           {"m", 60000},
        {"h", 3600000},      {"d", 86400000},       {"w", 604800000},
};

int veil_duration_parse(const char *s, int64_t *ms) {
        int64_t n = 0;
        const char *p = s;

        if (!s || !ms)
                return -VEIL_EINVAL;
        if (*p < '0' || *p > '9')
                return -VEIL_EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                int d = *p - '0';
                if (n > (INT64_MAX - d) / 10)
                        return -VEIL_EINVAL;
                n = n * 10 + d;
        }
        if (n == 0)
                return -VEIL_EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(p, units[i].name) != 0)
                        continue;
                if (n > INT64_MAX / units[i].ms)
                        return -VEIL_EINVAL;
                *ms = n * units[i].ms;
                return 0;
        }
        return -VEIL_EINVAL;
}

int64_t veil_time_bucket(int64_t ts_ms, int64_t bucket_ms) {
        int64_t r;
        if (bucket_ms <= 0)
                return ts_ms;
        /* C's % truncates toward zero; shift the remainder into
         * [0, bucket_ms) so times before the epoch floor too. */
        r = ts_ms % bucket_ms;
        if (r < 0)
                r += bucket_ms;
        if (ts_ms < INT64_MIN + r)
                return INT64_MIN;
        return ts_ms - r;
}
