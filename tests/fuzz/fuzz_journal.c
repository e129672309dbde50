/* fuzz_journal.c: a revert journal as `revert --recover` reads it (rst_journal_parse_int):
 * the document and the targets it names; no driver runs. */
#include "fuzz.h"
#include "../../restore/restore_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    snap_err err;

    (void)rst_journal_parse_int((const char *)data, size, &err);
    return 0;
}
