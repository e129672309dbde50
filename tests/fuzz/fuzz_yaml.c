/* fuzz_yaml.c: Kubernetes and Compose YAML as the images capture scans it
 * (img_scan_buffer), each reference found parsed (img_ref_parse), and the --pin rewrite. */
#include "fuzz.h"
#include "../../engines/image_ref.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    img_scan *s = img_scan_new();
    snap_err err;

    if (img_scan_buffer(s, "fuzz.yaml", buf, size, &err) == SNAP_OK) {
        size_t n = img_scan_count(s);
        const char **values = calloc(n ? n : 1, sizeof *values);
        char **pinned = calloc(n ? n : 1, sizeof *pinned);
        for (size_t i = 0; i < n; i++) {
            const img_found *f = img_scan_get(s, i);
            img_ref *r = NULL;
            if (img_ref_parse(f->value, &r, &err) == SNAP_OK) {
                (void)img_ref_canonical(r);
                (void)img_ref_api_host(r);
                (void)img_ref_reference(r);
                img_ref_free(r);
                pinned[i] = img_pinned_text(f->value, DIGEST);
                values[i] = pinned[i];
            }
        }
        char *out = NULL;
        size_t outlen = 0;
        if (img_rewrite(s, buf, size, values, &out, &outlen, &err) == SNAP_OK)
            free(out);
        for (size_t i = 0; i < n; i++)
            free(pinned[i]);
        free(pinned);
        free(values);
    }
    img_scan_free(s);
    free(buf);
    return 0;
}
