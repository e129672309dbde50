#!/usr/bin/env bash
# Around snap and revert: [hooks] at named moments, and the checked cut-over (`revert
# --check`, [revert] check) that switches every target back when the check fails, with the
# switch back journaled and recovered like the cut-over. Files targets; the databases are
# in check_db.sh.
. "$(dirname "$0")/lib.sh"

# A files source a, its snapshot p1, then a changed live state.
setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/a/sub"
    for i in 1 2 3; do echo "a$i" >"$T/a/sub/f$i"; done
    cat >"$T/snap.conf" <<EOF
[source a]
type = files
path = $T/a
${1:-}
EOF
    expect_rc 0 "$SNAP" create p1 --store "$ST" --config "$T/snap.conf"
    POINT=$(tree_sum "$T/a")
    echo changed >"$T/a/sub/f1" && echo new >"$T/a/new"
    OLD=$(tree_sum "$T/a")
}

# A hook script that records its environment in $T/hook-NAME.env and exits with $2.
hook() {
    cat >"$T/$1" <<EOF
#!/bin/sh
env | grep '^SNAP_' | sort >"$T/hook-$1.env"
echo "output of $1"
echo "error output of $1" >&2
exit ${2:-0}
EOF
    chmod +x "$T/$1"
}

no_staging() { ! ls -a "$T" | grep -q snap-stage || fail "staging left behind"; }
no_journal() { [ -z "$(ls "$T/state/journal" 2>/dev/null)" ] || fail "journal left behind: $(ls "$T/state/journal")"; }

# ---- the checked cut-over -----------------------------------------------------------

test_check_that_passes_keeps_the_revert() {
    setup
    hook check 0
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/check" --json
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "not reverted"
    jq -e '.check.passed == true and .check.tries == 1 and .status == "reverted"' "$T/out" >/dev/null ||
        fail "result: $(cat "$T/out")"
    ! grep -rq "$T/check" "$T/out" "$ST" || fail "the check's command line was recorded"
    # the check saw the revert's facts, and ran after the cut-over (the point is live)
    grep -qx "SNAP_COMMAND=revert" "$T/hook-check.env" || fail "no SNAP_COMMAND"
    grep -qx "SNAP_NAME=p1" "$T/hook-check.env" || fail "no SNAP_NAME"
    grep -qx "SNAP_PHASE=check" "$T/hook-check.env" || fail "no SNAP_PHASE"
    grep -qx "SNAP_COMPONENTS=a" "$T/hook-check.env" || fail "no SNAP_COMPONENTS"
    grep -qx "SNAP_TRY=1" "$T/hook-check.env" || fail "no SNAP_TRY"
    grep -q "^SNAP_REVERT_ID=$(jq -r .revert_id "$T/out")\$" "$T/hook-check.env" || fail "wrong SNAP_REVERT_ID"
    # its output went to stderr with its name, never into the JSON on stdout
    expect_err "hook check: output of check"
    expect_err "hook check: error output of check"
    ! grep -q "output of check" "$T/out" || fail "hook output on stdout"
    no_journal
}

test_failing_check_switches_back() {
    setup
    hook check 3
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/check" --json
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "the live state is not the one before the revert"
    jq -e '.error.exit_code == 9 and .error.code == "check_failed" and .status == "switched-back"
           and .check.passed == false' "$T/out" >/dev/null || fail "result: $(cat "$T/out")"
    expect_err "the check failed 1 time: hook check: $T/check exited with status 3"
    expect_err "every target was switched back"
    no_staging
    no_journal
    # the store records the revert, and the next revert works
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "the next revert did not reach the point"
}

test_check_from_config_with_tries() {
    # fails twice, then passes: the third try keeps the revert
    cat >"$T/check" <<EOF
#!/bin/sh
n=\$(cat $T/count 2>/dev/null || echo 0)
echo \$((n + 1)) >$T/count
[ \$n -ge 2 ]
EOF
    chmod +x "$T/check"
    setup "[revert]
check = sh -c '\"\$0\"' $T/check
check_tries = 3
check_interval = 0s"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --json
    [ "$(cat "$T/count")" = 3 ] || fail "the check ran $(cat "$T/count") times, not 3"
    jq -e '.check.tries == 3 and .check.passed' "$T/out" >/dev/null || fail "result: $(cat "$T/out")"
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "not reverted"
}

test_hanging_check_times_out_and_switches_back() {
    setup "[revert]
check_timeout = 1s
check_tries = 2
check_interval = 0s"
    # a shell whose child hangs too: the whole process group goes
    cat >"$T/check" <<EOF
#!/bin/sh
sleep 300 &
echo \$! >$T/child.pid
wait
EOF
    chmod +x "$T/check"
    local t0=$SECONDS
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/check"
    [ $((SECONDS - t0)) -lt 20 ] || fail "the hanging check held the revert $((SECONDS - t0))s"
    expect_err "did not finish within 1s and was killed"
    expect_err "the check failed 2 times"
    case $(ps -o stat= -p "$(cat "$T/child.pid")") in "" | Z*) ;; *) fail "the check's child still runs" ;; esac
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "not switched back"
    no_staging
    no_journal
}

test_missing_check_switches_back() {
    setup
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/nonexistent --flag"
    expect_err "hook check: cannot run $T/nonexistent"
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "not switched back"
}

# SIGKILL during the switch back: the journal says "switchback"; revert refuses with 8
# until revert --recover switches every target back.
switchback_killed_at() {
    setup
    mkdir -p "$T/b" && echo one >"$T/b/conf"
    cat >>"$T/snap.conf" <<EOF
[source b]
type = files
path = $T/b
EOF
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    local point_a point_b old_a old_b
    point_a=$(tree_sum "$T/a") point_b=$(tree_sum "$T/b")
    echo again >"$T/a/sub/f2" && echo two >"$T/b/conf"
    old_a=$(tree_sum "$T/a") old_b=$(tree_sum "$T/b")
    SNAP_FAILPOINT=$1 expect_rc 137 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --check false
    expect_err "failpoint $1"
    grep -q '"phase": "switchback"' "$T"/state/journal/*.json || fail "the journal is not in phase switchback"
    expect_rc 8 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes
    expect_rc 0 "$REVERT" --recover --store "$ST" --config "$T/snap.conf" --json
    grep -q '"outcome": "switched-back"' "$T/out" || fail "recovery: $(cat "$T/out")"
    [ "$(tree_sum "$T/a")" = "$old_a" ] && [ "$(tree_sum "$T/b")" = "$old_b" ] || fail "not switched back"
    no_staging
    no_journal
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes
    [ "$(tree_sum "$T/a")" = "$point_a" ] && [ "$(tree_sum "$T/b")" = "$point_b" ] || fail "next revert"
}
test_kill_at_switchback_begin_is_recovered() { switchback_killed_at switchback-begin; }
test_kill_between_two_switches_back_is_recovered() { switchback_killed_at switchback-after-target; }

test_kill_while_the_check_runs_is_switched_back() {
    setup
    cat >"$T/check" <<EOF
#!/bin/sh
kill -KILL \$PPID
EOF
    chmod +x "$T/check"
    expect_rc 137 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/check"
    grep -q '"phase": "check"' "$T"/state/journal/*.json || fail "the journal is not in phase check"
    expect_rc 0 "$REVERT" --recover --store "$ST" --config "$T/snap.conf" --json
    grep -q '"outcome": "switched-back"' "$T/out" || fail "recovery: $(cat "$T/out")"
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "not switched back"
    no_staging
}

test_interrupt_during_the_check_switches_back() {
    setup
    cat >"$T/check" <<EOF
#!/bin/sh
kill -INT \$PPID
sleep 30
EOF
    chmod +x "$T/check"
    local t0=$SECONDS
    expect_rc 130 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check "$T/check" --json
    [ $((SECONDS - t0)) -lt 20 ] || fail "the interrupted check held the revert $((SECONDS - t0))s"
    jq -e '.status == "switched-back" and .error.code == "interrupted"' "$T/out" >/dev/null || fail "$(cat "$T/out")"
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "not switched back"
    no_staging
    no_journal
}

# ---- hooks -----------------------------------------------------------------------------

test_snap_hooks_see_the_facts() {
    hook before 0 && hook after 0
    setup "[hooks]
before_snap = $T/before
after_snap = $T/after"
    grep -qx "SNAP_PHASE=before_snap" "$T/hook-before.env" || fail "before_snap: $(cat "$T/hook-before.env")"
    grep -qx "SNAP_NAME=p1" "$T/hook-before.env" || fail "no SNAP_NAME"
    grep -qx "SNAP_STORE=$T/store" "$T/hook-before.env" || fail "no SNAP_STORE: $(cat "$T/hook-before.env")"
    grep -qx "SNAP_COMPONENTS=a" "$T/hook-before.env" || fail "no SNAP_COMPONENTS"
    grep -qx "SNAP_RESULT=taken" "$T/hook-after.env" || fail "after_snap: $(cat "$T/hook-after.env")"
    grep -q "^SNAP_ID=........T" "$T/hook-after.env" || fail "no SNAP_ID"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" --json
    expect_err "hook before_snap: output of before"
    jq -e .id "$T/out" >/dev/null || fail "the JSON on stdout is not one document: $(cat "$T/out")"
}

test_failing_before_snap_stops_with_10() {
    hook before 4 && hook fail 0
    setup "[hooks]
on_failure = $T/fail"
    echo "before_snap = $T/before" >>"$T/snap.conf"
    expect_rc 10 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" --json
    expect_err "stopped before anything changed: hook before_snap: $T/before exited with status 4"
    jq -e '.error.code == "hook_exit" and .error.exit_code == 10' "$T/out" >/dev/null || fail "$(cat "$T/out")"
    expect_rc 3 "$SNAP" show p2 --store "$ST" --config /dev/null
    grep -qx "SNAP_EXIT_CODE=10" "$T/hook-fail.env" || fail "on_failure: $(cat "$T/hook-fail.env")"
    grep -qx "SNAP_ERROR_CODE=hook_exit" "$T/hook-fail.env" || fail "on_failure error code"
    grep -qx "SNAP_RESULT=failed" "$T/hook-fail.env" || fail "on_failure result"
}

test_missing_and_not_executable_hooks() {
    setup "[hooks]"
    echo "before_snap = $T/missing" >>"$T/snap.conf"
    expect_rc 10 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_err "hook before_snap: cannot run $T/missing: No such file or directory"
    printf '#!/bin/sh\nexit 0\n' >"$T/noexec"
    sed -i "s|$T/missing|$T/noexec|" "$T/snap.conf"
    expect_rc 10 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_err "hook before_snap: cannot run $T/noexec: Permission denied"
    expect_err "chmod +x"
    expect_rc 3 "$SNAP" show p2 --store "$ST" --config /dev/null
}

test_hanging_before_snap_is_killed() {
    setup "[hooks]
timeout = 1s"
    echo "before_snap = sleep 300" >>"$T/snap.conf"
    local t0=$SECONDS
    expect_rc 10 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    [ $((SECONDS - t0)) -lt 15 ] || fail "held $((SECONDS - t0))s"
    expect_err "hook before_snap: sleep did not finish within 1s and was killed"
}

test_failing_after_hooks_warn_and_the_result_stands() {
    hook after 5
    setup "[hooks]
after_snap = $T/after
after_cutover = $T/after"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_err "warning: hook after_snap: $T/after exited with status 5 (the result stands)"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes
    expect_err "warning: hook after_cutover: $T/after exited with status 5"
    grep -qx "SNAP_RESULT=reverted" "$T/hook-after.env" || fail "after_cutover: $(cat "$T/hook-after.env")"
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "not reverted"
}

test_failing_before_cutover_changes_nothing() {
    hook before 1 && hook fail 0
    setup "[hooks]
before_cutover = $T/before
on_failure = $T/fail"
    expect_rc 10 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes
    expect_err "stopped before anything changed: hook before_cutover"
    [ "$(tree_sum "$T/a")" = "$OLD" ] || fail "the live state changed"
    grep -qx "SNAP_PHASE=before_cutover" "$T/hook-before.env" || fail "before_cutover facts"
    grep -q "^SNAP_REVERT_ID=." "$T/hook-before.env" || fail "no SNAP_REVERT_ID"
    grep -qx "SNAP_EXIT_CODE=10" "$T/hook-fail.env" || fail "on_failure: $(cat "$T/hook-fail.env")"
    no_staging
    no_journal
}

test_after_cutover_hears_the_switch_back() {
    hook after 0 && hook fail 0
    setup "[hooks]
after_cutover = $T/after
on_failure = $T/fail"
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --check false
    grep -qx "SNAP_RESULT=switched-back" "$T/hook-after.env" || fail "after_cutover: $(cat "$T/hook-after.env")"
    grep -qx "SNAP_ERROR_CODE=check_failed" "$T/hook-fail.env" || fail "on_failure: $(cat "$T/hook-fail.env")"
}

test_hook_command_is_argv_not_a_shell() {
    # a word with a shell metacharacter is an argument, not shell syntax
    setup "[hooks]
after_snap = touch '$T/x;y' $T/z"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    [ -e "$T/x;y" ] && [ -e "$T/z" ] || fail "the words were not passed as they are"
}

test_unknown_hooks_key_is_refused() {
    setup
    printf '[hooks]\nbefore_snapp = true\n' >"$T/bad.conf"
    expect_rc 2 "$SNAP" create p2 --store "$ST" --config "$T/bad.conf"
    expect_err "unknown key 'before_snapp' in [hooks]"
}

# ---- history ---------------------------------------------------------------------------

test_history_tells_the_timeline() {
    setup
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" --label phase=canary
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot --check false
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    expect_rc 0 "$SNAP" history --store "$ST" --json
    jq -e --arg h "$(hostname)" '[.records[] | .event + ":" + .name + ":" + .outcome] ==
        ["snap:p1:taken", "snap:p2:taken", "check:p1:failed", "revert:p1:switched-back", "revert:p2:reverted"]
        and (.records[0].bytes > 0) and (.records[0].parts >= 1) and (.records[0].components == ["a"]) and (.records[0].host == $h)
        and (.records[3].error.code == "check_failed") and (.records[4].cutover_ms > 0) and (.records[3].revert_id | length > 0)' \
        "$T/out" >/dev/null || fail "history: $(jq -c '[.records[] | [.event, .name, .outcome, .cutover_ms]]' "$T/out")"
    expect_rc 0 "$SNAP" history --store "$ST" --json --label phase=canary
    jq -e '[.records[] | .event + ":" + .name] == ["snap:p2", "revert:p2"]' "$T/out" >/dev/null ||
        fail "by label: $(cat "$T/out")"
    expect_rc 0 "$SNAP" history --store "$ST" --json --since 1h
    [ "$(jq ".records | length" "$T/out")" = 5 ] || fail "--since 1h: $(cat "$T/out")"
    expect_rc 0 "$SNAP" history --store "$ST" --json --since 2099-01-01T00:00:00Z
    [ "$(jq ".records | length" "$T/out")" = 0 ] || fail "--since the future: $(cat "$T/out")"
    expect_rc 2 "$SNAP" history --store "$ST" --since yesterday
    expect_err "--since yesterday is neither a duration nor a UTC time"
    expect_rc 0 "$SNAP" history --store "$ST"
    expect_out "switched-back"
    grep -q "revert   p2 .* reverted .* cut-over" "$T/out" || fail "human output: $(cat "$T/out")"
}

test_history_of_a_failed_snap_and_a_recovery() {
    setup
    rm -rf "$T/a"
    expect_rc 3 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    mkdir -p "$T/a" && echo x >"$T/a/x"
    SNAP_FAILPOINT=cutover-begin expect_rc 137 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes
    expect_rc 0 "$REVERT" --recover --store "$ST" --config "$T/snap.conf"
    expect_rc 0 "$SNAP" history --store "$ST" --json
    jq -e '[.records[] | .event + ":" + .outcome] == ["snap:taken", "snap:failed", "recover:completed"]
           and .records[1].error.exit_code == 3' "$T/out" >/dev/null || fail "history: $(cat "$T/out")"
}

test_history_skips_hostile_records() {
    setup
    mkdir -p "$ST/history"
    printf 'not json' >"$ST/history/20261130T000000.000Z-aaaaaaaa.json"
    printf '{"event": "snap", "time": "x", "name": "evil\\u001b[31mred"}' >"$ST/history/20261130T000001.000Z-bbbbbbbb.json"
    head -c 200000 /dev/zero >"$ST/history/20261130T000002.000Z-cccccccc.json"
    expect_rc 0 "$SNAP" history --store "$ST"
    expect_err "1 history record could not be read"
    ! grep -q $'\x1b' "$T/out" || fail "an escape sequence reached the terminal"
    expect_out 'evil\x1b[31mred'
}

# ---- notifications ----------------------------------------------------------------------

# A receiver on loopback (tests/e2e/notify/receiver.py), killed when the test ends.
receiver() {
    head -c 32 /dev/urandom >"$T/secret" && chmod 600 "$T/secret"
    mkdir -p "$T/rx"
    python3 "$T_ROOT/tests/e2e/notify/receiver.py" "$T/rx" "$T/secret" "$@" &
    RX_PID=$!
    trap 'kill $RX_PID 2>/dev/null' EXIT
    for _ in $(seq 50); do [ -s "$T/rx/port" ] && break; sleep 0.1; done
    PORT=$(cat "$T/rx/port")
}

test_notify_posts_signed_events() {
    receiver
    setup "[notify]
url = http://127.0.0.1:$PORT/ok
secret_file = $T/secret"
    expect_rc 9 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot --check false --json
    jq -e '.status == "switched-back"' "$T/out" >/dev/null || fail "the result: $(cat "$T/out")"
    jq -s -e '[.[] | .path + ":" + (.signed | tostring) + ":" + .body.event + ":" + .body.outcome] ==
        ["/ok:true:snap:taken", "/ok:true:check:failed", "/ok:true:revert:switched-back"]
        and (.[2].body.error.code == "check_failed") and (.[2].body.revert_id | length > 0)
        and (.[0].body.host | length > 0) and (.[0].body.time | length > 0)
        and (.[0].type == "application/json")' "$T/rx/log" >/dev/null || fail "received: $(cat "$T/rx/log")"
    # a wrong secret: the receiver sees the signature fail
    head -c 32 /dev/urandom >"$T/secret2" && chmod 600 "$T/secret2"
    sed -i "s|secret_file = .*|secret_file = $T/secret2|" "$T/snap.conf"
    : >"$T/rx/log"
    expect_rc 0 "$SNAP" create p3 --store "$ST" --config "$T/snap.conf"
    jq -e '.signed == false' "$T/rx/log" >/dev/null || fail "a wrong key still verified: $(cat "$T/rx/log")"
}

test_notify_failures_are_warnings() {
    receiver
    # refused (nothing listens on the port of a closed socket), 500, then a hang
    closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    setup "[notify]
url = http://127.0.0.1:$closed/refused http://127.0.0.1:$PORT/fail
url = http://user:pw@127.0.0.1:$PORT/hang?token=abc
timeout = 2s
retries = 2"
    : >"$T/rx/log"
    local t0=$SECONDS
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" --json
    [ $((SECONDS - t0)) -lt 12 ] || fail "notifications held the snap $((SECONDS - t0))s"
    jq -e .id "$T/out" >/dev/null || fail "the result: $(cat "$T/out")"
    expect_err "warning: could not notify http://127.0.0.1:$closed/refused"
    expect_err "warning: could not notify http://127.0.0.1:$PORT/fail: it answered HTTP 500"
    expect_err "warning: could not notify http://127.0.0.1:$PORT/hang"
    ! grep -q "pw\|token=abc" "$T/err" || fail "a credential of the URL was shown: $(cat "$T/err")"
    # the 500 was retried (1 + 2 retries), within the timeout
    [ "$(grep -c '"/fail"' "$T/rx/log")" = 3 ] || fail "500 tries: $(grep -c '"/fail"' "$T/rx/log")"
}

test_notify_without_a_readable_secret_sends_nothing() {
    receiver
    setup "[notify]
url = http://127.0.0.1:$PORT/ok
secret_file = $T/secret"
    chmod 644 "$T/secret"
    : >"$T/rx/log"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_err "no notification sent: [notify] secret_file"
    [ ! -s "$T/rx/log" ] || fail "sent: $(cat "$T/rx/log")"
}

test_notify_checks_tls() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
    cat "$T/cert.pem" "$T/key.pem" >"$T/both.pem"
    receiver "$T/both.pem"
    setup "[notify]
url = https://127.0.0.1:$PORT/ok
timeout = 3s"
    expect_err "could not notify https://127.0.0.1:$PORT/ok"
    [ ! -s "$T/rx/log" ] || fail "a certificate no CA vouches for was accepted"
    echo "ca_file = $T/cert.pem" >>"$T/snap.conf"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_no_err "could not notify"
    jq -e '.body.event == "snap"' "$T/rx/log" >/dev/null || fail "received: $(cat "$T/rx/log")"
}

# ---- metrics -----------------------------------------------------------------------------

# metric NAME LABELS: the value of one series of the metrics file
metric() { awk -v k="$1{$2}" '$1 == k {print $2}' "$T/prom/snap.prom"; }

test_metrics_file_passes_promtool_and_holds_the_values() {
    mkdir -p "$T/prom"
    setup "[metrics]
textfile_dir = $T/prom
group_by = job"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" --label job=deploy
    expect_rc 9 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot --check false
    rm -rf "$T/a"
    expect_rc 3 "$SNAP" create p3 --store "$ST" --config "$T/snap.conf" --label job=deploy
    promtool check metrics <"$T/prom/snap.prom" || fail "promtool: $(promtool check metrics <"$T/prom/snap.prom" 2>&1)"
    [ "$(metric snap_last_stored_bytes 'group="deploy"')" = "$(jq '[.components[].parts[].size] | add' "$ST/catalog/p2.json")" ] ||
        fail "stored bytes: $(cat "$T/prom/snap.prom")"
    [ "$(metric snap_last_parts 'group="deploy"')" = 1 ] || fail "parts: $(cat "$T/prom/snap.prom")"
    [ -n "$(metric snap_last_success_timestamp_seconds 'group="p1"')" ] || fail "p1: $(cat "$T/prom/snap.prom")"
    local now ok failed
    now=$(date +%s)
    ok=$(metric snap_last_success_timestamp_seconds 'group="deploy"')
    failed=$(metric snap_last_failure_timestamp_seconds 'group="deploy"')
    [ $((now - ok)) -lt 120 ] && [ $((now - failed)) -lt 120 ] && [ "$failed" -ge "$ok" ] ||
        fail "times: now $now, success $ok, failure $failed"
    [ "$(metric snap_revert_last_outcome 'group="deploy",outcome="switched-back"')" = 1 ] &&
        [ "$(metric snap_revert_last_outcome 'group="deploy",outcome="reverted"')" = 0 ] ||
        fail "outcome: $(cat "$T/prom/snap.prom")"
    awk '$1 == "snap_revert_last_cutover_seconds{group=\"deploy\"}" && $2 > 0 && $2 < 60 {f = 1} END {exit !f}' \
        "$T/prom/snap.prom" || fail "cut-over: $(cat "$T/prom/snap.prom")"
    [ -z "$(ls -A "$T/prom" | grep -v '^snap.prom$')" ] || fail "temporary files left: $(ls -A "$T/prom")"
}

test_metrics_in_an_unwritable_directory_warn() {
    # root writes through permissions: a directory under /proc is one nobody may write
    setup "[metrics]
textfile_dir = /proc/self"
    expect_err "warning: metrics not written: cannot write the metrics file in /proc/self"
    [ ! -e /proc/self/snap.prom ] || fail "written"
    echo x >"$T/file"
    sed -i "s|^textfile_dir = .*|textfile_dir = $T/file|" "$T/snap.conf"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf"
    expect_err "warning: metrics not written: cannot write the metrics file in $T/file: Not a directory"
    sed -i "s|^textfile_dir = .*|textfile_dir = $T/missing/dir|" "$T/snap.conf"
    expect_rc 0 "$SNAP" create p3 --store "$ST" --config "$T/snap.conf"
    expect_err "warning: metrics not written: cannot write the metrics file in $T/missing/dir"
}

# ---- logs ----------------------------------------------------------------------------------

test_json_logs_carry_the_ids() {
    hook before 0
    setup "[hooks]
before_cutover = $T/before"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes --json --log-format json
    id=$(jq -r .revert_id "$T/out")
    # every line of stderr is a JSON object with the common fields
    jq -e -s 'length > 3 and all(.[]; (.time | test("^[0-9-]+T[0-9:.]+Z$")) and (.level | type == "string")
              and .program == "revert" and (.message | type == "string") and .command == "revert" and .name == "p1")' \
        "$T/err" >/dev/null || fail "log lines: $(cat "$T/err")"
    jq -e -s --arg id "$id" 'any(.[]; .message == "hook before_cutover: output of before" and .revert_id == $id)' \
        "$T/err" >/dev/null || fail "the hook's line lacks the revert id $id: $(cat "$T/err")"
    # an error carries its hint
    expect_rc 3 "$REVERT" nope --store "$ST" --config "$T/snap.conf" --yes --log-format json
    jq -e -s 'any(.[]; .level == "error" and (.message | test("nope")) and (.hint | length > 0))' "$T/err" >/dev/null ||
        fail "error line: $(cat "$T/err")"
    expect_rc 2 "$SNAP" list --store "$ST" --log-format xml
    expect_err "--log-format xml is not text or json"
}

test_vv_shows_debug_that_v_does_not() {
    setup "[hooks]
after_snap = true"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/snap.conf" -v
    expect_err "verbose: config file: $T/snap.conf"
    expect_no_err "debug:"
    expect_rc 0 "$SNAP" create p3 --store "$ST" --config "$T/snap.conf" -vv
    expect_err "debug: running hook after_snap: true"
    expect_err "debug: capturing a (files)"
    expect_rc 0 "$SNAP" create p4 --store "$ST" --config "$T/snap.conf" --syslog -q
    [ ! -s "$T/err" ] || fail "--syslog -q wrote to stderr: $(cat "$T/err")"
}

# --syslog reaches the local syslog socket: a receiver bound as /dev/log in a private mount
# namespace of this test (the machine's own /dev is untouched) gets every line, with the
# program's name and its hint.
test_syslog_delivers_each_line() {
    setup ""
    cat >"$T/recv.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[1] + ".ready", "w").close()
s.settimeout(3)
with open(sys.argv[2], "wb") as f:
    try:
        while True:
            f.write(s.recv(65536) + b"\n")
            f.flush()
    except socket.timeout:
        pass
EOF
    mkdir "$T/dev"
    unshare -m --propagation private bash -c '
        set -e
        mount -t tmpfs none "$1/dev"
        for d in null zero random urandom; do touch "$1/dev/$d"; mount --bind "/dev/$d" "$1/dev/$d"; done
        python3 "$1/recv.py" "$1/dev/log" "$1/got" &
        for _ in $(seq 100); do [ -e "$1/dev/log.ready" ] && break; sleep 0.05; done
        mount --bind "$1/dev" /dev
        "$2" create p5 --store "$3" --config "$1/snap.conf" --syslog -v >/dev/null 2>&1
        "$2" show nope --store "$3" --syslog >/dev/null 2>&1 || true
        wait' _ "$T" "$SNAP" "$ST" || fail "cannot set up a private /dev/log (run as root)"
    grep -q "snap\[[0-9]*\]: verbose: config file: $T/snap.conf" "$T/got" || fail "no verbose line: $(cat "$T/got")"
    grep -q "snap\[[0-9]*\]: error: .*nope.*(hint: " "$T/got" || fail "no error line with its hint: $(cat "$T/got")"
}

run_tests "$@"
