/*
 * Unit tests of the post-data split (restore/pg_post.c): which entries of pg_restore's SQL
 * are built as their tables load, with the SET state they need, and that anything that
 * does not pair up with the TOC leaves everything to the final pg_restore.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/util.h"
#include "../../../restore/pg_post.h"

#define HEAD                                                                                                       \
    "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"                                        \
    "SELECT pg_catalog.set_config('search_path', '', false);\n\nSET default_tablespace = '';\n\n"

#define ENTRY(name, type, schema, body) "--\n-- Name: " name "; Type: " type "; Schema: " schema "; Owner: o\n--\n\n" body "\n\n\n"

static const char *const SQL =
    HEAD ENTRY("a a_pkey", "CONSTRAINT", "public", "ALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_pkey PRIMARY KEY (id);")
        ENTRY("p p_pkey", "CONSTRAINT", "public", "ALTER TABLE ONLY public.p\n    ADD CONSTRAINT p_pkey PRIMARY KEY (id, k);")
            "SET default_tablespace = fast;\n\n" ENTRY("b_expr", "INDEX", "we ird",
                                                      "CREATE INDEX b_expr ON \"we ird\".\"T \"\"b\" USING btree (lower(x));")
                "SET default_tablespace = '';\n\n" ENTRY("p_k", "INDEX", "public", "CREATE INDEX p_k ON ONLY public.p USING btree (k);")
                    ENTRY("a_v", "INDEX", "public", "CREATE UNIQUE INDEX a_v ON public.a USING btree (v);")
                        ENTRY("mv_i", "INDEX", "public", "CREATE INDEX mv_i ON public.mv USING btree (id);")
                            ENTRY("a t1", "TRIGGER", "public",
                                  "CREATE TRIGGER t1 BEFORE INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION public.trg();")
                                ENTRY("T \"b T b_a_fkey", "FK CONSTRAINT", "we ird",
                                      "ALTER TABLE ONLY \"we ird\".\"T \"\"b\"\n    ADD CONSTRAINT x FOREIGN KEY (a) REFERENCES public.a(id);")
                                    "--\n-- PostgreSQL database dump complete\n--\n\n";

static const char *const TOC = ";\n; Archive created at 2026-11-30\n;\n"
                               "3226; 2606 16394 CONSTRAINT public a a_pkey o\n"
                               "3235; 2606 16415 CONSTRAINT public p p_pkey o\n"
                               "3231; 1259 16409 INDEX we ird b_expr o\n"
                               "3233; 1259 16426 INDEX public p_k o\n"
                               "3236; 1259 16427 INDEX public a_v o\n"
                               "3242; 1259 16438 INDEX public mv_i o\n"
                               "3249; 2620 16430 TRIGGER public a t1 o\n"
                               "3248; 2606 16404 FK CONSTRAINT we ird T \"b T b_a_fkey o\n";

/* the loaded tables: public.a (0), we ird.T "b (1); p is partitioned, mv a view */
static size_t find(const char *schema, const char *name, void *arg)
{
    (void)arg;
    if (strcmp(schema, "public") == 0 && strcmp(name, "a") == 0)
        return 0;
    if (strcmp(schema, "we ird") == 0 && strcmp(name, "T \"b") == 0)
        return 1;
    return SIZE_MAX;
}

static void test_indexes_and_constraints_of_loaded_tables_go_early(void **state)
{
    pgp_plan p;

    (void)state;
    pgp_plan_build(SQL, TOC, find, NULL, &p);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.e[0].table, 0);
    assert_non_null(strstr(p.e[0].sql, "ADD CONSTRAINT a_pkey"));
    assert_int_equal(p.e[1].table, 1);
    /* the tablespace in force travels with the entry, whichever connection builds it */
    assert_non_null(strstr(p.e[1].sql, "SET default_tablespace = fast;"));
    assert_non_null(strstr(p.e[1].sql, "CREATE INDEX b_expr"));
    assert_int_equal(p.e[2].table, 0);
    assert_non_null(strstr(p.e[2].sql, "SET default_tablespace = '';"));
    assert_null(strstr(p.e[2].sql, "a_pkey"));
    assert_non_null(strstr(p.prologue, "set_config('search_path', '', false)"));
    assert_null(strstr(p.prologue, "default_tablespace"));
    /* the final pass: everything else, the early ones commented out */
    assert_non_null(strstr(p.rest_list, "\n;3226; 2606 16394 CONSTRAINT public a a_pkey o\n"));
    assert_non_null(strstr(p.rest_list, "\n;3231; 1259 16409 INDEX we ird b_expr o\n"));
    assert_non_null(strstr(p.rest_list, "\n;3236; 1259 16427 INDEX public a_v o\n"));
    assert_non_null(strstr(p.rest_list, "\n3235; 2606 16415 CONSTRAINT public p p_pkey o\n"));
    assert_non_null(strstr(p.rest_list, "\n3233; 1259 16426 INDEX public p_k o\n"));
    assert_non_null(strstr(p.rest_list, "\n3242; 1259 16438 INDEX public mv_i o\n"));
    assert_non_null(strstr(p.rest_list, "\n3248; 2606 16404 FK CONSTRAINT we ird T \"b T b_a_fkey o\n"));
    assert_true(p.analyze_early);
    pgp_plan_free(&p);
}

static void test_a_toc_that_does_not_pair_up_leaves_everything_late(void **state)
{
    pgp_plan p;
    char *toc = xstrdup(TOC), *at = strstr(toc, "INDEX public a_v");

    (void)state;
    memcpy(at, "INDEX public a_w", 16);
    pgp_plan_build(SQL, toc, find, NULL, &p);
    assert_int_equal(p.n, 0);
    assert_null(p.rest_list);
    assert_false(p.analyze_early);
    free(toc);
    /* one entry short */
    toc = xstrdup(TOC);
    *strstr(toc, "3248;") = '\0';
    pgp_plan_build(SQL, toc, find, NULL, &p);
    assert_int_equal(p.n, 0);
    free(toc);
}

static void test_unknown_statements_and_statistics_wait(void **state)
{
    pgp_plan p;
    const char *sql = HEAD ENTRY("a_v", "INDEX", "public", "CREATE INDEX a_v ON public.a USING btree (v);")
        ENTRY("a_w", "INDEX", "public", "CREATE INDEX CONCURRENTLY a_w ON public.a USING btree (v);")
            ENTRY("a a_c", "CONSTRAINT", "public", "ALTER TABLE public.a\n    ADD CONSTRAINT a_c UNIQUE (v);")
                ENTRY("s1", "STATISTICS", "public", "CREATE STATISTICS public.s1 ON a, b FROM public.a;");
    const char *toc = "1; 1259 1 INDEX public a_v o\n2; 1259 2 INDEX public a_w o\n"
                      "3; 2606 3 CONSTRAINT public a a_c o\n4; 3381 4 STATISTICS public s1 o\n";

    (void)state;
    pgp_plan_build(sql, toc, find, NULL, &p);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.rest_list, "\n2; 1259 2 INDEX public a_w o\n"));
    assert_non_null(strstr(p.rest_list, "\n3; 2606 3 CONSTRAINT public a a_c o\n"));
    /* an index or extended statistics built late would change what ANALYZE computes */
    assert_false(p.analyze_early);
    pgp_plan_free(&p);
}

/* A line that looks like state inside a literal an object's owner wrote (here a comment on
 * an index, and an index predicate) must never run as state before other entries: the
 * whole section goes to pg_restore, which reads the literal as a literal. */
static void test_state_lines_inside_literals_leave_everything_late(void **state)
{
    const char *toc = "1; 1259 1 INDEX public a_v o\n2; 0 0 COMMENT public INDEX a_v o\n3; 1259 3 INDEX public a_w o\n";
    const char *const comments[] = {
        /* a crafted SET line followed by another statement */
        "COMMENT ON INDEX public.a_v IS 'x\nSET default_tablespace = ''''; ALTER ROLE me SUPERUSER; --\n';",
        /* a well-formed SET line, then more of the literal */
        "COMMENT ON INDEX public.a_v IS 'x\nSET default_tablespace = fast;\n\nmore';",
        /* a well-formed one that closes the literal on the next line */
        "COMMENT ON INDEX public.a_v IS 'x\nSET default_table_access_method = heap;\n';",
    };
    pgp_plan p;

    (void)state;
    for (size_t i = 0; i < sizeof comments / sizeof *comments; i++) {
        char *sql = xasprintf("%s--\n-- Name: a_v; Type: INDEX; Schema: public; Owner: o\n--\n\n"
                              "CREATE INDEX a_v ON public.a USING btree (v);\n\n\n"
                              "--\n-- Name: INDEX a_v; Type: COMMENT; Schema: public; Owner: o\n--\n\n%s\n\n\n"
                              "--\n-- Name: a_w; Type: INDEX; Schema: public; Owner: o\n--\n\n"
                              "CREATE INDEX a_w ON public.a USING btree (w);\n",
                              HEAD, comments[i]);
        pgp_plan_build(sql, toc, find, NULL, &p);
        assert_int_equal(p.n, 0);
        assert_null(p.rest_list);
        pgp_plan_free(&p);
        free(sql);
    }
    /* in an index's predicate */
    pgp_plan_build(HEAD ENTRY("a_w", "INDEX", "public",
                              "CREATE INDEX a_w ON public.a USING btree (w) WHERE (s <> 'y\nSET default_tablespace = fast;\n');"),
                   "1; 1259 1 INDEX public a_w o\n", find, NULL, &p);
    assert_int_equal(p.n, 0);
    pgp_plan_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_indexes_and_constraints_of_loaded_tables_go_early),
        cmocka_unit_test(test_a_toc_that_does_not_pair_up_leaves_everything_late),
        cmocka_unit_test(test_unknown_statements_and_statistics_wait),
        cmocka_unit_test(test_state_lines_inside_literals_leave_everything_late),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
