/* registry_int.h: the registry client's parsers of what a server sends, as internal entry
 * points for its tests and fuzzers (tests/fuzz). */
#ifndef SNAP_REGISTRY_INT_H
#define SNAP_REGISTRY_INT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Hands every line of buf (each up to and with its '\n') to the response header callback,
 * the way curl does (a copy of exactly the line, not NUL-terminated), then reads the
 * realm, service and scope of the WWW-Authenticate challenge it kept. Frees everything.
 */
void reg_parse_headers_int(const char *buf, size_t len);

/* A token service's answer: the token (caller frees) and its lifetime; false when none. */
bool reg_parse_token_int(const char *body, size_t len, char **value, long *ttl);

#endif
