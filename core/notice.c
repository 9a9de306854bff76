#include "notice.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void veil_notice_add(veil_notice_t *n, veil_notice_topic_t topic,
                     const char *fmt, ...) {
        if (!n || !fmt)
                return;
        if (n->n == n->cap) {
                size_t cap = n->cap ? n->cap * 2 : 16;
                struct veil_notice_line *l = realloc(n->l, cap * sizeof(*l));
                if (!l)
                        return;
                n->l = l;
                n->cap = cap;
        }
        /* The whole text, however long: a notice cut short would misstate
         * what is done (a list of kept attributes, a reason). */
        char *text = NULL;
        va_list ap;
        va_start(ap, fmt);
        int w = vasprintf(&text, fmt, ap);
        va_end(ap);
        char *stage = strdup(n->stage ? n->stage : "");
        if (w < 0 || !stage) {
                if (w >= 0)
                        free(text);
                free(stage);
                return;
        }
        n->l[n->n].topic = topic;
        n->l[n->n].stage = stage;
        n->l[n->n].text = text;
        n->n++;
}

void veil_notice_bound(veil_notice_t *n, double epsilon, double delta) {
        if (!n)
                return;
        n->bounds++;
        /* A NaN or a negative value is no bound either. */
        n->epsilon += epsilon >= 0 ? epsilon : INFINITY;
        n->delta += delta >= 0 ? delta : INFINITY;
}

void veil_notice_collect(struct veil_notice *n, const struct veil_plugin *def,
                         const veil_params_t *params) {
        if (!def->notice)
                return;
        n->stage = def->name;
        def->notice(params, n);
        n->stage = NULL;
}

void veil_notice_free(struct veil_notice *n) {
        for (size_t i = 0; i < n->n; i++) {
                free(n->l[i].stage);
                free(n->l[i].text);
        }
        free(n->l);
        memset(n, 0, sizeof(*n));
}
