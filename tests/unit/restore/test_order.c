/*
 * Unit tests of the order of the loads (restore/order.c): a connection stays on its table,
 * a free one takes the biggest table nobody loads, a table is shared only when nothing
 * else is left, and without the manifest's list the parts go in their order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../restore/order.h"

/* parts of tables: 0 the schema (none), 1-3 table 0 (the biggest), 4-5 table 1, 6 table 2 */
static rst_order *sample(size_t workers)
{
    static const size_t tables[] = {SIZE_MAX, 0, 0, 0, 1, 1, 2};
    static const uint64_t sizes[] = {10, 100, 100, 100, 120, 120, 5};
    size_t *t = xmalloc(sizeof tables);
    uint64_t *b = xmalloc(sizeof sizes);

    memcpy(t, tables, sizeof tables);
    memcpy(b, sizes, sizeof sizes);
    return rst_order_new(7, 3, workers, t, b);
}

static void test_each_connection_takes_its_own_table(void **state)
{
    rst_order *o = sample(2);

    (void)state;
    /* nothing of its own yet: the biggest table, then the biggest nobody loads */
    assert_int_equal(rst_order_take(o, 0, true), SIZE_MAX);
    assert_int_equal(rst_order_take(o, 0, false), 1);
    assert_int_equal(rst_order_take(o, 1, false), 4);
    /* each goes on with its own table */
    rst_order_done(o, 0);
    assert_int_equal(rst_order_take(o, 0, true), 2);
    rst_order_done(o, 1);
    assert_int_equal(rst_order_take(o, 1, true), 5);
    rst_order_done(o, 1);
    /* table 1 is taken whole: worker 1 has nothing of its own left, and takes the parts
     * nobody loads, the schema's (10 bytes) and table 2's (5), before it joins table 0 */
    assert_int_equal(rst_order_take(o, 1, true), SIZE_MAX);
    assert_int_equal(rst_order_take(o, 1, false), 0);
    rst_order_done(o, 1);
    assert_int_equal(rst_order_take(o, 1, false), 6);
    rst_order_done(o, 1);
    assert_int_equal(rst_order_take(o, 1, false), 3); /* only table 0 is left: shared */
    assert_int_equal(rst_order_take(o, 0, false), SIZE_MAX);
    assert_int_equal(rst_order_table(o, 3), 0);
    assert_int_equal(rst_order_table(o, 0), SIZE_MAX);
    rst_order_free(o);
}

static void test_without_a_list_the_parts_go_in_order(void **state)
{
    rst_order *o = rst_order_new(3, 2, 2, NULL, NULL);

    (void)state;
    assert_int_equal(rst_order_take(o, 0, true), 0);
    assert_int_equal(rst_order_take(o, 1, true), 1);
    assert_int_equal(rst_order_take(o, 0, false), 2);
    assert_int_equal(rst_order_take(o, 1, false), SIZE_MAX);
    assert_int_equal(rst_order_table(o, 1), SIZE_MAX);
    rst_order_free(o);
}

static void test_a_table_out_of_range_is_nobodys(void **state)
{
    size_t *t = xmalloc(2 * sizeof *t);
    uint64_t *b = xmalloc(2 * sizeof *b);
    rst_order *o;

    (void)state;
    t[0] = 99;
    t[1] = 1;
    b[0] = 1;
    b[1] = 2;
    o = rst_order_new(2, 2, 1, t, b);
    assert_int_equal(rst_order_table(o, 0), SIZE_MAX);
    assert_int_equal(rst_order_take(o, 0, false), 1);
    assert_int_equal(rst_order_take(o, 0, false), 0);
    rst_order_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_connection_takes_its_own_table),
        cmocka_unit_test(test_without_a_list_the_parts_go_in_order),
        cmocka_unit_test(test_a_table_out_of_range_is_nobodys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
