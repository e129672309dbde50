#!/usr/bin/env bash
# The machine-readable contract: every --json document and every --events line of every
# command, success and failure, validates against docs/schema (python3-jsonschema from
# Debian); the JSON error codes; snap create --if-absent; revert --dry-run has no id.
# needs: postgres
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

# Debian's validator (scripts/packages.txt), not whatever python3 comes first on PATH.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
CHECK=$T_ROOT/tests/e2e/json_check.py

# valid SCHEMA [FILE] [--lines]: the file (default: the last run's stdout) validates.
valid() {
    local f=${2:-$T/out}
    "$PY" "$CHECK" "$1" "$f" "${@:3}" >"$T/check" 2>&1 || { cat "$T/check" >&2; sed 's/^/    doc: /' "$f" | head -n 30 >&2; fail "$f does not validate against $1.json"; }
}

# jget EXPR [FILE]: a Python expression over the document d.
jget() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[2])); print(eval(sys.argv[1]))' "$1" "${2:-$T/out}"; }

# error_is EXIT CODE: the last run exited EXIT and printed an error document with CODE.
error_is() {
    [ "$RC" = "$1" ] || fail "exit code $RC, expected $1"
    valid error
    [ "$(jget 'd["error"]["code"]')" = "$2" ] || fail "error code $(jget 'd["error"]["code"]'), expected $2"
    [ "$(jget 'd["error"]["exit_code"]')" = "$1" ] || fail "exit_code in the document is not $1"
}

setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/app/sub" "$T/other"
    echo "listen 80" >"$T/app/main.conf"
    head -c 3000000 /dev/urandom >"$T/app/sub/blob"
    echo other >"$T/other/x"
}

test_every_snap_document_validates() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --label team=a --json
    valid snapshot
    [ "$(jget 'd["existed"]')" = False ] || fail "a new snapshot says it existed"
    expect_rc 0 "$SNAP" show p1 --store "$ST" --json
    valid snapshot
    expect_rc 0 "$SNAP" list --store "$ST" --json
    valid list
    [ "$(jget '[s["name"] for s in d["snapshots"]]')" = "['p1']" ] || fail "list: $(cat "$T/out")"
    expect_rc 0 "$SNAP" verify p1 --store "$ST" --json
    valid verify
    expect_rc 0 "$SNAP" create p2 --store "$ST" --files "$T/other" --json
    expect_rc 0 "$SNAP" prune --store "$ST" --keep-last 1 --dry-run --json
    valid prune
    [ "$(jget 'd["dry_run"]')" = True ] || fail "prune --dry-run"
    expect_rc 0 "$SNAP" gc --store "$ST" --dry-run --min-age 0 --json
    valid gc
    expect_rc 0 "$SNAP" config check --json
    valid config-check
    expect_rc 0 "$SNAP" config show --json
    valid config-show
    expect_rc 0 "$SNAP" delete p2 --store "$ST" --yes --json
    valid delete
    expect_rc 0 "$SNAP" prune --store "$ST" --keep-last 5 --yes --json
    valid prune
    # a damaged part: exit 5, the report and the error in one document
    part=$(find "$ST/data" -name '*.tar.zst' | head -n 1)
    printf 'X' | dd of="$part" bs=1 seek=40 conv=notrunc 2>/dev/null
    expect_rc 5 "$SNAP" verify p1 --store "$ST" --json
    valid verify
    [ "$(jget 'd["error"]["code"]')" = verify_failed ] || fail "verify error code"
}

test_error_documents_carry_distinct_codes() {
    setup
    run "$SNAP" show nothing-here --store "$ST" --json
    error_is 3 not_found
    run "$SNAP" create 'bad/name' --store "$ST" --files "$T/app" --json
    error_is 2 usage
    run "$SNAP" list --store "$ST" --json --no-such-option
    error_is 2 usage
    run "$SNAP" create p1 --store "$ST" --pg "host=127.0.0.1 port=1 dbname=x connect_timeout=2" --json
    error_is 6 unreachable
    # no AWS credentials anywhere: the store cannot even sign a request
    HOME=$T/nohome AWS_SHARED_CREDENTIALS_FILE=$T/none AWS_CONFIG_FILE=$T/none \
        run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
        "$SNAP" list --store s3://bucket/prefix --json
    error_is 6 credentials
    expect_err "no AWS credentials found"
    run "$REVERT" nothing-here --store "$ST" --yes --json
    [ "$RC" = 3 ] || fail "revert of a missing snapshot: exit $RC"
    valid revert
    [ "$(jget 'd["error"]["code"]')" = not_found ] || fail "revert error code"
    [ "$(jget '"revert_id" in d')" = False ] || fail "a revert that did not start has an id"
    run "$REVERT" --recover nothing --json
    error_is 2 usage
}

test_if_absent_makes_create_retry_safe() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --json
    id=$(jget 'd["id"]')
    # the retry of a Job that committed and then timed out
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --if-absent --json
    valid snapshot
    [ "$(jget 'd["existed"]')" = True ] || fail "--if-absent did not say it existed"
    [ "$(jget 'd["id"]')" = "$id" ] || fail "--if-absent captured again"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --if-absent
    expect_out "snapshot p1 exists with the same sources; nothing was captured"
    [ "$(find "$ST/data" -mindepth 1 -maxdepth 1 | wc -l)" = 1 ] || fail "a retry left data behind"
    # other sources under that name: exit 4, name_exists
    run "$SNAP" create p1 --store "$ST" --files "$T/other" --if-absent --json
    error_is 4 name_exists
    run "$SNAP" create p1 --store "$ST" --files "$T/other" --if-absent
    expect_err "snapshot p1 exists with other sources: it has no component other"
    run "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/other" --if-absent --json
    error_is 4 name_exists
    # without --if-absent a taken name is name_exists too, not conflict
    run "$SNAP" create p1 --store "$ST" --files "$T/app" --json
    error_is 4 name_exists
    # an absent name is simply created
    expect_rc 0 "$SNAP" create p3 --store "$ST" --files "$T/app" --if-absent --json
    [ "$(jget 'd["existed"]')" = False ] || fail "a new snapshot says it existed"
}

test_a_held_lock_is_locked_and_names_its_holder() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    SNAP_FAILPOINT=stage-begin:wait=$T/go "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot \
        >"$T/first.out" 2>"$T/first.err" &
    pid=$!
    for _ in $(seq 50); do grep -q "failpoint stage-begin" "$T/first.err" 2>/dev/null && break; sleep 0.1; done
    grep -q "failpoint stage-begin" "$T/first.err" || fail "the first revert did not reach stage-begin"
    run "$REVERT" p1 --store "$ST" --yes --json
    [ "$RC" = 4 ] || fail "second revert: exit $RC"
    valid revert
    [ "$(jget 'd["error"]["code"]')" = locked ] || fail "second revert: $(jget 'd["error"]')"
    expect_err "pid $pid on host $(hostname) since "
    run "$SNAP" create p2 --store "$ST" --files "$T/app" --json
    error_is 4 locked
    expect_err "pid $pid on host $(hostname) since "
    # the snapshot itself is leased by the revert
    run "$SNAP" delete p1 --store "$ST" --yes --json
    error_is 4 locked
    touch "$T/go"
    wait $pid || fail "the first revert failed: $(cat "$T/first.err")"
}

test_revert_documents_validate_and_a_dry_run_has_no_id() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    echo "listen 81" >"$T/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run --json
    valid revert
    [ "$(jget '"revert_id" in d')" = False ] || fail "a dry run has a revert_id"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --json
    valid revert
    [ "$(jget 'd["status"]')" = reverted ] || fail "revert status"
    [ -n "$(jget 'd["revert_id"]')" ] || fail "a revert without id"
    [ "$(cat "$T/app/main.conf")" = "listen 80" ] || fail "not reverted"
    expect_rc 0 "$REVERT" --recover --store "$ST" --json
    valid recover
    # an abandoned revert, recovered: the report validates
    echo "listen 82" >"$T/app/main.conf"
    run env SNAP_FAILPOINT=stage-end "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    [ "$RC" = 137 ] || fail "the failpoint did not kill the revert (exit $RC)"
    run "$REVERT" p1 --store "$ST" --yes --json
    [ "$RC" = 8 ] || fail "a pending journal: exit $RC"
    valid revert
    [ "$(jget 'd["error"]["code"]')" = recovery_needed ] || fail "pending journal code"
    expect_rc 0 "$REVERT" --recover --store "$ST" --json
    valid recover
    [ "$(jget '[r["outcome"] for r in d["recovered"]]')" = "['rolled-back']" ] || fail "recover: $(cat "$T/out")"
}

# The checked cut-over, the hooks and the history print documents of their own.
test_check_hook_and_history_documents_validate() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    echo "listen 81" >"$T/app/main.conf"
    run "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot --check false --json
    [ "$RC" = 9 ] || fail "a failed check: exit $RC"
    valid revert
    [ "$(jget 'd["error"]["code"]')" = check_failed ] || fail "failed check code"
    [ "$(jget 'd["status"]')" = switched-back ] || fail "status after a failed check"
    [ "$(jget 'd["check"]["passed"]')" = False ] || fail "check result: $(cat "$T/out")"
    [ "$(cat "$T/app/main.conf")" = "listen 81" ] || fail "not switched back"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot --check true --json
    valid revert
    [ "$(jget 'd["check"]["passed"]')" = True ] || fail "check passed: $(cat "$T/out")"
    printf '[hooks]\nbefore_snap = /nonexistent/hook\n' >"$T/hooks.conf"
    run "$SNAP" create p2 --store "$ST" --files "$T/app" --config "$T/hooks.conf" --json
    error_is 10 hook_missing
    expect_rc 0 "$SNAP" history --store "$ST" --json
    valid history
    [ "$(jget '[r["event"] + ":" + r["outcome"] for r in d["records"]]')" = \
      "['snap:taken', 'check:failed', 'revert:switched-back', 'check:passed', 'revert:reverted', 'snap:failed']" ] ||
        fail "history: $(cat "$T/out")"
}

# The displaced state that finished reverts kept, as the store records it.
test_kept_documents_validate() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    echo "listen 81" >"$T/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_rc 0 "$REVERT" --kept --store "$ST" --json
    valid kept
    [ "$(jget 'len(d["kept"])')" = 1 ] || fail "kept: $(cat "$T/out")"
    [ "$(jget 'd["kept"][0]["snapshot"]')" = p1 ] || fail "kept snapshot: $(cat "$T/out")"
    expect_rc 0 "$REVERT" --drop-kept --older-than 0s --store "$ST" --json
    valid kept
    [ "$(jget 'd["kept"][0]["dropped"]')" = True ] || fail "drop-kept: $(cat "$T/out")"
    run "$REVERT" --drop-kept --older-than soon --store "$ST" --json
    error_is 2 usage
}

# order_is FILE WORD...: the events' phases and component events come in this order
# (each word an "event" or "phase:NAME"; the list is what the file holds, progress left out).
order_is() {
    local f=$1 got
    shift
    got=$("$PY" -c '
import json, sys
out = []
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "progress":
        continue
    out.append("phase:" + e["phase"] if e["event"] == "phase" else e["event"])
print(" ".join(out))' "$f")
    [ "$got" = "$*" ] || fail "events in $f: $got; expected $*"
}

test_events_lines_validate_and_come_in_order() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --events "$T/snap.ev" --json
    valid events "$T/snap.ev" --lines
    order_is "$T/snap.ev" phase:count phase:capture component_start component_end phase:commit end
    "$PY" - "$T/snap.ev" <<'PYEOF' || fail "snap events: $(cat "$T/snap.ev")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert all(e["snapshot"] == "p1" and e["revert_id"] is None and e["command"] == "snap create" for e in ev)
ticks = [e for e in ev if e["event"] == "progress"]
assert ticks, "no progress"
last = ticks[-1]
# the count came first: the walk found the 3 MB of files before capture
assert last["bytes_total"] >= 3000000 and last["bytes_done"] == last["bytes_total"], last
assert ev[-1]["event"] == "end" and ev[-1]["exit_code"] == 0 and ev[-1]["code"] is None
assert [e["time"] for e in ev] == sorted(e["time"] for e in ev)
PYEOF
    echo "listen 81" >"$T/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --events "$T/revert.ev" --json
    valid events "$T/revert.ev" --lines
    id=$(jget 'd["revert_id"]')
    # files swap: the safety snapshot is taken from the displaced tree after the cut-over
    order_is "$T/revert.ev" phase:plan phase:stage component_start component_end \
        phase:cutover phase:safety_snapshot phase:finish end
    "$PY" - "$T/revert.ev" "$id" <<'PYEOF' || fail "revert events: $(cat "$T/revert.ev")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert ev[0]["revert_id"] is None                       # the plan comes before the id
assert all(e["revert_id"] == sys.argv[2] for e in ev[1:]), "revert_id"
stage = [e for e in ev if e["event"] == "progress" and e["label"] == "app"]
assert stage and stage[-1]["bytes_total"] > 0 and stage[-1]["bytes_done"] == stage[-1]["bytes_total"], stage
PYEOF
    # - is stderr; a failure ends with its code
    run "$REVERT" nothing --store "$ST" --yes --events -
    [ "$RC" = 3 ] || fail "exit $RC"
    grep '^{' "$T/err" >"$T/err.ev"
    valid events "$T/err.ev" --lines
    [ "$(tail -n 1 "$T/err.ev" | "$PY" -c 'import json,sys; e=json.load(sys.stdin); print(e["event"], e["code"])')" = "end not_found" ] ||
        fail "the last event of a failure"
    # an events file that cannot be written is a usage error, before anything runs
    run "$SNAP" create p9 --store "$ST" --files "$T/app" --events "$T/no/such/dir/ev" --json
    error_is 2 usage
}

test_progress_ticks_are_a_few_per_second() {
    setup
    head -c 60000000 /dev/zero >"$T/app/zeros"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --events "$T/ev"
    "$PY" - "$T/ev" <<'PYEOF' || fail "too many ticks: $(grep -c progress "$T/ev")"
import json, sys, datetime
ev = [json.loads(l) for l in open(sys.argv[1])]
t = [datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ") for e in ev if e["event"] == "progress"]
span = (t[-1] - t[0]).total_seconds() if len(t) > 1 else 0
assert len(t) <= 2 * span + 3, (len(t), span)
PYEOF
}

test_postgres_documents_events_and_progress() {
    pg_setup
    db=$(db_name json)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --events "$T/snap.ev" --json
    valid snapshot
    valid events "$T/snap.ev" --lines
    # the count came from the tables' sizes, before capture
    "$PY" - "$T/snap.ev" <<'PYEOF' || fail "pg snap total: $(grep progress "$T/snap.ev")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ticks = [e for e in ev if e["event"] == "progress"]
assert ticks and ticks[0]["bytes_total"] > 0, ticks
PYEOF
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --if-absent --json
    [ "$(jget 'd["existed"]')" = True ] || fail "pg --if-absent"
    run "$SNAP" create p1 --pg "dbname=${db}x" --store "$STORE" --if-absent --json
    error_is 4 name_exists
    bytes=$(jget 'sum(p["size"] for c in d["components"] for p in c["parts"])' "$STORE/catalog/p1.json")
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --events "$T/revert.ev" --json
    valid revert
    valid events "$T/revert.ev" --lines
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "not reverted"
    # a PostgreSQL revert has progress, its total the archive bytes of the manifest
    "$PY" - "$T/revert.ev" "$bytes" <<'PYEOF' || fail "pg revert progress: $(grep progress "$T/revert.ev")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
comp = [e["component"] for e in ev if e["event"] == "component_start"][0]
ticks = [e for e in ev if e["event"] == "progress" and e["label"] == comp]
assert ticks, "no progress of the postgres stage"
assert ticks[-1]["bytes_total"] == int(sys.argv[2]), (ticks[-1], sys.argv[2])
assert 0 < ticks[-1]["bytes_done"] <= ticks[-1]["bytes_total"], ticks[-1]
PYEOF
    q -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
    for old in $(dbs_like "${db}__pre_revert_"); do q -d postgres -c "DROP DATABASE \"$old\"" >/dev/null; done
}

run_tests "$@"
