/* fuzz_imgref.c: an image reference as written in YAML, a manifest or on the command line
 * (img_ref_parse), and the digest check the registry's answers go through. */
#include "fuzz.h"
#include "../../engines/image_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_str(data, size);
    img_ref *r = NULL;
    snap_err err;

    if (img_ref_parse(s, &r, &err) == SNAP_OK) {
        (void)img_ref_written(r);
        (void)img_ref_domain(r);
        (void)img_ref_api_host(r);
        (void)img_ref_path(r);
        (void)img_ref_name(r);
        (void)img_ref_tag(r);
        (void)img_ref_digest(r);
        (void)img_ref_canonical(r);
        (void)img_ref_reference(r);
        img_ref_free(r);
    }
    (void)img_digest_valid(s);
    free(s);
    return 0;
}
