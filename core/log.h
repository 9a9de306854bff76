/*
 * log.h — one JSON object per line on stderr, so log shippers need no
 * parsing rules. Callers never pass raw identifiers or key material.
 */
#ifndef VEIL_LOG_H
#define VEIL_LOG_H

#include <stdarg.h>

#include "veil/veil.h"

/** Sets the process-wide threshold (at start-up, and on a reload). */
void veil_log_set_level(veil_log_level_t level);
veil_log_level_t veil_log_get_level(void);
/** Parses "error|warn|info|debug"; -1 when invalid. */
int veil_log_level_parse(const char *s);
/** Logs with an optional stage name (NULL for the host). */
void veil_log_host(veil_log_level_t level, const char *stage, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));
void veil_log_vhost(veil_log_level_t level, const char *stage,
                    const char *fmt, va_list ap);
/** Same with structured fields: NULL-terminated key/value string pairs,
 *  written as "fields":{"key":"value",...}. */
void veil_log_fields(veil_log_level_t level, const char *stage,
                     const char *const *fields, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

struct veil_config;
/** Reads the pipeline's `log: {level: error|warn|info|debug}` section:
 *  0 with *level (-1 when the section or its level is absent), or
 *  -VEIL_EINVAL with file:line:col and the valid values. */
int veil_log_config_parse(const struct veil_config *cfg, int *level,
                          char *errstr, size_t errstr_size);

#endif
