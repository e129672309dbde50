#!/usr/bin/env bash
# The safety snapshot of a revert in swap mode is taken after the cut-over, from the state
# the cut-over displaced: the journal says it is due, a kill before it is taken keeps the
# displaced state and the journal, and `revert --recover` takes it. Reverting to it gives
# back the state before the revert, for files, PostgreSQL and MySQL.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"
. "$(dirname "$0")/mysql/lib.sh"

json_get() { # FILE KEY...: prints a field of a JSON document ("" when absent)
    python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[int(k)] if isinstance(d, list) else d.get(k, "")
print("" if d is None else d)
EOF
}

# ---- files ----

files_setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/app/conf.d"
    echo "listen 80" >"$T/app/main.conf"
    echo "x" >"$T/app/conf.d/a.conf"
    ln -s main.conf "$T/app/link"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    point=$(tree_sum "$T/app")
    echo broken >"$T/app/main.conf"
    rm -rf "$T/app/conf.d"
    echo new >"$T/app/added"
    damaged=$(tree_sum "$T/app")
}

test_files_safety_after_cutover() {
    files_setup
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --json --drop-old
    [ "$(tree_sum "$T/app")" = "$point" ] || fail "not reverted"
    [ "$(json_get "$T/out" safety_deferred)" = True ] || fail "the safety snapshot was not deferred"
    python3 - "$T/out" <<'EOF' || fail "timings missing or out of order"
import json, sys
d = json.load(open(sys.argv[1]))
assert 0 < d["cutover_at_ms"] <= d["total_ms"], d
assert d["safety_ms"] > 0, d
EOF
    safety=$(json_get "$T/out" safety_snapshot)
    [ -n "$safety" ] || fail "no safety snapshot"
    ls -a "$T" | grep -q pre-revert && fail "--drop-old kept the displaced tree"
    # the safety snapshot names the live path, and holds the state before the revert
    expect_rc 0 "$SNAP" show "$safety" --store "$ST" --json
    grep -q "\"path\": \"$T/app\"" "$T/out" || fail "the safety snapshot does not name the live path"
    expect_rc 0 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$damaged" ] || fail "the safety snapshot does not hold the state before"
    expect_out "after the start"
}

# The plan estimates the time to the cut-over and in all: default rates first, then those
# of the last revert from this store.
test_files_plan_estimates_from_the_last_revert() {
    files_setup
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run --json
    [ "$(json_get "$T/out" estimate basis)" = "default rates" ] || fail "no default estimate"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run --json
    python3 - "$T/out" <<'EOF' || fail "no estimate from the last revert"
import json, sys
e = json.load(open(sys.argv[1]))["estimate"]
assert e["basis"] == "last revert", e
assert 0 < e["cutover_at_s"] <= e["total_s"], e
EOF
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run
    expect_out "estimate: back in service in about"
}

test_files_kill_before_safety_then_recover() {
    files_setup
    SNAP_FAILPOINT=safety-deferred-begin expect_rc 137 "$REVERT" p1 --store "$ST" --yes --drop-old
    [ "$(tree_sum "$T/app")" = "$point" ] || fail "the cut-over did not happen"
    old=$(ls -d "$T"/.app.pre-revert-* 2>/dev/null | head -n 1)
    [ -n "$old" ] && [ "$(tree_sum "$old")" = "$damaged" ] || fail "the displaced tree was not kept whole"
    expect_rc 3 "$SNAP" show "pre-revert-$(basename "$old" | sed 's/^\.app\.pre-revert-//')" --store "$ST"
    # a new revert waits for the recovery
    expect_rc 8 "$REVERT" p1 --store "$ST" --yes
    expect_rc 0 "$REVERT" --recover --store "$ST" --json
    [ "$(json_get "$T/out" recovered 0 outcome)" = completed ] || fail "recovery did not complete"
    safety=$(json_get "$T/out" recovered 0 safety_snapshot)
    [ -n "$safety" ] || fail "recovery did not take the safety snapshot"
    [ -d "$old" ] || fail "recovery dropped the displaced tree"
    [ -z "$(ls "$T/state/journal" 2>/dev/null)" ] || fail "the journal stayed"
    expect_rc 0 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$damaged" ] || fail "the safety snapshot does not hold the state before"
}

# The store fills up while the deferred safety snapshot is written: the revert has cut
# over, so it exits 8 and says so, the displaced tree is kept whole and nothing half
# written stays in the store; once there is room, --recover takes the safety snapshot.
test_files_store_full_during_safety_then_recover() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/app" "$T/small"
    mount -t tmpfs -o size=4m tmpfs "$T/small" || fail "cannot mount a tmpfs (run as root)"
    ST=$T/small/store
    echo "listen 80" >"$T/app/main.conf"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    point=$(tree_sum "$T/app")
    before=$(find "$ST/data" -type f | wc -l)
    head -c 6000000 /dev/urandom >"$T/app/blob" # does not compress, does not fit
    echo broken >"$T/app/main.conf"
    damaged=$(tree_sum "$T/app")
    expect_rc 8 "$REVERT" p1 --store "$ST" --yes --drop-old
    expect_err "the cut-over completed, but the safety snapshot"
    expect_err "No space left on device"
    [ "$(tree_sum "$T/app")" = "$point" ] || { umount "$T/small"; fail "the cut-over did not happen"; }
    old=$(ls -d "$T"/.app.pre-revert-* 2>/dev/null | head -n 1)
    [ -n "$old" ] && [ "$(tree_sum "$old")" = "$damaged" ] || { umount "$T/small"; fail "the displaced tree was not kept whole"; }
    parts=$(find "$ST/data" -type f | wc -l)
    mount -o remount,size=64m "$T/small"
    expect_rc 0 "$REVERT" --recover --store "$ST" --json
    [ "$(json_get "$T/out" recovered 0 outcome)" = completed ] || { umount "$T/small"; fail "recovery did not complete"; }
    safety=$(json_get "$T/out" recovered 0 safety_snapshot)
    expect_rc 0 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot
    got=$(tree_sum "$T/app")
    umount "$T/small"
    [ "$parts" = "$before" ] || fail "the failed safety snapshot left $((parts - before)) file(s) in the store"
    [ "$got" = "$damaged" ] || fail "the safety snapshot does not hold the state before"
}

# ---- PostgreSQL ----

pg_prepare() {
    pg_setup
    db=$(db_name "$1")
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    capture_state "$db" point
    q -d "$db" -c "DELETE FROM notes WHERE id > 100" -c "UPDATE items SET price = 0" -c "CREATE TABLE extra (x int)"
    capture_state "$db" damaged
    cat >"$T/snap.conf" <<EOF
[source p1]
type = postgres
dsn = dbname=$db
EOF
}

test_pg_kill_before_safety_then_recover() {
    pg_prepare safekill
    SNAP_FAILPOINT=safety-deferred-begin expect_rc 137 "$REVERT" -c "$T/snap.conf" p1 --store "$STORE" --yes
    capture_state "$db" live
    same_state point live
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "no displaced database kept"
    expect_rc 8 "$REVERT" -c "$T/snap.conf" p1 --store "$STORE" --yes
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --recover --store "$STORE" --json
    [ "$(json_get "$T/out" recovered 0 outcome)" = completed ] || fail "recovery did not complete"
    safety=$(json_get "$T/out" recovered 0 safety_snapshot)
    [ -n "$safety" ] || fail "recovery did not take the safety snapshot"
    db_exists "$old" || fail "recovery dropped the displaced database"
    # it names the live database, and holds the state before the revert
    grep -q "\"database_name\": \"$db\"" "$STORE/catalog/$safety.json" || fail "the safety snapshot names another database"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" "$safety" --store "$STORE" --yes --no-safety-snapshot --drop-old
    capture_state "$db" undone
    same_state damaged undone
}

test_pg_safety_after_cutover_and_transaction_mode_first() {
    pg_prepare safemodes
    expect_rc 0 "$REVERT" -c "$T/snap.conf" p1 --store "$STORE" --yes --json --drop-old
    [ "$(json_get "$T/out" safety_deferred)" = True ] || fail "swap mode did not defer the safety snapshot"
    safety=$(json_get "$T/out" safety_snapshot)
    [ -z "$(dbs_like "${db}__pre_revert_")" ] || fail "--drop-old kept the displaced database"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" "$safety" --store "$STORE" --yes --json --mode transaction
    [ "$(json_get "$T/out" safety_deferred)" = False ] || fail "transaction mode deferred the safety snapshot"
    capture_state "$db" undone
    # transaction mode leaves the database's own properties (its ACL) as they were
    grep -v '^postgres|' "$T/damaged.content" >"$T/damaged.rows"
    grep -v '^postgres|' "$T/undone.content" >"$T/undone.rows"
    diff -u "$T/damaged.rows" "$T/undone.rows" >&2 || fail "the safety snapshot does not hold the rows before"
}

# ---- MySQL ----

my_prepare() {
    export SNAP_STATE_DIR=$T/state
    DB=t_safety_$1
    local s
    for s in $(my -N -e "SHOW DATABASES LIKE '${DB//_/\\_}%'"); do my -e "DROP DATABASE \`$s\`"; done
    my -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    DSN="mysql://root@localhost/$DB?socket=$MY_SOCKET"
    my "$DB" <"$T_ROOT/tests/e2e/mysql/fidelity.sql"
}

test_mysql_kill_before_safety_then_recover() {
    my_prepare kill
    my -e "DROP EVENT IF EXISTS \`$DB\`.purge_docs"
    expect_rc 0 "$SNAP" create s --mysql "$DSN" --store "$T/store"
    fingerprint "$DB" >point.txt
    my "$DB" -e "SET foreign_key_checks=0; UPDATE item SET txt='changed' WHERE id=2; DELETE FROM doc;
        DROP TRIGGER item_bi2; CREATE TABLE extra (id INT PRIMARY KEY); INSERT INTO extra VALUES (7)"
    fingerprint "$DB" >damaged.txt
    cat >"$T/snap.conf" <<EOF
[source s]
type = mysql
dsn = $DSN
EOF
    SNAP_FAILPOINT=safety-deferred-begin expect_rc 137 "$REVERT" -c "$T/snap.conf" s --store "$T/store" --yes
    fingerprint "$DB" >live.txt
    diff point.txt live.txt >&2 || fail "the cut-over did not happen"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --recover --store "$T/store" --json
    safety=$(json_get "$T/out" recovered 0 safety_snapshot)
    [ -n "$safety" ] || fail "recovery did not take the safety snapshot"
    grep -q "\"database\": \"$DB\"" "$T/store/catalog/$safety.json" || fail "the safety snapshot names another schema"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" "$safety" --store "$T/store" --yes --no-safety-snapshot --drop-old
    fingerprint "$DB" >undone.txt
    diff damaged.txt undone.txt >&2 || fail "the safety snapshot does not hold the state before"
}

# Events are not kept beside the displaced tables: such a schema's safety snapshot comes first.
test_mysql_events_take_the_safety_snapshot_first() {
    my_prepare events
    expect_rc 0 "$SNAP" create s --mysql "$DSN" --store "$T/store"
    my "$DB" -e "UPDATE item SET txt='changed' WHERE id=2"
    fingerprint "$DB" >damaged.txt
    cat >"$T/snap.conf" <<EOF
[source s]
type = mysql
dsn = $DSN
EOF
    expect_rc 0 "$REVERT" -c "$T/snap.conf" s --store "$T/store" --yes --json --drop-old
    [ "$(json_get "$T/out" safety_deferred)" = False ] || fail "a schema with events deferred its safety snapshot"
    safety=$(json_get "$T/out" safety_snapshot)
    expect_rc 0 "$REVERT" -c "$T/snap.conf" "$safety" --store "$T/store" --yes --no-safety-snapshot --drop-old
    fingerprint "$DB" >undone.txt
    diff damaged.txt undone.txt >&2 || fail "the safety snapshot does not hold the state before"
}

run_tests "$@"
