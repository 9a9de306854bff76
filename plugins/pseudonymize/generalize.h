/*
 * generalize.h — coarsening of quasi-identifiers: IP prefixes, geohash
 * cells, time buckets, user-agent families.
 *
 * Pure functions: no allocation, no global state, output into the caller's
 * buffer, safe from any thread. String producers return the length written
 * (terminator excluded) or a negative VEIL_E* code; on error `out` holds an
 * empty string when out_size > 0, so a caller that ignores the code still
 * never emits part of a raw value.
 */
#ifndef VEIL_GENERALIZE_H
#define VEIL_GENERALIZE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/veil.h"

/* ---- IP (ip.c) ---- */

#define VEIL_IP_V4_PREFIX 24
#define VEIL_IP_V6_PREFIX 40
#define VEIL_IP_OUT_MAX 46 /* INET6_ADDRSTRLEN */

/** The network address of `ip` under the given prefix, in canonical text
 *  ("192.168.1.0", "2001:db8:1::"). v4_prefix 0..32, v6_prefix 0..128.
 *  An IPv6 zone ("fe80::1%eth0") is dropped. IPv4-mapped IPv6
 *  (::ffff:a.b.c.d) is treated as the IPv4 address and printed as one, so a
 *  client gets the same value whether the socket was dual-stack or not.
 *  6to4 (2002::/16) carries an IPv4 address in bits 16..47: its prefix is
 *  capped at 16 + v4_prefix so the embedded IPv4 is cut exactly as a plain
 *  one would be. -VEIL_EINVAL on anything that is
 *  not an address in the forms inet_pton accepts. */
int veil_ip_truncate(const char *ip, int v4_prefix, int v6_prefix, char *out,
                     size_t out_size);

/* ---- geohash (geohash.c) ---- */

#define VEIL_GEOHASH_MAX 12

/** Geohash of (lat, lon) with `precision` characters (1..12); lat in
 *  [-90, 90], lon in [-180, 180], finite. Needs out_size > precision. */
int veil_geohash_encode(double lat, double lon, int precision, char *out,
                        size_t out_size);

/* ---- time (timebucket.c) ---- */

/** Parses "<positive integer><unit>", unit one of ms, s, m, h, d, w
 *  ("30s", "15m", "1h", "7d") into milliseconds. 0 or -VEIL_EINVAL (empty,
 *  no unit, sign, fraction, space, zero, overflow). */
int veil_duration_parse(const char *s, int64_t *ms);

/** Start of the bucket holding ts_ms: the largest multiple of bucket_ms
 *  ≤ ts_ms (floor, also for times before 1970). bucket_ms ≤ 0 returns ts_ms
 *  unchanged; a bucket start below INT64_MIN saturates to INT64_MIN. */
int64_t veil_time_bucket(int64_t ts_ms, int64_t bucket_ms);

/* ---- user agent (useragent.c) ---- */

enum veil_ua_browser {
        VEIL_UA_BROWSER_OTHER = 0,
        VEIL_UA_BROWSER_CHROME,
        VEIL_UA_BROWSER_FIREFOX,
        VEIL_UA_BROWSER_SAFARI,
        VEIL_UA_BROWSER_EDGE,
        VEIL_UA_BROWSER_OPERA,
        VEIL_UA_BROWSER_SAMSUNG
};

enum veil_ua_os {
        VEIL_UA_OS_OTHER = 0,
        VEIL_UA_OS_WINDOWS,
        VEIL_UA_OS_MACOS,
        VEIL_UA_OS_IOS,
        VEIL_UA_OS_ANDROID,
        VEIL_UA_OS_LINUX,
        VEIL_UA_OS_CHROMEOS
};

enum veil_ua_device {
        VEIL_UA_DEVICE_OTHER = 0,
        VEIL_UA_DEVICE_DESKTOP,
        VEIL_UA_DEVICE_MOBILE,
        VEIL_UA_DEVICE_TABLET,
        VEIL_UA_DEVICE_BOT
};

/** The largest major version kept. Real browsers are at 3 digits at most
 *  (Chrome, Edge, Firefox and Opera at 1xx, Safari and Samsung at 2x);
 *  a longer number is not a browser's version but something a producer
 *  chose to send ("Chrome/99999" after a user id), up to 17 bits of it,
 *  so it becomes no version. */
#define VEIL_UA_MAJOR_MAX 999

/** What is kept of a user agent: families and a major version. */
struct veil_ua {
        enum veil_ua_browser browser;
        int major; /**< browser major version, 1..VEIL_UA_MAJOR_MAX, 0 when
                        unknown */
        enum veil_ua_os os;
        enum veil_ua_device device;
};

/** Only the first VEIL_UA_SCAN_MAX bytes are read, which bounds the cost of
 *  an absurd header; every real token sits well inside. */
#define VEIL_UA_SCAN_MAX 1024
#define VEIL_UA_OUT_MAX 48

/** Reduces a User-Agent header. Bots (and scripted clients: curl, python-
 *  requests, headless Chrome) get device "bot" and browser and OS "other",
 *  since what they claim to be is not a person's browser. An empty string
 *  reduces to all "other". -VEIL_EINVAL only for NULL arguments. */
int veil_ua_reduce(const char *ua, struct veil_ua *out);

/** "Chrome 120 / Android / mobile" ("Other / Other / bot" without a
 *  version). Returns the length, or -VEIL_EINVAL when `out` is too small
 *  (VEIL_UA_OUT_MAX always suffices) or a field is out of range (a major
 *  version above VEIL_UA_MAJOR_MAX included). */
int veil_ua_format(const struct veil_ua *ua, char *out, size_t out_size);

/** Display names: "Samsung Internet", "macOS", "tablet"… */
const char *veil_ua_browser_name(enum veil_ua_browser b);
const char *veil_ua_os_name(enum veil_ua_os os);
const char *veil_ua_device_name(enum veil_ua_device d);

#endif
