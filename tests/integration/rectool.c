/*
 * rectool — records of any schema from CSV for kcat (the integration
 * tests' consent records):
 *
 *   rectool encode SCHEMA.avsc RECORDS.csv
 *     writes each row as  KEY <KDELIM> AVRO <DELIM>  for
 *     kcat -P -Z -K '\x1f|K|\x1f' -D '\x1e|M|\x1e'; a row with
 *     _tombstone=true has an empty value, which -Z sends as a tombstone.
 *     The CSV format is core/reccsv.h's (columns are field paths).
 */
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "reccsv.h"

#define KDELIM "\x1f|K|\x1f"
#define MDELIM "\x1e|M|\x1e"

int main(int argc, char **argv) {
        if (argc != 4 || strcmp(argv[1], "encode")) {
                fprintf(stderr, "usage: rectool encode SCHEMA.avsc "
                                "RECORDS.csv\n");
                return 2;
        }
        char err[1024];
        struct veil_codec *c = NULL;
        struct veil_reccsv *csv = NULL;
        if (veil_codec_new_file(&c, argv[2], VEIL_FRAMING_RAW, -1, err,
                                sizeof(err)) ||
            veil_reccsv_open(&csv, argv[3], err, sizeof(err))) {
                fprintf(stderr, "rectool: %s\n", err);
                veil_codec_destroy(c);
                return 1;
        }
        struct veil_reccsv_row r;
        int rc;
        while ((rc = veil_reccsv_next(csv, c, &r, err, sizeof(err))) == 1) {
                printf("%s" KDELIM, r.key);
                if (!r.tombstone)
                        fwrite(r.value, 1, r.value_len, stdout);
                fputs(MDELIM, stdout);
        }
        if (rc < 0)
                fprintf(stderr, "rectool: %s\n", err);
        veil_reccsv_close(csv);
        veil_codec_destroy(c);
        return rc < 0 ? 1 : 0;
}
