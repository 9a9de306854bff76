/*
 * ip.c — IP addresses cut to a network prefix.
 *
 * inet_pton/inet_ntop do the parsing and the printing, so the output is the
 * canonical text (RFC 5952 for IPv6) and whatever the C library refuses
 * (leading zeros in IPv4, stray spaces, short forms like "10.1") is refused
 * here too: a value we cannot parse is a value we cannot coarsen, and the
 * caller must drop it rather than pass it on.
 */
#include "generalize.h"

#include <arpa/inet.h>
#include <string.h>

static void mask(unsigned char *a, size_t len, int prefix) {
        for (size_t i = 0; i < len; i++) {
                int bits = prefix - (int)(i * 8);
                if (bits >= 8)
                        continue;
                a[i] &= bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
        }
}

static int put(int af, const unsigned char *a, char *out, size_t out_size) {
        if (!inet_ntop(af, a, out, (socklen_t)out_size)) {
                out[0] = '\0';
                return -VEIL_EINVAL;
        }
        return (int)strlen(out);
}

int veil_ip_truncate(const char *ip, int v4_prefix, int v6_prefix, char *out,
                     size_t out_size) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0xff, 0xff};
        unsigned char a[16];
        char buf[VEIL_IP_OUT_MAX];
        const char *pct;
        size_t n;

        if (!out || !out_size)
                return -VEIL_EINVAL;
        out[0] = '\0';
        if (!ip || v4_prefix < 0 || v4_prefix > 32 || v6_prefix < 0 ||
            v6_prefix > 128)
                return -VEIL_EINVAL;
        if (inet_pton(AF_INET, ip, a) == 1) {
                mask(a, 4, v4_prefix);
                return put(AF_INET, a, out, out_size);
        }
        /* A zone names an interface of the host that saw the address; it
         * says nothing the prefix keeps, and inet_pton does not take it. */
        if ((pct = strchr(ip, '%'))) {
                n = (size_t)(pct - ip);
                if (n == 0 || n >= sizeof(buf) || !pct[1])
                        return -VEIL_EINVAL;
                memcpy(buf, ip, n);
                buf[n] = '\0';
                ip = buf;
        }
        if (inet_pton(AF_INET6, ip, a) != 1)
                return -VEIL_EINVAL;
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
                mask(a + 12, 4, v4_prefix);
                return put(AF_INET, a + 12, out, out_size);
        }
        if (a[0] == 0x20 && a[1] == 0x02 && v6_prefix > 16 + v4_prefix)
                v6_prefix = 16 + v4_prefix;
        mask(a, 16, v6_prefix);
        return put(AF_INET6, a, out, out_size);
}
