/*
 * useragent.c — a User-Agent header reduced to browser family and major
 * version, OS family and device class.
 *
 * The full string is one of the strongest fingerprinting signals there is;
 * these four coarse values are what features need. Order is everything,
 * because browsers claim to be each other:
 *   - Samsung Internet, Edge and Opera all say "Chrome/" and "Safari/";
 *     Chrome says "Safari/"; iOS browsers say "Version/… Safari/" too.
 *     So the most specific token wins: Samsung, Edge, Opera, the lesser
 *     Chromium and WebKit browsers (→ other), Firefox, Chrome, then
 *     Safari — and Safari only on Apple systems (Android's old stock browser
 *     also says "Version/4.0 … Safari/").
 *   - Every iOS UA says "like Mac OS X" and every Android UA says "Linux";
 *     Windows Phone says "Android". So: Windows Phone, iOS, Android, CrOS,
 *     Windows, macOS, Linux.
 *   - iPads say "Mobile/15E148", so iPad is checked before "Mobile"; Android
 *     phones say "Mobile" and Android tablets do not.
 *   - Bots first of all: Googlebot's smartphone UA is a complete Chrome on
 *     Android UA with "Googlebot" appended.
 * iPadOS in desktop mode sends a Mac UA and is indistinguishable from one:
 * it reduces to macOS / desktop.
 */
#include "generalize.h"

#include <stdio.h>
#include <string.h>

/* First occurrence of tok in s[0..n), or NULL. memchr on the first byte
 * then an inline compare: on a ~150-byte header and a short token this is
 * several times faster than glibc's memmem, which prepares a shift table
 * per call, and a reduction runs ~25 searches. */
static const char *find(const char *s, size_t n, const char *tok) {
        size_t t = strlen(tok);
        const char *p = s, *end = s + n;
        while (t <= (size_t)(end - p) &&
               (p = memchr(p, tok[0], (size_t)(end - p) - t + 1))) {
                size_t j = 1;
                while (j < t && p[j] == tok[j])
                        j++;
                if (j == t)
                        return p;
                p++;
        }
        return NULL;
}

static int has(const char *s, size_t n, const char *tok) {
        return find(s, n, tok) != NULL;
}

static int lower(int c) {
        return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int is_alpha(int c) {
        c = lower(c);
        return c >= 'a' && c <= 'z';
}

/* 1 when the lowercase word w starts at s[i] (case-insensitive). */
static int word_at(const char *s, size_t n, size_t i, const char *w) {
        for (; *w; w++, i++)
                if (i >= n || lower((unsigned char)s[i]) != *w)
                        return 0;
        return 1;
}

/* One case-insensitive pass over the header. */
static int is_bot(const char *s, size_t n) {
        static const char *const words[] = {
                "crawl", "spider", "slurp", "facebookexternalhit",
                "headlesschrome", "python-requests", "curl/", "wget/",
                "go-http-client", NULL};
        /* Letters that start a word above or "bot": most bytes of a
         * header are rejected by one lookup. */
        static const unsigned char starts[256] = {
                ['b'] = 1, ['c'] = 1, ['f'] = 1, ['g'] = 1,
                ['h'] = 1, ['p'] = 1, ['s'] = 1, ['w'] = 1};
        size_t word_start = 0;

        for (size_t i = 0; i < n; i++) {
                int c = lower((unsigned char)s[i]);
                if (!is_alpha(c)) {
                        word_start = i + 1;
                        continue;
                }
                if (!starts[c])
                        continue;
                for (size_t w = 0; words[w]; w++)
                        if (words[w][0] == c && word_at(s, n, i, words[w]))
                                return 1;
                /* "bot" ending a word: Googlebot/, bingbot/, AhrefsBot/,
                 * "bot.html". Not inside a word ("Bottle"), and not CUBOT,
                 * a phone maker whose model names appear in ordinary
                 * Android UAs. */
                if (c == 'b' && word_at(s, n, i, "bot") &&
                    (i + 3 >= n || !is_alpha((unsigned char)s[i + 3])) &&
                    !(i + 3 - word_start == 5 &&
                      word_at(s, n, word_start, "cubot")))
                        return 1;
        }
        return 0;
}

/* Major version right after `tok` ("Chrome/" → 120 of "Chrome/120.0"),
 * 0 when absent or absurd. The producer writes the header, so every digit
 * kept is a digit it chose: more than 3 ("Chrome/99999", "Chrome/0120")
 * is no browser's version and would carry up to 17 bits of whatever it
 * encodes (a user id), so it is no version at all. */
static int major_after(const char *s, size_t n, const char *tok) {
        const char *p = find(s, n, tok);
        int v = 0, digits = 0;
        if (!p)
                return 0;
        for (p += strlen(tok); p < s + n && *p >= '0' && *p <= '9'; p++) {
                if (++digits > 3)
                        return 0;
                v = v * 10 + (*p - '0');
        }
        return v <= VEIL_UA_MAJOR_MAX ? v : 0;
}

struct family {
        const char *token;      /* identifies the browser */
        const char *version;    /* where its version is; NULL: the token */
        enum veil_ua_browser browser;
};

/* Most specific first (see the comment at the top). */
static const struct family families[] = {
        {"SamsungBrowser/", NULL, VEIL_UA_BROWSER_SAMSUNG},
        {"EdgA/", NULL, VEIL_UA_BROWSER_EDGE},
        {"EdgiOS/", NULL, VEIL_UA_BROWSER_EDGE},
        {"Edg/", NULL, VEIL_UA_BROWSER_EDGE},
        {"Edge/", NULL, VEIL_UA_BROWSER_EDGE},
        {"OPR/", NULL, VEIL_UA_BROWSER_OPERA},
        {"OPiOS/", NULL, VEIL_UA_BROWSER_OPERA},
        {"OPT/", NULL, VEIL_UA_BROWSER_OPERA},
        {"Opera/", "Version/", VEIL_UA_BROWSER_OPERA}, /* Presto, ≤ 12 */
        {"YaBrowser/", NULL, VEIL_UA_BROWSER_OTHER},
        {"UCBrowser/", NULL, VEIL_UA_BROWSER_OTHER},
        {"Silk/", NULL, VEIL_UA_BROWSER_OTHER},
        {"Vivaldi/", NULL, VEIL_UA_BROWSER_OTHER},
        {"MiuiBrowser/", NULL, VEIL_UA_BROWSER_OTHER},
        {"DuckDuckGo/", NULL, VEIL_UA_BROWSER_OTHER},
        {"FxiOS/", NULL, VEIL_UA_BROWSER_FIREFOX},
        {"Firefox/", NULL, VEIL_UA_BROWSER_FIREFOX},
        {"CriOS/", NULL, VEIL_UA_BROWSER_CHROME},
        {"Chrome/", NULL, VEIL_UA_BROWSER_CHROME},
};

static void browser(const char *s, size_t n, enum veil_ua_os os,
                    struct veil_ua *out) {
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
                const struct family *f = &families[i];
                if (!has(s, n, f->token))
                        continue;
                out->browser = f->browser;
                if (f->browser != VEIL_UA_BROWSER_OTHER) {
                        out->major = major_after(s, n, f->version ? f->version
                                                                  : f->token);
                        if (!out->major && f->version)
                                out->major = major_after(s, n, f->token);
                }
                return;
        }
        if ((os == VEIL_UA_OS_IOS || os == VEIL_UA_OS_MACOS) &&
            has(s, n, "Safari/") && has(s, n, "Version/")) {
                out->browser = VEIL_UA_BROWSER_SAFARI;
                out->major = major_after(s, n, "Version/");
        }
}

static enum veil_ua_os os_family(const char *s, size_t n) {
        if (has(s, n, "Windows Phone"))
                return VEIL_UA_OS_OTHER;
        if (has(s, n, "iPhone") || has(s, n, "iPod") || has(s, n, "iPad"))
                return VEIL_UA_OS_IOS;
        if (has(s, n, "Android"))
                return VEIL_UA_OS_ANDROID;
        if (has(s, n, "CrOS"))
                return VEIL_UA_OS_CHROMEOS;
        if (has(s, n, "Windows"))
                return VEIL_UA_OS_WINDOWS;
        if (has(s, n, "Macintosh") || has(s, n, "Mac OS X"))
                return VEIL_UA_OS_MACOS;
        if (has(s, n, "Linux") || has(s, n, "X11"))
                return VEIL_UA_OS_LINUX;
        return VEIL_UA_OS_OTHER;
}

static enum veil_ua_device device(const char *s, size_t n,
                                  enum veil_ua_os os) {
        if (has(s, n, "iPad"))
                return VEIL_UA_DEVICE_TABLET;
        if (has(s, n, "iPhone") || has(s, n, "iPod") ||
            has(s, n, "Windows Phone"))
                return VEIL_UA_DEVICE_MOBILE;
        if (os == VEIL_UA_OS_ANDROID)
                return has(s, n, "Mobile") ? VEIL_UA_DEVICE_MOBILE
                                           : VEIL_UA_DEVICE_TABLET;
        if (has(s, n, "Mobi"))
                return VEIL_UA_DEVICE_MOBILE;
        if (os == VEIL_UA_OS_WINDOWS || os == VEIL_UA_OS_MACOS ||
            os == VEIL_UA_OS_LINUX || os == VEIL_UA_OS_CHROMEOS)
                return VEIL_UA_DEVICE_DESKTOP;
        return VEIL_UA_DEVICE_OTHER;
}

int veil_ua_reduce(const char *ua, struct veil_ua *out) {
        size_t n;
        if (!out)
                return -VEIL_EINVAL;
        memset(out, 0, sizeof(*out));
        if (!ua)
                return -VEIL_EINVAL;
        n = strnlen(ua, VEIL_UA_SCAN_MAX);
        if (is_bot(ua, n)) {
                out->device = VEIL_UA_DEVICE_BOT;
                return 0;
        }
        out->os = os_family(ua, n);
        out->device = device(ua, n, out->os);
        browser(ua, n, out->os, out);
        return 0;
}

static const char *const browser_names[] = {
        "Other", "Chrome", "Firefox", "Safari", "Edge", "Opera",
        "Samsung Internet"};
static const char *const os_names[] = {
        "Other", "Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS"};
static const char *const device_names[] = {
        "other", "desktop", "mobile", "tablet", "bot"};

#define NAME(table, i)                                                        \
        ((unsigned)(i) < sizeof(table) / sizeof(table[0]) ? table[i] : NULL)

const char *veil_ua_browser_name(enum veil_ua_browser b) {
        return NAME(browser_names, b);
}

const char *veil_ua_os_name(enum veil_ua_os os) {
        return NAME(os_names, os);
}

const char *veil_ua_device_name(enum veil_ua_device d) {
        return NAME(device_names, d);
}

int veil_ua_format(const struct veil_ua *ua, char *out, size_t out_size) {
        const char *b, *o, *d;
        int w;
        if (!out || !out_size)
                return -VEIL_EINVAL;
        out[0] = '\0';
        if (!ua)
                return -VEIL_EINVAL;
        b = veil_ua_browser_name(ua->browser);
        o = veil_ua_os_name(ua->os);
        d = veil_ua_device_name(ua->device);
        /* A version over 3 digits is refused here too, so a struct filled
         * by anything but veil_ua_reduce cannot carry one out. */
        if (!b || !o || !d || ua->major < 0 || ua->major > VEIL_UA_MAJOR_MAX)
                return -VEIL_EINVAL;
        if (ua->major > 0)
                w = snprintf(out, out_size, "%s %d / %s / %s", b, ua->major,
                             o, d);
        else
                w = snprintf(out, out_size, "%s / %s / %s", b, o, d);
        if (w < 0 || (size_t)w >= out_size) {
                out[0] = '\0';
                return -VEIL_EINVAL;
        }
        return w;
}
