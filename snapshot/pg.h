/* pg.h: the PostgreSQL capture driver (type = postgres). */
#ifndef SNAP_SNAPSHOT_PG_H
#define SNAP_SNAPSHOT_PG_H

#include "snapshot.h"

extern const snp_driver snp_postgres_driver;

#endif
