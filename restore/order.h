/* order.h: which part a loading connection takes next, from the table each part holds (a
 * database component's info.part_tables): each connection stays on a table of its own, the
 * biggest left first, and connections share a table only when no other is left. Two
 * connections that fill one table wait on each other (PostgreSQL's relation extension
 * lock, InnoDB's latches on the same index pages). Internal to restore/; not thread-safe:
 * the engine calls it under its own lock. */
#ifndef SNAP_RESTORE_ORDER_H
#define SNAP_RESTORE_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rst_order rst_order;

/*
 * table[i]: the table of part i, SIZE_MAX for none (the schema's part, large objects) or
 * unknown; bytes[i]: its raw bytes, the work of loading it. The order takes both arrays.
 * table NULL: a manifest that does not say; the parts go in their order.
 */
rst_order *rst_order_new(size_t nparts, size_t ntables, size_t nworkers, size_t *table, uint64_t *bytes);
void rst_order_free(rst_order *o);

/* The part worker loads next, marked taken; SIZE_MAX for none. own: only a part of the
 * table worker took last (with table NULL: any). */
size_t rst_order_take(rst_order *o, size_t worker, bool own);
/* worker has loaded the part it took. */
void rst_order_done(rst_order *o, size_t worker);
/* The table of part (SIZE_MAX: none or unknown). */
size_t rst_order_table(const rst_order *o, size_t part);

#endif
