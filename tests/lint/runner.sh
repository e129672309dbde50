#!/usr/bin/env bash
# The test runner itself (tests/run): its count, and what an interrupt leaves behind.
. "$(dirname "$0")/../e2e/lib.sh"

test_counts_what_the_scripts_report() {
    printf 'echo "PASS: fake: one"\necho "FAIL: fake: two"\necho "PASS: fake: three"\n' >fake.sh
    run env T_LANES=2 "$T_ROOT/tests/run" "$T/fake.sh"
    [ "$RC" = 1 ] || fail "exit code $RC, expected 1"
    [ "$(tail -n 1 "$T/out")" = "2 passed, 1 failed" ] || fail "last line: $(tail -n 1 "$T/out")"
    expect_out "  fake: two"
}

# A TERM (a CI timeout) ends the script each lane runs, removes the lanes' directories, and
# shows what the scripts had printed, to tell which one hung.
test_interrupt_ends_every_lane_and_shows_their_output() {
    local i runner pid work
    for i in 1 2; do
        printf 'echo "$$ $T_WORK" >%s/hang%s.pid\necho "hang %s: waiting"\nsleep 300\n' "$T" "$i" "$i" >hang$i.sh
    done
    T_LANES=2 "$T_ROOT/tests/run" "$T/hang1.sh" "$T/hang2.sh" >runner.out 2>&1 &
    runner=$!
    for i in $(seq 100); do
        [ -s hang1.pid ] && [ -s hang2.pid ] && break
        sleep 0.1
    done
    [ -s hang1.pid ] && [ -s hang2.pid ] || fail "the two scripts did not start in two lanes"
    kill -TERM "$runner"
    for i in $(seq 100); do
        kill -0 "$runner" 2>/dev/null || break
        sleep 0.1
    done
    ! kill -0 "$runner" 2>/dev/null || { kill -KILL "$runner"; fail "the runner did not end within 10 s"; }
    wait "$runner" && fail "the runner exited 0" || [ $? = 130 ] || fail "the runner did not exit 130"
    grep -q '^interrupted$' runner.out || fail "no 'interrupted' line: $(cat runner.out)"
    for i in 1 2; do
        grep -q "hang $i: waiting" runner.out || fail "the output of hang$i.sh was not shown"
        read -r pid work <hang$i.pid
        ! kill -0 "$pid" 2>/dev/null || fail "hang$i.sh (pid $pid) still runs"
        [ ! -e "$work" ] || fail "the lane's directory $work is left"
    done
}

run_tests "$@"
