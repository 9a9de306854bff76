#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ZONE_NAME 64
#define MAX_TZFILE (1 << 20)

/* A date of a POSIX TZ rule: Jn (day 1..365 of the year, February 29
 * never counted), n (day 0..365, counted) or Mm.w.d (day d, 0 = Sunday, of
 * week w of month m, 5 = the last), and the time of day of the change, in
 * the local time then in force (from -167 to 167 hours, RFC 8536 §3.3.1). */
struct rule_date {
        char form; /* 'J', 'D' (n) or 'M' */
        int m, w, d;
        int32_t time;
};

struct zone {
        char name[MAX_ZONE_NAME + 1];
        int valid;
        size_t n;        /* transitions */
        int64_t *at;     /* transition times, s since the epoch, ascending */
        int32_t *off;    /* UTC offset from at[i] on */
        int32_t initial; /* offset before the first transition */
        /* The footer's rule (TZif v2+), for times after the last
         * transition: the files list a zone's changes up to some year
         * (2037 in Debian's, earlier in "slim" ones) and leave the rest to
         * it. footer 0: none (v1, or a footer not understood), the last
         * transition's offset holds on. */
        int footer, has_dst;
        int32_t std_off, dst_off; /* UTC offsets, east positive */
        struct rule_date start, end;
};

struct veil_tz_cache {
        char *dir;
        struct zone *z;
        int n, cap, next;
};

struct veil_tz_cache *veil_tz_new(const char *dir, int cap) {
        struct veil_tz_cache *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->dir = strdup(dir ? dir : "/usr/share/zoneinfo");
        c->cap = cap > 0 ? cap : 1;
        c->z = calloc((size_t)c->cap, sizeof(*c->z));
        if (!c->dir || !c->z) {
                veil_tz_free(c);
                return NULL;
        }
        return c;
}

static void zone_clear(struct zone *z) {
        free(z->at);
        free(z->off);
        memset(z, 0, sizeof(*z));
}

void veil_tz_free(struct veil_tz_cache *c) {
        if (!c)
                return;
        for (int i = 0; i < c->n; i++)
                zone_clear(&c->z[i]);
        free(c->z);
        free(c->dir);
        free(c);
}

/* IANA names: letters, digits, '_', '-', '+', '/' between components; no
 * empty component, no "." or "..": nothing that escapes the zoneinfo root. */
static int valid_name(const char *s) {
        size_t n = strlen(s);
        if (!n || n > MAX_ZONE_NAME || s[0] == '/' || s[n - 1] == '/')
                return 0;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                         (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
                         ch == '+' || ch == '/';
                if (!ok || (ch == '/' && s[i + 1] == '/'))
                        return 0;
        }
        return 1;
}

static uint32_t be32(const unsigned char *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p) {
        return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parses one TZif data block (v1 with 4-byte times, v2+ with 8-byte ones)
 * at buf[pos]; on success fills z and returns the position after it. */
static long parse_block(const unsigned char *buf, size_t len, size_t pos,
                        int tsize, struct zone *z) {
        if (pos + 44 > len || memcmp(buf + pos, "TZif", 4))
                return -1;
        const unsigned char *h = buf + pos + 20;
        uint32_t isut = be32(h), isstd = be32(h + 4), leap = be32(h + 8),
                 timecnt = be32(h + 12), typecnt = be32(h + 16),
                 charcnt = be32(h + 20);
        if (typecnt == 0 || typecnt > 256 || timecnt > 100000)
                return -1;
        size_t body = (size_t)timecnt * (size_t)tsize + timecnt +
                      (size_t)typecnt * 6 + charcnt +
                      (size_t)leap * (size_t)(tsize + 4) + isstd + isut;
        if (pos + 44 + body > len)
                return -1;
        const unsigned char *t = buf + pos + 44;
        const unsigned char *idx = t + (size_t)timecnt * (size_t)tsize;
        const unsigned char *tt = idx + timecnt;
        z->at = malloc((timecnt ? timecnt : 1) * sizeof(int64_t));
        z->off = malloc((timecnt ? timecnt : 1) * sizeof(int32_t));
        if (!z->at || !z->off)
                return -1;
        for (uint32_t i = 0; i < timecnt; i++) {
                z->at[i] = tsize == 8 ? be64(t + (size_t)i * 8)
                                      : (int32_t)be32(t + (size_t)i * 4);
                if (idx[i] >= typecnt || (i && z->at[i] < z->at[i - 1]))
                        return -1;
                z->off[i] = (int32_t)be32(tt + (size_t)idx[i] * 6);
        }
        z->n = timecnt;
        /* Before the first transition: the first standard-time type (RFC
         * 8536 §3.2 leaves it to type 0; zic writes that one first). */
        z->initial = (int32_t)be32(tt);
        for (uint32_t i = 0; i < typecnt; i++) {
                if (!tt[i * 6 + 4]) {
                        z->initial = (int32_t)be32(tt + (size_t)i * 6);
                        break;
                }
        }
        return (long)(pos + 44 + body);
}

/* ---- the footer: a POSIX TZ string (RFC 8536 §3.3) ---- */

/* A zone abbreviation, "CET" or "<+0330>": skipped, veil wants offsets. */
static const char *tz_name(const char *s) {
        const char *p = s;
        if (*p == '<') {
                while (*++p && *p != '>')
                        if (!((*p >= 'A' && *p <= 'Z') ||
                              (*p >= 'a' && *p <= 'z') ||
                              (*p >= '0' && *p <= '9') || *p == '+' ||
                              *p == '-'))
                                return NULL;
                return *p == '>' && p - s >= 4 ? p + 1 : NULL;
        }
        while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
                p++;
        return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] with hh up to max_h, into *out seconds. */
static const char *tz_hms(const char *p, int max_h, int32_t *out) {
        int sign = 1;
        if (*p == '+' || *p == '-')
                sign = *p++ == '-' ? -1 : 1;
        int32_t v[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
                if (i && *p != ':')
                        break;
                if (i)
                        p++;
                if (*p < '0' || *p > '9')
                        return NULL;
                int x = 0, digits = 0;
                while (*p >= '0' && *p <= '9' && digits < 3) {
                        x = x * 10 + (*p++ - '0');
                        digits++;
                }
                if (x > (i ? 59 : max_h))
                        return NULL;
                v[i] = x;
        }
        *out = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
        return p;
}

static const char *tz_num(const char *p, int lo, int hi, int *out) {
        if (*p < '0' || *p > '9')
                return NULL;
        int x = 0;
        while (*p >= '0' && *p <= '9' && x <= hi)
                x = x * 10 + (*p++ - '0');
        if (x < lo || x > hi)
                return NULL;
        *out = x;
        return p;
}

/* ,date[/time] */
static const char *tz_date(const char *p, struct rule_date *r) {
        if (*p++ != ',')
                return NULL;
        if (*p == 'M') {
                r->form = 'M';
                if (!(p = tz_num(p + 1, 1, 12, &r->m)) || *p != '.' ||
                    !(p = tz_num(p + 1, 1, 5, &r->w)) || *p != '.' ||
                    !(p = tz_num(p + 1, 0, 6, &r->d)))
                        return NULL;
        } else if (*p == 'J') {
                r->form = 'J';
                if (!(p = tz_num(p + 1, 1, 365, &r->d)))
                        return NULL;
        } else {
                r->form = 'D';
                if (!(p = tz_num(p, 0, 365, &r->d)))
                        return NULL;
        }
        r->time = 7200; /* 02:00 when not given */
        if (*p == '/' && !(p = tz_hms(p + 1, 167, &r->time)))
                return NULL;
        return p;
}

/* Parses the footer's TZ string (between its newlines) into z; 0 when it
 * is not understood, and the last transition's offset then holds on. */
static int parse_footer(const char *tz, size_t len, struct zone *z) {
        char buf[128];
        if (len >= sizeof(buf))
                return 0;
        memcpy(buf, tz, len);
        buf[len] = '\0';
        const char *p = tz_name(buf);
        int32_t off;
        if (!p || !(p = tz_hms(p, 24, &off)))
                return 0;
        /* POSIX offsets count west: "CET-1" is UTC+1. */
        z->std_off = -off;
        z->has_dst = 0;
        if (*p) {
                if (!(p = tz_name(p)))
                        return 0;
                z->dst_off = z->std_off + 3600;
                if (*p && *p != ',') {
                        if (!(p = tz_hms(p, 24, &off)))
                                return 0;
                        z->dst_off = -off;
                }
                /* Without a rule POSIX leaves the dates to each reader
                 * (glibc reads another file for them); zic always writes
                 * one, so a footer without is not understood. */
                if (!(p = tz_date(p, &z->start)) ||
                    !(p = tz_date(p, &z->end)))
                        return 0;
                z->has_dst = 1;
        }
        return *p == '\0';
}

static int is_leap(int64_t y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil). */
static int64_t days_of(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

/* The year (proleptic Gregorian) of day `days` since 1970-01-01. */
static int64_t year_of(int64_t days) {
        int64_t z = days + 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        return yoe + era * 400 + (mp >= 10);
}

/* The local time (s since the epoch) of a rule date in year y. */
static int64_t rule_local(const struct rule_date *r, int64_t y) {
        static const int mdays[] = {31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        int64_t day;
        if (r->form == 'J') {
                day = days_of(y, 1, 1) + r->d - 1 + (is_leap(y) && r->d >= 60);
        } else if (r->form == 'D') {
                day = days_of(y, 1, 1) + r->d;
        } else {
                int64_t first = days_of(y, r->m, 1);
                int wd = (int)(((first + 4) % 7 + 7) % 7); /* 0 = Sunday */
                int len = mdays[r->m - 1] + (r->m == 2 && is_leap(y));
                int64_t dd = (r->d - wd + 7) % 7 + (int64_t)(r->w - 1) * 7;
                while (dd >= len)
                        dd -= 7;
                day = first + dd;
        }
        return day * 86400 + r->time;
}

/* The footer's offset at t (s since the epoch, UTC). The year is that of
 * t in standard time; start is in standard time, end in daylight time.
 * When start comes after end in the year (the southern hemisphere, or
 * Dublin's winter "daylight" time), daylight time spans the new year. */
static int32_t footer_offset(const struct zone *z, int64_t t) {
        if (!z->has_dst)
                return z->std_off;
        int64_t ls = t + z->std_off;
        int64_t y = year_of(ls >= 0 ? ls / 86400 : -((-ls + 86399) / 86400));
        int64_t start = rule_local(&z->start, y) - z->std_off;
        int64_t end = rule_local(&z->end, y) - z->dst_off;
        int dst = start < end ? t >= start && t < end
                              : !(t >= end && t < start);
        return dst ? z->dst_off : z->std_off;
}

static void load(struct veil_tz_cache *c, struct zone *z, const char *name) {
        snprintf(z->name, sizeof(z->name), "%s", name);
        z->valid = 0;
        if (!valid_name(name))
                return;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", c->dir, name);
        FILE *f = fopen(path, "rb");
        if (!f)
                return;
        unsigned char *buf = malloc(MAX_TZFILE);
        size_t len = buf ? fread(buf, 1, MAX_TZFILE, f) : 0;
        fclose(f);
        if (!buf || len < 44 || memcmp(buf, "TZif", 4)) {
                free(buf);
                return;
        }
        struct zone tmp = {0};
        long next = parse_block(buf, len, 0, 4, &tmp);
        if (next > 0 && buf[4] >= '2') {
                /* The v2+ block has 64-bit times; prefer it, and its
                 * footer, "\nTZ\n", for the times after it. */
                struct zone v2 = {0};
                long end = parse_block(buf, len, (size_t)next, 8, &v2);
                if (end > 0) {
                        zone_clear(&tmp);
                        tmp = v2;
                        const char *f = (const char *)buf + end;
                        const char *nl = (size_t)end + 1 < len
                                                 ? memchr(f + 1, '\n',
                                                          len - (size_t)end - 1)
                                                 : NULL;
                        /* nl first: it is set only when f is in buf. */
                        tmp.footer = nl && *f == '\n' &&
                                     parse_footer(f + 1, (size_t)(nl - f - 1),
                                                  &tmp);
                } else {
                        zone_clear(&v2);
                }
        }
        free(buf);
        if (next < 0) {
                zone_clear(&tmp);
                return;
        }
        snprintf(tmp.name, sizeof(tmp.name), "%s", name);
        tmp.valid = 1;
        *z = tmp;
}

int veil_tz_offset(struct veil_tz_cache *c, const char *zone, int64_t ts_ms,
                   int32_t *offset_s) {
        *offset_s = 0;
        if (!zone || !*zone)
                return -1;
        struct zone *z = NULL;
        for (int i = 0; i < c->n && !z; i++)
                if (!strcmp(c->z[i].name, zone))
                        z = &c->z[i];
        if (!z) {
                if (c->n < c->cap) {
                        z = &c->z[c->n++];
                } else {
                        z = &c->z[c->next];
                        c->next = (c->next + 1) % c->cap;
                        zone_clear(z);
                }
                load(c, z, zone);
                /* A name too long to store stays unknown; make sure a later
                 * lookup does not match it by its truncated prefix. */
                if (strlen(zone) > MAX_ZONE_NAME) {
                        zone_clear(z);
                        z->name[0] = '\0';
                        return -1;
                }
        }
        if (!z->valid)
                return -1;
        int64_t t = ts_ms >= 0 ? ts_ms / 1000 : -((-ts_ms + 999) / 1000);
        /* The footer from the last transition on (RFC 8536 §3.3), and for
         * all times in a file without transitions. */
        if (z->footer && (!z->n || t >= z->at[z->n - 1])) {
                *offset_s = footer_offset(z, t);
                return 0;
        }
        if (!z->n || t < z->at[0]) {
                *offset_s = z->initial;
                return 0;
        }
        size_t lo = 0, hi = z->n; /* at[lo] <= t < at[hi] */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (z->at[mid] <= t)
                        lo = mid;
                else
                        hi = mid;
        }
        *offset_s = z->off[lo];
        return 0;
}

void veil_tz_local(int64_t ts_ms, int32_t offset_s, int *hour, int *weekday) {
        int64_t s = (ts_ms >= 0 ? ts_ms / 1000 : -((-ts_ms + 999) / 1000)) +
                    offset_s;
        int64_t day = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
        int64_t sec = s - day * 86400;
        *hour = (int)(sec / 3600);
        /* 1970-01-01 was a Thursday (ISO 4). */
        int64_t wd = (day + 3) % 7;
        if (wd < 0)
                wd += 7;
        *weekday = (int)wd + 1;
}
