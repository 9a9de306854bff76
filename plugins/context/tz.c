#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ZONE_NAME 64
#define MAX_TZFILE (1 << 20)

struct zone {
        char name[MAX_ZONE_NAME + 1];
        int valid;
        size_t n;        /* transitions */
        int64_t *at;     /* transition times, s since the epoch, ascending */
        int32_t *off;    /* UTC offset from at[i] on */
        int32_t initial; /* offset before the first transition */
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
                /* The v2+ block has 64-bit times; prefer it. */
                struct zone v2 = {0};
                if (parse_block(buf, len, (size_t)next, 8, &v2) > 0) {
                        zone_clear(&tmp);
                        tmp = v2;
                } else {
                        zone_clear(&v2);
                }
        }
        free(buf);
        if (next < 0) {
                zone_clear(&tmp);
                return;
        }
        z->at = tmp.at;
        z->off = tmp.off;
        z->n = tmp.n;
        z->initial = tmp.initial;
        z->valid = 1;
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
