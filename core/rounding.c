/*
 * rounding.c — numbers a privacy statement prints, rounded the safe way:
 * a loss (ε, δ, ρ) up, never to nearest (a line that read 8 for 8.0004
 * under-reported the spend), and what was accounted for (a noise
 * multiplier) down.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/veil.h"

void veil_format_up(char *buf, size_t size, double x, int digits) {
        char m[64];
        if (!(isfinite(x) && x > 0 && digits >= 1 && digits <= 15)) {
                snprintf(buf, size, "%.*g", digits, x);
                return;
        }
        /* Rounded to nearest; if that reads back below x, add one unit of
         * the last digit: the decimal is then above x, and reads back at
         * or above it. */
        snprintf(m, sizeof(m), "%.*e", digits - 1, x);
        if (strtod(m, NULL) < x) {
                char *e = strchr(m, 'e'), *p = e - 1;
                int exp = atoi(e + 1);
                for (;; p--) {
                        if (*p == '.')
                                continue;
                        if (*p != '9') {
                                (*p)++;
                                break;
                        }
                        *p = '0';
                        if (p == m) { /* 9.99…e+N → 1e+N+1 */
                                snprintf(m, sizeof(m), "1e%d", exp + 1);
                                break;
                        }
                }
        }
        snprintf(buf, size, "%.*g", digits, strtod(m, NULL));
}

void veil_format_down(char *buf, size_t size, double x, int digits) {
        char m[80], t[64];
        if (!(isfinite(x) && x > 0 && digits >= 1 && digits <= 15)) {
                snprintf(buf, size, "%.*g", digits, x);
                return;
        }
        /* x's decimal expansion to 40 digits, cut after `digits`: the cut
         * is at or below x unless rounding at the 40th digit carried all
         * the way up, which the loop below then undoes (one unit of the
         * last digit less at a time; the cut never reads above x once it
         * is below it, as strtod rounds monotonically). */
        snprintf(m, sizeof(m), "%.40e", x);
        const char *e = strchr(m, 'e');
        snprintf(t, sizeof(t), "%.*s%s", digits == 1 ? 1 : digits + 1, m, e);
        while (strtod(t, NULL) > x) {
                int exp = atoi(strchr(t, 'e') + 1);
                double v = strtod(t, NULL) - pow(10, exp - (digits - 1));
                snprintf(t, sizeof(t), "%.*e", digits - 1, v);
        }
        snprintf(buf, size, "%.*g", digits, strtod(t, NULL));
}
