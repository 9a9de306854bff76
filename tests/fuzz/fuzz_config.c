/* libFuzzer: the pipeline YAML loader (libyaml events, substitution,
 * validation). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct veil_config *cfg = NULL;
        char err[1024];
        if (veil_config_parse(&cfg, "fuzz.yaml", (const char *)data, size,
                              err, sizeof(err)) == 0)
                veil_config_destroy(cfg);
        return 0;
}
