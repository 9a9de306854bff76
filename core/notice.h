/*
 * notice.h — statements plugins make for the privacy notice
 * (veil_notice_add), collected by topic in pipeline order.
 */
#ifndef VEIL_NOTICE_H
#define VEIL_NOTICE_H

#include <stddef.h>

#include "veil/veil.h"

struct veil_notice_line {
        veil_notice_topic_t topic;
        char *stage; /**< the plugin that said it */
        char *text;
};

struct veil_notice {
        const char *stage; /**< set while a plugin is asked */
        struct veil_notice_line *l;
        size_t n, cap;
        /* veil_notice_bound: how many stages declared a bound, and the
         * sums (epsilon INFINITY once one has none). */
        size_t bounds;
        double epsilon, delta;
};

/** Asks a plugin for its statements (none when it has no notice hook). */
void veil_notice_collect(struct veil_notice *n, const struct veil_plugin *def,
                         const veil_params_t *params);
void veil_notice_free(struct veil_notice *n);

#endif
