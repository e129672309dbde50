#!/usr/bin/env bash
# PostgreSQL: bad input gives a clear error, the documented exit code, and loses nothing.
# needs: postgres
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

no_snapshot() { [ ! -e "$STORE/catalog/$1.json" ] || fail "snapshot $1 was committed"; }

test_unreachable_server() {
    pg_setup
    expect_rc 6 "$SNAP" create p1 --pg "host=127.0.0.1 port=1 dbname=x connect_timeout=3" --store "$STORE"
    expect_err "cannot connect to postgres 127.0.0.1:1/x"
    expect_err "hint:"
    no_snapshot p1
}

test_wrong_password() {
    pg_setup
    expect_rc 6 "$SNAP" create p1 --pg "postgresql://$T_PG_PWUSER:Wr0ng-s3cret@$T_PG_TCP_HOST:$PGPORT/postgres" \
        --store "$STORE" --json
    expect_err "password authentication failed"
    expect_err "PGPASSWORD, ~/.pgpass"
    ! grep -qF "Wr0ng-s3cret" "$T/out" "$T/err" || fail "the password was printed"
    no_snapshot p1
}

test_database_that_does_not_exist() {
    pg_setup
    expect_rc 3 "$SNAP" create p1 --pg "dbname=no_such_db_$$" --store "$STORE"
    expect_err "database \"no_such_db_$$\" does not exist"
    no_snapshot p1
}

test_no_createdb_points_to_transaction_mode() {
    pg_setup
    db=$(db_name nocreate)
    q -d postgres -c "DROP ROLE IF EXISTS nocreate_$$" -c "CREATE ROLE nocreate_$$ LOGIN NOCREATEDB"
    q -d postgres -c "CREATE DATABASE \"$db\" OWNER nocreate_$$"
    q -d "$db" -U "nocreate_$$" -c "CREATE TABLE t (id int PRIMARY KEY, v text)" \
        -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g"
    dsn="dbname=$db user=nocreate_$$"
    expect_rc 0 "$SNAP" create p1 --pg "$dsn" --store "$STORE"
    q -d "$db" -c "DELETE FROM t WHERE id > 10"
    expect_rc 6 "$REVERT" p1 --store "$STORE" --yes
    expect_err "no CREATEDB"
    expect_err "--mode transaction"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM t')" = 10 ] || fail "the failed revert changed the database"
    # and the hint works: the same user reverts in place
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --mode transaction
    [ "$(q -d "$db" -c 'SELECT count(*) FROM t')" = 1000 ] || fail "transaction mode did not restore t"
}

test_missing_roles_are_named_before_any_change() {
    pg_setup
    db=$(db_name roles)
    make_small "$db"
    q -d postgres -c "DROP ROLE IF EXISTS gone_$$" -c "CREATE ROLE gone_$$"
    q -d "$db" -c "ALTER TABLE notes OWNER TO gone_$$" -c "GRANT SELECT ON items TO gone_$$"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "REASSIGN OWNED BY gone_$$ TO postgres" -c "DROP OWNED BY gone_$$"
    q -d postgres -c "DROP ROLE gone_$$"
    q -d "$db" -c "DELETE FROM notes"
    capture_state "$db" before
    expect_rc 3 "$REVERT" p1 --store "$STORE" --yes
    expect_err "roles the snapshot needs do not exist on this server: gone_$$"
    expect_err "CREATE ROLE"
    capture_state "$db" after
    same_state before after
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_pg_dump_older_than_the_server() {
    pg_setup
    db=$(db_name olddump)
    make_small "$db"
    mkdir "$T/bin"
    printf '#!/bin/sh\necho "pg_dump (PostgreSQL) 14.9"\n' >"$T/bin/pg_dump"
    chmod +x "$T/bin/pg_dump"
    SNAP_PG_BINDIR=$T/bin expect_rc 1 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    expect_err "version 14, older than the server (15)"
    expect_err "postgresql-client-15"
    no_snapshot p1
}

test_sessions_that_cannot_be_ended() {
    pg_setup
    db=$(db_name stuck)
    q -d postgres -c "DROP ROLE IF EXISTS owner_$$" -c "CREATE ROLE owner_$$ LOGIN CREATEDB"
    q -d postgres -c "CREATE DATABASE \"$db\" OWNER owner_$$"
    q -d "$db" -U "owner_$$" -c "CREATE TABLE t AS SELECT generate_series(1, 100) AS id"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db user=owner_$$" --store "$STORE"
    # a superuser's session, which the owner may not end
    psql -X -q -d "$db" -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
    sleeper=$!
    sleep 0.5
    q -d "$db" -c "DELETE FROM t"
    expect_rc 6 "$REVERT" p1 --store "$STORE" --yes
    expect_err "1 session on database $db cannot be ended by this user (held by postgres)"
    expect_err "pg_signal_backend"
    kill $sleeper 2>/dev/null || true
    q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db'" >/dev/null
    [ "$(q -d "$db" -c 'SELECT count(*) FROM t')" = 0 ] || fail "the refused revert changed the database"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_staging_name_already_taken() {
    pg_setup
    db=$(db_name taken)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    id=$(snapshot_id p1)
    staged="${db}__revert_${id##*-}"
    q -d postgres -c "CREATE DATABASE \"$staged\""
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 4 "$REVERT" p1 --store "$STORE" --yes
    expect_err "staging database $staged already exists"
    expect_err "revert --recover"
    db_exists "$staged" || fail "the taken database was dropped"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 0 ] || fail "the refused revert changed the database"
}

# [revert] pg_maintenance_work_mem reaches the server: a value the server refuses, or one
# that is not a single value, is refused before anything is staged; unset, the revert
# runs (which sort memory it then uses is not visible here: bench/pg.sh measures it).
test_sort_memory_the_server_refuses() {
    pg_setup
    db=$(db_name sortmem)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "DELETE FROM notes"
    printf '[revert]\npg_maintenance_work_mem = 63kB\n' >"$T/low.conf"
    expect_rc 2 "$REVERT" p1 --config "$T/low.conf" --store "$STORE" --yes --no-safety-snapshot
    expect_err "[revert] pg_maintenance_work_mem: "
    expect_err "outside the valid range for parameter \"maintenance_work_mem\""
    expect_no_err "staging"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 0 ] || fail "the failed revert changed the database"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
    printf '[revert]\npg_maintenance_work_mem = 1 GB\n' >"$T/two.conf"
    expect_rc 2 "$REVERT" p1 --config "$T/two.conf" --store "$STORE" --yes --no-safety-snapshot
    expect_err "must be one value"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 0 ] || fail "the refused revert changed the database"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "the revert did not restore notes"
}

test_corrupt_part_stops_before_the_cutover() {
    pg_setup
    db=$(db_name corrupt)
    make_small "$db"
    printf '[snap]\npg_chunk_size = 64K\n' >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf" --pg "dbname=$db" --store "$STORE"
    part=$(ls "$STORE"/data/*/*.tar.zst | sort | tail -n 1)
    size=$(stat -c %s "$part")
    printf 'XXXX' | dd of="$part" bs=1 seek=$((size / 2)) conv=notrunc status=none
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 5 "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    expect_err "checksum"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 0 ] || fail "the live database changed"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_replication_slot_holds_the_database() {
    pg_setup
    db=$(db_name slot)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "SELECT pg_create_logical_replication_slot('slot_$$', 'test_decoding')" >/dev/null
    expect_rc 4 "$REVERT" p1 --store "$STORE" --yes
    q -d "$db" -c "SELECT pg_drop_replication_slot('slot_$$')" >/dev/null
    grep -qF "held by replication slot slot_$$" "$T/err" || fail "the slot is not named"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_subscription_holds_the_database() {
    pg_setup
    db=$(db_name sub)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "CREATE SUBSCRIPTION sub_$$ CONNECTION 'dbname=postgres' PUBLICATION nothing
                   WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE)" 2>/dev/null
    expect_rc 4 "$REVERT" p1 --store "$STORE" --yes
    q -d "$db" -c "DROP SUBSCRIPTION sub_$$"
    grep -qF "held by subscription sub_$$" "$T/err" || fail "the subscription is not named"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

# a client program that restarts the server first (once), then runs the real one
restarting_tool() { # TOOL ARGUMENT-THAT-TRIGGERS
    mkdir -p "$T/bin"
    cat >"$T/bin/$1" <<EOF
#!/bin/sh
case "\$*" in
*--version*) ;;
*$2*)
    if [ ! -e "$T/restarted" ]; then
        touch "$T/restarted"
        $(declare -f pg_restart | sed 's/^/    /')
        T_PG_OWNER=$T_PG_OWNER T_PG_BIN=$T_PG_BIN T_PG_DATA=$T_PG_DATA
        pg_restart
    fi ;;
esac
exec /usr/bin/$1 "\$@"
EOF
    chmod +x "$T/bin/$1"
    [ "$1" = pg_dump ] && ln -s /usr/bin/pg_restore "$T/bin/pg_restore"
    [ "$1" = pg_restore ] && ln -s /usr/bin/pg_dump "$T/bin/pg_dump"
    return 0
}

test_server_restart_during_snap() {
    pg_setup
    db=$(db_name restartsnap)
    make_small "$db"
    restarting_tool pg_dump --snapshot
    SNAP_PG_BINDIR=$T/bin run "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --jobs 2
    [ -e "$T/restarted" ] || fail "the server was not restarted"
    [ "$RC" != 0 ] || fail "the snap succeeded across a server restart"
    grep -q "error:" "$T/err" || fail "no error message"
    no_snapshot p1
    [ -z "$(ls "$STORE/data" 2>/dev/null)" ] || fail "parts were left in the store: $(ls "$STORE/data")"
}

test_server_restart_during_staging() {
    pg_setup
    db=$(db_name restartrev)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "DELETE FROM notes"
    restarting_tool pg_restore --section=post-data
    SNAP_PG_BINDIR=$T/bin run "$REVERT" p1 --store "$STORE" --yes --no-safety-snapshot
    [ -e "$T/restarted" ] || fail "the server was not restarted"
    [ "$RC" != 0 ] || fail "the revert succeeded across a server restart"
    grep -q "error:" "$T/err" || fail "no error message"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 0 ] || fail "the live database changed"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

# One database named by two sources, however the DSN is written: a usage error naming both,
# nothing in the store. A manifest that names one database twice (written before snap
# refused it, signed with this host's key) is refused before any lock or change: exit 5.
test_same_database_twice() {
    pg_setup
    db=$(db_name twice) db2=$(db_name twice2)
    make_small "$db"
    make_small "$db2"
    expect_rc 2 "$SNAP" create p1 --pg "dbname=$db" --pg "postgresql:///$db" --store "$STORE"
    expect_err "sources $db and $db-2 both name postgres database $db on one server (dbname='$db'; postgresql:///$db)"
    expect_err "hint: name each target once"
    expect_rc 2 "$SNAP" create p1 --pg "dbname=$db host=$PGHOST" --pg "dbname=$db host=$PGHOST user=other" --store "$STORE"
    expect_err "both name postgres database $db"
    no_snapshot p1
    [ -z "$(ls "$STORE/data" 2>/dev/null)" ] || fail "parts were written: $(ls "$STORE/data")"

    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --pg "dbname=$db2" --store "$STORE"
    q -d "$db" -c "DELETE FROM notes WHERE id > 10"
    q -d "$db2" -c "DELETE FROM notes WHERE id > 20"
    python3 "$T_ROOT/tests/e2e/resign.py" "$STORE" p1 "$SNAP_STATE_DIR/host.key" "
c = [c for c in m['components'] if c['name'] == '$db2'][0]
c['info']['database_name'] = '$db'
c['source'] = 'dbname=$db'"
    expect_rc 5 "$REVERT" p1 --store "$STORE" --yes
    expect_err "snapshot p1 names one target twice: components $db and $db2 both name postgres database $db on one server"
    expect_err "nothing was changed"
    expect_err "--only NAME"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 10 ] || fail "the refused revert changed $db"
    [ "$(q -d "$db2" -c 'SELECT count(*) FROM notes')" = 20 ] || fail "the refused revert changed $db2"
    [ "$(q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE 't_twice%'")" = 2 ] ||
        fail "a staging database was left: $(q -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 't_twice%'")"
    [ "$(ls "$STORE/catalog")" = p1.json ] || fail "a safety snapshot was taken"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --only "$db" --no-safety-snapshot --drop-old
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "--only did not revert $db"
    q -d postgres -c "DROP DATABASE \"$db\"" -c "DROP DATABASE \"$db2\""
}

run_tests "$@"
