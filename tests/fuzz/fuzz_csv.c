/* libFuzzer: the CSV event reader of `veil replay` and the demo. */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int fd = memfd_create("fuzz-csv", 0);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t)size ||
            lseek(fd, 0, SEEK_SET) != 0) {
                close(fd);
                return 0;
        }
        struct veil_csv *c;
        char err[512];
        if (veil_csv_open_fd(&c, fd, "fuzz.csv", err, sizeof(err)) == 0) {
                struct veil_event ev;
                int n = 0;
                while (veil_csv_next(c, &ev, err, sizeof(err)) == 1 &&
                       n++ < 10000)
                        ;
                veil_csv_close(c);
        }
        close(fd);
        return 0;
}
