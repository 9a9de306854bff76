#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec_int.h"

/* The one piece of process-wide state outside main: a logger threshold.
 * Atomic because a reload may change it while librdkafka's and the HTTP
 * server's threads log. */
static _Atomic int threshold = VEIL_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

void veil_log_set_level(veil_log_level_t level) {
        atomic_store_explicit(&threshold, (int)level, memory_order_relaxed);
}
veil_log_level_t veil_log_get_level(void) {
        return (veil_log_level_t)atomic_load_explicit(&threshold,
                                                      memory_order_relaxed);
}

int veil_log_level_parse(const char *s) {
        for (int i = 0; i < 4; i++)
                if (!strcmp(s, names[i]))
                        return i;
        return -1;
}

/* JSON text, valid UTF-8 whatever s holds: a byte that does not start a
 * whole, valid sequence (a hostile instance name or topic in a message, one cut
 * mid-character) becomes U+FFFD, so one bad value cannot make a log line
 * that collectors refuse. 0 when s did not fit in cap (cut between two
 * characters), else 1. */
static int json_escape(char *out, size_t cap, const char *s) {
        size_t o = 0;
        for (; *s && o + 7 < cap; s++) {
                unsigned char c = (unsigned char)*s;
                if (c >= 0x80) {
                        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
                        if (strnlen(s, len) == len && o + len + 1 < cap &&
                            veil_utf8_valid(s, len)) {
                                memcpy(out + o, s, len);
                                o += len;
                                s += len - 1;
                        } else {
                                memcpy(out + o, "\\ufffd", 6);
                                o += 6;
                        }
                } else if (c == '"' || c == '\\') {
                        out[o++] = '\\';
                        out[o++] = (char)c;
                } else if (c == '\n') {
                        out[o++] = '\\';
                        out[o++] = 'n';
                } else if (c < 0x20) {
                        o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
                } else {
                        out[o++] = (char)c;
                }
        }
        out[o] = '\0';
        return !*s;
}

/* The length of s[0..n) without a UTF-8 sequence that it ends inside of:
 * vsnprintf cuts a long message at a byte, maybe mid-character. */
static size_t whole_chars(const char *s, size_t n) {
        size_t i = n;
        while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
                i--;
        if (i == 0)
                return n;
        unsigned char c = (unsigned char)s[i - 1];
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return n - (i - 1) < len ? i - 1 : n;
}

/* Ends a message that did not fit: a line cut silently reads as whole (a
 * reload error's later problems, missing with no sign). */
static const char cut_mark[] = " \xe2\x80\xa6 (truncated)";

/* `fields`: NULL-terminated key/value pairs, or NULL. */
static void vlog(veil_log_level_t level, const char *stage,
                 const char *const *fields, const char *fmt, va_list ap) {
        /* A plugin passes its own value: one outside the enum is logged as
         * an error rather than read past names[]. */
        if ((unsigned)level > VEIL_LOG_DEBUG)
                level = VEIL_LOG_ERROR;
        if ((int)level > atomic_load_explicit(&threshold, memory_order_relaxed))
                return;
        char msg[2048], esc[4096 + sizeof(cut_mark)];
        char st[256] = "", fl[2048] = "";
        int cut = vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg);
        if (cut)
                msg[whole_chars(msg, strlen(msg))] = '\0';
        if (!json_escape(esc, sizeof(esc) - (sizeof(cut_mark) - 1), msg) ||
            cut)
                strcat(esc, cut_mark);
        if (stage) {
                char s2[128];
                json_escape(s2, sizeof(s2), stage);
                snprintf(st, sizeof(st), ",\"stage\":\"%s\"", s2);
        }
        size_t fo = 0;
        for (size_t i = 0; fields && fields[i] && fields[i + 1] &&
                           fo + 16 < sizeof(fl);
             i += 2) {
                char k[128], v[1024];
                json_escape(k, sizeof(k), fields[i]);
                json_escape(v, sizeof(v), fields[i + 1]);
                int n = snprintf(fl + fo, sizeof(fl) - fo, "%s\"%s\":\"%s\"",
                                 fo ? "," : ",\"fields\":{", k, v);
                if (n < 0 || (size_t)n >= sizeof(fl) - fo - 1) {
                        fl[fo] = '\0'; /* drop the field that did not fit */
                        break;
                }
                fo += (size_t)n;
        }
        if (fo)
                fl[fo++] = '}', fl[fo] = '\0';
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        /* One fprintf per line: stdio locks the stream, so lines from
         * different threads do not interleave. */
        fprintf(stderr,
                "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"message\":\"%s\"%s%s}"
                "\n",
                when, ts.tv_nsec / 1000000, names[level], esc, st, fl);
}

void veil_log_vhost(veil_log_level_t level, const char *stage,
                    const char *fmt, va_list ap) {
        vlog(level, stage, NULL, fmt, ap);
}

void veil_log_fields(veil_log_level_t level, const char *stage,
                     const char *const *fields, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(level, stage, fields, fmt, ap);
        va_end(ap);
}

void veil_log_host(veil_log_level_t level, const char *stage, const char *fmt,
                   ...) {
        va_list ap;
        va_start(ap, fmt);
        veil_log_vhost(level, stage, fmt, ap);
        va_end(ap);
}
