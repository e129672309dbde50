/* fuzz.h: what the libFuzzer harnesses of tests/fuzz share. Each fuzz_NAME.c defines
 * LLVMFuzzerTestOneInput and calls the project's own parser with the input; its seeds are
 * in tests/fuzz/corpus/NAME. Built and run by `make fuzz` (tests/fuzz/run). */
#ifndef SNAP_FUZZ_H
#define SNAP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a NUL-terminated string in a buffer of exactly size + 1 bytes (an embedded
 * NUL ends the string early, as it would for the parser's real callers). */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A copy of exactly size bytes, so that the sanitizer sees any read past the end. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);

    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    return s;
}

#endif
