#!/usr/bin/env bash
# Crash safety: revert killed with SIGKILL at every named fail point leaves each target
# exactly at its old state or exactly at the point; revert refuses with 8 until
# revert --recover finishes or rolls back, and no staging is left behind.
. "$(dirname "$0")/lib.sh"

setup_two() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/a/sub" "$T/b"
    for i in $(seq 1 50); do echo "a$i" >"$T/a/sub/f$i"; done
    echo one >"$T/b/conf"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/a" --files "$T/b" --part-size 4K
    POINT_A=$(tree_sum "$T/a")
    POINT_B=$(tree_sum "$T/b")
    rm -rf "$T/a/sub" && echo changed >"$T/a/new"
    echo two >"$T/b/conf"
    OLD_A=$(tree_sum "$T/a")
    OLD_B=$(tree_sum "$T/b")
}

# state NAME DIR OLD POINT: prints old, point, or other
state() {
    local s
    s=$(tree_sum "$2")
    if [ "$s" = "$3" ]; then echo old; elif [ "$s" = "$4" ]; then echo point; else echo "other"; fi
}

crash_at() {
    local fp=$1 want=$2 a b
    setup_two
    SNAP_FAILPOINT=$fp expect_rc 137 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "failpoint $fp"
    a=$(state a "$T/a" "$OLD_A" "$POINT_A")
    b=$(state b "$T/b" "$OLD_B" "$POINT_B")
    [ "$a" != other ] && [ "$b" != other ] || fail "after the kill: a is $a, b is $b"
    # a pending journal blocks every revert until recovery
    expect_rc 8 "$REVERT" p1 --store "$ST" --yes
    expect_err "revert --recover"
    expect_rc 0 "$REVERT" --recover --store "$ST" --json
    grep -q "\"outcome\": \"$want\"" "$T/out" || { cat "$T/out" >&2; fail "recovery did not end $want"; }
    a=$(state a "$T/a" "$OLD_A" "$POINT_A")
    b=$(state b "$T/b" "$OLD_B" "$POINT_B")
    if [ "$want" = completed ]; then
        [ "$a" = point ] && [ "$b" = point ] || fail "after recovery: a is $a, b is $b, both should be at the point"
    else
        [ "$a" = old ] && [ "$b" = old ] || fail "after recovery: a is $a, b is $b, both should be as before"
    fi
    ls -a "$T" | grep -q snap-stage && fail "staging left behind"
    [ -z "$(ls "$T/state/journal")" ] || fail "journal left behind"
    # and the next revert works
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/a")" = "$POINT_A" ] || fail "the next revert did not reach the point"
}

test_kill_at_stage_begin() { crash_at stage-begin rolled-back; }
test_kill_in_the_middle_of_staging() { crash_at stage-entry rolled-back; }
test_kill_at_stage_end() { crash_at stage-end rolled-back; }
test_kill_at_cutover_begin() { crash_at cutover-begin completed; }
test_kill_between_two_switches() { crash_at cutover-after-switch completed; }
test_kill_before_finish() { crash_at finish-begin completed; }

test_failed_switch_rolls_back_every_target() {
    setup_two
    SNAP_FAILPOINT=cutover-begin:wait=$T/go "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot >"$T/out" 2>"$T/err" &
    pid=$!
    held "$T/err"
    # the second target's staged copy vanishes before its switch
    rm -rf "$T"/.b.snap-stage-*
    touch "$T/go"
    wait $pid && rc=0 || rc=$?
    [ "$rc" = 7 ] || { cat "$T/err" >&2; fail "exit code $rc, expected 7"; }
    grep -q "rolled back" "$T/err" || fail "no word of the rollback"
    [ "$(state a "$T/a" "$OLD_A" "$POINT_A")" = old ] || fail "a was left switched"
    [ "$(state b "$T/b" "$OLD_B" "$POINT_B")" = old ] || fail "b changed"
    ls -a "$T" | grep -q snap-stage && fail "staging left behind"
    [ -z "$(ls "$T/state/journal")" ] || fail "journal left behind"
}

test_kill_during_snap_leaves_no_catalog_entry() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a" && echo x >"$T/a/f"
    SNAP_FAILPOINT=snap-before-commit expect_rc 137 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    expect_rc 0 "$SNAP" list --store "$T/store" --json
    [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["snapshots"]))' "$T/out")" = 0 ] || fail "listed"
    expect_rc 0 "$SNAP" create p1 --store "$T/store" --files "$T/a"
}

# A part is written without a name until it is committed: a snap killed half way through
# a part leaves no file in the store, not even one that gc would have to find.
test_kill_while_a_part_is_written_leaves_no_file_in_the_store() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a"
    for i in $(seq 1 40); do head -c 300000 /dev/urandom >"$T/a/f$i"; done
    SNAP_FAILPOINT=snap-files-open@30 expect_rc 137 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    [ "$(find "$T/store" -type f)" = "$T/store/STORE.json" ] || fail "files left in the store: $(find "$T/store" -type f)"
    expect_rc 0 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    expect_rc 0 "$SNAP" verify p1 --store "$T/store"
}

test_recover_with_nothing_pending() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a" && echo x >"$T/a/f"
    expect_rc 0 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    expect_rc 0 "$REVERT" --recover --store "$T/store"
    expect_err "nothing to recover"
}

run_tests "$@"
