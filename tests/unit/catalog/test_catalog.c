/* Unit tests of catalog/: names, ids, the manifest and its validation, retention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../catalog/catalog.h"

static void names(void **state)
{
    snap_err err;
    char long_name[200];

    (void)state;
    assert_int_equal(cat_name_check("snapshot", "pre-v42", &err), SNAP_OK);
    assert_int_equal(cat_name_check("snapshot", "a.b_c-9", &err), SNAP_OK);
    assert_int_equal(cat_name_check("snapshot", "", &err), SNAP_EUSAGE);
    assert_int_equal(cat_name_check("snapshot", "-x", &err), SNAP_EUSAGE);
    assert_int_equal(cat_name_check("snapshot", "a/b", &err), SNAP_EUSAGE);
    assert_int_equal(cat_name_check("snapshot", "a b", &err), SNAP_EUSAGE);
    memset(long_name, 'a', 129);
    long_name[129] = '\0';
    assert_int_equal(cat_name_check("snapshot", long_name, &err), SNAP_EUSAGE);
    long_name[128] = '\0';
    assert_int_equal(cat_name_check("snapshot", long_name, &err), SNAP_OK);
}

static void ids_sort_by_time(void **state)
{
    char a[32], b[32];

    (void)state;
    cat_new_id(a);
    cat_new_id(b);
    assert_int_equal(strlen(a), 29);
    assert_true(strncmp(a, b, 15) <= 0);
    assert_string_not_equal(a, b);
}

static void manifest_roundtrip_and_validation(void **state)
{
    cat_manifest *m = cat_manifest_new("p1", "20261126T000000.000Z-00000000"), *back;
    cat_component *c;
    char *text;
    const char *key, *sha;
    uint64_t size, entries;
    snap_err err;

    (void)state;
    cat_manifest_set_label(m, "env", "prod");
    c = cat_manifest_add_component(m, "app", "files");
    cat_component_add_part(c, "data/20261126T000000.000Z-00000000/app.0000.tar.zst", 123,
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 7, 456);
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_OK);
    assert_string_equal(cat_manifest_name(back), "p1");
    assert_string_equal(cat_manifest_label(back, "env"), "prod");
    cat_component_part(cat_manifest_find(back, "app"), 0, &key, &size, &sha, &entries);
    assert_int_equal(size, 123);
    assert_int_equal(entries, 7);
    assert_int_equal(cat_manifest_bytes(back), 123);
    const char *want[] = {"env=prod"}, *other[] = {"env=dev"};
    assert_true(cat_manifest_match_labels(back, want, 1));
    assert_false(cat_manifest_match_labels(back, other, 1));
    cat_manifest_free(back);
    free(text);

    /* a part key that climbs out of the store is damage */
    cat_component_add_part(c, "../../etc/passwd", 1,
                           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 1, 1);
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_EVERIFY);
    free(text);
    assert_int_equal(cat_manifest_parse("{\"format\": 99}", 14, &back, &err), SNAP_EFAIL);
    assert_int_equal(cat_manifest_parse("not json", 8, &back, &err), SNAP_EVERIFY);
    cat_manifest_free(m);
}

/* Part keys: data/<snapshot-id>/<part file>, another snapshot's only in format 2. */
static void part_keys_and_references(void **state)
{
    const char *own = "20261126T000000.000Z-00000000";
    cat_manifest *m = cat_manifest_new("p2", own), *back;
    cat_component *c = cat_manifest_add_component(m, "app", "files");
    const char *sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char *text;
    snap_err err;

    (void)state;
    assert_true(cat_key_ref("data/20261126T000000.000Z-00000000/app.0000.tar.zst", own, ".tar.zst"));
    assert_true(cat_key_ref("data/20261120T000000.000Z-11111111/app.0003.tar.zst", NULL, ".tar.zst"));
    assert_false(cat_key_ref("data/20261120T000000.000Z-11111111/app.0003.tar.zst", own, ".tar.zst"));
    assert_false(cat_key_ref("data/20261120T000000.000Z-11111111/keys.json", NULL, ".tar.zst"));
    assert_false(cat_key_ref("catalog/p1.tar.zst", NULL, ".tar.zst"));
    assert_false(cat_key_ref("data/x/../../y.tar.zst", NULL, ".tar.zst"));
    assert_false(cat_key_ref("data/x/a/b.tar.zst", NULL, ".tar.zst"));
    assert_false(cat_key_ref("data//b.tar.zst", NULL, ".tar.zst"));
    assert_false(cat_key_ref("data/x/.tar.zst", NULL, ".tar.zst"));

    cat_component_add_part(c, "data/20261120T000000.000Z-11111111/app.0000.tar.zst", 1, sha, 1, 1);
    cat_manifest_set_format(m);
    assert_int_equal(json_integer_value(json_object_get(cat_manifest_json(m), "format")), CAT_FORMAT_REFS);
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_OK);
    cat_manifest_free(back);
    free(text);
    /* the same reference in a format 1 manifest is damage */
    json_object_set_new(cat_manifest_json(m), "format", json_integer(CAT_FORMAT));
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_EVERIFY);
    free(text);
    /* a component that needs format 3 (binary table data) raises the manifest to it, never lowers it */
    cat_component_require_format(c, CAT_FORMAT_BINCOPY);
    cat_component_require_format(c, CAT_FORMAT);
    cat_manifest_set_format(m);
    assert_int_equal(json_integer_value(json_object_get(cat_manifest_json(m), "format")), CAT_FORMAT_BINCOPY);
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_OK);
    cat_manifest_free(back);
    free(text);
    /* one after it is refused */
    json_object_set_new(cat_manifest_json(m), "format", json_integer(CAT_FORMAT_BINCOPY + 1));
    text = json_dumps(cat_manifest_json(m), 0);
    assert_int_equal(cat_manifest_parse(text, strlen(text), &back, &err), SNAP_EFAIL);
    free(text);
    cat_manifest_free(m);
}

static void retention(void **state)
{
    cat_manifest *list[5];
    bool doomed[5];
    char id[64];
    cat_retention keep2 = {.keep_last = 2}, within = {.keep_within = 3600};
    const char *team[] = {"team=a"};

    (void)state;
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "2026112%dT000000.000Z-0000000%d", i, i);
        list[i] = cat_manifest_new("x", id);
        cat_manifest_set_label(list[i], "team", i % 2 ? "b" : "a");
    }
    cat_retention_apply(list, 5, &keep2, NULL, 0, time(NULL), doomed);
    assert_true(doomed[0] && doomed[1] && doomed[2] && !doomed[3] && !doomed[4]);
    /* labels: only team=a (0, 2, 4) is subject to the policy */
    cat_retention_apply(list, 5, &keep2, team, 1, time(NULL), doomed);
    assert_true(doomed[0] && !doomed[1] && !doomed[2] && !doomed[3] && !doomed[4]);
    /* every manifest was created just now: keep-within keeps all */
    cat_retention_apply(list, 5, &within, NULL, 0, time(NULL), doomed);
    for (int i = 0; i < 5; i++)
        assert_false(doomed[i]);
    cat_retention_apply(list, 5, &within, NULL, 0, time(NULL) + 7200, doomed);
    for (int i = 0; i < 5; i++)
        assert_true(doomed[i]);
    for (int i = 0; i < 5; i++)
        cat_manifest_free(list[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names),
        cmocka_unit_test(ids_sort_by_time),
        cmocka_unit_test(manifest_roundtrip_and_validation),
        cmocka_unit_test(part_keys_and_references),
        cmocka_unit_test(retention),
    };
    return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
