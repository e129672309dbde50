#!/usr/bin/env bash
# End-to-end: the markers a files revert leaves beside a live path, and `revert --recover`
# removing marked staging when the journal itself is lost (local store, no services).
. "$(dirname "$0")/lib.sh"

# valid: the last run's stdout validates against docs/schema/recover.json.
valid() {
    /usr/bin/python3 "$T_ROOT/tests/e2e/json_check.py" recover "$T/out" >"$T/check" 2>&1 ||
        { cat "$T/check" >&2; fail "not a valid recover document"; }
}

setup() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/conf/sub"
    echo one >"$T/conf/a.conf"
    echo deep >"$T/conf/sub/b.conf"
    printf '[store]\nurl = %s\n\n[source conf]\ntype = files\npaths = %s\n' "$T/store" "$T/conf" >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 -c "$T/snap.conf"
    echo two >"$T/conf/a.conf"
    before=$(tree_sum "$T/conf")
}

# A revert of p1 killed at the end of staging, its journals (local and store) deleted.
killed_and_forgotten() {
    SNAP_FAILPOINT=stage-end run "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "revert was not killed (exit $RC)"; }
    rm -f "$T/state/journal/"* "$T/store/journal/"* 2>/dev/null || true
    [ -z "$(find "$T/state/journal" "$T/store/journal" -type f 2>/dev/null)" ] || fail "a journal is left"
}
staging() { find "$T" -maxdepth 1 -name '.conf.snap-stage-*' -printf '%f\n'; }
markers() { find "$T" -maxdepth 1 -name '.conf.snap-mark-*' -printf '%f\n'; }

test_marker_names_revert_and_goes_with_the_staging() {
    setup
    killed_and_forgotten
    [ "$(staging | wc -l)" = 1 ] || fail "no staging: $(ls -a "$T")"
    id=$(staging | sed 's/^\.conf\.snap-stage-//')
    [ "$(markers)" = ".conf.snap-mark-$id" ] || fail "no marker for $id: $(ls -a "$T")"
    m=$T/.conf.snap-mark-$id
    [ "$(jq -r .revert_id "$m")" = "$id" ] || fail "marker names $(jq -r .revert_id "$m")"
    [ "$(jq -r .snapshot "$m")" = p1 ] || fail "marker names snapshot $(jq -r .snapshot "$m")"
    [ "$(jq -r .path "$m")" = "$T/conf" ] || fail "marker names path $(jq -r .path "$m")"
    now=$(date +%s)
    [ "$(jq -r .created "$m")" -le "$now" ] && [ "$(jq -r .created "$m")" -gt $((now - 600)) ] || fail "creation time $(jq -r .created "$m")"
    # a finished revert: its staging is gone, its marker stays with the displaced state it kept
    expect_rc 0 "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    new=$(markers | grep -v "$id" | sed 's/^\.conf\.snap-mark-//')
    [ -n "$new" ] || fail "the displaced state has no marker: $(ls -a "$T")"
    [ -d "$T/.conf.pre-revert-$new" ] || fail "the marker marks nothing: $(ls -a "$T")"
    [ ! -e "$T/.conf.snap-stage-$new" ] || fail "the finished revert left its staging"
}

test_recover_removes_marked_staging_only() {
    setup
    killed_and_forgotten
    id=$(staging | sed 's/^\.conf\.snap-stage-//')
    # look-alikes: no marker, and a marker that names another path
    mkdir "$T/.conf.snap-stage-x" && echo keep >"$T/.conf.snap-stage-x/f"
    mkdir "$T/.conf.snap-stage-y" && echo keep >"$T/.conf.snap-stage-y/f"
    printf '{"revert_id":"y","path":"/elsewhere"}' >"$T/.conf.snap-mark-y"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    expect_err "removed the staging $T/.conf.snap-stage-$id that revert $id of $T/conf left"
    expect_err "is not a marker of a revert of $T/conf: left alone"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = removed ] || { cat "$T/out" >&2; fail "not reported removed"; }
    [ "$(jq -r '.orphans | length' "$T/out")" = 1 ] || fail "more than one orphan reported"
    [ ! -e "$T/.conf.snap-stage-$id" ] || fail "the marked staging is left"
    [ ! -e "$T/.conf.snap-mark-$id" ] || fail "its marker is left"
    [ "$(cat "$T/.conf.snap-stage-x/f")" = keep ] || fail "the unmarked look-alike changed"
    [ "$(cat "$T/.conf.snap-stage-y/f")" = keep ] || fail "the look-alike with a foreign marker changed"
    [ -e "$T/.conf.snap-mark-y" ] || fail "the foreign marker was removed"
    [ "$(tree_sum "$T/conf")" = "$before" ] || fail "the live path changed"
    # nothing left: a second recovery has nothing to do
    expect_rc 0 "$REVERT" --recover -c "$T/snap.conf"
    expect_err "is not a marker"
    expect_no_err "removed the staging"
}

test_recover_leaves_staging_of_a_running_revert() {
    setup
    SNAP_FAILPOINT=stage-end:pause=4 "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf" >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    for _ in $(seq 100); do [ -n "$(markers)" ] && [ -n "$(staging)" ] && break; sleep 0.05; done
    sleep 0.5
    # the journal is set aside here only to make recovery look past it
    mkdir -p "$T/aside/l" "$T/aside/s"
    mv "$T/state/journal/"* "$T/aside/l/" && mv "$T/store/journal/"* "$T/aside/s/" || fail "no journals to set aside"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = locked ] || { cat "$T/out" "$T/err" >&2; fail "not reported locked"; }
    [ -n "$(staging)" ] || fail "recovery removed the staging of a running revert"
    mkdir -p "$T/state/journal" "$T/store/journal"
    mv "$T/aside/l/"* "$T/state/journal/" && mv "$T/aside/s/"* "$T/store/journal/"
    wait "$apid" || fail "the revert failed: $(cat "$T/a.err")"
    [ "$(cat "$T/conf/a.conf")" = one ] || fail "not at the point"
}

test_recover_reports_marked_displaced_state_and_keeps_it() {
    setup
    expect_rc 0 "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    old=$(find "$T" -maxdepth 1 -name '.conf.pre-revert-*' -printf '%f\n')
    [ -n "$old" ] || fail "nothing was kept: $(ls -a "$T")"
    id=${old#.conf.pre-revert-}
    [ -e "$T/.conf.snap-mark-$id" ] || fail "the kept state has no marker"
    rm -f "$T/state/journal/"* "$T/store/journal/"* 2>/dev/null || true
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = kept ] || { cat "$T/out" >&2; fail "not reported kept"; }
    [ "$(jq -r '.orphans[0].displaced' "$T/out")" = "$T/$old" ] || fail "the displaced path is not reported"
    expect_err "drop-kept"
    [ "$(cat "$T/$old/a.conf")" = two ] || fail "the displaced state changed"
    # --drop-kept removes the displaced state, and its marker with it
    expect_rc 0 "$REVERT" --drop-kept --older-than 0s -c "$T/snap.conf"
    [ ! -e "$T/$old" ] || fail "--drop-kept left $old"
    [ ! -e "$T/.conf.snap-mark-$id" ] || fail "--drop-kept left the marker"
}

run_tests "$@"
