#!/usr/bin/env bash
# PostgreSQL: a revert killed at any step leaves the live name on the old or the restored
# database, never on nothing; `revert --recover` finishes or rolls back.
# needs: postgres
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

# prepare: a database, its snapshot p1, then a damaged live state
prepare() {
    pg_setup
    db=$(db_name "$1")
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    capture_state "$db" point
    q -d "$db" -c "DELETE FROM notes WHERE id > 100" -c "UPDATE items SET price = 0"
    capture_state "$db" damaged
}

# The schema and pg_restore's list live in anonymous files: a SIGKILL leaves nothing in TMPDIR.
killed_at() { # FAILPOINT
    mkdir -p "$T/tmp"
    SNAP_FAILPOINT=$1 TMPDIR=$T/tmp run "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "revert was not killed at $1 (exit $RC)"; }
    [ -z "$(ls -A "$T/tmp")" ] || fail "the killed revert left in TMPDIR: $(ls -A "$T/tmp")"
}

# Started with stdin, stdout and stderr closed (a daemon's child, a careless cron line), the
# files revert opens must not take their numbers: its log lines went into the lease it wrote
# to the store and into its journal's lock. Killed at the cut-over, both are still there.
test_revert_with_the_standard_descriptors_closed() {
    prepare closedfds
    set +e
    SNAP_FAILPOINT=cutover-begin "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot -v <&- >&- 2>&-
    rc=$?
    set -e
    [ "$rc" = 137 ] || fail "revert was not killed at cutover-begin (exit $rc)"
    ! grep -rl "revert: " "$STORE" "$SNAP_STATE_DIR" || fail "log lines went into the files above"
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "completed"
    capture_state "$db" after
    same_state point after
}

allows_connections() { [ "$(q -d postgres -c "SELECT datallowconn FROM pg_database WHERE datname = '$1'")" = t ]; }

test_kill_during_staging_leaves_live_untouched() {
    prepare stagekill
    killed_at pg-stage-loaded
    db_exists "${db}__revert_$(snapshot_id p1 | sed 's/.*-//')" || fail "no staging database to clean up"
    capture_state "$db" live
    same_state damaged live
    # a new revert refuses while the journal is pending
    expect_rc 8 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    expect_err "revert --recover"
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "rolled-back"
    [ -z "$(dbs_like "${db}__")" ] || fail "recovery left: $(dbs_like "${db}__")"
    capture_state "$db" recovered
    same_state damaged recovered
}

test_kill_right_after_create_database() {
    prepare createkill
    killed_at pg-stage-created
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    [ -z "$(dbs_like "${db}__")" ] || fail "recovery left: $(dbs_like "${db}__")"
    capture_state "$db" recovered
    same_state damaged recovered
}

test_kill_in_cutover_before_the_rename_is_completed_by_recovery() {
    prepare blockkill
    killed_at pg-cutover-blocked
    # the name is still on the old database, which refuses connections until recovery
    capture_state "$db" live 2>/dev/null || true
    db_exists "$db" || fail "the live name points at nothing"
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "completed"
    capture_state "$db" recovered
    same_state point recovered
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "the displaced database is missing"
    allows_connections "$db" || fail "$db refuses connections"
    allows_connections "$old" || fail "$old refuses connections"
}

test_kill_in_cutover_after_the_rename_is_completed_by_recovery() {
    prepare renamekill
    killed_at pg-cutover-renamed
    capture_state "$db" live
    same_state point live
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "completed"
    old=$(dbs_like "${db}__pre_revert_")
    capture_state "$old" displaced
    same_state damaged displaced 2>/dev/null || true
    allows_connections "$old" || fail "$old refuses connections after recovery"
    [ -z "$(dbs_like "${db}__revert_")" ] || fail "staging left: $(dbs_like "${db}__revert_")"
}

test_kill_after_the_switch_before_the_journal_notes_it() {
    prepare switchkill
    killed_at cutover-after-switch
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    capture_state "$db" recovered
    same_state point recovered
}

run_tests "$@"
