/* fuzz_config.c: a config file read by cfg_load_file (inih), then the typed getters every
 * command uses, and the size and duration parsers shared with the command line. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "../../common/cfg.h"

static bool count(const char *value, void *arg)
{
    (*(size_t *)arg) += strlen(value) > 0;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    char path[64];
    cfg *c = cfg_new();
    snap_err err;
    long l;
    uint64_t u;
    bool b;
    int64_t d;
    int64_t secs;
    size_t n = 0;

    /* The real file reader, on a memory file rewritten for each input. */
    if (fd < 0 && (fd = memfd_create("snap.conf", 0)) < 0)
        abort();
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (cfg_load_file(c, path, &err) == SNAP_OK) {
        (void)cfg_get(c, "store", "url");
        (void)cfg_int(c, "snap", "zstd_level", &l, &err);
        (void)cfg_size(c, "snap", "part_size", &u, &err);
        (void)cfg_bool(c, "revert", "pin", &b, &err);
        (void)cfg_duration(c, "revert", "keep_old", &d, &err);
        cfg_each(c, "source app", "path", count, &n);
        for (size_t i = 0; i < cfg_source_count(c); i++) {
            char section[300];
            const char *name = cfg_source_name(c, i);
            snprintf(section, sizeof section, "source %s", name);
            (void)cfg_get(c, section, "type");
            const char *v = cfg_get(c, section, "registry_timeout");
            if (v != NULL)
                (void)cfg_parse_duration(v, &secs);
        }
    }
    cfg_free(c);

    char *s = fuzz_str(data, size);
    (void)cfg_parse_size(s, &u);
    (void)cfg_parse_duration(s, &secs);
    free(s);
    return 0;
}
