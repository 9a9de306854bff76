#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_COLS 256
#define MAX_LINE (64 * 1024)

/* read_line's results besides 1 (a line) and 0 (the end). */
enum { RL_LONG = -1, RL_NUL = -2, RL_IO = -3, RL_CR = -4 };

enum col {
        C_NONE = 0, C_TS_S, C_TS_MS, C_USER, C_ITEM, C_VALUE, C_SESSION,
        C_COUNTRY, C_EVENT_ID, C_TYPE, C_DEVICE, C_IP, C_UA, C_LAT, C_LON,
        C_TC, C_GPC, C_TZ
};

static const struct {
        const char *name;
        enum col col;
} names[] = {
        {"ts", C_TS_S},           {"ts_ms", C_TS_MS},
        {"user_id", C_USER},      {"item", C_ITEM},
        {"item_id", C_ITEM},      {"qty", C_VALUE},
        {"value", C_VALUE},       {"invoice", C_SESSION},
        {"session_id", C_SESSION}, {"country", C_COUNTRY},
        {"event_id", C_EVENT_ID}, {"type", C_TYPE},
        {"device", C_DEVICE},     {"ip", C_IP},
        {"user_agent", C_UA},     {"lat", C_LAT},
        {"lon", C_LON},           {"tc_string", C_TC},
        {"gpc", C_GPC},           {"timezone", C_TZ},
};

/* The field a column is read as: ts and ts_ms are the one time. */
static enum col field_of(enum col c) { return c == C_TS_MS ? C_TS_S : c; }

/* The column a header name is read as, C_NONE for none (and for "-",
 * --column's "not read"). */
static enum col col_named(const char *name) {
        for (size_t j = 0; j < sizeof(names) / sizeof(*names); j++)
                if (!strcmp(name, names[j].name))
                        return names[j].col;
        return C_NONE;
}

struct veil_csv {
        gzFile f; /* zlib reads plain and gzip-compressed files alike */
        char *path;
        long line;
        long row; /**< data rows read, for generated event ids */
        enum col cols[MAX_COLS];
        char *col_names[MAX_COLS]; /* the header's, for messages */
        int n_cols;
        char buf[MAX_LINE];
        char *fields[MAX_COLS];
        char in[1 << 16]; /* gzread's bytes not yet split into lines */
        size_t in_pos, in_len;
        int in_end; /* gzread returned the end */
        char event_id[64];
        struct veil_event held; /* veil_csv_unread's event */
        int has_held;
};

/* Lines are read one at a time, so a quoted field holding a line break
 * ends its line inside the quotes: said as the catalog reader says it. */
#define UNTERMINATED_QUOTE \
        "unterminated quote (a quoted field cannot hold a line break)"

/* Splits buf in place into fields (RFC 4180 quoting). Returns the number
 * of fields, every one counted although only the first `max` are stored
 * in `fields`, or -1 on an unterminated quote. */
static int split(char *buf, char **fields, int max) {
        int n = 0;
        char *r = buf, *w = buf;
        for (;;) {
                if (n < max)
                        fields[n] = w;
                n++;
                if (*r == '"') {
                        r++;
                        for (;;) {
                                if (!*r)
                                        return -1;
                                if (*r == '"' && r[1] == '"') {
                                        *w++ = '"';
                                        r += 2;
                                } else if (*r == '"') {
                                        r++;
                                        break;
                                } else {
                                        *w++ = *r++;
                                }
                        }
                }
                while (*r && *r != ',')
                        *w++ = *r++;
                if (!*r) {
                        *w = '\0';
                        return n;
                }
                *w++ = '\0';
                r++;
        }
}

/* Reads the next line into buf, without its \n and trailing \r: 1 read,
 * 0 at the end, RL_LONG over MAX_LINE - 2 bytes, RL_NUL when it holds a
 * NUL byte (C strings would end it there), RL_CR when a CR is left inside
 * it (CR line endings), RL_IO on a read error (a
 * truncated or corrupt gzip file). Lines are counted as they begin, so
 * the errors name the line they are about. The lines are cut from bytes
 * gzread returned, not by gzgets, whose strlen cannot tell a NUL byte from
 * the end of what it read. */
static int read_line(struct veil_csv *c) {
        size_t l = 0;
        int started = 0;
        for (;;) {
                if (c->in_pos == c->in_len) {
                        int r = c->in_end ? 0
                                          : gzread(c->f, c->in,
                                                   sizeof(c->in));
                        int zerr = Z_OK;
                        if (r <= 0 && !c->in_end)
                                gzerror(c->f, &zerr);
                        if (r < 0 || zerr != Z_OK) {
                                /* gzread returns 0, not -1, at the end of
                                 * a truncated gzip file: its error says. */
                                c->in_end = 1;
                                if (!started)
                                        c->line++;
                                return RL_IO;
                        }
                        if (r == 0) {
                                c->in_end = 1;
                                if (!started)
                                        return 0;
                                break; /* a last line without its \n */
                        }
                        c->in_pos = 0;
                        c->in_len = (size_t)r;
                }
                if (!started) {
                        started = 1;
                        c->line++;
                }
                const char *s = c->in + c->in_pos;
                size_t avail = c->in_len - c->in_pos;
                const char *nl = memchr(s, '\n', avail);
                size_t take = nl ? (size_t)(nl - s) : avail;
                if (take > MAX_LINE - 2 - l)
                        return RL_LONG;
                if (memchr(s, '\0', take))
                        return RL_NUL;
                memcpy(c->buf + l, s, take);
                l += take;
                c->in_pos += take + (nl != NULL);
                if (nl)
                        break;
        }
        while (l && c->buf[l - 1] == '\r')
                l--;
        /* A CR left inside: a file with old Mac line endings (CR alone)
         * reads as one line, whose header may well pass and whose data
         * would then be nothing at all: a replay of 0 events, exit 0. */
        if (memchr(c->buf, '\r', l))
                return RL_CR;
        c->buf[l] = '\0';
        return 1;
}

/* The message for a read_line error. */
static int line_error(struct veil_csv *c, int rc, char *errstr,
                      size_t errstr_size) {
        if (rc == RL_LONG)
                snprintf(errstr, errstr_size,
                         "%s:%ld: line longer than %d bytes", c->path,
                         c->line, MAX_LINE - 2);
        else if (rc == RL_NUL)
                snprintf(errstr, errstr_size,
                         "%s:%ld: a NUL byte in the line (not a text CSV?)",
                         c->path, c->line);
        else if (rc == RL_CR)
                snprintf(errstr, errstr_size,
                         "%s:%ld: a carriage return inside the line: lines "
                         "must end in LF or CRLF (a file with CR line "
                         "endings: convert it, e.g. tr '\\r' '\\n')",
                         c->path, c->line);
        else {
                int zerr;
                const char *m = gzerror(c->f, &zerr);
                /* zlib puts its own name of the file first. */
                for (const char *p = m; p && (p = strstr(p, ": ")); p += 2)
                        m = p + 2;
                snprintf(errstr, errstr_size, "%s:%ld: read error: %s",
                         c->path, c->line,
                         zerr == Z_ERRNO ? strerror(errno)
                         : m && *m       ? m
                                         : "unknown");
                return -VEIL_EIO;
        }
        return -VEIL_EINVAL;
}

/* Refuses two columns read as one field: aliases (item and item_id, ts and
 * ts_ms, qty and value, invoice and session_id) or a --column onto a name
 * the header has too. Each column set the field in turn and the last one
 * won, without a word. The names printed are the header's, and both are
 * names of the field or a --column's NAME: never a cell of data. */
static int two_columns(struct veil_csv *c, char *errstr, size_t errstr_size) {
        for (int i = 0; i < c->n_cols; i++) {
                for (int j = 0; j < i && c->cols[i] != C_NONE; j++) {
                        if (field_of(c->cols[j]) != field_of(c->cols[i]))
                                continue;
                        const char *a = c->col_names[j], *b = c->col_names[i];
                        if (!strcmp(a, b)) {
                                snprintf(errstr, errstr_size,
                                         "%s:1: columns %d and %d are both "
                                         "named '%s': rename one in the "
                                         "header (--column finds a column "
                                         "by its name and cannot tell them "
                                         "apart)",
                                         c->path, j + 1, i + 1, a);
                                return -VEIL_EINVAL;
                        }
                        char fields[64];
                        size_t off = 0;
                        fields[0] = '\0';
                        for (size_t k = 0; k < sizeof(names) / sizeof(*names);
                             k++)
                                if (field_of(names[k].col) ==
                                            field_of(c->cols[i]) &&
                                    off < sizeof(fields))
                                        off += (size_t)snprintf(
                                                fields + off,
                                                sizeof(fields) - off, "%s%s",
                                                off ? ", " : "",
                                                names[k].name);
                        /* The one to leave out: the column read by its
                         * own name, not the one a --column renamed. */
                        const char *drop =
                                field_of(col_named(b)) == field_of(c->cols[i])
                                        ? b
                                        : a;
                        snprintf(errstr, errstr_size,
                                 "%s:1: columns %d '%s' and %d '%s' are both "
                                 "read as one field (%s): read one as "
                                 "another field with --column NAME=FIELD, "
                                 "or not at all with --column NAME=- (e.g. "
                                 "--column %s=-)",
                                 c->path, j + 1, a, i + 1, b, fields, drop);
                        return -VEIL_EINVAL;
                }
        }
        return 0;
}

/* Reads the header and maps its columns. */
/* `map` renames columns ("NAME=FIELD": column NAME is read as FIELD). */
static int read_header(struct veil_csv *c, const char *const *map,
                       size_t n_map, char *errstr, size_t errstr_size) {
        int rc = read_line(c);
        if (rc < 0)
                return line_error(c, rc, errstr, errstr_size);
        if (rc == 0) {
                snprintf(errstr, errstr_size, "%s:1: no header line", c->path);
                return -VEIL_EINVAL;
        }
        /* A byte-order mark (Excel's "CSV UTF-8") is not part of the
         * first column's name: kept, "ts" would not be found. */
        if (!memcmp(c->buf, "\xEF\xBB\xBF", 3))
                memmove(c->buf, c->buf + 3, strlen(c->buf + 3) + 1);
        c->n_cols = split(c->buf, c->fields, MAX_COLS);
        if (c->n_cols < 0) {
                snprintf(errstr, errstr_size,
                         "%s:1: " UNTERMINATED_QUOTE, c->path);
                return -VEIL_EINVAL;
        }
        if (c->n_cols > MAX_COLS) {
                snprintf(errstr, errstr_size,
                         "%s:1: %d columns, more than the %d a header may "
                         "have",
                         c->path, c->n_cols, MAX_COLS);
                return -VEIL_EINVAL;
        }
        int have_user = 0, have_item = 0, have_ts = 0;
        for (int i = 0; i < c->n_cols; i++) {
                c->cols[i] = C_NONE;
                if (!(c->col_names[i] = strdup(c->fields[i]))) {
                        snprintf(errstr, errstr_size, "%s: out of memory",
                                 c->path);
                        return -VEIL_ENOMEM;
                }
                /* Every rename against the header as written, all at
                 * once: applied in turn, --column user_id=item --column
                 * item=user_id (a swap) renamed user_id to item and then
                 * back. Each NAME is mapped once (veil_csv_open_mapped). */
                const char *name = c->fields[i];
                for (size_t m = 0; m < n_map; m++) {
                        const char *eq = strchr(map[m], '=');
                        size_t l = eq ? (size_t)(eq - map[m]) : 0;
                        if (eq && strlen(c->fields[i]) == l &&
                            !strncmp(map[m], c->fields[i], l)) {
                                name = eq + 1;
                                break;
                        }
                }
                c->cols[i] = col_named(name);
                have_user |= c->cols[i] == C_USER;
                have_item |= c->cols[i] == C_ITEM;
                have_ts |= c->cols[i] == C_TS_S || c->cols[i] == C_TS_MS;
        }
        if (!have_user || !have_item) {
                snprintf(errstr, errstr_size,
                         "%s:1: the header needs the columns user_id and "
                         "item (or item_id); read other names as those "
                         "with --column NAME=user_id, --column NAME=item",
                         c->path);
                return -VEIL_EINVAL;
        }
        /* Without one every event would be at 1970-01-01 00:00, which
         * the time features, steps and ages would take for real. */
        if (!have_ts) {
                snprintf(errstr, errstr_size,
                         "%s:1: the header needs a time column, ts (seconds) "
                         "or ts_ms; read another name as one with --column "
                         "NAME=ts",
                         c->path);
                return -VEIL_EINVAL;
        }
        rc = two_columns(c, errstr, errstr_size);
        if (rc)
                return rc;
        /* A mapping that names no column of the header is a typo, not a
         * no-op. Checked once the header is known to be one (it has
         * user_id and item): the names it lists could otherwise be a first
         * line of data, identifiers included. */
        for (size_t m = 0; m < n_map; m++) {
                const char *eq = strchr(map[m], '=');
                size_t l = eq ? (size_t)(eq - map[m]) : 0;
                int found = 0;
                for (int i = 0; i < c->n_cols && !found; i++)
                        found = strlen(c->col_names[i]) == l &&
                                !strncmp(map[m], c->col_names[i], l);
                if (!found) {
                        char cols[512];
                        size_t off = 0;
                        cols[0] = '\0';
                        for (int i = 0; i < c->n_cols && off < sizeof(cols);
                             i++) {
                                int w = snprintf(cols + off,
                                                 sizeof(cols) - off, "%s%s",
                                                 i ? ", " : "",
                                                 c->col_names[i]);
                                if (w < 0)
                                        break;
                                off += (size_t)w;
                        }
                        snprintf(errstr, errstr_size,
                                 "%s:1: --column %s: the header has no "
                                 "column '%.*s' (it has: %s)",
                                 c->path, map[m], (int)l, map[m], cols);
                        return -VEIL_EINVAL;
                }
        }
        return 0;
}

static int open_gz(struct veil_csv **cp, gzFile f, const char *name,
                   const char *const *map, size_t n_map, char *errstr,
                   size_t errstr_size) {
        struct veil_csv *c = calloc(1, sizeof(*c));
        if (!c || !(c->path = strdup(name))) {
                free(c);
                gzclose(f);
                return -VEIL_ENOMEM;
        }
        c->f = f;
        gzbuffer(f, 1 << 17);
        int rc = read_header(c, map, n_map, errstr, errstr_size);
        if (rc) {
                veil_csv_close(c);
                return rc;
        }
        *cp = c;
        return 0;
}

int veil_csv_open_fd(struct veil_csv **cp, int fd, const char *name,
                     char *errstr, size_t errstr_size) {
        /* gzclose closes the descriptor it was given: give it a copy. */
        int copy = dup(fd);
        gzFile f = copy >= 0 ? gzdopen(copy, "rb") : NULL;
        if (!f) {
                if (copy >= 0)
                        close(copy);
                snprintf(errstr, errstr_size, "%s: %s", name, strerror(errno));
                return -VEIL_EIO;
        }
        return open_gz(cp, f, name, NULL, 0, errstr, errstr_size);
}

int veil_csv_open(struct veil_csv **cp, const char *path, char *errstr,
                  size_t errstr_size) {
        return veil_csv_open_mapped(cp, path, NULL, 0, errstr, errstr_size);
}

int veil_csv_open_mapped(struct veil_csv **cp, const char *path,
                         const char *const *map, size_t n_map, char *errstr,
                         size_t errstr_size) {
        for (size_t m = 0; m < n_map; m++) {
                const char *eq = strchr(map[m], '=');
                /* FIELD "-": column NAME is not read, so that of two
                 * columns of one field (item and item_id) one can be
                 * chosen. */
                int known = eq && (col_named(eq + 1) != C_NONE ||
                                   !strcmp(eq + 1, "-"));
                if (!eq || eq == map[m] || !known) {
                        snprintf(errstr, errstr_size,
                                 "column mapping '%s': want NAME=FIELD with "
                                 "FIELD one of ts, ts_ms, user_id, item "
                                 "(item_id), value (qty), session_id "
                                 "(invoice), country, event_id, type, "
                                 "device, ip, user_agent, lat, lon, "
                                 "tc_string, gpc, timezone, or - (not "
                                 "read)",
                                 map[m]);
                        return -VEIL_EINVAL;
                }
                /* One column is read as one field. */
                for (size_t o = 0; o < m; o++) {
                        size_t l = (size_t)(eq - map[m]);
                        if (!strncmp(map[o], map[m], l) && map[o][l] == '=') {
                                snprintf(errstr, errstr_size,
                                         "--column %s and --column %s both "
                                         "rename column '%.*s': give one "
                                         "--column per column",
                                         map[o], map[m], (int)l, map[m]);
                                return -VEIL_EINVAL;
                        }
                }
        }
        if (!strcmp(path, "-")) {
                gzFile in = gzdopen(dup(0), "rb");
                if (!in) {
                        snprintf(errstr, errstr_size, "stdin: %s",
                                 strerror(errno));
                        return -VEIL_EIO;
                }
                return open_gz(cp, in, "stdin", map, n_map, errstr,
                               errstr_size);
        }
        gzFile f = gzopen(path, "rb");
        if (!f) {
                snprintf(errstr, errstr_size, "%s: %s", path,
                         errno ? strerror(errno) : "cannot open");
                return -VEIL_ENOENT;
        }
        return open_gz(cp, f, path, map, n_map, errstr, errstr_size);
}

/* A finite number: strtod takes "nan" and "inf", which no field holds
 * (the Avro decoder refuses them too). */
static int num(const char *s, double *v) {
        char *end;
        errno = 0;
        *v = strtod(s, &end);
        return *s && !*end && !errno && isfinite(*v) ? 0 : -1;
}

int veil_csv_next(struct veil_csv *c, struct veil_event *ev, char *errstr,
                  size_t errstr_size) {
        if (c->has_held) {
                c->has_held = 0;
                *ev = c->held;
                return 1;
        }
        int rc;
        do {
                rc = read_line(c);
                if (rc == 0)
                        return 0;
                if (rc < 0)
                        return line_error(c, rc, errstr, errstr_size);
        } while (!c->buf[0]);
        int n = split(c->buf, c->fields, MAX_COLS);
        if (n < 0) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: " UNTERMINATED_QUOTE, c->path, c->line);
                return -VEIL_EINVAL;
        }
        if (n != c->n_cols) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: %d fields, the header has %d", c->path,
                         c->line, n, c->n_cols);
                return -VEIL_EINVAL;
        }
        memset(ev, 0, sizeof(*ev));
        ev->gpc = -1;
        ev->type = "purchase";
        c->row++;
        double lat = 0, lon = 0;
        int have_lat = 0, have_lon = 0;
        for (int i = 0; i < n; i++) {
                char *f = c->fields[i];
                double v;
                const char *bad = NULL;
                switch (c->cols[i]) {
                case C_TS_S:
                case C_TS_MS:
                        if (num(f, &v)) {
                                bad = "a number";
                                break;
                        }
                        if (c->cols[i] == C_TS_S)
                                v *= 1000.0;
                        /* Years 1677..2262 fit a signed 64-bit count of
                         * ms; outside, the cast would be undefined. */
                        if (!(v > -9.2e18 && v < 9.2e18))
                                bad = "a time within the range of 64-bit "
                                      "milliseconds";
                        else
                                ev->ts_ms = (int64_t)v;
                        break;
                case C_USER: ev->user_id = f; break;
                case C_ITEM: ev->item_id = f; break;
                case C_VALUE:
                        if (num(f, &v))
                                bad = "a number";
                        else
                                ev->value = v;
                        break;
                case C_SESSION: ev->ctx.session_id = *f ? f : NULL; break;
                case C_COUNTRY: ev->ctx.country = *f ? f : NULL; break;
                /* Empty: absent, so the id is generated. */
                case C_EVENT_ID: ev->event_id = *f ? f : NULL; break;
                case C_TYPE: ev->type = f; break;
                case C_DEVICE: ev->ctx.device = *f ? f : NULL; break;
                case C_IP: ev->ctx.ip = *f ? f : NULL; break;
                case C_UA: ev->ctx.user_agent = *f ? f : NULL; break;
                case C_TZ: ev->ctx.timezone = *f ? f : NULL; break;
                case C_TC: ev->tc_string = *f ? f : NULL; break;
                case C_LAT:
                        if (*f && num(f, &lat))
                                bad = "a number";
                        have_lat = *f != 0;
                        break;
                case C_LON:
                        if (*f && num(f, &lon))
                                bad = "a number";
                        have_lon = *f != 0;
                        break;
                case C_GPC:
                        if (!*f)
                                ev->gpc = -1;
                        else if (!strcasecmp(f, "1") ||
                                 !strcasecmp(f, "true") ||
                                 !strcasecmp(f, "yes"))
                                ev->gpc = 1;
                        else if (!strcasecmp(f, "0") ||
                                 !strcasecmp(f, "false") ||
                                 !strcasecmp(f, "no"))
                                ev->gpc = 0;
                        else
                                bad = "true, false, 1, 0, yes, no or empty";
                        break;
                case C_NONE: break;
                }
                if (bad) {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: field %d must be %s (column "
                                 "'%.64s')",
                                 c->path, c->line, i + 1, bad,
                                 c->col_names[i]);
                        return -VEIL_EINVAL;
                }
        }
        if (!ev->user_id || !*ev->user_id || !ev->item_id || !*ev->item_id) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: user_id and item must not be empty",
                         c->path, c->line);
                return -VEIL_EINVAL;
        }
        if (have_lat && have_lon) {
                ev->ctx.has_geo = 1;
                ev->ctx.lat = lat;
                ev->ctx.lon = lon;
        }
        if (!ev->event_id) {
                snprintf(c->event_id, sizeof(c->event_id), "e%ld", c->row);
                ev->event_id = c->event_id;
        }
        return 1;
}

long veil_csv_line(const struct veil_csv *c) { return c->line; }

void veil_csv_unread(struct veil_csv *c, const struct veil_event *ev) {
        c->held = *ev;
        c->has_held = 1;
}

void veil_csv_close(struct veil_csv *c) {
        if (!c)
                return;
        if (c->f)
                gzclose(c->f);
        for (int i = 0; i < MAX_COLS; i++)
                free(c->col_names[i]);
        free(c->path);
        free(c);
}
