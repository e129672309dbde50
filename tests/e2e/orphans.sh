#!/usr/bin/env bash
# End-to-end: the markers a files revert leaves beside a live path, and `revert --recover`
# removing marked staging when the journal itself is lost (local store); then the marker a
# PostgreSQL revert sets on its staging database (snap.revert), the comment a MySQL/MariaDB
# revert gives its staging and displaced schemas, and the same recovery; the size
# `revert --kept` lists for a database.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"
. "$(dirname "$0")/mysql/lib.sh"

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
    SNAP_FAILPOINT=stage-end:wait=$T/go "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf" >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    held "$T/a.err"
    [ -n "$(markers)" ] && [ -n "$(staging)" ] || fail "no marked staging"
    # the journals (not their lock files) are set aside here only to make recovery look past them
    mkdir -p "$T/aside/l" "$T/aside/s"
    mv "$T/state/journal/"*.json "$T/aside/l/" && mv "$T/store/journal/"* "$T/aside/s/" || fail "no journals to set aside"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = locked ] || { cat "$T/out" "$T/err" >&2; fail "not reported locked"; }
    [ -n "$(staging)" ] || fail "recovery removed the staging of a running revert"
    mkdir -p "$T/state/journal" "$T/store/journal"
    mv "$T/aside/l/"* "$T/state/journal/" && mv "$T/aside/s/"* "$T/store/journal/"
    touch "$T/go"
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

# ---- PostgreSQL: the marker is the database setting snap.revert ----

pg_conf() {
    pg_setup
    db=$(db_name "$1")
    make_small "$db"
    printf '[store]\nurl = %s\n\n[source app]\ntype = postgres\ndsn = dbname=%s\n' "$STORE" "$db" >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 -c "$T/snap.conf"
    q -d "$db" -c "UPDATE items SET price = 0"
}
# db_marker DB: the marker's JSON, read without connecting to DB
db_marker() {
    q -d postgres -c "SELECT substr(v, 13) FROM pg_catalog.pg_database d JOIN pg_catalog.pg_db_role_setting s
        ON s.setdatabase = d.oid AND s.setrole = 0, unnest(s.setconfig) v
        WHERE d.datname = '$1' AND v LIKE 'snap.revert=%'"
}
price_sum() { q -d "$db" -c "SELECT sum(price) FROM items"; }

test_pg_recover_drops_marked_staging_only() {
    pg_conf orphdb
    SNAP_FAILPOINT=stage-end run "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "revert was not killed (exit $RC)"; }
    rm -f "$T/state/journal/"* "$STORE/journal/"* 2>/dev/null || true
    [ -z "$(find "$T/state/journal" "$STORE/journal" -type f 2>/dev/null)" ] || fail "a journal is left"
    stg=$(dbs_like "${db}__revert_")
    [ "$(echo "$stg" | grep -c .)" = 1 ] || fail "no staging database: $stg"
    m=$(db_marker "$stg")
    [ -n "$m" ] || fail "the staging database carries no marker"
    id=$(echo "$m" | jq -r .revert_id)
    [ -n "$id" ] && [ "$id" != null ] || fail "the marker names no revert: $m"
    [ "$(echo "$m" | jq -r .live)" = "$db" ] || fail "the marker names another database: $m"
    [ "$(echo "$m" | jq -r .snapshot)" = "$(snapshot_id p1)" ] || fail "the marker names another snapshot: $m"
    now=$(date +%s)
    [ "$(echo "$m" | jq -r .created)" -le "$now" ] && [ "$(echo "$m" | jq -r .created)" -gt $((now - 600)) ] ||
        fail "creation time: $m"
    [ -z "$(db_marker "$db")" ] || fail "the live database carries a marker"
    # an unmarked look-alike, and one whose marker names another database
    q -d postgres -c "CREATE DATABASE \"${db}__revert_x\"" -c "CREATE DATABASE \"${db}__revert_y\"" \
        -c "ALTER DATABASE \"${db}__revert_y\" SET snap.revert = '{\"revert_id\":\"y\",\"snapshot\":\"y\",\"live\":\"other\"}'"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    expect_err "removed the staging database $stg that revert $id of $db left"
    valid
    [ "$(jq -r '.orphans | length' "$T/out")" = 1 ] || { cat "$T/out" >&2; fail "not one orphan reported"; }
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = removed ] || { cat "$T/out" >&2; fail "not reported removed"; }
    [ "$(jq -r '.orphans[0].database' "$T/out")" = "$db" ] || fail "the database is not reported"
    [ "$(jq -r '.orphans[0].staging' "$T/out")" = "$stg" ] || fail "the staging is not reported"
    db_exists "$stg" && fail "the marked staging database is left"
    db_exists "${db}__revert_x" || fail "the unmarked look-alike was dropped"
    db_exists "${db}__revert_y" || fail "the look-alike with a foreign marker was dropped"
    [ "$(price_sum)" = 0.00 ] || fail "the live database changed: $(price_sum)"
    q -d postgres -c "DROP DATABASE \"${db}__revert_x\"" -c "DROP DATABASE \"${db}__revert_y\""
}

# A revert still running holds the database's advisory lock: its staging is reported
# `locked` and left, even with both its journals out of sight; the revert then finishes.
test_pg_recover_leaves_staging_of_a_running_revert() {
    pg_conf orphpgrun
    SNAP_FAILPOINT=stage-end:wait=$T/go "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf" >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    held "$T/a.err"
    mkdir -p "$T/aside/l" "$T/aside/s"
    mv "$T/state/journal/"*.json "$T/aside/l/" && mv "$STORE/journal/"* "$T/aside/s/" || fail "no journals to set aside"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = locked ] || { cat "$T/out" "$T/err" >&2; fail "not reported locked"; }
    [ -n "$(dbs_like "${db}__revert_")" ] || fail "recovery dropped the staging of a running revert"
    mkdir -p "$T/state/journal" "$STORE/journal"
    mv "$T/aside/l/"* "$T/state/journal/" && mv "$T/aside/s/"* "$STORE/journal/"
    touch "$T/go"
    wait "$apid" || fail "the revert failed: $(cat "$T/a.err")"
    [ "$(price_sum)" != 0.00 ] || fail "not at the point"
    [ -z "$(dbs_like "${db}__revert_")" ] || fail "staging left"
}

test_pg_marker_moves_to_the_displaced_database_which_recovery_keeps() {
    pg_conf orphdisp
    expect_rc 0 "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    [ "$(price_sum)" != 0.00 ] || fail "not reverted"
    [ -z "$(db_marker "$db")" ] || fail "the database that became live keeps the marker: $(db_marker "$db")"
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "nothing was displaced"
    [ "$(db_marker "$old" | jq -r .live)" = "$db" ] || fail "the displaced database carries no marker"
    rm -f "$T/state/journal/"* "$STORE/journal/"* 2>/dev/null || true
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = kept ] || { cat "$T/out" >&2; fail "not reported kept"; }
    [ "$(jq -r '.orphans[0].displaced' "$T/out")" = "$old" ] || fail "the displaced database is not reported"
    expect_err "drop-kept"
    db_exists "$old" || fail "recovery dropped the displaced database"
    [ "$(q -d "$old" -c "SELECT sum(price) FROM items")" = 0.00 ] || fail "the displaced database changed"
}

test_pg_kept_lists_the_displaced_database_size() {
    pg_conf orphsize
    expect_rc 0 "$REVERT" p1 --yes --no-safety-snapshot -c "$T/snap.conf"
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "nothing was displaced"
    want=$(q -d postgres -c "SELECT pg_database_size('$old')")
    expect_rc 0 "$REVERT" --kept --json -c "$T/snap.conf"
    /usr/bin/python3 "$T_ROOT/tests/e2e/json_check.py" kept "$T/out" >"$T/check" 2>&1 ||
        { cat "$T/check" >&2; fail "not a valid kept document"; }
    size=$(jq -r '.kept[0].size' "$T/out")
    [ "$(jq -r '.kept[0].size | type' "$T/out")" = number ] || { cat "$T/out" >&2; fail "size is not a number: $size"; }
    # measured when the record was written: within a few pages of what the server says now
    [ "$size" -gt 0 ] && [ $((size - want)) -le 65536 ] && [ $((want - size)) -le 65536 ] ||
        fail "size $size, the server says $want"
}

# ---- MySQL/MariaDB: the marker is the schema comment ----

mdb_conf() {
    export SNAP_STATE_DIR=$T/state
    STORE=$T/store
    mdb=m_${1}_$$
    for s in $(my_schemas_like "$mdb"); do my -e "DROP DATABASE \`$s\`"; done
    my -e "CREATE DATABASE \`$mdb\`"
    my "$mdb" -e "CREATE TABLE acc (id INT PRIMARY KEY, bal INT, KEY (bal)) ENGINE=InnoDB;
        INSERT INTO acc SELECT seq, seq * 10 FROM seq_1_to_2000"
    printf '[store]\nurl = %s\n\n[source shop]\ntype = mysql\ndsn = %s\n' "$STORE" "$(my_dsn "$mdb")" >"$T/snap.conf"
    expect_rc 0 "$SNAP" create m1 -c "$T/snap.conf"
    # statistics as of now: InnoDB refreshes them in the background after a big change,
    # which would move the size a revert records for what it keeps
    my "$mdb" -e "UPDATE acc SET bal = 0; ANALYZE TABLE acc" >/dev/null
}
bal_sum() { my -N "$mdb" -e "SELECT SUM(bal) FROM acc"; }

test_mysql_recover_drops_marked_staging_only() {
    mdb_conf orph
    SNAP_FAILPOINT=stage-end run "$REVERT" m1 --yes --no-safety-snapshot -c "$T/snap.conf"
    [ "$RC" = 137 ] || { cat "$T/err" >&2; fail "revert was not killed (exit $RC)"; }
    rm -f "$T/state/journal/"* "$STORE/journal/"* 2>/dev/null || true
    [ -z "$(find "$T/state/journal" "$STORE/journal" -type f 2>/dev/null)" ] || fail "a journal is left"
    stg=$(my_schemas_like "${mdb}__revert_")
    [ "$(echo "$stg" | grep -c .)" = 1 ] || fail "no staging schema: $stg"
    m=$(my_comment "$stg")
    id=$(echo "$m" | jq -r .revert_id)
    [ -n "$id" ] && [ "$id" != null ] || fail "the staging schema carries no marker: '$m'"
    [ "$(echo "$m" | jq -r .live)" = "$mdb" ] || fail "the marker names another schema: $m"
    [ "$(echo "$m" | jq -r .snapshot)" = "$(snapshot_id m1)" ] || fail "the marker names another snapshot: $m"
    now=$(date +%s)
    [ "$(echo "$m" | jq -r .created)" -le "$now" ] && [ "$(echo "$m" | jq -r .created)" -gt $((now - 600)) ] ||
        fail "creation time: $m"
    [ -z "$(my_comment "$mdb")" ] || fail "the live schema carries a marker"
    # an unmarked look-alike, and one whose marker names another schema
    my -e "CREATE DATABASE \`${mdb}__revert_x\`; CREATE TABLE \`${mdb}__revert_x\`.t (i INT);
        CREATE DATABASE \`${mdb}__revert_y\` COMMENT '{\"revert_id\":\"y\",\"snapshot\":\"y\",\"live\":\"other\"}'"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    expect_err "removed the staging schema $stg that revert $id of $mdb left"
    expect_err "schema ${mdb}__revert_x carries no marker of a revert of $mdb: left alone"
    valid
    [ "$(jq -r '.orphans | length' "$T/out")" = 1 ] || { cat "$T/out" >&2; fail "not one orphan reported"; }
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = removed ] || { cat "$T/out" >&2; fail "not reported removed"; }
    [ "$(jq -r '.orphans[0].database' "$T/out")" = "$mdb" ] || fail "the schema is not reported"
    [ "$(jq -r '.orphans[0].staging' "$T/out")" = "$stg" ] || fail "the staging is not reported"
    [ "$(jq -r '.orphans[0].revert_id' "$T/out")" = "$id" ] || fail "the revert is not reported"
    my_schema_exists "$stg" && fail "the marked staging schema is left"
    my_schema_exists "${mdb}__revert_x" || fail "the unmarked look-alike was dropped"
    my_schema_exists "${mdb}__revert_y" || fail "the look-alike with a foreign marker was dropped"
    [ "$(my -N -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${mdb}__revert_x'")" = 1 ] ||
        fail "the unmarked look-alike changed"
    [ "$(bal_sum)" = 0 ] || fail "the live schema changed: $(bal_sum)"
    my -e "DROP DATABASE \`${mdb}__revert_x\`; DROP DATABASE \`${mdb}__revert_y\`"
}

test_mysql_recover_leaves_staging_of_a_running_revert() {
    mdb_conf orphrun
    SNAP_FAILPOINT=stage-end:wait=$T/go "$REVERT" m1 --yes --no-safety-snapshot -c "$T/snap.conf" >"$T/a.out" 2>"$T/a.err" &
    apid=$!
    held "$T/a.err"
    [ -n "$(my_schemas_like "${mdb}__revert_")" ] || fail "no staging schema"
    mkdir -p "$T/aside/l" "$T/aside/s"
    mv "$T/state/journal/"*.json "$T/aside/l/" && mv "$STORE/journal/"* "$T/aside/s/" || fail "no journals to set aside"
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = locked ] || { cat "$T/out" "$T/err" >&2; fail "not reported locked"; }
    [ -n "$(my_schemas_like "${mdb}__revert_")" ] || fail "recovery dropped the staging of a running revert"
    mkdir -p "$T/state/journal" "$STORE/journal"
    mv "$T/aside/l/"* "$T/state/journal/" && mv "$T/aside/s/"* "$STORE/journal/"
    touch "$T/go"
    wait "$apid" || fail "the revert failed: $(cat "$T/a.err")"
    [ "$(bal_sum)" = 20010000 ] || fail "not at the point: $(bal_sum)"
}

test_mysql_displaced_schema_is_marked_reported_and_sized() {
    mdb_conf orphdisp
    expect_rc 0 "$REVERT" m1 --yes --no-safety-snapshot -c "$T/snap.conf"
    [ "$(bal_sum)" = 20010000 ] || fail "not reverted: $(bal_sum)"
    [ -z "$(my_comment "$mdb")" ] || fail "the live schema carries a marker: $(my_comment "$mdb")"
    old=$(my_schemas_like "${mdb}__pre_revert_")
    [ -n "$old" ] || fail "nothing was displaced"
    m=$(my_comment "$old")
    [ "$(echo "$m" | jq -r .live)" = "$mdb" ] || fail "the displaced schema carries no marker: '$m'"
    id=$(echo "$m" | jq -r .revert_id)
    # revert --kept lists it with the size the server gave when the record was written
    want=$(my -N -e "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$old'")
    expect_rc 0 "$REVERT" --kept --json -c "$T/snap.conf"
    /usr/bin/python3 "$T_ROOT/tests/e2e/json_check.py" kept "$T/out" >"$T/check" 2>&1 ||
        { cat "$T/check" >&2; fail "not a valid kept document"; }
    [ "$(jq -r '.kept[0].revert_id' "$T/out")" = "$id" ] || { cat "$T/out" >&2; fail "the kept record names another revert"; }
    size=$(jq -r '.kept[0].size' "$T/out")
    [ "$(jq -r '.kept[0].size | type' "$T/out")" = number ] || { cat "$T/out" >&2; fail "size is not a number: $size"; }
    # the server's estimate may move as its statistics are refreshed: within 64 KiB
    [ "$size" -gt 0 ] && [ $((size - want)) -le 65536 ] && [ $((want - size)) -le 65536 ] ||
        fail "size $size, the server says $want"
    rm -f "$T/state/journal/"* "$STORE/journal/"* 2>/dev/null || true
    expect_rc 0 "$REVERT" --recover --json -c "$T/snap.conf"
    valid
    [ "$(jq -r '.orphans[0].outcome' "$T/out")" = kept ] || { cat "$T/out" >&2; fail "not reported kept"; }
    [ "$(jq -r '.orphans[0].displaced' "$T/out")" = "$old" ] || fail "the displaced schema is not reported"
    expect_err "drop-kept"
    my_schema_exists "$old" || fail "recovery dropped the displaced schema"
    [ "$(my -N "$old" -e "SELECT SUM(bal) FROM acc")" = 0 ] || fail "the displaced schema changed"
}

# A configured server that cannot be reached is no reason to fail a recovery that has
# nothing else to do: it is named in a warning, and the next --recover looks again.
test_recover_with_an_unreachable_server_warns() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/conf" && echo a >"$T/conf/a"
    cat >"$T/unreach.conf" <<EOF
[store]
url = $T/store

[source gone]
type = mysql
dsn = mysql://root@127.0.0.1:1/shop

[source gonepg]
type = postgres
dsn = host=127.0.0.1 port=1 dbname=shop connect_timeout=2
EOF
    expect_rc 0 "$SNAP" create c1 --store "$T/store" --files "$T/conf"
    expect_rc 0 "$REVERT" --recover -c "$T/unreach.conf"
    expect_err "cannot look for what earlier reverts left beside [source gone]"
    expect_err "cannot look for what earlier reverts left beside [source gonepg]"
}

run_tests "$@"
