#!/usr/bin/env bash
# Two runners, A and B, that share one configuration file (and with it the key that
# authenticates manifests and journals) and an S3 store, but not a state directory or a
# host name: what A leaves behind when it is killed, B finishes; one database is never
# reverted by both at once.
# needs: postgres mariadb rgw
# slow
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }

# setup NAME pg|mysql|files: names for a PostgreSQL database or a MariaDB schema, an S3 prefix
# of their own, the shared key, and $T/snap.conf naming the one source.
setup() {
    PREFIX=$(basename "$T")
    STORE=s3://$RGW_BUCKET/$PREFIX
    export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION SNAP_STATE_DIR
    export AWS_SHARED_CREDENTIALS_FILE=$T/no-credentials AWS_CONFIG_FILE=$T/no-config
    db=$(db_name "$1")
    mydb=m_${1}_$$
    head -c 32 /dev/urandom >"$T/shared.key"
    chmod 600 "$T/shared.key"
    mkdir -p "$T/a" "$T/b"
    chmod 700 "$T/a" "$T/b"
    cat >"$T/snap.conf" <<EOF
[store]
url = $STORE
endpoint = $RGW_ENDPOINT
auth_key_file = $T/shared.key

[revert]
lease = 2s

EOF
    case $2 in
    pg) printf '[source app]\ntype = postgres\ndsn = dbname=%s\n' "$db" ;;
    mysql) printf '[source shop]\ntype = mysql\ndsn = mysql://root@localhost/%s?socket=%s\n' "$mydb" "$MY_SOCKET" ;;
    files) printf '[source conf]\ntype = files\npaths = %s\n' "$T/conf" ;;
    esac >>"$T/snap.conf"
}

# A and B: the same tools and configuration, another state directory and host name.
A() { SNAP_STATE_DIR=$T/a SNAP_HOST=runner-a "$@" -c "$T/snap.conf"; }
B() { SNAP_STATE_DIR=$T/b SNAP_HOST=runner-b "$@" -c "$T/snap.conf"; }

awsc() { aws --endpoint-url "$RGW_ENDPOINT" "$@"; }
store_journals() { awsc s3 ls "s3://$RGW_BUCKET/$PREFIX/journal/" 2>/dev/null | grep -c '\.json$' || true; }

pg_prepare() {
    make_small "$db"
    expect_rc 0 A "$SNAP" create p1
    capture_state "$db" point
    q -d "$db" -c "DELETE FROM notes WHERE id > 100" -c "UPDATE items SET price = 0"
    capture_state "$db" damaged
}

my_prepare() {
    my -e "DROP DATABASE IF EXISTS \`$mydb\`; CREATE DATABASE \`$mydb\`"
    my "$mydb" -e "CREATE TABLE acc (id INT PRIMARY KEY, bal INT, KEY (bal)) ENGINE=InnoDB;
        INSERT INTO acc SELECT seq, seq * 10 FROM seq_1_to_500;
        CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, msg TEXT);
        INSERT INTO log (msg) SELECT CONCAT('m', seq) FROM seq_1_to_300;
        CREATE VIEW rich AS SELECT id FROM acc WHERE bal > 4000"
    expect_rc 0 A "$SNAP" create m1
    my_state >"$T/point.my"
    my "$mydb" -e "DELETE FROM acc WHERE id > 50; UPDATE log SET msg = 'x'; DROP VIEW rich"
    my_state >"$T/damaged.my"
}
my_state() {
    my -N "$mydb" -e "SELECT COUNT(*), SUM(bal) FROM acc; SELECT COUNT(*), MD5(GROUP_CONCAT(msg ORDER BY id)) FROM log;
        SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '$mydb'"
}
my_like() { my -N -e "SHOW DATABASES" | grep -F "${mydb}__" || true; }

# A is SIGKILLed at FAILPOINT of a revert of SNAPSHOT
killed_at() { # FAILPOINT SNAPSHOT
    SNAP_FAILPOINT=$1 run A "$REVERT" "$2" --yes --no-safety-snapshot
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "revert was not killed at $1 (exit $RC)"; }
}

# B's recovery, once A's lease has run out twice (lease = 2s)
b_recovers() { # EXPECTED-OUTCOME
    sleep 5
    expect_rc 0 B "$REVERT" --recover --json
    grep -q "\"outcome\": \"$1\"" "$T/out" || { cat "$T/out" >&2; fail "recovery was not $1"; }
    grep -q '"from_store": true' "$T/out" || fail "the journal did not come from the store"
    [ "$(store_journals)" = 0 ] || fail "the store journal is left"
    # A, back with its state directory, sees that another runner finished its revert
    expect_rc 0 A "$REVERT" --recover
    expect_err "finished by another runner"
    [ -z "$(ls "$T/a/journal/")" ] || fail "A kept its journal: $(ls "$T/a/journal/")"
}

pg_fail_points="stage-begin pg-stage-created pg-stage-loaded stage-end cutover-begin pg-cutover-blocked
    pg-cutover-renamed cutover-after-switch finish-begin"

test_pg_runner_killed_at_each_fail_point_is_finished_by_another() {
    local fp n=0
    setup pgk pg
    for fp in $pg_fail_points; do
        n=$((n + 1))
        echo "== $fp"
        q -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
        for old in $(dbs_like "${db}__"); do q -d postgres -c "DROP DATABASE \"$old\""; done
        awsc s3 rm --quiet "s3://$RGW_BUCKET/$PREFIX/catalog/p1.json"
        pg_prepare
        killed_at "$fp" p1
        [ "$(store_journals)" = 1 ] || fail "$fp: no journal in the store"
        if [ "$n" = 1 ]; then
            # right after A died its lease still holds: B does not take it over (B judges
            # with the longer of its own lease and the journal's: 30 s here, so that a slow
            # machine does not let A's 2 s lease run out before B looks)
            sed 's/^lease = 2s$/lease = 30s/' "$T/snap.conf" >"$T/long.conf"
            expect_rc 4 env SNAP_STATE_DIR="$T/b" SNAP_HOST=runner-b "$REVERT" --recover -c "$T/long.conf"
            expect_err "locked by runner-a"
            expect_err "still running"
        fi
        case $fp in
        stage-* | pg-stage-*) b_recovers rolled-back; want=damaged ;;
        *) b_recovers completed; want=point ;;
        esac
        capture_state "$db" recovered
        same_state "$want" recovered
        [ -z "$(dbs_like "${db}__revert_")" ] || fail "$fp: staging left: $(dbs_like "${db}__revert_")"
        if [ "$want" = point ]; then
            old=$(dbs_like "${db}__pre_revert_")
            [ -n "$old" ] || fail "$fp: the displaced database is not kept"
            # the kept state is in the store: any runner lists it
            expect_rc 0 B "$REVERT" --kept --json
            grep -qF "\"$old\"" "$T/out" || { cat "$T/out" >&2; fail "$fp: --kept does not list $old"; }
            expect_rc 0 A "$REVERT" --drop-kept --older-than 0s
            [ -z "$(dbs_like "${db}__pre_revert_")" ] || fail "$fp: --drop-kept left $old"
        fi
        [ -z "$(ls "$T/b/journal/" | grep json)" ] || fail "$fp: B kept a journal"
    done
}

my_fail_points="stage-begin revert-mysql-staging-created revert-mysql-loaded stage-end cutover-begin
    revert-mysql-before-rename revert-mysql-after-rename finish-begin"

test_mysql_runner_killed_at_each_fail_point_is_finished_by_another() {
    local fp
    setup myk mysql
    for fp in $my_fail_points; do
        echo "== $fp"
        for old in $(my_like); do my -e "DROP DATABASE \`$old\`"; done
        awsc s3 rm --quiet "s3://$RGW_BUCKET/$PREFIX/catalog/m1.json" || true
        my_prepare
        killed_at "$fp" m1
        [ "$(store_journals)" = 1 ] || fail "$fp: no journal in the store"
        case $fp in
        stage-* | revert-mysql-staging-* | revert-mysql-loaded) b_recovers rolled-back; want=damaged ;;
        *) b_recovers completed; want=point ;;
        esac
        my_state >"$T/recovered.my"
        cmp -s "$T/$want.my" "$T/recovered.my" || { diff "$T/$want.my" "$T/recovered.my" >&2; fail "$fp: not at $want"; }
        [ -z "$(my_like | grep __revert_)" ] || fail "$fp: staging left: $(my_like)"
        if [ "$want" = point ]; then
            [ -n "$(my_like | grep __pre_revert_)" ] || fail "$fp: the displaced schema is not kept"
        fi
    done
}

test_kept_state_is_listed_and_dropped_from_any_runner() {
    setup kept pg
    pg_prepare
    expect_rc 0 A "$REVERT" p1 --yes --no-safety-snapshot
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "no displaced database"
    expect_rc 0 B "$REVERT" --kept --json
    python3 - "$T/out" "$old" <<'PY' || fail "--kept does not describe the displaced database"
import json, sys
doc = json.load(open(sys.argv[1]))
[k] = doc["kept"]
assert k["snapshot"] == "p1" and k["host"] == "runner-a" and k["authenticated"], k
assert k["targets"][0]["displaced"] == [sys.argv[2]], k
assert 0 <= k["age"] < 600, k
PY
    expect_rc 0 B "$REVERT" --drop-kept --older-than 1h
    [ -n "$(dbs_like "${db}__pre_revert_")" ] || fail "--drop-kept --older-than 1h dropped young state"
    # a record planted by a store writer drops nothing: it is not authenticated
    key=$(awsc s3 ls "s3://$RGW_BUCKET/$PREFIX/kept/" | awk '/\.json$/ {print $4}')
    awsc s3 cp --quiet "s3://$RGW_BUCKET/$PREFIX/kept/$key" "$T/k.json"
    sed -i "s/__pre_revert_/__other_/g" "$T/k.json"
    awsc s3 cp --quiet "$T/k.json" "s3://$RGW_BUCKET/$PREFIX/kept/x${key}"
    q -d postgres -c "CREATE DATABASE \"$(echo "$old" | sed 's/__pre_revert_/__other_/')\""
    expect_rc 1 B "$REVERT" --drop-kept --older-than 0s
    expect_err "not authenticated"
    [ -n "$(dbs_like "${db}__other_")" ] || fail "a planted record dropped a database"
    [ -z "$(dbs_like "${db}__pre_revert_")" ] || fail "the authenticated record was not dropped"
    awsc s3 rm --quiet "s3://$RGW_BUCKET/$PREFIX/kept/x${key}"
    expect_rc 0 B "$REVERT" --kept --json
    grep -q '"kept": \[\]' "$T/out" || { cat "$T/out" >&2; fail "--kept still lists dropped state"; }
}

test_unauthenticated_store_journal_is_refused() {
    setup noauth pg
    pg_prepare
    killed_at stage-end p1
    sleep 5
    # a runner without the shared key cannot tell who wrote the journal: it changes nothing
    sed '/auth_key_file/d' "$T/snap.conf" >"$T/nokey.conf"
    run env SNAP_STATE_DIR=$T/b SNAP_HOST=runner-b "$REVERT" --recover -c "$T/nokey.conf"
    [ "$RC" = 5 ] || { cat "$T/err" >&2; fail "exit $RC, expected 5"; }
    expect_err "not authenticated"
    [ -n "$(dbs_like "${db}__revert_")" ] || fail "the staging database was removed on an unauthenticated journal"
    [ "$(store_journals)" = 1 ] || fail "the store journal was removed"
    # one edited in the store no longer verifies either
    key=$(awsc s3 ls "s3://$RGW_BUCKET/$PREFIX/journal/" | awk '/\.json$/ {print $4}')
    awsc s3 cp --quiet "s3://$RGW_BUCKET/$PREFIX/journal/$key" "$T/j.json"
    sed -i 's/"phase": "stage"/"phase": "cutover"/' "$T/j.json"
    awsc s3 cp --quiet "$T/j.json" "s3://$RGW_BUCKET/$PREFIX/journal/$key"
    expect_rc 5 B "$REVERT" --recover
    expect_err "not authenticated"
    capture_state "$db" live
    same_state damaged live
}

test_files_target_is_recovered_only_on_its_host() {
    setup files files
    mkdir -p "$T/conf"
    echo one >"$T/conf/a.conf"
    expect_rc 0 A "$SNAP" create f1
    echo two >"$T/conf/a.conf"
    before=$(tree_sum "$T/conf")
    killed_at stage-end f1
    sleep 5
    expect_rc 8 B "$REVERT" --recover
    expect_err "on host runner-a"
    [ "$(tree_sum "$T/conf")" = "$before" ] || fail "B changed the files"
    [ -n "$(ls -a "$T" | grep snap-stage)" ] || fail "B removed A's staging"
    [ "$(store_journals)" = 1 ] || fail "the store journal was removed"
    # A itself, back with its state directory, finishes it
    expect_rc 0 A "$REVERT" --recover
    [ -z "$(ls -a "$T" | grep snap-stage)" ] || fail "staging left"
    [ "$(store_journals)" = 0 ] || fail "the store journal is left"
}

test_files_target_lock_names_its_holder_and_lock_wait_follows() {
    setup flock files
    mkdir -p "$T/conf"
    echo one >"$T/conf/a.conf"
    expect_rc 0 A "$SNAP" create f1
    echo two >"$T/conf/a.conf"
    SNAP_FAILPOINT=stage-end:wait=$T/go A "$REVERT" f1 --yes --no-safety-snapshot >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    held "$T/a.err"
    # the same host and state directory: the lock file says who holds it
    expect_rc 4 A "$REVERT" f1 --yes --no-safety-snapshot --json
    expect_err "is locked by revert"
    expect_err "on host runner-a since"
    grep -q '"code": "locked"' "$T/out" || fail "the JSON error code is not locked"
    echo three >"$T/conf/a.conf"
    release_on "$T/err" "waiting up to 30 s"
    expect_rc 0 A "$REVERT" f1 --yes --no-safety-snapshot --lock-wait 30s
    wait "$apid" || fail "the first revert failed: $(cat "$T/a.err")"
    [ "$(cat "$T/conf/a.conf")" = one ] || fail "not at the point: $(cat "$T/conf/a.conf")"
}

# wait_for_lock: until A's revert holds its lock in the server
wait_pg_lock() {
    for _ in $(seq 100); do
        [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'snap revert % on runner-a'")" = 1 ] && return 0
        sleep 0.1
    done
    fail "A never took the lock"
}

test_pg_concurrent_reverts_one_proceeds_lock_wait_follows() {
    setup pgc pg
    pg_prepare
    SNAP_FAILPOINT=stage-end:wait=$T/go A "$REVERT" p1 --yes --no-safety-snapshot >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    wait_pg_lock
    expect_rc 4 B "$REVERT" p1 --yes --no-safety-snapshot --json
    expect_err "is locked by snap revert"
    expect_err "on runner-a"
    grep -q '"code": "locked"' "$T/out" || { cat "$T/out" >&2; fail "the JSON error code is not locked"; }
    # the other runner's recovery does not take a revert that is running
    expect_rc 4 B "$REVERT" --recover
    expect_err "still running"
    release_on "$T/err" "waiting up to 60 s"
    expect_rc 0 B "$REVERT" p1 --yes --no-safety-snapshot --lock-wait 60s
    expect_err "waiting up to 60 s"
    wait "$apid" || fail "A failed: $(cat "$T/a.err")"
    capture_state "$db" final
    same_state point final
    [ "$(dbs_like "${db}__pre_revert_" | wc -l)" = 2 ] || fail "not both reverts ran: $(dbs_like "${db}__")"
    [ -z "$(dbs_like "${db}__revert_")" ] || fail "staging left"
}

test_lease_is_renewed_while_a_long_revert_runs() {
    setup lease pg
    pg_prepare
    SNAP_FAILPOINT=stage-end:wait=$T/go A "$REVERT" p1 --yes --no-safety-snapshot >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    wait_pg_lock
    sleep 6 # three leases: only renewals keep it claimed
    expect_rc 4 B "$REVERT" --recover --json
    expect_err "still running"
    grep -q '"outcome": "running"' "$T/out" || fail "the journal is not reported as running"
    [ -n "$(dbs_like "${db}__revert_")" ] || fail "B removed the staging of a running revert"
    touch "$T/go"
    wait "$apid" || fail "A failed: $(cat "$T/a.err")"
    capture_state "$db" final
    same_state point final
    [ "$(store_journals)" = 0 ] || fail "the store journal is left"
}

test_mysql_concurrent_reverts_one_proceeds_lock_wait_follows() {
    setup myc mysql
    my_prepare
    SNAP_FAILPOINT=stage-end:wait=$T/go A "$REVERT" m1 --yes --no-safety-snapshot >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    for _ in $(seq 100); do
        [ "$(my -N -e "SELECT IS_USED_LOCK(CONCAT('snap-revert:', LEFT(SHA2('$mydb', 256), 32))) IS NOT NULL")" = 1 ] && break
        sleep 0.1
    done
    expect_rc 4 B "$REVERT" m1 --yes --no-safety-snapshot --json
    expect_err "schema $mydb is locked by session"
    grep -q '"code": "locked"' "$T/out" || fail "the JSON error code is not locked"
    release_on "$T/err" "waiting up to 60 s"
    expect_rc 0 B "$REVERT" m1 --yes --no-safety-snapshot --lock-wait 1m
    wait "$apid" || fail "A failed: $(cat "$T/a.err")"
    my_state >"$T/final.my"
    cmp -s "$T/point.my" "$T/final.my" || fail "not at the point"
    [ "$(my_like | grep -c __pre_revert_)" = 2 ] || fail "not both reverts ran: $(my_like)"
}

# A Job retried after its revert finished, here on another runner, reverts again: the
# database ends at the point, with its own safety snapshot and kept state, no staging and
# no journal left (revert(1), "Retried reverts").
test_pg_revert_retried_after_it_finished_ends_at_the_point() {
    setup retry pg
    pg_prepare
    expect_rc 0 A "$REVERT" p1 --yes
    expect_rc 0 B "$REVERT" p1 --yes --json
    capture_state "$db" again
    same_state point again
    grep -q '"safety_snapshot": "pre-revert-' "$T/out" || fail "the retry took no safety snapshot"
    [ -z "$(dbs_like "${db}__revert_")" ] || fail "staging left: $(dbs_like "${db}__revert_")"
    [ "$(dbs_like "${db}__pre_revert_" | wc -l)" = 2 ] || fail "each revert keeps what it displaced"
    [ "$(store_journals)" = 0 ] || fail "a store journal is left"
    [ -z "$(ls "$T/a/journal/" "$T/b/journal/" | grep json)" ] || fail "a local journal is left"
    expect_rc 0 A "$REVERT" --kept --json
    [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["kept"]))' "$T/out")" = 2 ] ||
        fail "--kept does not list both reverts"
}

run_tests "$@"
