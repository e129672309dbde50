/*
 * s3_creds.c: where the S3 driver finds its region (the config file, the environment,
 * the profile of AWS_PROFILE) and, through s3_chain.c, its credentials.
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
    aws_profile conf = {0};
    char *conf_path = home_file("AWS_CONFIG_FILE", ".aws/config");
    snap_rc rc = SNAP_OK;

    if (profile == NULL)
        profile = s3_env("AWS_PROFILE");
    if (profile == NULL)
        profile = "default";
    conf.want = profile;
    conf.config_file = true;
    if (conf_path != NULL) /* a missing file is no error */
        ini_parse(conf_path, profile_cb, &conf);

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

    /* Then the credential chain (s3_chain.c), which signs STS calls in that region. */
    rc = s3_chain_new(d, c, profile, &d->chain, err);
    if (rc == SNAP_OK)
        d->cred_source = s3_chain_source(d->chain);

    profile_free(&conf);
    free(conf_path);
    return rc;
}
