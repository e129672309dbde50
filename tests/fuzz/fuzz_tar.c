/* fuzz_tar.c: a part from the store as revert reads it: arc_reader (zstd or plain pax tar,
 * size and SHA-256 checked), every entry's data, and where the files target would put each
 * entry's names (rst_files_locate_int). The first byte is left for options; the rest is
 * the part. Nothing is extracted. */
#include <archive_entry.h>
#include <stdio.h>
#include <unistd.h>

#include "fuzz.h"
#include "../../catalog/arc.h"
#include "../../common/util.h"
#include "../../restore/restore_int.h"

#define KEY "data/20261126T054128.123Z-1a2b3c4d/app.0000.tar.zst"
#define ROOTS                                                                                      \
    "[{\"stored\": \"srv/app\", \"path\": \"/srv/app\", \"type\": \"dir\","                        \
    "  \"staged\": \"/nonexistent/snap-fuzz/srv/.app.snap-stage\"},"                               \
    " {\"stored\": \"etc/app.conf\", \"path\": \"/etc/app.conf\", \"type\": \"file\","             \
    "  \"staged\": \"/nonexistent/snap-fuzz/etc/.app.conf.snap-stage\"},"                        \
    " {\"stored\": \"tmp/fz/src/app\", \"path\": \"/tmp/fz/src/app\", \"type\": \"dir\","           \
    "  \"staged\": \"/nonexistent/snap-fuzz/tmp/fz/src/.app.snap-stage\"}]"

static stg *store;
static char dir[] = "/tmp/snap-fuzz-tar.XXXXXX";
static json_t *roots;

static void setup(void)
{
    snap_err err;
    static snap_ctx ctx;

    ctx.jobs = 1;
    ctx.verbosity = -1;
    if (mkdtemp(dir) == NULL || stg_open(dir, true, &ctx, &store, &err) != SNAP_OK)
        abort();
    roots = json_loads(ROOTS, 0, NULL);
    if (roots == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128], sha[65], buf[4096];
    util_sha256 *h;
    arc_reader *r = NULL;
    struct archive_entry *e;
    snap_err err;
    FILE *f;

    if (store == NULL)
        setup();
    if (size < 1)
        return 0;
    data++;
    size--;
    /* Straight into the store's directory: the reader only opens the file. */
    snprintf(path, sizeof path, "%s/data", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/data/20261126T054128.123Z-1a2b3c4d", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s", dir, KEY);
    if ((f = fopen(path, "w")) == NULL)
        abort();
    if (size > 0 && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    h = util_sha256_new();
    util_sha256_update(h, data, size);
    util_sha256_final(h, sha);

    if (arc_reader_open(store, KEY, size, sha, NULL, NULL, &r, &err) != SNAP_OK)
        return 0;
    for (int n = 0; n < 4096; n++) {
        size_t got, root;
        const char *rel, *hl;
        snap_rc rc;
        if (arc_reader_next(r, &e, &err) != SNAP_OK || e == NULL)
            break;
        /* As revert does: the names are checked before any data is read. */
        const char *name = archive_entry_pathname(e);
        if (name != NULL && strncmp(name, ARC_META_PREFIX, strlen(ARC_META_PREFIX)) == 0)
            continue;
        if (rst_files_locate_int(roots, name, archive_entry_filetype(e) == AE_IFDIR, &root, &rel, &err) == SNAP_OK &&
            root >= json_array_size(roots))
            abort();
        if ((hl = archive_entry_hardlink(e)) != NULL)
            (void)rst_files_locate_int(roots, hl, false, &root, &rel, &err);
        while ((rc = arc_reader_data(r, buf, sizeof buf, &got, &err)) == SNAP_OK && got > 0)
            ;
        if (rc != SNAP_OK)
            break;
    }
    (void)arc_reader_close(r, &err);
    return 0;
}
