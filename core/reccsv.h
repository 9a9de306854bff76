/*
 * reccsv.h — Avro records of any schema from a CSV file, for the demo's
 * side inputs (config/demo/consent.csv) and the integration tests.
 *
 * The header names the columns. A column named after a field of the
 * schema (dotted for nested records: purposes.training) sets that field;
 * an empty cell leaves the field at its default (null for optional ones).
 * A cell reading true/false sets a boolean, an integer a long or int, a
 * decimal a double; any field also takes the text (strings, enums).
 * Columns starting with '_' are directives, not fields:
 *   _key        the record key (when absent or empty: the user_id cell)
 *   _tombstone  true: the record has no value (a Kafka tombstone)
 *   _after      produce the record once this many events have been fed
 *               (the demo's mid-stream withdrawals); empty: before them
 * Blank lines are skipped, and so are lines starting with '#' before the
 * header (comments); after the header every line is a row, one whose
 * first cell starts with '#' too. Cells are not quoted: no field of such
 * a file may hold a comma. A byte-order mark before the first line
 * (Excel's "CSV UTF-8") is skipped.
 */
#ifndef VEIL_RECCSV_H
#define VEIL_RECCSV_H

#include <stddef.h>

#include "codec.h"

struct veil_reccsv;

/** One record read by veil_reccsv_next. Valid until the next call. */
struct veil_reccsv_row {
        const char *key; /**< NUL-terminated; "" when the row has none */
        int tombstone;   /**< 1: no value (value_len 0) */
        long after;      /**< events to feed first; 0 when not given */
        const void *value;
        size_t value_len;
};

int veil_reccsv_open(struct veil_reccsv **c, const char *path, char *errstr,
                     size_t errstr_size);
/** Encodes the next row with `codec` (its schema is the records'): 1 when
 *  read, 0 at the end, negative with "file:line: column 'x': …" on a cell
 *  the field cannot take (the message never quotes a cell), or
 *  -VEIL_ENOMEM with "file:line: …out of memory". */
int veil_reccsv_next(struct veil_reccsv *c, struct veil_codec *codec,
                     struct veil_reccsv_row *row, char *errstr,
                     size_t errstr_size);
void veil_reccsv_close(struct veil_reccsv *c);

#endif
