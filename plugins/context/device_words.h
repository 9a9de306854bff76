/*
 * device_words.h — the words a device class may come in, and the class
 * each means. One table for the two stages that read them: pseudonymize's
 * device_class policy (which cuts the field to a class) and context's
 * device feature (which reads it, or a reduced user agent). When they
 * disagreed, "phone" reached context as "other".
 */
#ifndef VEIL_DEVICE_WORDS_H
#define VEIL_DEVICE_WORDS_H

#include <stddef.h>
#include <strings.h>

/** The class of a device word (case ignored): desktop, mobile, tablet or
 *  tv; "other" for any other word. */
static inline const char *veil_device_word_class(const char *device) {
        static const struct {
                const char *in, *out;
        } map[] = {{"desktop", "desktop"}, {"computer", "desktop"},
                   {"pc", "desktop"},      {"laptop", "desktop"},
                   {"mobile", "mobile"},   {"phone", "mobile"},
                   {"smartphone", "mobile"}, {"tablet", "tablet"},
                   {"tv", "tv"}};
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (!strcasecmp(device, map[i].in))
                        return map[i].out;
        return "other";
}

#endif
