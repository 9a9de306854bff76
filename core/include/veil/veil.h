/*
 * veil.h — the plugin SDK: the only header a veil plugin includes.
 *
 * A plugin is a shared object that exports one symbol, veil_plugin_entry(),
 * returning a `const struct veil_plugin *`. The host checks abi_version before
 * it reads anything else from the struct, validates the plugin's `with:` block
 * against its parameter table, and then calls init / process / destroy.
 *
 * A plugin sees typed events in batches and nothing else: it never includes
 * librdkafka or Avro headers. Records it emits (recommendations, audit records,
 * model updates…) are built with the veil_rec_* functions below and encoded by
 * the host against the output's schema.
 *
 * Functions named veil_* in this header are implemented by the host's
 * libveil.so and resolved when the plugin is loaded; a plugin links against
 * nothing. Every callback of a stage runs on the pipeline's loop thread, one
 * at a time; `lint` and `notice` run without `init` (from parameters alone).
 * The functions below that take a stage or a batch (veil_out_*,
 * veil_request_*, veil_pseudonym, veil_metric_set, veil_privacy_set_*,
 * veil_batch_*, veil_event_*) work only inside one of the stage's
 * callbacks, on the thread that runs it: from a thread of the plugin's own,
 * or after the callback returned, they are refused (-VEIL_ESTATE, NULL, or
 * nothing done) and the host logs it once. veil_log may be called from any
 * thread.
 *
 * Conventions: functions return 0 on success or a negative VEIL_E* code, and
 * fill a caller-provided `errstr, errstr_size` buffer with a message that names
 * the thing, the place and what would be valid.
 */
#ifndef VEIL_VEIL_H
#define VEIL_VEIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version. Bump on any change that breaks a plugin already built: a
 *  field moved or removed, a callback's meaning changed. The loader refuses
 *  a mismatch. Fields appended to the end of struct veil_plugin keep the
 *  version: the loader reads struct_size and treats a missing one as NULL
 *  (it requires the struct up to optional_side_inputs, a name, and init,
 *  process and destroy).
 *
 *  A change a plugin already built keeps working with, but a plugin built
 *  for it must not run without (3: struct veil_subject's training_only,
 *  read by erase; a host before it leaves the field unset), bumps the
 *  version and keeps VEIL_ABI_MIN: this host loads plugins built for
 *  VEIL_ABI_MIN to VEIL_ABI_VERSION, and an older host refuses the newer
 *  ones. */
#define VEIL_ABI_VERSION 3
#define VEIL_ABI_MIN 2

/** The symbol the loader looks up in every plugin. */
#define VEIL_PLUGIN_ENTRY_SYMBOL "veil_plugin_entry"

/* Error codes (negated when returned). */
#define VEIL_OK 0
#define VEIL_EINVAL 1  /**< invalid argument or configuration */
#define VEIL_ENOENT 2  /**< no such thing (file, field, plugin) */
#define VEIL_ENOMEM 3  /**< allocation failed */
#define VEIL_EDECODE 4 /**< input could not be decoded */
#define VEIL_EIO 5     /**< I/O or Kafka failure */
#define VEIL_EABI 6    /**< ABI mismatch */
#define VEIL_ESTATE 7  /**< operation not valid in the current state */

/* ------------------------------------------------------------------ */
/* Parameters: a typed table the host validates and documents          */
/* ------------------------------------------------------------------ */

typedef enum veil_param_type {
        VEIL_PARAM_STRING = 1,
        VEIL_PARAM_INT,    /**< 64-bit signed integer (decimal, or 0x hex) */
        VEIL_PARAM_DOUBLE, /**< accepts integers too */
        VEIL_PARAM_BOOL,   /**< true/false (also True/TRUE, False/FALSE) */
        VEIL_PARAM_LIST,   /**< a YAML sequence of scalars, read as strings */
        VEIL_PARAM_MAP     /**< a YAML mapping of scalar to scalar, as strings */
} veil_param_type_t;

/** One parameter a plugin accepts in its `with:` block. Tables end with an
 *  entry whose name is NULL. */
struct veil_param_def {
        const char *name;
        veil_param_type_t type;
        /** NULL = no default. For a scalar type the scalar as it is (no
         *  quotes); for LIST and MAP, YAML ("[a, b]", "{x: y}"). */
        const char *default_value;
        int required;              /**< 1: must be given (default ignored) */
        const char *doc;           /**< one line, printed by `veil plugins` */
};

/** Validated parameters of one stage (opaque; valid for the stage's life). */
typedef struct veil_params veil_params_t;

/** Parameter accessors. The host has validated names and types against the
 *  plugin's table and applied defaults, so a declared parameter of the right
 *  type always answers; an undeclared name or a wrong type returns the
 *  fallback (and is a plugin bug). A parameter with neither value nor default
 *  answers NULL / fallback; veil_params_has() tells. */
int veil_params_has(const veil_params_t *p, const char *name);
const char *veil_params_str(const veil_params_t *p, const char *name);
int64_t veil_params_int(const veil_params_t *p, const char *name,
                        int64_t fallback);
double veil_params_double(const veil_params_t *p, const char *name,
                          double fallback);
int veil_params_bool(const veil_params_t *p, const char *name, int fallback);
/** LIST: number of items; item i with veil_params_list_at(). */
size_t veil_params_list_size(const veil_params_t *p, const char *name);
const char *veil_params_list_at(const veil_params_t *p, const char *name,
                                size_t i);
/** MAP: number of entries; key and value of entry i. */
size_t veil_params_map_size(const veil_params_t *p, const char *name);
const char *veil_params_map_key(const veil_params_t *p, const char *name,
                                size_t i);
const char *veil_params_map_value(const veil_params_t *p, const char *name,
                                  size_t i);
/** Where the parameter was written ("pipeline.yaml:12:7"), for messages;
 *  for one not written (a default), where the stage's `with:` is. */
const char *veil_params_where(const veil_params_t *p, const char *name);

/* ------------------------------------------------------------------ */
/* Records: Avro values the host encodes and decodes for plugins      */
/* ------------------------------------------------------------------ */

/** A record of some output or side-input schema (opaque). Fields are named by
 *  dotted paths ("context.device"). Optional fields (unions with null) read as
 *  absent when null and are set by value, the host choosing the branch. */
typedef struct veil_rec veil_rec_t;

/** Getters: 0 and the value, -VEIL_ENOENT when the field is absent/null, or
 *  -VEIL_EINVAL when it has another type. */
int veil_rec_get_str(const veil_rec_t *r, const char *path, const char **s,
                     size_t *len);
int veil_rec_get_long(const veil_rec_t *r, const char *path, int64_t *v);
/** Bytes: valid while the record is (a side record: during the callback). */
int veil_rec_get_bytes(const veil_rec_t *r, const char *path,
                       const void **data, size_t *len);
int veil_rec_get_double(const veil_rec_t *r, const char *path, double *v);
int veil_rec_get_bool(const veil_rec_t *r, const char *path, int *v);
/** Arrays: the size (0 when absent) and element i (a record or a scalar
 *  wrapper readable with path ""). */
size_t veil_rec_array_size(const veil_rec_t *r, const char *path);
const veil_rec_t *veil_rec_array_at(const veil_rec_t *r, const char *path,
                                    size_t i);
/** Maps of string: the size and entry i. */
size_t veil_rec_map_size(const veil_rec_t *r, const char *path);
int veil_rec_map_at(const veil_rec_t *r, const char *path, size_t i,
                    const char **key, const char **value);

/** Setters: 0, or -VEIL_ENOENT (no such field) / -VEIL_EINVAL (wrong type,
 *  an enum symbol the schema lacks, a number out of an int's range). A
 *  setter that fails leaves the record as it was: no union on the path
 *  switches branch. */
int veil_rec_set_str(veil_rec_t *r, const char *path, const char *s);
int veil_rec_set_long(veil_rec_t *r, const char *path, int64_t v);
/** Copies len bytes. */
int veil_rec_set_bytes(veil_rec_t *r, const char *path, const void *data,
                       size_t len);
int veil_rec_set_double(veil_rec_t *r, const char *path, double v);
int veil_rec_set_bool(veil_rec_t *r, const char *path, int v);
int veil_rec_set_null(veil_rec_t *r, const char *path);
/** Appends an element to the array at path and returns it for setting (its
 *  fields by path, or a scalar element with path ""); NULL on error. */
veil_rec_t *veil_rec_append(veil_rec_t *r, const char *path);
/** Adds key=value to the string map at path. */
int veil_rec_map_put(veil_rec_t *r, const char *path, const char *key,
                     const char *value);

/* ------------------------------------------------------------------ */
/* Events and batches                                                 */
/* ------------------------------------------------------------------ */

typedef enum veil_tier {
        VEIL_TIER_UNDECIDED = 0, /**< no consent stage has run */
        VEIL_TIER_NONE,          /**< no personal processing */
        VEIL_TIER_CONTEXTUAL,    /**< this event's context only */
        VEIL_TIER_PERSONALIZED   /**< profile and history under a pseudonym */
} veil_tier_t;

typedef enum veil_status {
        VEIL_PASS = 0,       /**< goes on to the next stage */
        VEIL_DROP,           /**< stops here, counted by reason */
        VEIL_DEAD_LETTER     /**< stops here, original bytes to the DLQ */
} veil_status_t;

struct veil_kv {
        const char *key;
        const char *value;
};

/** The typed interaction event (schemas/interaction.avsc). Strings are NUL
 *  terminated and live in the batch arena; NULL means absent. A stage that
 *  rewrites a field points it at new arena memory (veil_batch_strdup). */
struct veil_event {
        const char *event_id;
        const char *user_id;   /**< raw id, or its pseudonym after pseudonymize */
        int64_t ts_ms;         /**< event time, ms since the epoch, UTC */
        const char *type;      /**< view, click, add_to_cart, purchase, rating… */
        const char *item_id;
        double value;          /**< quantity, rating, price… */
        const char *tc_string; /**< IAB TCF v2 TC string sent with the event */
        int gpc;               /**< Global Privacy Control: -1 absent, 0, 1 */
        struct {
                const char *device;
                const char *ip;
                const char *user_agent;
                int has_geo;
                double lat, lon;
                const char *geohash; /**< set when lat/lon are generalized */
                const char *country;
                const char *session_id;
                const char *timezone; /**< IANA name, when known */
                struct veil_kv *attrs;
                size_t n_attrs;
        } ctx;

        /* Set by stages. */
        const char *subject;   /**< pseudonymous subject (host keyring) */
        veil_tier_t tier;
        int training;          /**< may contribute to the shared model */
        int analytics;         /**< may be counted in aggregate statistics
                                    (popular's counts); set by the consent
                                    stage (ABI 2) */
        uint32_t special_features; /**< TCF special feature opt-ins the
                                        consent stage found (bit i-1 =
                                        feature i; 1 = precise geolocation) */
        veil_status_t status;
        const char *reason;    /**< drop reason or dead-letter error */
        const char *stage;     /**< the stage that set status */
        uint32_t *features;    /**< sparse feature ids (context stage) */
        size_t n_features;
        const char **recent_items; /**< personalized profile, newest first */
        size_t n_recent;
        void *user;            /**< free slot for the stage that owns it */
};

/** A micro-batch. Events and everything hanging off them live in the batch
 *  arena, which the host resets (not frees) between batches. */
struct veil_batch {
        struct veil_event *events;
        size_t n;
        int64_t now_ms; /**< wall clock when the batch was formed */
        struct veil_batch_impl *impl; /**< host-private */
};

/** Arena allocation, 64-byte aligned, zeroed, valid until the end of the
 *  batch; NULL when out of memory or for a size no allocation can have.
 *  Dense per-batch matrices (features n×d, scores n×k) are carved here.
 *  `b` may be a copy of the batch the stage was given. */
void *veil_batch_alloc(struct veil_batch *b, size_t size);
char *veil_batch_strdup(struct veil_batch *b, const char *s);

/** Marks an event; the first stage to drop or dead-letter an event wins.
 *  Later stages still get it in their batch: a process callback must skip
 *  events whose status is not VEIL_PASS. `reason` is copied. It becomes a
 *  value of the `reason` label of veil_drops_total and a word of
 *  the stop line: a constant from a small vocabulary, never anything about
 *  the event or its person (the host keeps 64 distinct reasons and folds
 *  the rest into "other"; it cannot tell an identifier from a word). */
void veil_event_drop(struct veil_batch *b, struct veil_event *ev,
                     const char *reason);
/** Marks an event for the dead-letter topic, which keeps its original
 *  bytes. `error` (copied) says why, for the operator: it becomes the
 *  record's veil.error header, and `veil replay` prints it on stderr: as
 *  in a log line, name fields and positions, never their values (an
 *  identifier, a TC string). */
void veil_event_dead_letter(struct veil_batch *b, struct veil_event *ev,
                            const char *error);

/* ------------------------------------------------------------------ */
/* The stage: what the host offers a running plugin                   */
/* ------------------------------------------------------------------ */

/** One plugin instance in one pipeline (opaque). */
typedef struct veil_stage veil_stage_t;

typedef enum veil_log_level {
        VEIL_LOG_ERROR = 0,
        VEIL_LOG_WARN,
        VEIL_LOG_INFO,
        VEIL_LOG_DEBUG
} veil_log_level_t;

/** Logs a line tagged with the stage. Never pass a raw identifier. */
void veil_log(veil_stage_t *st, veil_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;

/** Starts a record for the named output (one of the plugin's `outputs`), or
 *  NULL when the pipeline does not bind that output (emitting is then a
 *  no-op). One record per output is open at a time: emit it before starting
 *  the next one.
 *
 *  A stage writes only to the outputs its plugin lists in `outputs`: the
 *  privacy lint checks an output at the stages that declare it and at no
 *  other. For any other name veil_out_begin returns NULL and veil_out_emit
 *  and veil_out_event return -VEIL_EINVAL and write nothing, whether or not
 *  the pipeline binds it; the host logs it once per stage and output. */
veil_rec_t *veil_out_begin(veil_stage_t *st, const char *output);
/** Encodes and produces the open record with the given key. Returns 0;
 *  -VEIL_EINVAL when this record cannot be written, and nothing is
 *  produced: a field without default never set, a string or map key
 *  that is not UTF-8, or a record larger than the producer takes (message.max.bytes;
 *  the host logs which, naming the output, the topic, the size and the
 *  limit, never the record). The event it answers then belongs on the
 *  dead-letter topic (veil_event_dead_letter) and the stage goes on: it is
 *  not the stage's failure. A stage with records that could not be
 *  written and that returns from process without taking as many events
 *  out of the stream after them (dead letter or drop) fails its batch,
 *  which is then not committed. Any other negative code is the output failing (the host
 *  stops without committing the batch): return it. A record that the
 *  broker itself refuses later, at delivery, also stops the host. */
int veil_out_emit(veil_stage_t *st, const char *output, const void *key,
                  size_t key_len);
/** Encodes an event with the output's schema (the interaction schema) and
 *  produces it, keyed by its user_id. Returns as veil_out_emit: on
 *  -VEIL_EINVAL (an event too large for the producer, say) dead-letter
 *  the event and go on: only that event leaving the stream answers its
 *  record (another one dropped does not). An event already out of the
 *  stream (status not VEIL_PASS: dropped or dead-lettered, by this stage
 *  or an earlier one) is never written: -VEIL_EINVAL, logged once per
 *  stage. */
int veil_out_event(veil_stage_t *st, const char *output,
                   const struct veil_event *ev);
/** 1 when the pipeline binds this output to a topic and it is one of the
 *  plugin's `outputs` (0 for any other name: the stage may not write
 *  there). */
int veil_out_bound(veil_stage_t *st, const char *output);

/** A subject whose data is being erased or exported. Both forms are given so
 *  stages on either side of pseudonymization find what they hold. */
struct veil_subject {
        const char *raw_id;    /**< the id the request named; never NULL */
        const char *pseudonym; /**< the keyring's subject pseudonym; NULL
                                *   when the pipeline has no keys. erase
                                *   and export_subject are called once per
                                *   key in keys.files, the active key's
                                *   pseudonym first */
        /** erase only: 1 when the subject withdrew consent to training
         *  alone (veil_request_erase_training): delete only what is held
         *  for training (dp_model's example held for its next step); a
         *  stage that keeps nothing for training returns 0. A plugin built
         *  before this field ignores it and erases everything, which is
         *  the safe side. */
        int training_only;
};

/** Asks the host to erase a subject in every stage before the next batch. */
int veil_request_erase(veil_stage_t *st, const char *raw_id);
/** The same for what is held for training alone: the subject withdrew
 *  consent to training and kept personalization (erase's subject has
 *  training_only set). */
int veil_request_erase_training(veil_stage_t *st, const char *raw_id);
/** Asks the host to collect, before the next batch, what every stage holds
 *  about a subject (their export_subject callbacks, one section per stage
 *  that has one) and emit it as one record on the pipeline's `access`
 *  output (schemas/access.avsc), keyed by the subject pseudonym. Queuing
 *  succeeds; a pipeline without an `access` output or keys drops the
 *  request then, with a warning. */
int veil_request_export(veil_stage_t *st, const char *raw_id);

/** Writes a new random key file for the host keyring (mode 0600; refuses
 *  to overwrite). For a plugin command such as `veil pseudonymize keygen`. */
int veil_keygen(const char *path, char *errstr, size_t errstr_size);

/** Keyed pseudonym of `id` under the active key for the purpose `domain`
 *  ("subject", "audit", a field path…): "<keyid>.<base64url>", NUL
 *  terminated in `out`. Same id, key and domain, same pseudonym. Returns
 *  the length, or a negative code when no keyring is configured. */
int veil_pseudonym(veil_stage_t *st, const char *domain, const void *id,
                   size_t id_len, char *out, size_t out_size);
/** This instance's id, the one its transactional.id is made of:
 *  VEIL_INSTANCE_ID, else the host name (a StatefulSet pod's name), else
 *  "veil"; NUL terminated in out (truncated to size). */
void veil_instance_id(char *out, size_t size);

/** Size of the buffer veil_pseudonym needs, terminator included. */
#define VEIL_PSEUDONYM_MAX 64

/** The longest event_id, user_id, item_id or context session_id the host
 *  hands to stages (bytes); a longer one is dead-lettered before any stage
 *  sees the event, so that what stages keep and emit per id is bounded. */
#define VEIL_ID_MAX 512
/** Whether the n bytes at s are valid UTF-8 (no overlong forms, no
 *  surrogates, nothing above U+10FFFF), as the host checks ids: a stage
 *  that reads ids from elsewhere (a catalog file) can refuse the ones the
 *  host would dead-letter in an event or a record. */
int veil_utf8_valid(const void *s, size_t n);
/** x as "%.*g" with `digits` significant digits (1..15) would print it,
 *  but rounded up: the text, read back as a double, is never below x. For
 *  whatever states a privacy loss (ε, δ, ρ), which must never read less
 *  than it is. Anything but a finite x > 0 prints as "%.*g" does. */
void veil_format_up(char *buf, size_t size, double x, int digits);
/** The same, rounded down: the text never reads above x. For what was
 *  accounted for (a noise multiplier), a lower bound. */
void veil_format_down(char *buf, size_t size, double x, int digits);
/** The latest event time the host hands to stages: 9999-12-31T23:59:59.999Z
 *  (the earliest is 0, 1970-01-01); others are dead-lettered. */
#define VEIL_TS_MAX_MS INT64_C(253402300799999)

/** The stage's current privacy spend (ε, δ), for the pipeline's /metrics
 *  and the demo's summary. With several stages that report one, the
 *  pipeline's spend is their sum: stages that learn from the same people
 *  compose. */
void veil_privacy_set_spent(veil_stage_t *st, double epsilon, double delta);
/** The privacy budget the stage enforces (the total ε and δ it will spend),
 *  so the host can report what remains on /metrics (summed like the
 *  spend). */
void veil_privacy_set_budget(veil_stage_t *st, double epsilon, double delta);
/** An identity of the stage's pipeline, unique in the process: the stages
 *  of one pipeline share it, and the pipeline a reload builds has another.
 *  For what a stage must not share with its siblings but hands over to its
 *  successor on a reload (dp_model's accountant file). */
uint64_t veil_stage_pipeline_id(const veil_stage_t *st);

/** Sets a gauge of the stage that the host exports on /metrics as
 *  veil_plugin_<plugin>_<name>{stage="…"} (e.g. a consent ledger's size).
 *  `name`: [a-z_][a-z0-9_]*, at most 48 characters; at most 32 names per
 *  stage. A value must never describe one person. Call it from the
 *  stage's callbacks (init, process, on_side_record…). Returns 0,
 *  -VEIL_EINVAL for a bad name or a full table, or -VEIL_ESTATE outside
 *  the callbacks. */
int veil_metric_set(veil_stage_t *st, const char *name, double value);

/** A record from a side-input topic (e.g. the consent topic). */
struct veil_side_record {
        const char *input;      /**< side-input name in the pipeline */
        const void *key;
        size_t key_len;
        const veil_rec_t *value; /**< NULL for a tombstone */
        int64_t timestamp_ms;
        int32_t partition;
        int64_t offset;
};

/** A plugin subcommand: `veil <plugin> <name> [args]`. argv[0] is the
 *  command name. Returns the process exit code (0, 1 runtime, 2 usage). */
struct veil_command {
        const char *name;
        const char *usage; /**< "decode TC_STRING"; required */
        const char *doc;   /**< one line for `veil plugins`; required */
        int (*run)(int argc, char **argv);
};

/** How a stage treats an event field, declared for `veil lint`. */
typedef enum veil_field_treatment {
        /** The stage's parameter for this field cannot be applied; `reason`
         *  says why and what would be valid, and `veil lint` fails with it
         *  (lint does not start plugins, so init cannot report it there). */
        VEIL_FIELD_INVALID = 0,
        VEIL_FIELD_KEPT = 1,      /**< passes unchanged (reason required) */
        VEIL_FIELD_PSEUDONYMIZED, /**< replaced by a keyed pseudonym */
        VEIL_FIELD_GENERALIZED,   /**< coarsened (IP prefix, geohash…) */
        VEIL_FIELD_DROPPED,       /**< removed */
        /** Not a treatment: the stage reads the field and may carry what it
         *  reads into its outputs or state (words of an explanation, a
         *  profile), so a field the input schema marks "pii" must be
         *  treated by an earlier stage; `veil lint` fails otherwise. */
        VEIL_FIELD_READ
} veil_field_treatment_t;

/** Sink for a plugin's lint declarations (opaque). */
typedef struct veil_lint veil_lint_t;
void veil_lint_field(veil_lint_t *l, const char *path,
                     veil_field_treatment_t t, const char *reason);

/** What a privacy notice says, by topic. `veil notice` asks every stage
 *  what it does, from its configuration, and writes it for end users. */
typedef enum veil_notice_topic {
        VEIL_NOTICE_COLLECTED = 1, /**< which data is used */
        VEIL_NOTICE_PURPOSE,       /**< for which purpose */
        VEIL_NOTICE_CONSENT,       /**< under which consent */
        VEIL_NOTICE_PROTECTION,    /**< pseudonymized or generalized, how */
        VEIL_NOTICE_RETENTION,     /**< what is kept, how long, where */
        VEIL_NOTICE_PRIVACY        /**< the differential-privacy guarantee */
} veil_notice_topic_t;

/** Sink for a plugin's notice statements (opaque). */
typedef struct veil_notice veil_notice_t;
/** Adds one plain-language sentence under a topic. */
void veil_notice_add(veil_notice_t *n, veil_notice_topic_t topic,
                     const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
/** Declares the differential-privacy bound the stage's statements promise
 *  over the whole stream: (epsilon, delta), epsilon INFINITY when it has
 *  none (noise without a budget, or learning without noise). Where two or
 *  more stages declare one, `veil notice` also states the bound for all of
 *  them together: the epsilons and the deltas add up (basic composition,
 *  which holds whatever each stage sees of the others), and a stage
 *  without a bound leaves none. */
void veil_notice_bound(veil_notice_t *n, double epsilon, double delta);

/* ------------------------------------------------------------------ */
/* The plugin                                                         */
/* ------------------------------------------------------------------ */

struct veil_plugin {
        uint32_t abi_version; /**< VEIL_ABI_VERSION; checked first */
        uint32_t struct_size; /**< sizeof(struct veil_plugin) */
        const char *name;     /**< the plugin's name (`use: NAME` loads
                               *   the file veil_NAME.so) */
        const char *version;
        const char *description;
        const struct veil_param_def *params; /**< ends with {NULL} */
        const char *const *outputs;     /**< named outputs, NULL-terminated */
        const char *const *side_inputs; /**< side inputs read, NULL-term. */

        /** Creates the stage's state from validated parameters. On a
         *  failure it frees what it made (destroy is not called). On a
         *  reload the new stage is initialized (and restored) while the
         *  old one still runs; the old one is destroyed after. */
        int (*init)(veil_stage_t *st, const veil_params_t *params,
                    void **state, char *errstr, size_t errstr_size);
        /** Processes a batch. Per-event problems are statuses on events;
         *  a negative return means the stage itself failed (the host stops
         *  without committing the batch). */
        int (*process)(void *state, struct veil_batch *batch);
        /** Frees the state of a stage whose init succeeded. */
        void (*destroy)(void *state);

        /* Optional (NULL when not provided). */
        /** One record of a side input the plugin lists (side_inputs or
         *  optional_side_inputs), after init, in the topic's order. A
         *  non-zero return sends the record to the dead-letter topic with
         *  errstr and the stream goes on; -VEIL_ENOMEM instead stops the
         *  host with errstr (the record is not at fault: side inputs are
         *  read from their start again at the next start). */
        int (*on_side_record)(void *state, const struct veil_side_record *r,
                              char *errstr, size_t errstr_size);
        /** Deletes everything held about the subject. A non-zero return is
         *  logged as the stage's error and the erasure is not counted as
         *  applied in every stage. */
        int (*erase)(void *state, const struct veil_subject *s);
        /** Writes what is held about the subject into `out`, this stage's
         *  section of the access record: a string map, filled with
         *  veil_rec_map_put(out, "", key, value). Returns 0, or non-zero
         *  when it could not export everything: the host then marks the
         *  section with the key "_incomplete", logs it and counts it as
         *  the stage's error; the record is still sent. */
        int (*export_subject)(void *state, const struct veil_subject *s,
                              veil_rec_t *out);
        /** Serializes state to a malloc'd buffer the host frees. The bytes
         *  go to the next instance on a reload and, with a `state:` section,
         *  to the state topic, restored at a later start, perhaps by a newer
         *  version of the plugin: a self-contained format with its own
         *  version, no pointers. Comes with restore: the loader refuses a
         *  plugin with one and not the other. */
        int (*checkpoint)(void *state, void **data, size_t *len);
        /** Takes the bytes a checkpoint made, after init. A refusal (a
         *  format it cannot read) fails the start or the reload with
         *  errstr. */
        int (*restore)(void *state, const void *data, size_t len,
                       char *errstr, size_t errstr_size);
        /** Declares field treatments for the privacy lint. */
        void (*lint)(const veil_params_t *params, veil_lint_t *l);
        /** Describes, in plain words and from its parameters, what the
         *  stage does with personal data (for `veil notice`). */
        void (*notice)(const veil_params_t *params, veil_notice_t *n);
        const struct veil_command *commands; /**< ends with {NULL}; or NULL */
        /** Side inputs read when the pipeline binds them, NULL-terminated;
         *  unlike side_inputs, leaving one unbound is not an error. */
        const char *const *optional_side_inputs;
        /** VEIL_PLUGIN_* flags (0 for a plugin built before the field). */
        uint32_t flags;
};

/** The stage decides each event's consent: it sets the tier and the
 *  purposes and drops the events of people who allowed nothing. `veil
 *  lint` refuses a stage that writes outputs or keeps state (erase,
 *  export_subject or checkpoint) before the first stage with this flag:
 *  it would serve and profile people whose consent is not decided yet. */
#define VEIL_PLUGIN_DECIDES_CONSENT (1u << 0)

/** Every plugin defines this function (extern "C", default visibility). */
const struct veil_plugin *veil_plugin_entry(void);

/** Convenience for plugin sources. */
#define VEIL_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif
#endif /* VEIL_VEIL_H */
