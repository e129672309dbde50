/*
 * order.c: which part a loading connection takes next (order.h).
 *
 * A connection first finishes the table it loads; then takes a table no other connection
 * loads, the one with the most bytes left, so that the big tables start early and their
 * indexes are built while the small ones load; only when every table left is being loaded
 * does it join one. The cost is a scan of the parts per choice: thousands of parts, a
 * choice per part.
 */
#include "order.h"

#include <stdlib.h>

#include "../common/util.h"

struct rst_order {
    size_t nparts, nworkers;
    size_t *table;       /* per part */
    uint64_t *bytes;     /* per part */
    bool *taken;         /* per part */
    uint64_t *left;      /* per table: bytes of its parts not taken */
    size_t *loading;     /* per worker: the table of the part it loads */
    size_t *last;        /* per worker: the table it took last */
};

rst_order *rst_order_new(size_t nparts, size_t ntables, size_t nworkers, size_t *table, uint64_t *bytes)
{
    rst_order *o = xcalloc(1, sizeof *o);

    o->nparts = nparts;
    o->nworkers = nworkers;
    o->table = table;
    o->bytes = bytes;
    o->taken = xcalloc(nparts + 1, sizeof *o->taken);
    o->left = xcalloc(ntables + 1, sizeof *o->left);
    o->loading = xmalloc((nworkers + 1) * sizeof *o->loading);
    o->last = xmalloc((nworkers + 1) * sizeof *o->last);
    for (size_t w = 0; w < nworkers; w++)
        o->loading[w] = o->last[w] = SIZE_MAX;
    for (size_t i = 0; table != NULL && i < nparts; i++)
        if (table[i] < ntables)
            o->left[table[i]] += bytes[i];
        else
            table[i] = SIZE_MAX;
    return o;
}

void rst_order_free(rst_order *o)
{
    if (o == NULL)
        return;
    free(o->table);
    free(o->bytes);
    free(o->taken);
    free(o->left);
    free(o->loading);
    free(o->last);
    free(o);
}

size_t rst_order_table(const rst_order *o, size_t part)
{
    return o->table != NULL && part < o->nparts ? o->table[part] : SIZE_MAX;
}

/* Whether a worker other than worker loads a part of table tb. */
static bool busy(const rst_order *o, size_t worker, size_t tb)
{
    for (size_t w = 0; tb != SIZE_MAX && w < o->nworkers; w++)
        if (w != worker && o->loading[w] == tb)
            return true;
    return false;
}

static size_t choose(const rst_order *o, size_t worker, bool own)
{
    size_t best = SIZE_MAX;
    bool best_free = false;
    uint64_t best_left = 0;

    for (size_t i = 0; i < o->nparts; i++) {
        size_t tb = o->table ? o->table[i] : SIZE_MAX;
        bool free_;
        uint64_t left;
        if (o->taken[i])
            continue;
        if (o->table == NULL)
            return i;
        if (own) {
            if (tb != SIZE_MAX && tb == o->last[worker])
                return i;
            continue;
        }
        free_ = !busy(o, worker, tb);
        left = tb == SIZE_MAX ? o->bytes[i] : o->left[tb];
        if (best == SIZE_MAX || (free_ && !best_free) || (free_ == best_free && left > best_left)) {
            best = i;
            best_free = free_;
            best_left = left;
        }
    }
    return best;
}

size_t rst_order_take(rst_order *o, size_t worker, bool own)
{
    size_t part = choose(o, worker, own), tb;

    if (part == SIZE_MAX)
        return part;
    tb = rst_order_table(o, part);
    o->taken[part] = true;
    o->loading[worker] = tb;
    if (tb != SIZE_MAX) {
        o->last[worker] = tb;
        o->left[tb] -= o->bytes[part];
    }
    return part;
}

void rst_order_done(rst_order *o, size_t worker)
{
    o->loading[worker] = SIZE_MAX;
}
