/* Image references: normalisation, the YAML finder and the in-place rewrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../engines/image_ref.h"
#include "../../../common/util.h"

#define D1 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void check_ref(const char *in, const char *canonical, const char *api_host,
                      const char *path, const char *tag, const char *digest)
{
    img_ref *r = NULL;
    snap_err err = {0};

    assert_int_equal(img_ref_parse(in, &r, &err), SNAP_OK);
    assert_string_equal(img_ref_canonical(r), canonical);
    assert_string_equal(img_ref_api_host(r), api_host);
    assert_string_equal(img_ref_path(r), path);
    if (tag == NULL)
        assert_null(img_ref_tag(r));
    else
        assert_string_equal(img_ref_tag(r), tag);
    if (digest == NULL)
        assert_null(img_ref_digest(r));
    else
        assert_string_equal(img_ref_digest(r), digest);
    assert_string_equal(img_ref_written(r), in);
    img_ref_free(r);
}

static void test_ref_normalise(void **state)
{
    (void)state;
    check_ref("nginx", "docker.io/library/nginx:latest", "registry-1.docker.io",
              "library/nginx", "latest", NULL);
    check_ref("nginx:1.25", "docker.io/library/nginx:1.25", "registry-1.docker.io",
              "library/nginx", "1.25", NULL);
    check_ref("bitnami/redis:7", "docker.io/bitnami/redis:7", "registry-1.docker.io",
              "bitnami/redis", "7", NULL);
    check_ref("index.docker.io/library/nginx", "docker.io/library/nginx:latest",
              "registry-1.docker.io", "library/nginx", "latest", NULL);
    check_ref("docker.io/nginx", "docker.io/library/nginx:latest", "registry-1.docker.io",
              "library/nginx", "latest", NULL);
    check_ref("ghcr.io/org/team/app:v42", "ghcr.io/org/team/app:v42", "ghcr.io",
              "org/team/app", "v42", NULL);
    check_ref("localhost/app", "localhost/app:latest", "localhost", "app", "latest", NULL);
    check_ref("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1", "127.0.0.1:5000", "app", "v1",
              NULL);
    check_ref("localhost:5000/a/b", "localhost:5000/a/b:latest", "localhost:5000", "a/b",
              "latest", NULL);
    check_ref("nginx@" D1, "docker.io/library/nginx@" D1, "registry-1.docker.io",
              "library/nginx", NULL, D1);
    check_ref("reg.example:443/app:v1@" D1, "reg.example:443/app:v1@" D1, "reg.example:443",
              "app", "v1", D1);
    check_ref("[::1]:5000/app:v1", "[::1]:5000/app:v1", "[::1]:5000", "app", "v1", NULL);
    check_ref("a__b/c.d-e--f_g", "docker.io/a__b/c.d-e--f_g:latest", "registry-1.docker.io",
              "a__b/c.d-e--f_g", "latest", NULL);
}

static void check_bad(const char *in, const char *why)
{
    img_ref *r = (img_ref *)1;
    snap_err err = {0};

    assert_int_equal(img_ref_parse(in, &r, &err), SNAP_EUSAGE);
    assert_null(r);
    assert_non_null(strstr(err.msg, in));
    assert_non_null(strstr(err.msg, why));
}

static void test_ref_invalid(void **state)
{
    (void)state;
    check_bad("", "empty");
    check_bad("Nginx", "lowercase");
    check_bad("nginx:", "tag");
    check_bad("nginx:-x", "tag");
    check_bad("nginx@sha256:abc", "digest");
    check_bad("nginx@md5:0123456789abcdef0123456789abcdef", "digest");
    check_bad("a//b", "lowercase");
    check_bad("a b", "white space");
    check_bad("app:${TAG}", "tag");
    check_bad("-bad.host:5000/x", "registry host");
    check_bad("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ambiguous");
}

static void test_pinned_text(void **state)
{
    char *p;

    (void)state;
    p = img_pinned_text("nginx:1.25", D1);
    assert_string_equal(p, "nginx:1.25@" D1);
    free(p);
    p = img_pinned_text("nginx", D1);
    assert_string_equal(p, "nginx@" D1);
    free(p);
    p = img_pinned_text("nginx@" D2, D1);
    assert_string_equal(p, "nginx@" D2);
    free(p);
    assert_true(img_digest_valid(D1));
    assert_false(img_digest_valid("sha256:ABC"));
}

static const char k8s[] =
    "# the web tier\n"
    "apiVersion: apps/v1\n"
    "kind: Deployment\n"
    "metadata: {name: web}\n"
    "spec:\n"
    "  template:\n"
    "    spec:\n"
    "      initContainers:\n"
    "        - name: migrate\n"
    "          image: 'reg.local:5000/app:v42'   # same image, runs first\n"
    "      containers:\n"
    "        - name: app\n"
    "          image: \"reg.local:5000/app:v42\"\n"
    "        - name: proxy\n"
    "          image: nginx\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: ConfigMap\n"
    "metadata: {name: cfg}\n"
    "data: {image: notme}\n"
    "---\n"
    "# empty\n"
    "---\n"
    "apiVersion: batch/v1\n"
    "kind: CronJob\n"
    "metadata:\n"
    "  name: nightly # é ü\n"
    "spec:\n"
    "  jobTemplate:\n"
    "    spec:\n"
    "      template:\n"
    "        spec:\n"
    "          containers: [{name: job, image: busybox:1.36}]\n"
    "          ephemeralContainers:\n"
    "          - {name: dbg, image: \"busybox@" D2 "\"}\n"
    "---\n"
    "kind: List\n"
    "items:\n"
    "- kind: Pod\n"
    "  metadata: {name: p}\n"
    "  spec: {containers: [{name: c, image: redis}]}\n";

static void test_scan_k8s(void **state)
{
    img_scan *s = img_scan_new();
    snap_err err = {0};
    const img_found *f;

    (void)state;
    assert_int_equal(img_scan_buffer(s, "deploy/web.yaml", k8s, strlen(k8s), &err), SNAP_OK);
    assert_int_equal(img_scan_count(s), 6);
    f = img_scan_get(s, 0);
    assert_string_equal(f->value, "reg.local:5000/app:v42");
    assert_string_equal(f->where, "Deployment/web initContainers migrate");
    assert_int_equal(f->line, 10);
    assert_int_equal(f->column, 18);
    assert_memory_equal(k8s + f->off, "'reg.local:5000/app:v42'", f->len);
    f = img_scan_get(s, 1);
    assert_string_equal(f->where, "Deployment/web containers app");
    assert_memory_equal(k8s + f->off, "\"reg.local:5000/app:v42\"", f->len);
    f = img_scan_get(s, 2);
    assert_string_equal(f->value, "nginx");
    assert_int_equal(f->line, 15);
    f = img_scan_get(s, 3);
    assert_string_equal(f->value, "busybox:1.36");
    assert_string_equal(f->where, "CronJob/nightly containers job");
    /* Offsets are bytes even after multi-byte characters. */
    assert_memory_equal(k8s + f->off, "busybox:1.36", f->len);
    f = img_scan_get(s, 4);
    assert_string_equal(f->where, "CronJob/nightly ephemeralContainers dbg");
    f = img_scan_get(s, 5);
    assert_string_equal(f->value, "redis");
    assert_string_equal(f->where, "Pod/p containers c");
    img_scan_free(s);
}

static void test_scan_compose(void **state)
{
    static const char compose[] =
        "x-base: &base\n"
        "  image: postgres:16\n"
        "services:\n"
        "  db:\n"
        "    <<: *base\n"
        "  web:\n"
        "    image: ghcr.io/org/web:2\n"
        "    build: .\n"
        "  worker:\n"
        "    build: ./worker\n";
    img_scan *s = img_scan_new();
    snap_err err = {0};

    (void)state;
    assert_int_equal(img_scan_buffer(s, "compose.yaml", compose, strlen(compose), &err), SNAP_OK);
    assert_int_equal(img_scan_count(s), 2);
    assert_string_equal(img_scan_get(s, 0)->value, "postgres:16");
    assert_string_equal(img_scan_get(s, 0)->where, "service db");
    assert_int_equal(img_scan_get(s, 0)->line, 2);
    assert_string_equal(img_scan_get(s, 1)->value, "ghcr.io/org/web:2");
    img_scan_free(s);
}

static void test_scan_malformed(void **state)
{
    static const char bad[] = "kind: Pod\nspec:\n  containers:\n  - image: [a\n";
    static const char tab[] = "kind: Pod\nspec:\n\tcontainers: []\n";
    static const char notstr[] = "kind: Pod\nspec:\n  containers:\n  - image: {a: b}\n";
    img_scan *s = img_scan_new();
    snap_err err = {0};

    (void)state;
    assert_int_equal(img_scan_buffer(s, "d/pod.yaml", bad, strlen(bad), &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "d/pod.yaml:5:1: invalid YAML"));
    assert_int_equal(img_scan_buffer(s, "t.yaml", tab, strlen(tab), &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "t.yaml:3:"));
    assert_int_equal(img_scan_buffer(s, "n.yaml", notstr, strlen(notstr), &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "n.yaml:4:12: the image of Pod/? containers[0] is not a string"));
    assert_int_equal(img_scan_count(s), 0);
    img_scan_free(s);
}

static void rewrite(const char *in, const char *const *values, const char *want)
{
    img_scan *s = img_scan_new();
    snap_err err = {0};
    char *out = NULL;
    size_t outlen = 0;

    assert_int_equal(img_scan_buffer(s, "f.yaml", in, strlen(in), &err), SNAP_OK);
    if (img_rewrite(s, in, strlen(in), values, &out, &outlen, &err) != SNAP_OK)
        fail_msg("%s", err.msg);
    assert_string_equal(out, want);
    assert_int_equal(outlen, strlen(want));
    free(out);
    img_scan_free(s);
}

static void test_rewrite_keeps_everything_else(void **state)
{
    static const char in[] =
        "\xef\xbb\xbf# caf\xc3\xa9\r\n"
        "kind: Pod   # keep\r\n"
        "spec:\r\n"
        "  containers:\r\n"
        "  - image: nginx   # plain\r\n"
        "  - image:  'app:v1'\r\n"
        "  - image: \"x/y\"\r\n"
        "  - {name: a, image: redis}\r\n"
        "  - image: \"b\\x6fx\"\r\n"
        "  - image: busy\r\n"
        "      box\r\n";
    static const char want[] =
        "\xef\xbb\xbf# caf\xc3\xa9\r\n"
        "kind: Pod   # keep\r\n"
        "spec:\r\n"
        "  containers:\r\n"
        "  - image: nginx@" D1 "   # plain\r\n"
        "  - image:  'app:v1@" D2 "'\r\n"
        "  - image: \"x/y\"\r\n"
        "  - {name: a, image: redis@" D1 "}\r\n"
        "  - image: \"box@" D2 "\"\r\n"
        "  - image: \"busybox@" D1 "\"\r\n";
    const char *values[] = {"nginx@" D1, "app:v1@" D2, NULL, "redis@" D1, "box@" D2,
                            "busybox@" D1};

    (void)state;
    rewrite(in, values, want);
}

static void test_rewrite_alias_once(void **state)
{
    static const char in[] = "x: &i !!str app:v1\nservices:\n  a: {image: *i}\n  b:\n    image: *i\n";
    static const char want[] = "x: &i !!str app:v1@" D1 "\nservices:\n  a: {image: *i}\n  b:\n    image: *i\n";
    const char *values[] = {"app:v1@" D1, "app:v1@" D1};
    const char *clash[] = {"app:v1@" D1, "app:v1@" D2};
    img_scan *s = img_scan_new();
    snap_err err = {0};
    char *out;
    size_t n;

    (void)state;
    rewrite(in, values, want);
    err_clear(&err);
    assert_int_equal(img_scan_buffer(s, "f.yaml", in, strlen(in), &err), SNAP_OK);
    assert_int_equal(img_rewrite(s, in, strlen(in), clash, &out, &n, &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "two values"));
    img_scan_free(s);
}

static void test_rewrite_block_scalar_refused(void **state)
{
    static const char in[] = "kind: Pod\nspec:\n  containers:\n  - image: |\n      nginx\n";
    const char *values[] = {"nginx@" D1};
    img_scan *s = img_scan_new();
    snap_err err = {0};
    char *out = NULL;
    size_t n;

    (void)state;
    assert_int_equal(img_scan_buffer(s, "b.yaml", in, strlen(in), &err), SNAP_OK);
    assert_int_equal(img_rewrite(s, in, strlen(in), values, &out, &n, &err), SNAP_EFAIL);
    assert_null(out);
    assert_non_null(strstr(err.msg, "b.yaml:4: cannot rewrite the image of Pod/? containers[0]"));
    img_scan_free(s);
}

/* A kilobyte of nested merge keys that name no image: each mapping is looked into once. */
static void test_scan_merge_bomb(void **state)
{
    char in[4096];
    size_t n = 0;
    img_scan *s = img_scan_new();
    snap_err err = {0};

    (void)state;
    n += (size_t)snprintf(in + n, sizeof in - n, "x0: &a0 {name: base}\n");
    for (int i = 1; i < 10; i++) {
        n += (size_t)snprintf(in + n, sizeof in - n, "x%d: &a%d {<<: [", i, i);
        for (int k = 0; k < 9; k++)
            n += (size_t)snprintf(in + n, sizeof in - n, "%s*a%d", k ? ", " : "", i - 1);
        n += (size_t)snprintf(in + n, sizeof in - n, "]}\n");
    }
    n += (size_t)snprintf(in + n, sizeof in - n,
                          "services:\n  web: {<<: [*a9, *a9, *a9, *a9]}\n  db: {image: 'postgres:16'}\n");
    assert_int_equal(img_scan_buffer(s, "compose.yaml", in, n, &err), SNAP_OK);
    assert_int_equal(img_scan_count(s), 1);
    assert_string_equal(img_scan_get(s, 0)->value, "postgres:16");
    /* followed naively, 4 x 9^9 merges; each mapping once, a few steps per node */
    assert_true(img_scan_steps(s) < 1000);
    img_scan_free(s);
}

/* Lists of aliased lists: millions of pods from a kilobyte end with an error, not a hang. */
static void test_scan_list_bomb(void **state)
{
    char in[4096];
    size_t n = 0;
    img_scan *s = img_scan_new();
    snap_err err = {0};

    (void)state;
    n += (size_t)snprintf(in + n, sizeof in - n,
                          "p: &p {kind: Pod, spec: {containers: [{name: c, image: 'x:1'}]}}\n");
    for (int i = 1; i < 4; i++) {
        n += (size_t)snprintf(in + n, sizeof in - n, "l%d: &l%d {kind: List, items: [", i, i);
        char prev[8];
        snprintf(prev, sizeof prev, i == 1 ? "p" : "l%d", i - 1);
        for (int k = 0; k < 40; k++)
            n += (size_t)snprintf(in + n, sizeof in - n, "%s*%s", k ? ", " : "", prev);
        n += (size_t)snprintf(in + n, sizeof in - n, "]}\n");
    }
    n += (size_t)snprintf(in + n, sizeof in - n, "kind: List\nitems: [");
    for (int k = 0; k < 40; k++)
        n += (size_t)snprintf(in + n, sizeof in - n, "%s*l3", k ? ", " : "");
    n += (size_t)snprintf(in + n, sizeof in - n, "]\n");
    assert_int_equal(img_scan_buffer(s, "list.yaml", in, n, &err), SNAP_EFAIL);
    assert_non_null(strstr(err.msg, "list.yaml: too much work following YAML aliases and merge keys"));
    assert_int_equal(img_scan_count(s), 0);
    /* stopped by the budget (8 Mi steps + 4 per byte), not by the end of the list */
    assert_true(img_scan_steps(s) == ((uint64_t)8 << 20) + 4 * n + 1);
    img_scan_free(s);
}

/* An interruption stops a scan. */
static void test_scan_interrupted(void **state)
{
    static const char in[] = "kind: Pod\nspec:\n  containers:\n  - image: nginx\n";
    volatile sig_atomic_t stop = 1;
    snap_ctx ctx = {.interrupted = &stop};
    img_scan *s = img_scan_new();
    snap_err err = {0};

    (void)state;
    img_scan_set_ctx(s, &ctx);
    assert_int_equal(img_scan_buffer(s, "p.yaml", in, strlen(in), &err), SNAP_EINTR);
    img_scan_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_normalise),
        cmocka_unit_test(test_ref_invalid),
        cmocka_unit_test(test_pinned_text),
        cmocka_unit_test(test_scan_k8s),
        cmocka_unit_test(test_scan_compose),
        cmocka_unit_test(test_scan_malformed),
        cmocka_unit_test(test_rewrite_keeps_everything_else),
        cmocka_unit_test(test_rewrite_alias_once),
        cmocka_unit_test(test_rewrite_block_scalar_refused),
        cmocka_unit_test(test_scan_merge_bomb),
        cmocka_unit_test(test_scan_list_bomb),
        cmocka_unit_test(test_scan_interrupted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
