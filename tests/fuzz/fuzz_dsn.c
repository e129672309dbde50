/* fuzz_dsn.c: database DSNs from flags, config and manifests: PostgreSQL redaction
 * (pg_redact_dsn, libpq's parse) and the MySQL DSN parser and its redaction. */
#include "fuzz.h"
#include "../../engines/pg_client.h"
#include "../../engines/my_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_str(data, size);
    my_dsn *d = NULL;
    snap_err err;

    free(pg_redact_dsn(s));
    if (my_dsn_parse(s, &d, &err) == SNAP_OK) {
        (void)my_dsn_db(d);
        free(my_dsn_redacted(d));
        my_dsn_set_db(d, "other");
        free(my_dsn_redacted(d));
        my_dsn_free(d);
    }
    free(s);
    return 0;
}
