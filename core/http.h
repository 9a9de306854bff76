/*
 * http.h — the operations endpoints (libmicrohttpd, in its own threads):
 *
 *   GET  /metrics   Prometheus text format, from the metrics registry
 *   GET  /healthz   200 while the pipeline loop turns, 503 otherwise
 *   GET  /readyz    200 when connected, assigned and every side input has
 *                   caught up; 503 with the reason otherwise
 *   POST /reload    (http.reload: true) reloads the pipeline file like
 *                   SIGHUP and answers with the outcome
 *
 * The YAML section:
 *
 *   http:
 *     listen: 0.0.0.0:9464        # HOST:PORT, [IPv6]:PORT or :PORT;
 *                                 # port 0 picks a free one (tests)
 *     reload: false               # enables POST /reload
 *     liveness_timeout_ms: 60000  # /healthz fails after this long without
 *                                 # a loop turn
 *
 * The server only reads the registry and the ops state; it never touches
 * the pipeline, so nothing it serves can hold more than the loop put there.
 */
#ifndef VEIL_HTTP_H
#define VEIL_HTTP_H

#include <stddef.h>

#include "config.h"

#define VEIL_HTTP_DEFAULT_LISTEN "0.0.0.0:9464"

struct veil_http_config {
        int enabled;          /**< the pipeline has an http: section */
        char listen[262];     /**< as written */
        char host[256];       /**< without brackets; "" = every interface */
        int port;
        int reload;           /**< POST /reload enabled */
        int liveness_timeout_ms;
        char where[300];      /**< "file:line:col" of listen, for errors */
};

/** Reads and validates cfg->http (absent: enabled = 0). Errors name
 *  file:line:col and what would be valid. */
int veil_http_config_parse(const struct veil_config *cfg,
                           struct veil_http_config *hc, char *errstr,
                           size_t errstr_size);
/** 1 when two configurations would serve the same way. */
int veil_http_config_same(const struct veil_http_config *a,
                          const struct veil_http_config *b);

struct veil_http;
struct veil_metrics;
struct veil_ops;

/** Binds and starts serving. The registry and ops state are borrowed and
 *  must outlive the server. */
int veil_http_start(struct veil_http **out, const struct veil_http_config *hc,
                    struct veil_metrics *m, struct veil_ops *ops,
                    char *errstr, size_t errstr_size);
/** The address actually bound ("127.0.0.1:41234"), for the log. */
const char *veil_http_address(const struct veil_http *s);
/** Stops serving (waits for running requests) and frees the server. */
void veil_http_stop(struct veil_http *s);

#endif
