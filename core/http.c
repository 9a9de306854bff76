#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "observe.h"
#include "metrics.h"
#include "ops.h"

/* A POST /reload waits this long for the loop to report. */
#define RELOAD_WAIT_MS 60000

struct veil_http {
        struct MHD_Daemon *d;
        struct veil_metrics *m;
        struct veil_ops *ops;
        struct veil_http_config hc;
        char address[300];
};

/* libmicrohttpd's own messages are about one client each (a bad request,
 * a reset connection, one refused at the limit), so any client could fill
 * the log with them, URL included: debug level. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
        (void)cls;
        char msg[1024];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
                msg[--n] = '\0';
        veil_log_host(VEIL_LOG_DEBUG, NULL, "http: %s", msg);
}

/* `allow`: the methods a 405 names (RFC 9110 requires the header), or
 * NULL. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body, size_t len,
                             int owned, const char *allow) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
                len, body, owned ? MHD_RESPMEM_MUST_FREE
                                 : MHD_RESPMEM_MUST_COPY);
        if (!r) {
                if (owned)
                        free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (allow)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        enum MHD_Result rc = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return rc;
}

static enum MHD_Result text_allow(struct MHD_Connection *c, unsigned status,
                                  const char *msg, const char *allow) {
        /* A failed reload's whole error, the privacy lint's lines
         * included, with reload()'s words before it. */
        char body[VEIL_OPS_MSG_MAX + 128];
        int n = snprintf(body, sizeof(body), "%s\n", msg);
        if (n < 0 || (size_t)n >= sizeof(body))
                n = (int)sizeof(body) - 1;
        return reply(c, status, "text/plain; charset=utf-8", body, (size_t)n,
                     0, allow);
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status,
                            const char *msg) {
        return text_allow(c, status, msg, NULL);
}

static enum MHD_Result metrics(struct veil_http *s, struct MHD_Connection *c) {
        char *body, why[600];
        size_t len;
        /* veil_ready as /readyz answers it: a loop stuck in a broker call
         * does not update the gauge itself (veil_ops_ready). */
        if (s->ops && !veil_ops_ready(s->ops, why, sizeof(why)))
                veil_metrics_set(s->m, VEIL_M_READY, "", 0);
        if (veil_metrics_render(s->m, &body, &len))
                return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "out of memory rendering the metrics");
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                     body, len, 1, NULL);
}

static enum MHD_Result reload(struct veil_http *s, struct MHD_Connection *c) {
        if (!s->hc.reload)
                return text(c, MHD_HTTP_FORBIDDEN,
                            "POST /reload is disabled; enable it with "
                            "http: {reload: true} or send SIGHUP");
        uint64_t ticket = veil_ops_request_reload(s->ops);
        char msg[VEIL_OPS_MSG_MAX];
        int r = veil_ops_wait_reload(s->ops, ticket, RELOAD_WAIT_MS, msg,
                                     sizeof(msg));
        if (r == 1)
                return text(c, MHD_HTTP_OK, "reloaded");
        if (r == -2)
                return text(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
        if (r == 0) {
                char out[VEIL_OPS_MSG_MAX + 64];
                snprintf(out, sizeof(out),
                         "reload failed, the previous pipeline keeps "
                         "running: %s",
                         msg);
                return text(c, MHD_HTTP_UNPROCESSABLE_CONTENT, out);
        }
        return text(c, MHD_HTTP_ACCEPTED, msg);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
        (void)version;
        (void)upload;
        struct veil_http *s = cls;
        if (!*con_cls) {
                /* First call: headers only; a body (if any) follows. Any
                 * non-NULL value marks the request as started. */
                *con_cls = s;
                return MHD_YES;
        }
        if (*upload_size) {
                *upload_size = 0; /* no endpoint reads a body */
                return MHD_YES;
        }
        int get = !strcmp(method, MHD_HTTP_METHOD_GET) ||
                  !strcmp(method, MHD_HTTP_METHOD_HEAD);
        char msg[600];
        if (!strcmp(url, "/metrics") && get)
                return metrics(s, c);
        if (!strcmp(url, "/healthz") && get) {
                int ok = veil_ops_live(s->ops, s->hc.liveness_timeout_ms, msg,
                                       sizeof(msg));
                return text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                            msg);
        }
        if (!strcmp(url, "/readyz") && get) {
                int ok = veil_ops_ready(s->ops, msg, sizeof(msg));
                return text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                            msg);
        }
        if (!strcmp(url, "/reload") && !strcmp(method, MHD_HTTP_METHOD_POST))
                return reload(s, c);
        if (!strcmp(url, "/metrics") || !strcmp(url, "/healthz") ||
            !strcmp(url, "/readyz") || !strcmp(url, "/reload"))
                return text_allow(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                                  "method not allowed: GET /metrics, "
                                  "/healthz, /readyz; POST /reload",
                                  strcmp(url, "/reload") ? "GET, HEAD"
                                                         : "POST");
        return text(c, MHD_HTTP_NOT_FOUND,
                    "not found; endpoints: /metrics, /healthz, /readyz, "
                    "POST /reload");
}

static int resolve(const struct veil_http_config *hc,
                   struct sockaddr_storage *ss, socklen_t *len, char *errstr,
                   size_t errstr_size) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        char port[8];
        snprintf(port, sizeof(port), "%d", hc->port);
        int rc = getaddrinfo(hc->host[0] ? hc->host : "0.0.0.0", port, &hints,
                             &res);
        if (rc || !res) {
                snprintf(errstr, errstr_size,
                         "%s: http: listen '%s': cannot resolve '%s': %s; "
                         "give an IP address (0.0.0.0 for every IPv4 "
                         "interface, :: for every interface) or a host "
                         "name this machine resolves",
                         hc->where, hc->listen, hc->host, gai_strerror(rc));
                if (res)
                        freeaddrinfo(res);
                /* A name that does not exist is the file's error (exit 2);
                 * a resolver that did not answer may answer next time. */
                return rc == EAI_AGAIN || rc == EAI_SYSTEM ? -VEIL_EIO
                                                           : -VEIL_EINVAL;
        }
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

int veil_http_start(struct veil_http **out, const struct veil_http_config *hc,
                    struct veil_metrics *m, struct veil_ops *ops,
                    char *errstr, size_t errstr_size) {
        struct veil_http *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->m = m;
        s->ops = ops;
        s->hc = *hc;
        struct sockaddr_storage ss;
        socklen_t sl;
        int rc = resolve(hc, &ss, &sl, errstr, errstr_size);
        if (rc) {
                free(s);
                return rc;
        }
        /* A thread per connection: a POST /reload may wait for the loop,
         * and /metrics and the probes must still answer meanwhile. At most
         * 8 connections per client address, idle ones closed after 10 s:
         * one client trickling headers cannot take every slot and fail the
         * kubelet's probes (which come from another address). */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
        /* "::" is every interface, IPv4 ones too: libmicrohttpd binds an
         * IPv6 socket IPv6-only unless asked for both (the kubelet's IPv4
         * probes of a dual-stack pod were refused). */
        if (ss.ss_family == AF_INET6)
                flags |= IN6_IS_ADDR_UNSPECIFIED(
                                 &((struct sockaddr_in6 *)&ss)->sin6_addr)
                                 ? MHD_USE_DUAL_STACK
                                 : MHD_USE_IPv6;
        /* The logger first: libmicrohttpd uses its own until it is set. */
        s->d = MHD_start_daemon(flags, (uint16_t)hc->port, NULL, NULL, handle,
                                s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                (unsigned)8,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                MHD_OPTION_END);
        if (!s->d) {
                snprintf(errstr, errstr_size,
                         "%s: http: cannot listen on %s (address in use, or "
                         "not an address of this host?); set http.listen to "
                         "a free HOST:PORT",
                         hc->where, hc->listen);
                free(s);
                return -VEIL_EIO;
        }
        const union MHD_DaemonInfo *di =
                MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        int port = di ? di->port : hc->port;
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
                          host, sizeof(host));
                snprintf(s->address, sizeof(s->address), "[%s]:%d", host,
                         port);
        } else {
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
                          host, sizeof(host));
                snprintf(s->address, sizeof(s->address), "%s:%d", host, port);
        }
        *out = s;
        return 0;
}

const char *veil_http_address(const struct veil_http *s) {
        return s->address;
}

void veil_http_stop(struct veil_http *s) {
        if (!s)
                return;
        if (s->ops)
                veil_ops_close(s->ops);
        MHD_stop_daemon(s->d);
        free(s);
}
