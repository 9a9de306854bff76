/*
 * reccsv.c — records of any schema from CSV (format in reccsv.h).
 */
#include "reccsv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MAX_COLS 64

struct veil_reccsv {
        FILE *f;
        char *path;
        char *line;
        size_t line_cap;
        long lineno;
        int header_read; /* after it, a line starting with '#' is data */
        char *names[MAX_COLS];
        size_t n_cols;
        int key_col, user_col, tomb_col, after_col; /* -1 when absent */
        struct veil_buf buf;
};

/* Splits `s` in place at commas; returns the number of cells. */
static size_t split(char *s, char **cells, size_t max) {
        size_t n = 0;
        s[strcspn(s, "\r\n")] = '\0';
        for (;;) {
                if (n == max)
                        return n + 1; /* too many: the caller refuses */
                cells[n++] = s;
                char *c = strchr(s, ',');
                if (!c)
                        return n;
                *c = '\0';
                s = c + 1;
        }
}

/* The next line that is not blank; before the header, not a comment
 * either. After the header a line starting with '#' is a row: a user id
 * may start with '#', and that record (a withdrawal, say) skipped as a
 * comment would be lost without a word. */
static int read_line(struct veil_reccsv *c) {
        for (;;) {
                ssize_t n = getline(&c->line, &c->line_cap, c->f);
                if (n < 0)
                        return 0;
                c->lineno++;
                /* A byte-order mark (Excel's "CSV UTF-8") is not part of
                 * the first line: kept, the first column was named
                 * "\xEF\xBB\xBFuser_id", a field of no schema. */
                if (c->lineno == 1 && !strncmp(c->line, "\xEF\xBB\xBF", 3))
                        memmove(c->line, c->line + 3, (size_t)n - 2);
                char *p = c->line;
                while (*p == ' ' || *p == '\t')
                        p++;
                if ((*p == '#' && !c->header_read) || *p == '\n' ||
                    *p == '\r' || !*p)
                        continue;
                return 1;
        }
}

void veil_reccsv_close(struct veil_reccsv *c) {
        if (!c)
                return;
        if (c->f)
                fclose(c->f);
        for (size_t i = 0; i < c->n_cols; i++)
                free(c->names[i]);
        free(c->line);
        free(c->path);
        veil_buf_free(&c->buf);
        free(c);
}

int veil_reccsv_open(struct veil_reccsv **cp, const char *path, char *errstr,
                     size_t errstr_size) {
        struct veil_reccsv *c = calloc(1, sizeof(*c));
        if (!c)
                return -VEIL_ENOMEM;
        c->key_col = c->user_col = c->tomb_col = c->after_col = -1;
        if (!(c->path = strdup(path))) {
                snprintf(errstr, errstr_size, "%s: out of memory", path);
                veil_reccsv_close(c);
                return -VEIL_ENOMEM;
        }
        if (!(c->f = fopen(path, "r"))) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                veil_reccsv_close(c);
                return -VEIL_ENOENT;
        }
        if (!read_line(c)) {
                snprintf(errstr, errstr_size,
                         "%s: empty; the first line names the columns", path);
                veil_reccsv_close(c);
                return -VEIL_EINVAL;
        }
        c->header_read = 1;
        char *cells[MAX_COLS];
        size_t n = split(c->line, cells, MAX_COLS);
        if (n > MAX_COLS) {
                snprintf(errstr, errstr_size, "%s:%ld: more than %d columns",
                         path, c->lineno, MAX_COLS);
                veil_reccsv_close(c);
                return -VEIL_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                if (!(c->names[i] = strdup(cells[i]))) {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: out of memory", path, c->lineno);
                        veil_reccsv_close(c);
                        return -VEIL_ENOMEM;
                }
                c->n_cols++;
                if (!strcmp(cells[i], "_key"))
                        c->key_col = (int)i;
                else if (!strcmp(cells[i], "_tombstone"))
                        c->tomb_col = (int)i;
                else if (!strcmp(cells[i], "_after"))
                        c->after_col = (int)i;
                else if (!strcmp(cells[i], "user_id"))
                        c->user_col = (int)i;
                else if (cells[i][0] == '_') {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: unknown directive column '%s'; "
                                 "known: _key, _tombstone, _after",
                                 path, c->lineno, cells[i]);
                        veil_reccsv_close(c);
                        return -VEIL_EINVAL;
                }
        }
        *cp = c;
        return 0;
}

static int is_int(const char *s) {
        const char *p = s + (*s == '-');
        if (!*p)
                return 0;
        for (; *p; p++)
                if (*p < '0' || *p > '9')
                        return 0;
        return 1;
}

/* The typed setter the text looks like first, then the text itself. */
static int set_cell(veil_rec_t *r, const char *field, const char *v) {
        int b;
        int64_t l;
        double d;
        if (veil_params_parse_bool(v, &b) == 0 &&
            veil_rec_set_bool(r, field, b) == 0)
                return 0;
        if (is_int(v) && veil_params_parse_int(v, &l) == 0 &&
            veil_rec_set_long(r, field, l) == 0)
                return 0;
        if (veil_params_parse_double(v, &d) == 0 &&
            veil_rec_set_double(r, field, d) == 0)
                return 0;
        return veil_rec_set_str(r, field, v);
}

int veil_reccsv_next(struct veil_reccsv *c, struct veil_codec *codec,
                     struct veil_reccsv_row *row, char *errstr,
                     size_t errstr_size) {
        if (!read_line(c))
                return 0;
        char *cells[MAX_COLS];
        size_t n = split(c->line, cells, MAX_COLS);
        if (n != c->n_cols) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: %zu cells, the header has %zu columns",
                         c->path, c->lineno, n, c->n_cols);
                return -VEIL_EINVAL;
        }
        memset(row, 0, sizeof(*row));
        row->key = c->key_col >= 0 ? cells[c->key_col] : "";
        if (!row->key[0] && c->user_col >= 0)
                row->key = cells[c->user_col];
        int b = 0;
        if (c->tomb_col >= 0 && cells[c->tomb_col][0] &&
            veil_params_parse_bool(cells[c->tomb_col], &b)) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: _tombstone must be true, false or empty",
                         c->path, c->lineno);
                return -VEIL_EINVAL;
        }
        row->tombstone = b;
        if (c->after_col >= 0 && cells[c->after_col][0]) {
                char *end;
                row->after = strtol(cells[c->after_col], &end, 10);
                if (*end || row->after < 0) {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: _after must be a number of events",
                                 c->path, c->lineno);
                        return -VEIL_EINVAL;
                }
        }
        if (row->tombstone)
                return 1;
        veil_rec_t *r = veil_codec_rec_begin(codec);
        if (!r) {
                snprintf(errstr, errstr_size,
                         "%s:%ld: out of memory for the record", c->path,
                         c->lineno);
                return -VEIL_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (c->names[i][0] == '_' || !cells[i][0])
                        continue;
                int rc = set_cell(r, c->names[i], cells[i]);
                if (rc == -VEIL_ENOMEM) {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: column '%s': out of memory",
                                 c->path, c->lineno, c->names[i]);
                        return rc;
                }
                if (rc) {
                        snprintf(errstr, errstr_size,
                                 "%s:%ld: column '%s': no such field in the "
                                 "schema, or the cell does not fit its type",
                                 c->path, c->lineno, c->names[i]);
                        return -VEIL_EINVAL;
                }
        }
        char e[512];
        int rc = veil_codec_rec_encode(codec, &c->buf, e, sizeof(e));
        if (rc) {
                snprintf(errstr, errstr_size, "%s:%ld: %s", c->path,
                         c->lineno, e);
                return rc == -VEIL_ENOMEM ? rc : -VEIL_EINVAL;
        }
        row->value = c->buf.data;
        row->value_len = c->buf.len;
        return 1;
}
