/*
 * codec.h — Avro (Avro-C) to and from veil's types.
 *
 * One codec per topic binding. Input codecs resolve each writer schema
 * against the reader schema (compatible evolution: added fields with
 * defaults, removed fields, promoted types, enum defaults) and accept raw
 * Avro datums or Confluent framing (magic byte 0, 4-byte big-endian schema
 * id). Output codecs write with their schema, framed as configured.
 *
 * Resolution is compiled once per writer schema when the codec is built, so
 * an incompatible writer is a configuration error, not a per-record one
 * (except a writer union branch the reader cannot take, which fails only
 * the records that use it). Decoding checks every length against the
 * input, never allocates per event, and reports -VEIL_EDECODE with the
 * byte offset and field path — never a value.
 *
 * The codec also implements the SDK's veil_rec_* functions: a veil_rec_t is
 * an Avro value of the codec's schema.
 */
#ifndef VEIL_CODEC_H
#define VEIL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "config.h"
#include "veil/veil.h"

struct veil_codec;

/** A growable byte buffer (reused across records; no per-record malloc in
 *  steady state). */
struct veil_buf {
        unsigned char *data;
        size_t len, cap;
};
int veil_buf_reserve(struct veil_buf *b, size_t cap);
void veil_buf_free(struct veil_buf *b);

/** Builds a codec for a binding: loads binding->schema (reader for input,
 *  writer for output) and, for inputs, every writer schema listed. The
 *  reader schema also reads records framed with binding->schema_id (when
 *  >= 0 and not listed), or raw records when no writer schema is listed.
 *  A schema named Interaction must map onto struct veil_event. */
int veil_codec_new(struct veil_codec **out, const struct veil_config *cfg,
                   const struct veil_binding *binding, char *errstr,
                   size_t errstr_size);
/** Same from a schema file path alone: no writer schemas, so the schema
 *  reads raw records, or Confluent records framed with schema_id. */
int veil_codec_new_file(struct veil_codec **out, const char *schema_path,
                        enum veil_framing framing, int32_t schema_id,
                        char *errstr, size_t errstr_size);
void veil_codec_destroy(struct veil_codec *c);

/** Decodes an interaction record into `ev` (zeroed first; strings copied
 *  into the arena; status PASS, gpc -1 when absent, has_geo only when both
 *  lat and lon are present). The reader schema must be an interaction
 *  schema. -VEIL_EDECODE with a message on bad input, which includes
 *  strings that are not UTF-8 or hold a NUL byte, and a value, lat or lon
 *  that is NaN or infinite; -VEIL_ENOMEM when the arena is full. */
int veil_codec_decode_event(struct veil_codec *c, const void *buf, size_t len,
                            struct veil_event *ev, struct veil_arena *arena,
                            char *errstr, size_t errstr_size);
/** Encodes an event with the codec's (interaction) schema into `out`
 *  (framed as configured; out->len set). */
int veil_codec_encode_event(struct veil_codec *c, const struct veil_event *ev,
                            struct veil_buf *out, char *errstr,
                            size_t errstr_size);

/** Decodes a record of any schema into the codec's reusable value; the
 *  returned record, and every handle reached from it, is valid until the
 *  next decode on this codec. */
int veil_codec_decode_rec(struct veil_codec *c, const void *buf, size_t len,
                          const veil_rec_t **rec, char *errstr,
                          size_t errstr_size);
/** Resets and returns the codec's reusable output record, every field at
 *  its schema default (nothing of the previous record survives: a union
 *  without default is never set, even where Avro-C's reset keeps its
 *  branch, and a string reads none of the previous text). Handles
 *  from veil_rec_append/veil_rec_map_add stay valid until the next begin. */
veil_rec_t *veil_codec_rec_begin(struct veil_codec *c);
/** Output records are kept in slots of their own when the schema is flat
 *  (records, arrays of records, scalars and unions of scalars: see
 *  codec_int.h), else in Avro-C values; 0 forces Avro-C values (for tests
 *  that compare the two). Before the first veil_codec_rec_begin. */
void veil_codec_set_flat(struct veil_codec *c, int flat);
/** Encodes the output record (framed) into `out`. -VEIL_EINVAL naming the
 *  field when a union or string without default was never set. */
int veil_codec_rec_encode(struct veil_codec *c, struct veil_buf *out,
                          char *errstr, size_t errstr_size);
/** The record as JSON (for `veil demo` summaries); malloc'd. NULL when it
 *  does not decode, or holds a NaN or infinite float/double (valid Avro
 *  that JSON cannot represent). */
char *veil_codec_rec_json(struct veil_codec *c, const void *buf, size_t len);

/** Host-side companion of veil_rec_append for maps: the value of `key` in
 *  the map at `path` (created, with its schema defaults, when missing), for
 *  setting by path — e.g. one stage's section of an access record's
 *  map<map<string>>. NULL on error. Valid like an appended element. */
veil_rec_t *veil_rec_map_add(veil_rec_t *r, const char *path, const char *key);

/** Names of the fields the codec's schema marks "pii", with their mark
 *  ("identifier" or "quasi"), as dotted paths; for the privacy lint. */
size_t veil_codec_pii_fields(const struct veil_codec *c, const char ***paths,
                             const char ***marks);

/** The most fields an event fills (veil_codec_event_fields). */
#define VEIL_CODEC_EVENT_FIELDS 32
/** The fields of the codec's schema that veil_codec_encode_event fills from
 *  the event (struct veil_event's members, by dotted path), whatever the
 *  schema marks: at most `max` into `paths` (static strings); the count.
 *  0 when the schema cannot stand for an event. For the privacy lint: the
 *  input schema's marks of these fields hold in the output too. */
size_t veil_codec_event_fields(const struct veil_codec *c, const char **paths,
                               size_t max);

#endif
