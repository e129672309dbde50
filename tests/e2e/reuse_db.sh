#!/usr/bin/env bash
# End-to-end: a second snap of an unchanged PostgreSQL or MariaDB database stores almost
# nothing new: its data parts have the same bytes (fixed entry times, a stable row order,
# cut points that follow the rows) and become references to the stored ones. A changed row
# stores the parts around it only; revert restores what each snapshot saw.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
export PGOPTIONS='--client-min-messages=warning'

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }

id_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$ST/catalog/$1.json"; }
# own_bytes NAME / own_parts NAME: the parts stored under the snapshot's own data directory
own_bytes() { find "$ST/data/$(id_of "$1")" -name '*.tar.zst*' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
own_parts() { find "$ST/data/$(id_of "$1")" -name '*.tar.zst*' | wc -l; }
all_parts() { python3 -c 'import json,sys; print(sum(len(c["parts"]) for c in json.load(open(sys.argv[1]))["components"]))' "$ST/catalog/$1.json"; }

# at_most_pct NEW OLD PCT: NEW bytes are no more than PCT % of OLD
at_most_pct() { [ $(($1 * 100)) -le $(($2 * $3)) ] || fail "stored $1 bytes, more than $3 % of $2"; }

setup() {
    export SNAP_STATE_DIR=$T/state
    unset SNAP_PASSPHRASE
    ST=$T/store
}

# A big table (about 20 MB of rows), a table without a primary key, and 30 small ones.
pg_db() {
    PGDB=t_reuse_$$_$RANDOM
    q -d postgres -c "CREATE DATABASE $PGDB"
    q -d "$PGDB" >/dev/null <<'EOF'
CREATE TABLE big (id int PRIMARY KEY, note text, n bigint);
INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text), g * 3 FROM generate_series(1, 250000) g;
CREATE TABLE loose (a int, b text);
INSERT INTO loose SELECT g % 97, md5(g::text) FROM generate_series(1, 20000) g;
DO $$ BEGIN FOR i IN 1..30 LOOP
  EXECUTE format('CREATE TABLE small_%s (id serial PRIMARY KEY, v text)', i);
  EXECUTE format('INSERT INTO small_%s (v) SELECT md5(g::text) FROM generate_series(1, %s) g', i, i * 10);
END LOOP; END $$;
VACUUM ANALYZE;
EOF
    printf '[snap]\npg_chunk_size = 1M\n[source shop]\ntype = postgres\ndsn = dbname=%s\n' "$PGDB" >"$T/snap.conf"
}
pg_sum() { q -d "$PGDB" -c "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM $1 t"; }

my_db() {
    MYDB=t_reuse_$$_$RANDOM
    my -e "CREATE DATABASE $MYDB"
    my "$MYDB" <<'EOF'
CREATE TABLE big (id int PRIMARY KEY, note text, n bigint) ENGINE=InnoDB;
INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)), seq * 3 FROM seq_1_to_250000;
CREATE TABLE loose (a int, b text) ENGINE=InnoDB;
INSERT INTO loose SELECT seq % 97, MD5(seq) FROM seq_1_to_20000;
EOF
    for i in $(seq 1 30); do
        echo "CREATE TABLE small_$i (id int AUTO_INCREMENT PRIMARY KEY, v text);
              INSERT INTO small_$i (v) SELECT MD5(seq) FROM seq_1_to_$((i * 10));"
    done | my "$MYDB"
    # fresh statistics now, so that no recalculation runs between two snaps of this test
    my "$MYDB" -e "ANALYZE TABLE big, loose" >/dev/null
    printf '[source ledger]\ntype = mysql\ndsn = mysql://root@localhost/%s?socket=%s\nchunk_size = 256k\n' \
        "$MYDB" "$MY_SOCKET" >"$T/snap.conf"
}
my_sum() { my -N "$MYDB" -e "SELECT MD5(GROUP_CONCAT(CONCAT_WS(':', $2) ORDER BY $2 SEPARATOR ',')) FROM $1"; }

snap_() { expect_rc 0 "$SNAP" create "$1" --store "$ST" --config "$T/snap.conf" --jobs 2 "${@:2}"; }

# Two snaps of an unchanged database, then one after a changed row; revert of each.
test_postgres_unchanged_database_is_stored_once() {
    setup
    pg_db
    want=$(pg_sum big) want_loose=$(q -d "$PGDB" -c "SELECT md5(string_agg(t::text, ',' ORDER BY a, b)) FROM loose t")
    snap_ p1
    [ "$(own_parts p1)" -ge 8 ] || fail "the database should be several parts, is $(own_parts p1)"
    snap_ p2
    [ "$(all_parts p2)" = "$(all_parts p1)" ] || fail "p2 names $(all_parts p2) parts, p1 $(all_parts p1)"
    at_most_pct "$(own_bytes p2)" "$(own_bytes p1)" 5
    [ "$(own_parts p2)" -le 1 ] || fail "p2 stored $(own_parts p2) parts of an unchanged database"
    q -d "$PGDB" -c "UPDATE big SET note = 'damaged'; DELETE FROM loose"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(pg_sum big)" = "$want" ] || fail "revert of p2 did not restore the rows"
    # the table without a key comes back whole; its parts load on several connections, so
    # in another physical order (docs/design.md, "Reuse")
    [ "$(q -d "$PGDB" -c "SELECT md5(string_agg(t::text, ',' ORDER BY a, b)) FROM loose t")" = "$want_loose" ] ||
        fail "revert of p2 did not restore the table without a key"

    # revert rewrote the tables: a new baseline, then one changed row (longer than it was)
    snap_ p3
    q -d "$PGDB" -c "UPDATE big SET note = 'changed, and longer than the note it replaces' WHERE id = 123456"
    want=$(pg_sum big)
    snap_ p4
    [ "$(own_parts p4)" -le 4 ] || fail "p4 stored $(own_parts p4) parts for one changed row"
    # the new version of the row lands where the server finds room (often the table's end):
    # the part it left and the part it joined are stored again, each up to 4 chunks
    at_most_pct "$(own_bytes p4)" "$(own_bytes p1)" 50
    q -d "$PGDB" -c "UPDATE big SET note = 'damaged' WHERE id < 1000"
    expect_rc 0 "$REVERT" p4 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(pg_sum big)" = "$want" ] || fail "revert of p4 did not restore the rows"
    [ "$(q -d "$PGDB" -c "SELECT note FROM big WHERE id = 123456")" = "changed, and longer than the note it replaces" ] ||
        fail "revert of p4 lost the changed row"
    q -d postgres -c "DROP DATABASE $PGDB"
}

test_mysql_unchanged_database_is_stored_once() {
    setup
    my_db
    want=$(my_sum big id,note,n) want_loose=$(my_sum loose a,b)
    snap_ p1
    [ "$(own_parts p1)" -ge 8 ] || fail "the database should be several parts, is $(own_parts p1)"
    snap_ p2
    [ "$(all_parts p2)" = "$(all_parts p1)" ] || fail "p2 names $(all_parts p2) parts, p1 $(all_parts p1)"
    at_most_pct "$(own_bytes p2)" "$(own_bytes p1)" 5
    [ "$(own_parts p2)" -le 1 ] || fail "p2 stored $(own_parts p2) parts of an unchanged database"
    my "$MYDB" -e "UPDATE big SET note = 'damaged'; DELETE FROM loose"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(my_sum big id,note,n)" = "$want" ] || fail "revert of p2 did not restore the rows"
    [ "$(my_sum loose a,b)" = "$want_loose" ] || fail "revert of p2 did not restore the table without a key"

    my "$MYDB" -e "ANALYZE TABLE big, loose" >/dev/null # the revert reloaded them
    snap_ p3
    my "$MYDB" -e "UPDATE big SET note = 'changed, and longer than the note it replaces' WHERE id = 123456"
    want=$(my_sum big id,note,n)
    snap_ p4
    [ "$(own_parts p4)" -le 4 ] || fail "p4 stored $(own_parts p4) parts for one changed row"
    at_most_pct "$(own_bytes p4)" "$(own_bytes p1)" 25
    my "$MYDB" -e "UPDATE big SET note = 'damaged' WHERE id < 1000"
    expect_rc 0 "$REVERT" p4 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(my_sum big id,note,n)" = "$want" ] || fail "revert of p4 did not restore the rows"
    [ "$(my -N "$MYDB" -e "SELECT note FROM big WHERE id = 123456")" = "changed, and longer than the note it replaces" ] ||
        fail "revert of p4 lost the changed row"
    my -e "DROP DATABASE $MYDB"
}

# Parts are sealed per snapshot, but their content (the compressed bytes) is what is
# compared: an encrypted store reuses them too, and keeps them readable.
test_encrypted_store_reuses_unchanged_database_parts() {
    setup
    pg_db
    head -c 32 /dev/urandom >"$T/key" && chmod 600 "$T/key"
    printf '[store]\nkey_file = %s\n' "$T/key" >>"$T/snap.conf"
    want=$(pg_sum big)
    snap_ p1
    snap_ p2
    [ "$(find "$ST/data/$(id_of p1)" -name '*.tar.zst.enc' | wc -l)" -ge 8 ] || fail "p1 is not sealed parts"
    at_most_pct "$(own_bytes p2)" "$(own_bytes p1)" 5
    expect_rc 0 "$SNAP" delete p1 --store "$ST" --config "$T/snap.conf" --yes
    expect_rc 0 "$SNAP" verify p2 --store "$ST" --config "$T/snap.conf"
    q -d "$PGDB" -c "UPDATE big SET note = 'damaged'"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(pg_sum big)" = "$want" ] || fail "revert of p2 from the encrypted store did not restore the rows"
    q -d postgres -c "DROP DATABASE $PGDB"
}

run_tests "$@"
