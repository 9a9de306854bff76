#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The one piece of process-wide state outside main: a logger threshold,
 * written once at start-up before any thread exists. */
static veil_log_level_t threshold = VEIL_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

void veil_log_set_level(veil_log_level_t level) { threshold = level; }
veil_log_level_t veil_log_get_level(void) { return threshold; }

int veil_log_level_parse(const char *s) {
        for (int i = 0; i < 4; i++)
                if (!strcmp(s, names[i]))
                        return i;
        return -1;
}

static size_t json_escape(char *out, size_t cap, const char *s) {
        size_t o = 0;
        for (; *s && o + 7 < cap; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\') {
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
        return o;
}

void veil_log_vhost(veil_log_level_t level, const char *stage,
                    const char *fmt, va_list ap) {
        if (level > threshold)
                return;
        char msg[2048], esc[4096], st[256] = "";
        vsnprintf(msg, sizeof(msg), fmt, ap);
        json_escape(esc, sizeof(esc), msg);
        if (stage) {
                char s2[128];
                json_escape(s2, sizeof(s2), stage);
                snprintf(st, sizeof(st), ",\"stage\":\"%s\"", s2);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        /* One fprintf per line: stdio locks the stream, so lines from
         * different threads do not interleave. */
        fprintf(stderr,
                "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"%s}\n",
                when, ts.tv_nsec / 1000000, names[level], esc, st);
}

void veil_log_host(veil_log_level_t level, const char *stage, const char *fmt,
                   ...) {
        va_list ap;
        va_start(ap, fmt);
        veil_log_vhost(level, stage, fmt, ap);
        va_end(ap);
}
