/*
 * s3_creds.c: where the S3 driver finds its credentials and region: the environment,
 * the shared credentials and config files (AWS_PROFILE), the config file.
 */
#include "s3_int.h"

/* ---------------------------------------------------------------- configuration */

typedef struct aws_profile {
    const char *want;  /* profile name */
    bool config_file;  /* sections are "profile NAME" (except "default") */
    char *access_key, *secret_key, *session_token, *region;
} aws_profile;

static int profile_cb(void *arg, const char *section, const char *name, const char *value)
{
    aws_profile *p = arg;
    const char *s = section;
    char **slot = NULL;

    if (name == NULL)
        return 1;
    if (p->config_file && strcmp(s, "default") != 0) {
        if (strncmp(s, "profile ", 8) != 0)
            return 1;
        s += 8;
        while (*s == ' ')
            s++;
    }
    if (strcmp(s, p->want) != 0)
        return 1;
    if (!strcmp(name, "aws_access_key_id"))
        slot = &p->access_key;
    else if (!strcmp(name, "aws_secret_access_key"))
        slot = &p->secret_key;
    else if (!strcmp(name, "aws_session_token"))
        slot = &p->session_token;
    else if (!strcmp(name, "region"))
        slot = &p->region;
    if (slot != NULL) {
        free(*slot);
        *slot = xstrdup(value);
    }
    return 1;
}

static void profile_free(aws_profile *p)
{
    if (p->secret_key)
        OPENSSL_cleanse(p->secret_key, strlen(p->secret_key));
    free(p->access_key);
    free(p->secret_key);
    free(p->session_token);
    free(p->region);
}

static char *home_file(const char *env, const char *rel)
{
    const char *v = getenv(env), *home = getenv("HOME");

    if (v != NULL && v[0] != '\0')
        return xstrdup(v);
    if (home == NULL || home[0] == '\0')
        return NULL;
    return xasprintf("%s/%s", home, rel);
}

const char *s3_env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

snap_rc s3_load_credentials(s3_drv *d, const cfg *c, snap_err *err)
{
    const char *profile = cfg_get(c, "store", "profile");
    aws_profile cred = {0}, conf = {0};
    char *cred_path = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    char *conf_path = home_file("AWS_CONFIG_FILE", ".aws/config");
    snap_rc rc = SNAP_OK;

    if (profile == NULL)
        profile = s3_env("AWS_PROFILE");
    if (profile == NULL)
        profile = "default";
    cred.want = conf.want = profile;
    conf.config_file = true;
    if (cred_path != NULL)
        ini_parse(cred_path, profile_cb, &cred); /* a missing file is no error */
    if (conf_path != NULL)
        ini_parse(conf_path, profile_cb, &conf);

    if (s3_env("AWS_ACCESS_KEY_ID") != NULL || s3_env("AWS_SECRET_ACCESS_KEY") != NULL) {
        if (s3_env("AWS_ACCESS_KEY_ID") == NULL || s3_env("AWS_SECRET_ACCESS_KEY") == NULL) {
            rc = err_set(err, SNAP_EUSAGE, 0, "%s: only one of AWS_ACCESS_KEY_ID and "
                                              "AWS_SECRET_ACCESS_KEY is set",
                         d->url);
            err_hint(err, "set both, or neither to use ~/.aws/credentials");
            goto out;
        }
        d->access_key = xstrdup(s3_env("AWS_ACCESS_KEY_ID"));
        d->secret_key = xstrdup(s3_env("AWS_SECRET_ACCESS_KEY"));
        if (s3_env("AWS_SESSION_TOKEN") != NULL)
            d->session_token = xstrdup(s3_env("AWS_SESSION_TOKEN"));
        d->cred_source = "environment";
    } else if (cred.access_key != NULL && cred.secret_key != NULL) {
        d->access_key = xstrdup(cred.access_key);
        d->secret_key = xstrdup(cred.secret_key);
        if (cred.session_token != NULL)
            d->session_token = xstrdup(cred.session_token);
        d->cred_source = "shared credentials file";
    } else if (conf.access_key != NULL && conf.secret_key != NULL) {
        d->access_key = xstrdup(conf.access_key);
        d->secret_key = xstrdup(conf.secret_key);
        if (conf.session_token != NULL)
            d->session_token = xstrdup(conf.session_token);
        d->cred_source = "config file";
    } else {
        rc = err_set(err, SNAP_EUNREACH, 0, "%s: no AWS credentials found (profile %s)", d->url,
                     profile);
        err_kind(err, "credentials");
        err_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the profile's "
                      "keys in ~/.aws/credentials (AWS_PROFILE picks the profile)");
        goto out;
    }

    /* Region: [store] region, then AWS_REGION, AWS_DEFAULT_REGION, the profile's. */
    if (cfg_get(c, "store", "region") != NULL)
        d->region = xstrdup(cfg_get(c, "store", "region"));
    else if (s3_env("AWS_REGION") != NULL)
        d->region = xstrdup(s3_env("AWS_REGION"));
    else if (s3_env("AWS_DEFAULT_REGION") != NULL)
        d->region = xstrdup(s3_env("AWS_DEFAULT_REGION"));
    else if (conf.region != NULL)
        d->region = xstrdup(conf.region);
    else
        d->region = xstrdup("us-east-1");
out:
    profile_free(&cred);
    profile_free(&conf);
    free(cred_path);
    free(conf_path);
    return rc;
}
