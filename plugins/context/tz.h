/*
 * tz.h — local time of day in an IANA time zone, from the system's TZif
 * files (/usr/share/zoneinfo), without touching the process-wide TZ.
 *
 * Why not localtime_r with setenv("TZ"): TZ is global state shared with the
 * host and every other stage, and tzset() per event is slow. A zone is read
 * once and kept in a bounded cache; a name that is not a valid zone is
 * remembered as such, so a producer cannot make us read files per event.
 *
 * Times after a zone's last listed transition follow the rule in the file's
 * footer (TZif v2+: a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3"):
 * the files list transitions to some year only (2037 in Debian's, earlier
 * in "slim" ones). A file without a footer keeps its last offset.
 */
#ifndef VEIL_CONTEXT_TZ_H
#define VEIL_CONTEXT_TZ_H

#include <stdint.h>

struct veil_tz_cache;

/** `dir` is the zoneinfo root (NULL: /usr/share/zoneinfo); at most `cap`
 *  zones are kept (older ones are replaced round-robin). */
struct veil_tz_cache *veil_tz_new(const char *dir, int cap);
void veil_tz_free(struct veil_tz_cache *c);

/** UTC offset in seconds of `zone` at `ts_ms`; 0 and returns -1 when the
 *  zone is unknown or invalid (the caller then uses UTC). */
int veil_tz_offset(struct veil_tz_cache *c, const char *zone, int64_t ts_ms,
                   int32_t *offset_s);

/** Hour (0..23) and ISO weekday (1 = Monday .. 7 = Sunday) of local time
 *  ts_ms + offset. */
void veil_tz_local(int64_t ts_ms, int32_t offset_s, int *hour, int *weekday);

#endif
