/*
 * test_sigv4.c: the signer against AWS's published examples (the S3 API reference's
 * "Signature Calculations for the Authorization Header" examples and the general SigV4
 * test suite), so a signing bug fails here, not against a server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../storage/sigv4.h"

#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_ACCESS "AKIAIOSFODNN7EXAMPLE"
#define HOST "examplebucket.s3.amazonaws.com"

static void hexkey(const unsigned char *k, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", k[i]);
}

/* GET Object, first 10 bytes: the header order given is not the signing order. */
static void test_get_object_range(void **state)
{
    (void)state;
    sigv4_header h[] = {
        {"x-amz-date", "20130524T000000Z"},
        {"Range", "bytes=0-9"},
        {"Host", HOST},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
    };
    sigv4_request r = {"GET", "/test.txt", NULL, h, 4, SIGV4_EMPTY_SHA256,
                       "20130524T000000Z", "us-east-1", "s3"};
    char *creq = sigv4_canonical_request(&r);
    char *sts = sigv4_string_to_sign(&r, creq);
    char *auth = sigv4_authorization(&r, S3_ACCESS, S3_SECRET);

    assert_string_equal(creq, "GET\n/test.txt\n\nhost:" HOST "\nrange:bytes=0-9\n"
                              "x-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\n"
                              "x-amz-date:20130524T000000Z\n\n"
                              "host;range;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256);
    assert_string_equal(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/"
                             "aws4_request\n"
                             "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=" S3_ACCESS
                              "/20130524/us-east-1/s3/aws4_request,"
                              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(creq);
    free(sts);
    free(auth);
}

/* PUT Object "test$file.text": a key that needs encoding, a payload hash, a Date header. */
static void test_put_object(void **state)
{
    (void)state;
    const char *body = "Welcome to Amazon S3.";
    char body_hash[65], sig[65];
    char *path = sigv4_uri_encode("/test$file.text", true);

    sigv4_sha256_hex(body, strlen(body), body_hash);
    assert_string_equal(body_hash,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    assert_string_equal(path, "/test%24file.text");

    sigv4_header h[] = {
        {"Host", HOST},
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", body_hash},
    };
    sigv4_request r = {"PUT", path, NULL, h, 5, body_hash, "20130524T000000Z", "us-east-1", "s3"};

    sigv4_signature(&r, S3_SECRET, sig);
    assert_string_equal(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    free(path);
}

/* GET Bucket lifecycle: a bare sub-resource in the query is signed as "lifecycle=". */
static void test_get_bucket_lifecycle(void **state)
{
    (void)state;
    sigv4_param q[] = {{"lifecycle", NULL}};
    char *query = sigv4_query(q, 1);
    char sig[65];
    sigv4_header h[] = {
        {"Host", HOST},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
    };
    sigv4_request r = {"GET", "/", query, h, 3, SIGV4_EMPTY_SHA256,
                       "20130524T000000Z", "us-east-1", "s3"};

    assert_string_equal(query, "lifecycle=");
    sigv4_signature(&r, S3_SECRET, sig);
    assert_string_equal(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(query);
}

/* List objects: parameters given out of order are sorted by name. */
static void test_list_objects(void **state)
{
    (void)state;
    sigv4_param q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    char *query = sigv4_query(q, 2);
    char sig[65];
    sigv4_header h[] = {
        {"Host", HOST},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
    };
    sigv4_request r = {"GET", "/", query, h, 3, SIGV4_EMPTY_SHA256,
                       "20130524T000000Z", "us-east-1", "s3"};

    assert_string_equal(query, "max-keys=2&prefix=J");
    sigv4_signature(&r, S3_SECRET, sig);
    assert_string_equal(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(query);
}

/* The derived signing key of the general documentation's example. */
static void test_signing_key(void **state)
{
    (void)state;
    unsigned char k[32];
    char h[65];

    sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam",
                      k);
    hexkey(k, h);
    assert_string_equal(h, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

/* The SigV4 test suite's get-vanilla-query-order-key-case. */
static void test_suite_query_order(void **state)
{
    (void)state;
    sigv4_param q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    char *query = sigv4_query(q, 2);
    char sig[65];
    sigv4_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    sigv4_request r = {"GET", "/", query, h, 2, SIGV4_EMPTY_SHA256,
                       "20150830T123600Z", "us-east-1", "service"};

    assert_string_equal(query, "Param1=value1&Param2=value2");
    sigv4_signature(&r, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sig);
    assert_string_equal(sig, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    free(query);
}

/* Values are trimmed and inner runs of blanks fold to one (get-header-value-trim). */
static void test_header_value_trim(void **state)
{
    (void)state;
    sigv4_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"My-Header1", " value1  "},
        {"My-Header2", "\"a   b   c\""},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    sigv4_request r = {"GET", "/", NULL, h, 4, SIGV4_EMPTY_SHA256,
                       "20150830T123600Z", "us-east-1", "service"};
    char *creq = sigv4_canonical_request(&r);

    assert_non_null(strstr(creq, "\nmy-header1:value1\nmy-header2:\"a b c\"\n"));
    free(creq);
}

static void test_uri_encode(void **state)
{
    (void)state;
    char *a = sigv4_uri_encode("data/2026 11/a+b=c~d_e-f.g", true);
    char *b = sigv4_uri_encode("data/x", false);
    char *c = sigv4_uri_encode("caf\xc3\xa9*", true);
    char *d = sigv4_uri_encode("", true);

    assert_string_equal(a, "data/2026%2011/a%2Bb%3Dc~d_e-f.g");
    assert_string_equal(b, "data%2Fx");
    assert_string_equal(c, "caf%C3%A9%2A");
    assert_string_equal(d, "");
    free(a);
    free(b);
    free(c);
    free(d);
}

/* Continuation tokens carry '/', '+' and '=': each must be encoded in the query. */
static void test_query_encoding(void **state)
{
    (void)state;
    sigv4_param q[] = {{"list-type", "2"}, {"continuation-token", "1a/b+c=="},
                       {"prefix", "p/catalog/"}, {"delete", NULL}};
    char *query = sigv4_query(q, 4);

    assert_string_equal(query, "continuation-token=1a%2Fb%2Bc%3D%3D&delete=&list-type=2&"
                               "prefix=p%2Fcatalog%2F");
    free(query);
}

static void test_amz_date(void **state)
{
    (void)state;
    char d[17];

    sigv4_amz_date((time_t)1369353600, d);
    assert_string_equal(d, "20130524T000000Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object_range),
        cmocka_unit_test(test_put_object),
        cmocka_unit_test(test_get_bucket_lifecycle),
        cmocka_unit_test(test_list_objects),
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_suite_query_order),
        cmocka_unit_test(test_header_value_trim),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_query_encoding),
        cmocka_unit_test(test_amz_date),
    };
    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}
