/*
 * http_config.c — the `http:` section of a pipeline (see http.h), apart from
 * the server so that `veil lint` checks it without libmicrohttpd running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static int fail(const struct veil_config *cfg, const struct veil_node *n,
                char *errstr, size_t errstr_size, const char *fmt,
                const char *arg) {
        char what[512];
        snprintf(what, sizeof(what), fmt, arg);
        snprintf(errstr, errstr_size, "%s:%d:%d: http: %s", cfg->file,
                 n ? n->line : cfg->line, n ? n->col : cfg->col, what);
        return -VEIL_EINVAL;
}

/* HOST:PORT, [V6]:PORT or :PORT into host and port. */
static int parse_listen(const char *s, char *host, size_t host_size,
                        int *port) {
        const char *colon;
        if (s[0] == '[') {
                const char *rb = strchr(s, ']');
                if (!rb || rb[1] != ':' || rb == s + 1)
                        return -1;
                if ((size_t)(rb - s - 1) >= host_size)
                        return -1;
                memcpy(host, s + 1, (size_t)(rb - s - 1));
                host[rb - s - 1] = '\0';
                colon = rb + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t)(colon - s)))
                        return -1; /* bare IPv6 needs brackets */
                if ((size_t)(colon - s) >= host_size)
                        return -1;
                memcpy(host, s, (size_t)(colon - s));
                host[colon - s] = '\0';
        }
        int64_t p;
        if (!colon[1] || veil_params_parse_int(colon + 1, &p) || p < 0 ||
            p > 65535)
                return -1;
        for (const char *c = colon + 1; *c; c++)
                if (*c < '0' || *c > '9')
                        return -1;
        *port = (int)p;
        return 0;
}

int veil_http_config_parse(const struct veil_config *cfg,
                           struct veil_http_config *hc, char *errstr,
                           size_t errstr_size) {
        memset(hc, 0, sizeof(*hc));
        hc->liveness_timeout_ms = 60000;
        snprintf(hc->listen, sizeof(hc->listen), "%s",
                 VEIL_HTTP_DEFAULT_LISTEN);
        const struct veil_node *h = cfg->http;
        if (!h)
                return 0;
        if (h->kind != VEIL_NODE_MAP)
                return fail(cfg, h, errstr, errstr_size,
                            "must be a mapping such as {listen: "
                            "0.0.0.0:9464, reload: false}%s",
                            "");
        hc->enabled = 1;
        for (size_t i = 0; i < h->n; i++) {
                const char *k = h->keys[i]->scalar;
                const struct veil_node *v = h->items[i];
                if (strcmp(k, "listen") && strcmp(k, "reload") &&
                    strcmp(k, "liveness_timeout_ms"))
                        return fail(cfg, h->keys[i], errstr, errstr_size,
                                    "unknown key '%s'; allowed keys: listen, "
                                    "reload, liveness_timeout_ms",
                                    k);
                if (v->kind != VEIL_NODE_SCALAR)
                        return fail(cfg, v, errstr, errstr_size,
                                    "'%s' must be a scalar", k);
        }
        const struct veil_node *l = veil_config_get(h, "listen");
        const struct veil_node *at = l ? l : h;
        snprintf(hc->where, sizeof(hc->where), "%s:%d:%d", cfg->file,
                 at->line, at->col);
        if (l) {
                if (strlen(l->scalar) >= sizeof(hc->listen))
                        return fail(cfg, l, errstr, errstr_size,
                                    "listen is too long%s", "");
                snprintf(hc->listen, sizeof(hc->listen), "%s", l->scalar);
        }
        if (parse_listen(hc->listen, hc->host, sizeof(hc->host), &hc->port))
                return fail(cfg, l, errstr, errstr_size,
                            "listen '%s' must be HOST:PORT, [IPv6]:PORT or "
                            ":PORT with a port from 0 to 65535 (e.g. "
                            "0.0.0.0:9464)",
                            hc->listen);
        const struct veil_node *r = veil_config_get(h, "reload");
        if (r && veil_params_parse_bool(r->scalar, &hc->reload))
                return fail(cfg, r, errstr, errstr_size,
                            "reload must be true or false, got '%s'",
                            r->scalar);
        const struct veil_node *t = veil_config_get(h, "liveness_timeout_ms");
        if (t) {
                int64_t ms;
                if (veil_params_parse_int(t->scalar, &ms) || ms < 1000 ||
                    ms > 3600000)
                        return fail(cfg, t, errstr, errstr_size,
                                    "liveness_timeout_ms must be an integer "
                                    "from 1000 to 3600000, got '%s'",
                                    t->scalar);
                hc->liveness_timeout_ms = (int)ms;
        }
        return 0;
}

int veil_http_config_same(const struct veil_http_config *a,
                          const struct veil_http_config *b) {
        return a->enabled == b->enabled && !strcmp(a->host, b->host) &&
               a->port == b->port && a->reload == b->reload &&
               a->liveness_timeout_ms == b->liveness_timeout_ms;
}
