/*
 * test_s3.c: what the S3 driver decides before it talks to a server: store URLs, options,
 * credentials and their order, and that no secret reaches a message. The requests
 * themselves are tested against a real RGW in tests/e2e/s3.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../storage/storage_int.h"

#define SECRET "unit-test-secret-value-7c1d"

static cfg *conf;
static snap_ctx ctx;
static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_s3.XXXXXX");
    assert_non_null(mkdtemp(dir));
    conf = cfg_new();
    /* Port 1 on loopback refuses: every open fails fast after its options are read. */
    cfg_set(conf, "store", "endpoint", "http://127.0.0.1:1");
    cfg_set(conf, "store", "retries", "0");
    memset(&ctx, 0, sizeof ctx);
    ctx.verbosity = -1;
    ctx.cfg = conf;
    setenv("AWS_ACCESS_KEY_ID", "AKIDUNITTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_CA_BUNDLE");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    cfg_free(conf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static snap_rc open_store(const char *url, snap_err *err)
{
    void *drv = NULL;
    snap_rc rc;

    err_clear(err);
    rc = stg_s3_driver.open(url, false, &ctx, &drv, err);
    stg_s3_driver.free(drv);
    assert_null(strstr(err->msg, SECRET));
    assert_null(strstr(err->hint, SECRET));
    return rc;
}

static void test_bad_urls(void **state)
{
    snap_err err;

    (void)state;
    assert_int_equal(open_store("s3://", &err), SNAP_EUSAGE);
    assert_int_equal(open_store("s3://ab/prefix", &err), SNAP_EUSAGE);      /* too short */
    assert_int_equal(open_store("s3://bad*bucket/p", &err), SNAP_EUSAGE);
    assert_int_equal(open_store("s3://bucket/a/../b", &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "invalid store URL"));
}

/* A good URL gets past the options to the network, which refuses: unreachable. */
static void test_refused_is_unreachable(void **state)
{
    snap_err err;

    (void)state;
    assert_int_equal(open_store("s3://bucket/some/prefix/", &err), SNAP_EUNREACH);
    assert_non_null(strstr(err.msg, "http://127.0.0.1:1"));
    assert_non_null(strstr(err.hint, "endpoint"));
}

static void test_bad_options(void **state)
{
    snap_err err;

    (void)state;
    cfg_set(conf, "store", "part_size", "1M");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "part_size"));
    cfg_set(conf, "store", "part_size", "16M");

    cfg_set(conf, "store", "upload_concurrency", "0");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "upload_concurrency", "4");

    cfg_set(conf, "store", "sse", "rot13");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "sse", "AES256");
    cfg_set(conf, "store", "sse_kms_key_id", "key-1");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "aws:kms"));
    cfg_set(conf, "store", "sse", "aws:kms");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUNREACH);

    cfg_set(conf, "store", "tls_verify", "maybe");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "tls_verify", "false");

    cfg_set(conf, "store", "create_only_check", "hope");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "create_only_check", "auto");

    cfg_set(conf, "store", "endpoint", "ftp://example.com");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "endpoint", "http://127.0.0.1:1/path");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "endpoint", "http://127.0.0.1:");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    cfg_set(conf, "store", "endpoint", "http://127.0.0.1:1");

    cfg_set(conf, "store", "ca_file", "/nonexistent/ca.pem");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
}

static void test_half_set_keys(void **state)
{
    snap_err err;

    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUSAGE);
    assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUNREACH);
    assert_non_null(strstr(err.msg, "no AWS credentials found"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Credentials from the files: the profile's, from the credentials file before the config. */
static void test_credentials_files(void **state)
{
    char cred[128], config[128];
    snap_err err;

    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    snprintf(cred, sizeof cred, "%s/credentials", dir);
    snprintf(config, sizeof config, "%s/config", dir);
    write_file(cred, "[default]\naws_access_key_id = A\naws_secret_access_key = " SECRET "\n");
    write_file(config, "[profile other]\nregion = eu-central-1\naws_access_key_id = B\n"
                       "aws_secret_access_key = " SECRET "\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", config, 1);

    /* The default profile, from the credentials file: we reach the network. */
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUNREACH);
    /* A profile only the config file has. */
    setenv("AWS_PROFILE", "other", 1);
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUNREACH);
    /* A profile nobody has: the sources tried are named, the JSON code says what. */
    setenv("AWS_PROFILE", "nobody", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    assert_int_equal(open_store("s3://bucket/p", &err), SNAP_EUNREACH);
    assert_non_null(strstr(err.msg, "no AWS credentials found (profile nobody; tried the environment"));
    assert_non_null(strstr(err.msg, "instance metadata is off"));
    assert_string_equal(err_json_code(&err), "credentials");
    unsetenv("AWS_EC2_METADATA_DISABLED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_is_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_set_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials_files, setup, teardown),
    };
    return cmocka_run_group_tests_name("s3", tests, NULL, NULL);
}
