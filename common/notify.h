/* notify.h: webhooks: a JSON event POSTed to every [notify] url when a snap, revert,
 * check or recovery ends, through the one HTTP layer (http.h). */
#ifndef SNAP_NOTIFY_H
#define SNAP_NOTIFY_H

#include <jansson.h>

#include "ctx.h"

/*
 * POSTs event (compact JSON, Content-Type application/json) to each [notify] url in turn,
 * with TLS verified ([notify] ca_file adds CAs), retrying a refused connection, a timeout
 * or a 429/5xx answer with backoff, each URL within [notify] timeout in all. With
 * [notify] secret_file, the header X-Snap-Signature: sha256=<hex HMAC-SHA256 of the body
 * under the file's bytes> lets a receiver trust it. Every failure is a warning naming the
 * URL (never its credentials); nothing is returned: a notification never changes a result.
 */
void notify_send(const snap_ctx *ctx, const json_t *event);

#endif
