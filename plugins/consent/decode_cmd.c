/*
 * decode_cmd.c — `veil consent decode TC_STRING`: the decoded string as
 * JSON with the TCF spec's field names (tcf_json.h), for operators who
 * want to see what a CMP sent.
 */
#include "decode_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#include "tcf.h"
#include "tcf_json.h"

static const char usage[] =
        "usage: veil consent decode TC_STRING\n"
        "Prints the IAB TCF v2 TC string as one JSON object with the TCF "
        "field names (purposeConsents, vendorConsents, "
        "publisherRestrictions…). Exit 0, or 2 with a message when the "
        "string is not a valid TC string.\n";

int veil_consent_decode_run(int argc, char **argv) {
        /* --help never gets here: the host answers it from the command
         * table. */
        if (argc != 2) {
                fputs(usage, stderr);
                return 2;
        }
        struct veil_tcf t;
        memset(&t, 0, sizeof(t));
        char err[512];
        if (veil_tcf_decode(argv[1], strlen(argv[1]), &t, err, sizeof(err))) {
                /* The decoder's message names segment, bit and field, never
                 * the string's content. */
                fprintf(stderr, "veil consent decode: not a valid TC string: "
                                "%s\n",
                        err);
                veil_tcf_clear(&t);
                return 2;
        }
        char *json = veil_tcf_to_json(&t);
        veil_tcf_clear(&t);
        if (!json) {
                fprintf(stderr, "veil consent decode: out of memory\n");
                return 1;
        }
        printf("%s\n", json);
        free(json);
        return 0;
}
