/*
 * config.h — the pipeline YAML (libyaml): parse, substitute ${VAR}, validate.
 *
 * Every error names file:line:column and what would be valid. Plugin `with:`
 * blocks are kept as a node tree here and validated against the plugin's
 * parameter table by veil_params_build() once the plugin is loaded.
 */
#ifndef VEIL_CONFIG_H
#define VEIL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "veil/veil.h"

/** A YAML node with its position; scalars after ${VAR} substitution. */
enum veil_node_kind { VEIL_NODE_SCALAR = 1, VEIL_NODE_SEQ, VEIL_NODE_MAP };
struct veil_node {
        enum veil_node_kind kind;
        int line, col;        /**< 1-based, of the node's start */
        char *scalar;         /**< SCALAR: the value */
        int quoted;           /**< SCALAR: written in quotes */
        size_t n;             /**< SEQ: items; MAP: pairs */
        struct veil_node **items; /**< SEQ items, or MAP values */
        struct veil_node **keys;  /**< MAP keys (scalars) */
};

enum veil_guarantee { VEIL_AT_LEAST_ONCE = 0, VEIL_EXACTLY_ONCE };
enum veil_framing { VEIL_FRAMING_RAW = 0, VEIL_FRAMING_CONFLUENT };

struct veil_kvpair {
        char *key;
        char *value;
        int line, col; /**< where the key is written */
};

/** A topic bound to a schema (input, output or side input). */
struct veil_binding {
        char *name;   /**< output / side-input name (NULL for the input) */
        char *topic;
        char *schema; /**< path of the reader (input) or writer (output) .avsc,
                           as written: relative to the YAML file's directory,
                           open it via veil_config_path(); NULL for
                           dead_letter */
        enum veil_framing framing;
        int32_t schema_id;  /**< confluent framing: id written on output;
                                 -1 when not given */
        /** confluent input: schema id -> writer schema path. raw input: an
         *  optional single writer schema under key "" */
        struct veil_kvpair *writer_schemas;
        size_t n_writer_schemas;
        int partitions; /**< embedded broker: partitions to create (1) */
        int line, col;  /**< the name's key; the mapping for the input */
        int schema_line, schema_col; /**< the schema's value (0: none) */
};

struct veil_stage_cfg {
        char *use;                /**< plugin name or path */
        const struct veil_node *with; /**< MAP or NULL */
        int line, col;
};

struct veil_config {
        char *file; /**< as given */
        char *dir;  /**< its directory, for relative paths */
        struct {
                char *bootstrap; /**< "embedded" starts the mock cluster */
                char *group;
                enum veil_guarantee guarantee;
                struct veil_kvpair *settings; /**< passed to librdkafka */
                size_t n_settings;
        } kafka;
        struct veil_binding input;
        int max_events;  /**< input.batch.max_events, default 256 */
        int max_wait_ms; /**< input.batch.max_wait_ms, default 50 */
        struct veil_binding *outputs; /**< includes "dead_letter" */
        size_t n_outputs;
        struct veil_binding *side_inputs;
        size_t n_side_inputs;
        struct veil_stage_cfg *stages;
        size_t n_stages;
        char **plugin_path;   /**< resolved with veil_config_path() */
        size_t n_plugin_path;
        struct veil_node *root; /**< owns every node */
        /** Sections validated by their own modules (NULL when absent); each
         *  is a MAP node owned by root. */
        const struct veil_node *http, *log, *keys, *demo, *state;
        int line, col; /**< the top-level mapping */
};

/** Looks up an environment variable for ${VAR}: its value or NULL. */
typedef const char *(*veil_config_env_fn)(const char *name, void *ud);

/** Parses and validates `path`; ${VAR} is looked up with getenv(). */
int veil_config_load(struct veil_config **cfgp, const char *path,
                     char *errstr, size_t errstr_size);
/** Same, from a string; `name` is used in messages and its directory for
 *  relative paths. */
int veil_config_parse(struct veil_config **cfgp, const char *name,
                      const char *text, size_t len, char *errstr,
                      size_t errstr_size);
/** Same, with ${VAR} looked up by `env(name, env_ud)` (NULL: getenv). */
int veil_config_parse_env(struct veil_config **cfgp, const char *name,
                          const char *text, size_t len, veil_config_env_fn env,
                          void *env_ud, char *errstr, size_t errstr_size);
void veil_config_destroy(struct veil_config *cfg);

/** Parses one YAML document of any shape into a node tree, with the same
 *  limits and refusals as a pipeline file but without ${VAR} substitution
 *  (used for parameter defaults, which are YAML text). */
int veil_config_parse_node(struct veil_node **out, const char *name,
                           const char *text, size_t len, char *errstr,
                           size_t errstr_size);
void veil_config_free_node(struct veil_node *n);
/** The value of `key` in a MAP node, or NULL (also when map is not a MAP). */
const struct veil_node *veil_config_get(const struct veil_node *map,
                                        const char *key);

/** Finds an output binding by name, or NULL. */
const struct veil_binding *veil_config_output(const struct veil_config *cfg,
                                              const char *name);
/** Resolves a path from the YAML relative to the YAML's directory;
 *  returns a malloc'd string. */
char *veil_config_path(const struct veil_config *cfg, const char *p);

/** Validates a `with:` block against a parameter table and builds the
 *  accessor object (applies defaults). Errors name file:line:col, the
 *  plugin and the parameter. */
int veil_params_build(veil_params_t **out, const struct veil_config *cfg,
                      const struct veil_stage_cfg *stage,
                      const char *plugin_name,
                      const struct veil_param_def *defs, char *errstr,
                      size_t errstr_size);
void veil_params_destroy(veil_params_t *p);

/** The scalar rules shared by the pipeline and by parameters: the whole text
 *  must be the value. INT: decimal or 0x hex, optional sign. DOUBLE: a finite
 *  strtod number (integers too). BOOL: true/True/TRUE or false/False/FALSE
 *  only. Return 0, or -VEIL_EINVAL (also on overflow). */
int veil_params_parse_int(const char *s, int64_t *v);
int veil_params_parse_double(const char *s, double *v);
int veil_params_parse_bool(const char *s, int *v);

#endif
