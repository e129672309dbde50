/* state.h: the state directory kept between runs, and the target locks kept in it. */
#ifndef SNAP_STATE_H
#define SNAP_STATE_H

#include <stdbool.h>

#include "cfg.h"
#include "errors.h"

/* [revert] state_dir, $SNAP_STATE_DIR, else /var/lib/snap for root and
 * $XDG_STATE_HOME/snap or ~/.local/state/snap otherwise; NULL when none can be found
 * (never a default under /tmp). Caller frees. */
char *state_dir(const cfg *c);

/* <state dir>/sub (the state directory itself when sub is NULL), created 0700; refused
 * when another user owns or could write the state directory or sub (SNAP_EUNREACH), or
 * when there is none (SNAP_EUSAGE). */
snap_rc state_subdir(const cfg *c, const char *sub, char **out, snap_err *err);

/*
 * The lock of a target key (a path, a database on a server) in <state dir>/locks, taken
 * without waiting: exclusive by a revert, shared by a snap that reads the target, so
 * that the two never overlap. Held until *fd is closed. SNAP_ECONFLICT when held the
 * other way.
 */
snap_rc state_lock(const cfg *c, const char *key, bool shared, int *fd, snap_err *err);

/* The name of this runner in journals and locks: [revert] host ($SNAP_HOST), else the
 * host name. Caller frees. */
char *state_host(const cfg *c);

#endif
