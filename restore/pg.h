/* pg.h: the PostgreSQL revert driver (type = postgres). */
#ifndef SNAP_RESTORE_PG_H
#define SNAP_RESTORE_PG_H

#include "restore.h"

extern const rst_driver rst_postgres_driver;

#endif
