/*
 * avrotool — the integration tests' bridge between CSV/JSON and kcat.
 *
 *   avrotool encode SCHEMA.avsc EVENTS.csv [GARBAGE_EVERY]
 *     writes each event as  KEY <KDELIM> AVRO <DELIM>  for
 *     kcat -P -K '\x1f|K|\x1f' -D '\x1e|M|\x1e'; every GARBAGE_EVERY-th record is
 *     followed by an undecodable one keyed "garbage-N".
 *   avrotool decode SCHEMA.avsc
 *     reads kcat -C -f '%p\t%o\t%K\t%k%R%s%h\n' frames on stdin and prints one
 *     JSON object per record: partition, offset, key, value (decoded, or
 *     null when not decodable), headers.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "csv.h"

#define KDELIM "\x1f|K|\x1f"
#define MDELIM "\x1e|M|\x1e"

static int encode(const char *schema, const char *csv_path, long garbage) {
        char err[1024];
        struct veil_codec *c;
        struct veil_csv *csv;
        if (veil_codec_new_file(&c, schema, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err)) ||
            veil_csv_open(&csv, csv_path, err, sizeof(err))) {
                fprintf(stderr, "avrotool: %s\n", err);
                return 1;
        }
        struct veil_buf buf = {0};
        struct veil_event ev;
        long n = 0;
        int rc;
        while ((rc = veil_csv_next(csv, &ev, err, sizeof(err))) == 1) {
                if (veil_codec_encode_event(c, &ev, &buf, err, sizeof(err))) {
                        fprintf(stderr, "avrotool: %s\n", err);
                        return 1;
                }
                printf("%s" KDELIM, ev.user_id);
                fwrite(buf.data, 1, buf.len, stdout);
                fputs(MDELIM, stdout);
                if (garbage > 0 && ++n % garbage == 0)
                        printf("garbage-%ld" KDELIM "\x06garbage%ld" MDELIM,
                               n / garbage, n);
        }
        if (rc < 0) {
                fprintf(stderr, "avrotool: %s\n", err);
                return 1;
        }
        veil_buf_free(&buf);
        veil_csv_close(csv);
        veil_codec_destroy(c);
        return 0;
}

static void json_str(const char *s, size_t n) {
        putchar('"');
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                else if (ch < 0x20 || ch >= 0x7f)
                        printf("\\u%04x", ch);
                else
                        putchar(ch);
        }
        putchar('"');
}

static int decode(const char *schema) {
        char err[1024];
        struct veil_codec *c;
        if (veil_codec_new_file(&c, schema, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err))) {
                fprintf(stderr, "avrotool: %s\n", err);
                return 1;
        }
        long part, off, klen;
        char *buf = malloc(1 << 24);
        while (scanf("%ld\t%ld\t%ld\t", &part, &off, &klen) == 3) {
                char key[4096] = "";
                if (klen > 0 && (klen >= (long)sizeof(key) ||
                                 fread(key, 1, (size_t)klen, stdin) !=
                                         (size_t)klen))
                        return 1;
                uint32_t be;
                if (fread(&be, 4, 1, stdin) != 1)
                        return 1;
                int32_t vlen = (int32_t)ntohl(be);
                if (vlen > (1 << 24) ||
                    (vlen > 0 && fread(buf, 1, (size_t)vlen, stdin) !=
                                         (size_t)vlen))
                        return 1;
                char hdr[8192];
                if (!fgets(hdr, sizeof(hdr), stdin))
                        hdr[0] = '\0';
                hdr[strcspn(hdr, "\n")] = '\0';
                printf("{\"partition\":%ld,\"offset\":%ld,\"key\":", part,
                       off);
                json_str(key, klen > 0 ? (size_t)klen : 0);
                char *json = vlen > 0 ? veil_codec_rec_json(c, buf,
                                                            (size_t)vlen)
                                      : NULL;
                printf(",\"value\":%s,\"headers\":", json ? json : "null");
                free(json);
                json_str(hdr, strlen(hdr));
                printf("}\n");
        }
        free(buf);
        veil_codec_destroy(c);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 4 && !strcmp(argv[1], "encode"))
                return encode(argv[2], argv[3], argc > 4 ? atol(argv[4]) : 0);
        if (argc == 3 && !strcmp(argv[1], "decode"))
                return decode(argv[2]);
        fprintf(stderr, "usage: avrotool encode SCHEMA CSV [GARBAGE_EVERY] | "
                        "decode SCHEMA\n");
        return 2;
}
