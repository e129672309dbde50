/* fuzz_registry.c: what a registry and the Docker config send the registry client. The
 * first byte chooses: 0 response header lines (digest, content type, the WWW-Authenticate
 * challenge and its auth-params), 1 a token service's JSON answer, 2 a Docker config.json
 * (auths with base64 user:password, credHelpers, credsStore) read by reg_client_new. */
#include <stdio.h>
#include <unistd.h>

#include "fuzz.h"
#include "../../engines/registry.h"
#include "../../engines/registry_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[] = "/tmp/snap-fuzz-docker.XXXXXX";
    static bool made;
    snap_err err;

    if (size < 1)
        return 0;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0:
        reg_parse_headers_int(buf, len);
        break;
    case 1: {
        char *copy = fuzz_copy((const uint8_t *)buf, len), *value = NULL;
        long ttl;
        if (reg_parse_token_int(copy, len, &value, &ttl))
            free(value);
        free(copy);
        break;
    }
    default: {
        char path[64];
        FILE *f;
        reg_opts o = {0};
        reg_client *c = NULL;
        if (!made && mkdtemp(dir) == NULL)
            abort();
        made = true;
        snprintf(path, sizeof path, "%s/config.json", dir);
        if ((f = fopen(path, "w")) == NULL)
            abort();
        fwrite(buf, 1, len, f);
        fclose(f);
        o.docker_config = dir;
        if (reg_client_new(&o, NULL, &c, &err) == SNAP_OK)
            reg_client_free(c);
        break;
    }
    }
    return 0;
}
