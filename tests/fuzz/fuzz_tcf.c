/* libFuzzer: the IAB TCF v2 TC-string decoder and its JSON printer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tcf.h"
#include "tcf_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct veil_tcf t; /* reused across inputs, as the plugin does */
        char err[256];
        if (veil_tcf_decode((const char *)data, size, &t, err, sizeof(err)) ==
            0) {
                char *json = veil_tcf_to_json(&t);
                if (!json)
                        abort();
                free(json);
                (void)veil_tcf_vendor_consent(&t, 1);
        }
        return 0;
}
