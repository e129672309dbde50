/* fuzz_s3.c: what an S3 server sends the S3 driver. The first byte chooses: 0 a raw
 * response (header lines as curl hands them, a blank line, an <Error> body), 1 a
 * ListObjectsV2 page under the store's prefix "snap/". */
#include "fuzz.h"
#include "../../storage/storage_int.h"

static bool each(const stg_entry *e, void *arg)
{
    (*(size_t *)arg) += strlen(e->key) + (size_t)(e->size & 1) + (size_t)(e->mtime & 1);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    snap_err err;

    if (size < 1)
        return 0;
    char *buf = fuzz_copy(data + 1, size - 1);
    if (data[0] % 2 == 0) {
        long status;
        char code[64];
        s3_parse_response_int(buf, size - 1, &status, code);
    } else {
        char *token = NULL;
        bool go_on = true, more;
        size_t n = 0;
        (void)s3_parse_list_int("bucket", "snap/", buf, size - 1, each, &n, &go_on, &more,
                                &token, &err);
        free(token);
    }
    free(buf);
    return 0;
}
