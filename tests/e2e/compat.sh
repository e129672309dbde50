#!/usr/bin/env bash
# compat.sh: a store written by an earlier version stays readable. The store in
# tests/e2e/fixtures/store-early was written by commit cc1cd39 (make-store-early.sh beside
# it): manifest and store format 1, PostgreSQL table data in COPY text format, an entry
# index of format 1, manifests signed by a host key this host does not hold. Each of its
# components is restored by this version and compared with a fresh load of the SQL it was
# made from (kept beside the store), so that a change of any reader shows here.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"
. "$(dirname "$0")/mysql/lib.sh"

EARLY=$T_ROOT/tests/e2e/fixtures/store-early

# A copy of the early store, and the configuration that names its targets on this host:
# an unauthenticated manifest names none itself.
early() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/early
    cp -r "$EARLY" "$ST"
    cat >"$T/early.conf" <<EOF
[source early_pg]
type = postgres
dsn = dbname=early_pg

[source early_my]
type = mysql
dsn = $(my_dsn early_my)
EOF
}

# pg_reference DB: the database the early snapshot was taken of, loaded afresh
pg_reference() {
    PG_FIXTURE=$EARLY.pg.sql make_fixture "$1"
}

test_early_store_is_listed_and_verified() {
    early
    expect_rc 0 "$SNAP" list --store "$ST" --json
    expect_out '"early"'
    expect_rc 0 "$SNAP" show early --store "$ST" --json
    for c in conf early_pg early_my; do expect_out "\"$c\""; done
    expect_rc 0 "$SNAP" verify early --store "$ST"
    # the names in it are not trusted: a revert in place must be named here
    expect_rc 5 "$REVERT" early --store "$ST" --only conf --yes
    expect_err "is not authenticated"
}

test_early_postgres_text_data_restores_beside() {
    early
    db=$(db_name early_ref)
    pg_reference "$db"
    expect_rc 0 "$REVERT" early --store "$ST" -c "$T/early.conf" --only early_pg --to "${db}_copy" --yes
    capture_state "$db" ref
    capture_state "${db}_copy" copy
    grep -q '^app.invoices|500|' "$T/ref.content" || fail "the reference has no 500 invoices"
    sed -i "s/$db\(_copy\)*\"* IS\b//" "$T/ref.schema" "$T/copy.schema"
    same_state ref copy
}

test_early_postgres_reverts_in_place_and_the_store_takes_new_snapshots() {
    early
    ref=$(db_name early_ref2)
    pg_reference "$ref"
    pg_reference early_pg
    damage early_pg
    expect_rc 0 "$REVERT" early --store "$ST" -c "$T/early.conf" --only early_pg --yes --json
    capture_state "$ref" ref
    capture_state early_pg live
    sed -i "s/$ref\"* IS\b//; s/early_pg\"* IS\b//" "$T/ref.schema" "$T/live.schema"
    same_state ref live
    # its safety snapshot is of this version's layout: the store's format is raised to
    # say so, and the early snapshot is still read beside it
    safety=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["safety_snapshot"])' "$T/out")
    expect_rc 0 "$SNAP" verify "$safety" --store "$ST"
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["format"] >= 3' "$ST/STORE.json" ||
        fail "STORE.json was not raised: $(cat "$ST/STORE.json")"
    expect_rc 0 "$SNAP" verify early --store "$ST"
    q -d postgres -c "DROP DATABASE early_pg" -c "DROP DATABASE $(psql -X -At -d postgres -c \
        "SELECT quote_ident(datname) FROM pg_database WHERE datname LIKE 'early\_pg\_\_pre\_revert\_%'")"
}

test_early_mysql_schema_restores_beside() {
    early
    my -e "DROP DATABASE IF EXISTS early_ref; CREATE DATABASE early_ref CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    my early_ref <"$EARLY.my.sql"
    expect_rc 0 "$REVERT" early --store "$ST" -c "$T/early.conf" --only early_my --to early_copy --yes
    fingerprint early_ref >ref.txt
    fingerprint early_copy >copy.txt
    grep -q 'CREATE TABLE `item`' ref.txt || fail "the reference schema has no table item: $(head -c 300 ref.txt)"
    diff -u ref.txt copy.txt >&2 || fail "the early MySQL snapshot restores otherwise than its SQL loads"
    my -e "DROP DATABASE early_ref; DROP DATABASE early_copy"
}

# its files component names a directory of the host that made it: restored beside here
test_early_files_restore_beside() {
    early
    expect_rc 0 "$REVERT" early --store "$ST" --only conf --to "$T/conf" --yes
    [ "$(cat "$T/conf/main.conf")" = "listen 80" ] || fail "main.conf: $(cat "$T/conf/main.conf")"
    [ "$(stat -c %a "$T/conf/main.conf")" = 640 ] || fail "main.conf mode $(stat -c %a "$T/conf/main.conf")"
    [ "$(cat "$T/conf/conf.d/a.conf")" = x ] || fail "conf.d/a.conf not restored"
    [ "$(readlink "$T/conf/current.conf")" = main.conf ] || fail "the symlink not restored"
    [ "$(find "$T/conf" | wc -l)" = 5 ] || fail "other entries: $(find "$T/conf")"
}

run_tests "$@"
