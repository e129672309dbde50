/* fuzz_manifest.c: a manifest from the store (cat_manifest_parse), then every getter a
 * listing, `snap show`, verify and revert use on it. */
#include "fuzz.h"
#include "../../catalog/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cat_manifest *m = NULL;
    snap_err err;
    const char *labels[] = {"env=prod", "team"};

    if (cat_manifest_parse((const char *)data, size, &m, &err) != SNAP_OK)
        return 0;
    (void)cat_manifest_name(m);
    (void)cat_manifest_id(m);
    (void)cat_manifest_created(m);
    (void)cat_manifest_note(m);
    (void)cat_manifest_label(m, "env");
    (void)cat_manifest_bytes(m);
    (void)cat_manifest_match_labels(m, labels, 2);
    for (size_t i = 0; i < cat_manifest_ncomponents(m); i++) {
        cat_component *c = cat_manifest_component(m, i);
        const char *name = cat_component_name(c);
        (void)cat_component_type(c);
        (void)cat_component_source(c);
        (void)cat_component_bytes(c);
        (void)cat_component_stats(c);
        (void)cat_component_info(c);
        for (size_t p = 0; p < cat_component_nparts(c); p++) {
            const char *key, *sha;
            uint64_t psize, entries;
            cat_component_part(c, p, &key, &psize, &sha, &entries);
        }
        if (name != NULL) {
            (void)cat_manifest_find(m, name);
            free(cat_component_prefix(m, name));
        }
    }
    cat_manifest_free(m);
    return 0;
}
