/*
 * csv.h — events from CSV files (the demo's replay and `veil replay`).
 *
 * Columns are found by header name, so the online-retail export
 * (ts,user_id,item,qty,invoice,country) works as it is: ts is unix seconds
 * (or ts_ms milliseconds), item → item_id, qty → value, invoice →
 * context.session_id. Any interaction field name is accepted as a column
 * too (event_id, type, device, ip, user_agent, lat, lon, tc_string, gpc…).
 *
 * A header has at most 256 columns and every row as many fields as the
 * header; a line is at most 65,534 bytes and holds no NUL byte, and a
 * quoted field holds no line break (the line ends inside it). An empty
 * event_id is absent: the event gets the generated id "e<N>", N its data
 * row's number (as when there is no event_id column). gpc is true, false,
 * 1, 0, yes or no in any case, or empty for no signal. Anything else is a
 * malformed line, as is a read error (a truncated gzip file).
 */
#ifndef VEIL_CSV_H
#define VEIL_CSV_H

#include <stddef.h>

#include "veil/veil.h"

struct veil_csv;

/** Opens a CSV file ("-" for stdin; gzip-compressed files are read as
 *  they are, through zlib) and reads its header. */
int veil_csv_open(struct veil_csv **c, const char *path, char *errstr,
                  size_t errstr_size);
/** Same, with columns renamed: map[i] is "NAME=FIELD" (column NAME is
 *  read as the field FIELD, one of the names above, or not read when
 *  FIELD is "-"). Every NAME is a column of the header as written (renames
 *  do not chain, so two can swap columns), and is named once. Two columns
 *  read as one field (item and item_id, ts and ts_ms, ...) are refused. */
int veil_csv_open_mapped(struct veil_csv **c, const char *path,
                         const char *const *map, size_t n_map, char *errstr,
                         size_t errstr_size);
/** Same over an open file descriptor (not closed by veil_csv_close);
 *  `name` is used in messages. */
int veil_csv_open_fd(struct veil_csv **c, int fd, const char *name,
                     char *errstr, size_t errstr_size);
/** Reads the next event: 1 when read, 0 at the end, negative on a malformed
 *  line (message names file:line). The event's strings stay valid until the
 *  next call. */
int veil_csv_next(struct veil_csv *c, struct veil_event *ev, char *errstr,
                  size_t errstr_size);
/** Hands ev, the event the last call read, back: the next call returns it
 *  again (its strings are still the reader's). One event at most: `veil
 *  replay` reads one event past a batch cut by time and keeps it for the
 *  next batch. */
void veil_csv_unread(struct veil_csv *c, const struct veil_event *ev);
/** 1-based line number of the last line read. */
long veil_csv_line(const struct veil_csv *c);
void veil_csv_close(struct veil_csv *c);

#endif
