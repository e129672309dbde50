#!/usr/bin/env bash
# The checked cut-over (`revert --check`) on PostgreSQL and MySQL targets: a check that
# fails or hangs switches the database back to the state it displaced; a revert killed
# during the switch back is switched back by `revert --recover`.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

# ---- PostgreSQL ------------------------------------------------------------------------

# pg_prepare NAME: a database, its snapshot p1, then a damaged live state.
pg_prepare() {
    pg_setup
    db=$(db_name "$1")
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    capture_state "$db" point
    q -d "$db" -c "DELETE FROM notes WHERE id > 100" -c "UPDATE items SET price = 0"
    capture_state "$db" damaged
}

# A check that records what it saw of the live database, then exits $1.
pg_check() {
    cat >"$T/check" <<EOF
#!/bin/sh
psql -X -At -d "$db" -c "SELECT count(*) FROM notes" >"$T/seen"
exit $1
EOF
    chmod +x "$T/check"
}

test_pg_failing_check_switches_back() {
    pg_prepare pgcheckfail
    pg_check 1
    expect_rc 9 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot --check "$T/check"
    [ "$(cat "$T/seen")" = 500 ] || fail "the check did not see the reverted database: $(cat "$T/seen")"
    expect_err "the check failed"
    capture_state "$db" after
    same_state damaged after
    [ -z "$(dbs_like "${db}__")" ] || fail "left behind: $(dbs_like "${db}__")"
    [ "$(q -d postgres -c "SELECT datallowconn FROM pg_database WHERE datname = '$db'")" = t ] ||
        fail "the live database refuses connections"
}

test_pg_passing_check_keeps_the_revert() {
    pg_prepare pgcheckok
    pg_check 0
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot --check "$T/check"
    capture_state "$db" after
    same_state point after
}

test_pg_hanging_check_switches_back() {
    pg_prepare pgcheckhang
    printf '[revert]\ncheck = sleep 300\ncheck_timeout = 1s\n' >"$T/c.conf"
    expect_rc 9 "$REVERT" p1 --store "$STORE" --config "$T/c.conf" --yes --no-safety-snapshot
    expect_err "did not finish within 1s"
    capture_state "$db" after
    same_state damaged after
    [ -z "$(dbs_like "${db}__")" ] || fail "left behind: $(dbs_like "${db}__")"
}

test_pg_kill_during_switch_back_is_recovered() {
    pg_prepare pgcheckkill
    SNAP_FAILPOINT=switchback-begin run "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot --check false
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "not killed (exit $RC)"; }
    expect_rc 8 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "switched-back"
    capture_state "$db" after
    same_state damaged after
    [ -z "$(dbs_like "${db}__")" ] || fail "left behind: $(dbs_like "${db}__")"
}

test_pg_transaction_mode_refuses_check() {
    pg_prepare pgchecktx
    expect_rc 2 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot --mode transaction --check true
    expect_err "a checked revert cannot use PostgreSQL transaction mode"
    capture_state "$db" after
    same_state damaged after
}

# ---- MySQL -----------------------------------------------------------------------------

my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }
my_sum() { my -N "$1" -e "SELECT COUNT(*), COALESCE(SUM(v), 0) FROM t; SHOW CREATE VIEW vt" | sha256sum; }

# my_prepare: a schema with a table and a view, its snapshot p1, then a changed state.
my_prepare() {
    DB=t_$1
    my -e "DROP DATABASE IF EXISTS \`$DB\`; CREATE DATABASE \`$DB\`"
    for s in $(my -N -e "SHOW DATABASES LIKE '${DB//_/\\_}\\_\\_%'"); do my -e "DROP DATABASE \`$s\`"; done
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 10), (2, 20), (3, 30);
                 CREATE VIEW vt AS SELECT id FROM t WHERE v > 10"
    DSN="mysql://root@localhost/$DB?socket=$MY_SOCKET"
    export SNAP_STATE_DIR=$T/state
    expect_rc 0 "$SNAP" create p1 --mysql "$DSN" --store "$T/store"
    POINT=$(my_sum "$DB")
    my "$DB" -e "DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (4, 99)"
    OLD=$(my_sum "$DB")
}

my_left() { my -N -e "SHOW DATABASES LIKE '${DB//_/\\_}\\_\\_%'"; }

test_my_failing_check_switches_back() {
    my_prepare mycheckfail
    cat >"$T/check" <<EOF
#!/bin/sh
mariadb --no-defaults -S "$MY_SOCKET" -uroot -N "$DB" -e "SELECT SUM(v) FROM t" >"$T/seen"
exit 1
EOF
    chmod +x "$T/check"
    expect_rc 9 "$REVERT" p1 --store "$T/store" --yes --no-safety-snapshot --check "$T/check"
    [ "$(cat "$T/seen")" = 60 ] || fail "the check did not see the reverted schema: $(cat "$T/seen")"
    [ "$(my_sum "$DB")" = "$OLD" ] || fail "not switched back"
    [ -z "$(my_left)" ] || fail "left behind: $(my_left)"
    expect_rc 0 "$REVERT" p1 --store "$T/store" --yes --no-safety-snapshot --check true
    [ "$(my_sum "$DB")" = "$POINT" ] || fail "the checked revert that passed did not reach the point"
}

test_my_hanging_check_switches_back() {
    my_prepare mycheckhang
    printf '[revert]\ncheck = sleep 300\ncheck_timeout = 1s\n' >"$T/c.conf"
    expect_rc 9 "$REVERT" p1 --store "$T/store" --config "$T/c.conf" --yes --no-safety-snapshot
    [ "$(my_sum "$DB")" = "$OLD" ] || fail "not switched back"
    [ -z "$(my_left)" ] || fail "left behind: $(my_left)"
}

test_my_kill_during_switch_back_is_recovered() {
    my_prepare mycheckkill
    SNAP_FAILPOINT=switchback-begin run "$REVERT" p1 --store "$T/store" --yes --no-safety-snapshot --check false
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "not killed (exit $RC)"; }
    expect_rc 0 "$REVERT" --recover --store "$T/store"
    expect_err "switched-back"
    [ "$(my_sum "$DB")" = "$OLD" ] || fail "not switched back"
    [ -z "$(my_left)" ] || fail "left behind: $(my_left)"
}

run_tests "$@"
