#!/usr/bin/env bash
# MySQL/MariaDB: snap and revert against a real server (tests/services/mariadb.sh).
# needs: mariadb
# slow
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mysql/lib.sh"
FIX=$T_ROOT/tests/e2e/mysql

# A fresh schema for one test, named after it.
newdb() {
    DB=t_${FUNCNAME[1]#test_}
    local s
    for s in $(my -N -e "SHOW DATABASES LIKE '${DB//_/\\_}%'"); do my -e "DROP DATABASE \`$s\`"; done
    my -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    DSN="mysql://root@localhost/$DB?socket=$MY_SOCKET"
    export SNAP_STATE_DIR=$T/state
}
snap_() { "$SNAP" create "$@" --store "$T/store"; }

# sum of both account tables: the transfers keep it constant
bank_total() { my -N "$1" -e "SELECT (SELECT SUM(bal) FROM acc_a) + (SELECT SUM(bal) FROM acc_b)"; }

test_roundtrip_fidelity() {
    newdb
    my "$DB" <"$FIX/fidelity.sql"
    fingerprint "$DB" >before.txt
    grep -q 'AUTO_INCREMENT=10 ' before.txt || fail "fixture: the item counter is not 10"
    expect_rc 0 snap_ fid --mysql "$DSN" --json
    grep -q '"non_transactional"' "$T/out" || fail "manifest lacks non_transactional"
    grep -q '"doc"' "$T/out" || fail "the MyISAM table is not named as non-transactional"
    grep -q '"binlog_file"' "$T/out" || fail "manifest lacks the binlog position"
    # damage every kind of object
    my "$DB" -e "SET foreign_key_checks=0; DROP TABLE plain; UPDATE item SET txt='changed' WHERE id=2;
        INSERT INTO item (node_id, price) VALUES (1, 5); DELETE FROM doc; DROP TRIGGER item_bi2;
        DROP VIEW v_totals; CREATE OR REPLACE VIEW v_items AS SELECT 1 AS x; DROP PROCEDURE add_node;
        DROP EVENT purge_docs; CREATE TABLE extra (id INT PRIMARY KEY); ALTER TABLE logbook DROP PARTITION pmax;
        CREATE FUNCTION newer() RETURNS INT RETURN 1"
    expect_rc 0 "$REVERT" fid --store "$T/store" --dry-run
    expect_out "triggers recreated outside the atomic switch: item_bi, item_bi2, node_ad"
    expect_out "views recreated outside the atomic switch: a_top, v_items, v_plain, v_totals"
    expect_out "routines recreated outside the atomic switch: node_depth, add_node"
    expect_rc 0 "$REVERT" fid --store "$T/store" --yes
    expect_err "RENAME TABLE switched 7 table(s)"
    expect_err "outside it"
    fingerprint "$DB" >after.txt
    diff before.txt after.txt >&2 || fail "the restored schema differs from the snapshot"
    # the next insert gets the id it would have got at the point
    [ "$(my -N "$DB" -e "INSERT INTO item (node_id, price) VALUES (1, 1); SELECT LAST_INSERT_ID()")" = 10 ] ||
        fail "the AUTO_INCREMENT counter was not restored"
    # foreign keys point at the right tables on both sides
    old=$(my -N -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${DB}\\_\\_pre\\_revert\\_%'")
    [ -n "$old" ] || fail "no displaced schema kept"
    refs=$(my -N -e "SELECT CONCAT(k.TABLE_SCHEMA,'.',k.TABLE_NAME,'>',k.REFERENCED_TABLE_SCHEMA,'.',k.REFERENCED_TABLE_NAME)
        FROM information_schema.REFERENTIAL_CONSTRAINTS rc JOIN information_schema.KEY_COLUMN_USAGE k
        ON k.CONSTRAINT_SCHEMA=rc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME=rc.CONSTRAINT_NAME AND k.TABLE_NAME=rc.TABLE_NAME
        WHERE rc.CONSTRAINT_SCHEMA IN ('$DB','$old') ORDER BY 1" | sort -u | tr '\n' ' ')
    [ "$refs" = "$DB.item>$DB.node $DB.node>$DB.node $old.item>$old.node $old.node>$old.node " ] ||
        fail "foreign keys point at: $refs"
    # the displaced schema is a complete undo: it has the damaged state with its objects
    [ "$(my -N "$old" -e "SELECT COUNT(*) FROM extra")" = 0 ] || fail "displaced schema lacks the table made after the snap"
    my -N "$old" -e "SHOW FUNCTION STATUS WHERE Db='$old'" | grep -q newer || fail "displaced schema lacks its function"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_revert\\_%'")" ] || fail "the staging schema is left"
}

test_to_other_schema_leaves_original() {
    newdb
    my "$DB" <"$FIX/fidelity.sql"
    fingerprint "$DB" >before.txt
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "DELETE FROM plain WHERE id < 100"
    fingerprint "$DB" >damaged.txt
    # the safety snapshot of a schema that does not exist yet records it as absent
    expect_rc 0 "$REVERT" s --only "$DB" --to "${DB}_check" --store "$T/store" --yes
    fingerprint "${DB}_check" >check.txt
    diff before.txt check.txt >&2 || fail "--to copy differs from the snapshot"
    fingerprint "$DB" >now.txt
    cmp -s damaged.txt now.txt || fail "--to touched the original"
    # --to a schema that holds tables is refused before any change
    expect_rc 4 "$REVERT" s --to "$DB" --store "$T/store" --yes --no-safety-snapshot
    expect_err "holds tables"
    my -e "DROP DATABASE \`${DB}_check\`"
}

test_drop_old() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "UPDATE t SET v = 2"
    expect_rc 0 "$REVERT" s --store "$T/store" --yes --drop-old --no-safety-snapshot
    [ "$(my -N "$DB" -e "SELECT v FROM t")" = 1 ] || fail "not reverted"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "--drop-old left a schema"
}

# The safety snapshot taken before a revert undoes it.
test_revert_of_revert() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1), (2, 1);
        CREATE TRIGGER t_bu BEFORE UPDATE ON t FOR EACH ROW SET NEW.v = NEW.v"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "UPDATE t SET v = 2; INSERT INTO t VALUES (3, 3)"
    fingerprint "$DB" >damaged.txt
    expect_rc 0 "$REVERT" s --store "$T/store" --yes --drop-old
    [ "$(my -N "$DB" -e "SELECT SUM(v) FROM t")" = 2 ] || fail "not reverted"
    safety=$(LC_ALL=C grep -oh 'pre-revert-[[:alnum:].-]*[[:alnum:]]' "$T/out" "$T/err" | head -n 1)
    [ -n "$safety" ] || fail "no safety snapshot named"
    expect_rc 0 "$REVERT" "$safety" --store "$T/store" --yes --drop-old
    fingerprint "$DB" >again.txt
    diff damaged.txt again.txt >&2 || fail "reverting the safety snapshot did not give the state back"
}

# Transfers between two tables run while snap works; the restored copy keeps the total.
test_consistent_point_under_transfers() {
    newdb
    my "$DB" -e "CREATE TABLE acc_a (id INT PRIMARY KEY, bal BIGINT NOT NULL) ENGINE=InnoDB;
        CREATE TABLE acc_b LIKE acc_a;
        INSERT INTO acc_a SELECT seq, 1000 FROM seq_1_to_200000; INSERT INTO acc_b SELECT seq, 1000 FROM seq_1_to_200000"
    total=$(bank_total "$DB")
    (
        i=0
        while [ ! -e stop ]; do
            i=$((i + 1)); k=$((i * 7919 % 200000 + 1))
            echo "START TRANSACTION; UPDATE acc_a SET bal = bal - 5 WHERE id = $k; UPDATE acc_b SET bal = bal + 5 WHERE id = $k; COMMIT;"
        done | my "$DB"
    ) &
    loader=$!
    sleep 0.5
    expect_rc 0 "$SNAP" create s --mysql "$DSN" --store "$T/store" --jobs 2 --config /dev/null
    touch stop
    wait $loader
    expect_rc 0 "$REVERT" s --to "${DB}_copy" --store "$T/store" --yes --no-safety-snapshot
    [ "$(bank_total "${DB}_copy")" = "$total" ] || fail "total $(bank_total "${DB}_copy") in the copy, $total expected"
    [ "$(bank_total "$DB")" = "$total" ] || fail "transfers broke the invariant in the source"
    [ "$(my -N "${DB}_copy" -e "SELECT COUNT(*) FROM acc_a WHERE bal <> 1000")" -gt 0 ] || fail "no transfer overlapped the snap"
    my -e "DROP DATABASE \`${DB}_copy\`"
}

# A reader checking a cross-table invariant never sees old and new tables mixed.
test_cutover_atomic_for_readers() {
    newdb
    my "$DB" -e "CREATE TABLE ver_a (id INT PRIMARY KEY, v INT); CREATE TABLE ver_b LIKE ver_a; CREATE TABLE ver_c LIKE ver_a;
        INSERT INTO ver_a VALUES (1, 1); INSERT INTO ver_b VALUES (1, 1); INSERT INTO ver_c VALUES (1, 1)"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "START TRANSACTION; UPDATE ver_a SET v = 2; UPDATE ver_b SET v = 2; UPDATE ver_c SET v = 2; COMMIT"
    (
        while [ ! -e stop ]; do
            for _ in $(seq 200); do echo "SELECT (SELECT v FROM ver_a) + 10 * (SELECT v FROM ver_b) + 100 * (SELECT v FROM ver_c);"; done
        done | my -N "$DB" >seen.txt 2>reader.err
    ) &
    reader=$!
    sleep 0.3
    expect_rc 0 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    sleep 0.3
    touch stop
    wait $reader || true
    sort -u seen.txt >kinds.txt
    [ "$(tr '\n' ' ' <kinds.txt)" = "111 222 " ] || fail "reader saw: $(tr '\n' ' ' <kinds.txt)"
}

# A transaction holding a live table past lock_wait_timeout: the switch rolls back whole.
test_cutover_blocked_rolls_back() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); CREATE TABLE u LIKE t; INSERT INTO t VALUES (1, 1);
        CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v * 10; CREATE VIEW vt AS SELECT * FROM t"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "UPDATE t SET v = 2"
    fingerprint "$DB" >live.txt
    cat >r.conf <<CONF
[revert]
lock_wait_timeout = 1s
CONF
    (echo "START TRANSACTION; SELECT COUNT(*) FROM t; SELECT SLEEP(6); COMMIT;" | my "$DB" >/dev/null) &
    holder=$!
    sleep 0.5
    expect_rc 7 "$REVERT" s --config r.conf --store "$T/store" --yes --no-safety-snapshot
    expect_err "rolled back"
    wait $holder
    fingerprint "$DB" >after.txt
    diff live.txt after.txt >&2 || fail "the live schema is not as it was"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "a staging or displaced schema is left"
}

# A table of a million rows, split into primary-key ranges, dumped and loaded in parallel.
test_big_table_ranges() {
    newdb
    my "$DB" -e "CREATE TABLE big (id BIGINT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40), KEY ka (a)) ENGINE=InnoDB;
        INSERT INTO big SELECT seq, seq % 1000, IF(seq % 10 = 0, NULL, MD5(seq)) FROM seq_1_to_1000000; ANALYZE TABLE big"
    sum=$(my -N "$DB" -e "CHECKSUM TABLE big" | cut -f2)
    cat >snap.conf <<CONF
[source big]
type = mysql
dsn = $DSN
split_size = 4M
chunk_size = 1M
CONF
    expect_rc 0 "$SNAP" create s --config snap.conf --store "$T/store" --jobs 2 --json
    grep -q '"big": 1000000' "$T/out" || fail "row count not recorded"
    [ "$(ls "$T"/store/data/*/ | wc -l)" -ge 3 ] || fail "expected several parts"
    my "$DB" -e "DELETE FROM big WHERE id % 3 = 0"
    expect_rc 0 "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 2 --no-safety-snapshot --drop-old
    [ "$(my -N "$DB" -e "CHECKSUM TABLE big" | cut -f2)" = "$sum" ] || fail "checksum differs after revert"
    my "$DB" -e "SHOW CREATE TABLE big" | grep -q 'KEY `ka`' || fail "secondary index missing"
}

# Each part names the tables whose rows it holds (info.part_tables), and the revert uses
# it: two connections load two different tables while both have parts left, instead of
# filling one table together. A damaged list only loses that order.
test_part_tables_order_loads() {
    newdb
    my "$DB" -e "CREATE TABLE big (id INT PRIMARY KEY, s VARCHAR(40), KEY ks (s));
        INSERT INTO big SELECT seq, MD5(seq) FROM seq_1_to_150000;
        CREATE TABLE small (id INT PRIMARY KEY, s VARCHAR(40), KEY ks (s));
        INSERT INTO small SELECT seq, MD5(seq) FROM seq_1_to_60000; ANALYZE TABLE big, small"
    sums() { my -N "$DB" -e "CHECKSUM TABLE big, small" | cut -f2 | tr '\n' ' '; }
    before=$(sums)
    # the ranges of the bigger table come first, so the parts in order share it
    printf '[source %s]\ntype = mysql\ndsn = %s\nsplit_size = 1M\nchunk_size = 256K\n' "$DB" "$DSN" >snap.conf
    expect_rc 0 "$SNAP" create s --config snap.conf --store "$T/store" --jobs 2
    python3 - "$T/store" <<'PY' || fail "part_tables does not name what the parts hold"
import json, subprocess, sys
st = sys.argv[1]
c = json.load(open(st + "/catalog/s.json"))["components"][0]
pt = c["info"]["part_tables"]
assert len(pt) == len(c["parts"]), pt
for p, listed in zip(c["parts"], pt):
    names = subprocess.run(["tar", "--zstd", "-tf", st + "/" + p["key"]], capture_output=True, text=True, check=True).stdout.split()
    held = sorted({n.split("/")[1] for n in names if n.startswith("data/")})
    assert sorted(listed) == held, (p["key"], listed, held)
assert sum(1 for l in pt if l == ["big"]) >= 2 and sum(1 for l in pt if l == ["small"]) >= 2, pt
PY
    my "$DB" -e "DELETE FROM big WHERE id % 3 = 0; UPDATE small SET s = 'x'"
    expect_rc 0 "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 2 --no-safety-snapshot --drop-old -vv
    [ "$(sums)" = "$before" ] || fail "the rows differ after the revert"
    first=$(grep -o 'loading part [0-9]*, rows of [a-z]*' "$T/err" | head -n 2 | sed 's/.* //' | sort | tr '\n' ' ')
    [ "$first" = "big small " ] || fail "the first two loads were not of different tables: $first"
    python3 "$T_ROOT/tests/e2e/resign.py" "$T/store" s "$SNAP_STATE_DIR/host.key" "
c = m['components'][0]
c['info']['part_tables'] = [['nosuchtable'], [7], None] * len(c['parts'])
c['info']['part_tables'] = c['info']['part_tables'][:len(c['parts'])]" || fail "cannot edit the manifest"
    my "$DB" -e "TRUNCATE big; DELETE FROM small WHERE id > 10"
    expect_rc 0 "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 2 --no-safety-snapshot --drop-old -vv
    [ "$(sums)" = "$before" ] || fail "the rows differ after the revert of the damaged list"
    ! grep -q 'loading part [0-9]*, rows of' "$T/err" || fail "a damaged list still ordered the loads"
}

# The safety snapshot takes every setting of the source: with chunk_size = 1M, its copy
# of a 3.5 MB table is cut into several entries (the default, 8M, would make one).
test_safety_snapshot_uses_the_source_settings() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, s CHAR(64) NOT NULL);
        INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_100000"
    cat >snap.conf <<CONF
[source shop]
type = mysql
dsn = $DSN
chunk_size = 1M
CONF
    expect_rc 0 "$SNAP" create s --config snap.conf --store "$T/store"
    my "$DB" -e "DELETE FROM t WHERE id % 10 = 0"
    expect_rc 0 "$REVERT" s --config snap.conf --store "$T/store" --yes --drop-old --json
    safety=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["safety_snapshot"])' "$T/out")
    [ "$(my -N "$DB" -e "SELECT COUNT(*) FROM t")" = 100000 ] || fail "not reverted"
    expect_rc 0 "$SNAP" show "$safety" --store "$T/store" --json
    parts=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(" ".join(p["key"] for c in d["components"] for p in c["parts"]))' "$T/out")
    n=0
    for p in $parts; do n=$((n + $(tar --zstd -tf "$T/store/$p" | { grep -c '^data/t/' || true; }))); done
    [ "$n" -ge 3 ] || fail "the safety snapshot's table came in $n entries: chunk_size did not reach it"
}

# ---- bad input: a clear error and nothing lost ----

test_unreachable_server() {
    newdb
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    expect_rc 6 snap_ s --mysql "mysql://root@127.0.0.1:$port/$DB"
    expect_err "cannot connect"
    expect_err "hint:"
    [ ! -e "$T/store/catalog/s.json" ] || fail "a catalog entry was written"
}

test_wrong_password_never_shown() {
    newdb
    my -e "CREATE USER IF NOT EXISTS 'pwuser'@'localhost' IDENTIFIED BY 'right-pass-42';
        GRANT ALL ON *.* TO 'pwuser'@'localhost'"
    expect_rc 6 snap_ s --mysql "mysql://pwuser:wrong-pass-17@localhost/$DB?socket=$MY_SOCKET"
    expect_err "Access denied"
    expect_no_err "wrong-pass-17"
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY)"
    expect_rc 0 snap_ s --mysql "mysql://pwuser:right-pass-42@localhost/$DB?socket=$MY_SOCKET" --json -v
    ! grep -rq "right-pass-42" "$T/out" "$T/err" "$T/store" || fail "the password reached the output or the store"
    grep -q "mysql://pwuser@localhost/$DB" "$T/out" || fail "the redacted dsn is not recorded"
    # MYSQL_PWD works as with the mysql client
    MYSQL_PWD=right-pass-42 expect_rc 0 snap_ s2 --mysql "mysql://pwuser@localhost/$DB?socket=$MY_SOCKET"
    # and an option file with a group of its own, as --defaults-file/--defaults-group do
    printf '[snapgrp]\nuser = pwuser\npassword = right-pass-42\n' >my.cnf
    chmod 600 my.cnf
    expect_rc 0 snap_ s3 --mysql "mysql://localhost/$DB?socket=$MY_SOCKET&defaults-file=$T/my.cnf&defaults-group=snapgrp"
    ! grep -rq "right-pass-42" "$T/out" "$T/err" "$T/store" || fail "the password reached the output or the store"
}

# A long query would make the global read lock stall every write: snap refuses.
test_long_query_guard() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY)"
    printf '[source %s]\ntype = mysql\ndsn = %s\nlong_query_guard = 1s\n' "$DB" "$DSN" >g.conf
    (my -e "SELECT SLEEP(4)" >/dev/null) &
    sleep 2
    expect_rc 4 "$SNAP" create s --config g.conf --store "$T/store"
    expect_err "the global read lock would wait for it"
    expect_err "KILL QUERY"
    wait
    expect_rc 0 "$SNAP" create s --config g.conf --store "$T/store"
}

# TLS options of the DSN: required, and verified against the right and a wrong CA.
test_tls_options() {
    newdb
    my -e "CREATE USER IF NOT EXISTS 'tlsuser'@'%' REQUIRE SSL; GRANT ALL ON *.* TO 'tlsuser'@'%'"
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)"
    base="mysql://tlsuser@127.0.0.1:$MY_PORT/$DB"
    expect_rc 6 snap_ s0 --mysql "$base?ssl-mode=disabled"
    expect_err "Access denied"
    expect_rc 0 snap_ s1 --mysql "$base?ssl-mode=required"
    expect_rc 0 snap_ s2 --mysql "$base?ssl-mode=verify_identity&ssl-ca=$MY_TLS_CA"
    expect_rc 6 snap_ s3 --mysql "$base?ssl-mode=verify_ca&ssl-ca=$MY_TLS_OTHER_CA"
    expect_err "cannot connect"
    [ ! -e "$T/store/catalog/s3.json" ] || fail "a snapshot over an unverified server was committed"
}

test_missing_schema() {
    newdb
    expect_rc 3 snap_ s --mysql "mysql://root@localhost/no_such_db?socket=$MY_SOCKET"
    expect_err "no_such_db"
}

test_missing_reload_privilege() {
    newdb
    my -e "CREATE USER IF NOT EXISTS 'noreload'@'localhost';
        GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON \`$DB\`.* TO 'noreload'@'localhost'"
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY)"
    expect_rc 6 snap_ s --mysql "mysql://noreload@localhost/$DB?socket=$MY_SOCKET"
    expect_err "RELOAD"
    [ ! -e "$T/store/catalog/s.json" ] || fail "a catalog entry was written"
}

test_missing_privileges_for_revert() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "UPDATE t SET v = 2"
    my -e "CREATE USER IF NOT EXISTS 'weak'@'localhost'; GRANT SELECT, INSERT, UPDATE ON \`$DB\`.* TO 'weak'@'localhost'"
    cat >weak.conf <<CONF
[source $DB]
type = mysql
dsn = mysql://weak@localhost/$DB?socket=$MY_SOCKET
CONF
    expect_rc 6 "$REVERT" s --config weak.conf --store "$T/store" --yes --no-safety-snapshot
    expect_err "lacks privileges"
    expect_err "CREATE on ${DB}__revert_"
    [ "$(my -N "$DB" -e "SELECT v FROM t")" = 2 ] || fail "the live table changed"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "a schema was created"
}

test_staging_schema_taken() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY)"
    expect_rc 0 snap_ s --mysql "$DSN"
    my -e "CREATE DATABASE \`${DB}__revert_leftover\`"
    expect_rc 4 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    expect_err "${DB}__revert_leftover"
    my -e "DROP DATABASE \`${DB}__revert_leftover\`"
}

test_corrupt_part_stops_before_cutover() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(64)); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_20000"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "DELETE FROM t WHERE id > 10"
    part=$(ls "$T"/store/data/*/*.0001.tar.zst)
    size=$(stat -c %s "$part")
    printf '\x55\xaa' | dd of="$part" bs=1 seek=$((size / 2)) conv=notrunc status=none
    expect_rc 5 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    [ "$(my -N "$DB" -e "SELECT COUNT(*) FROM t")" = 10 ] || fail "the live table changed"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "staging or displaced schema left"
}

# Without local_infile the revert loads by INSERT, as exactly; or refuses when told to.
test_local_infile_disabled() {
    newdb
    my "$DB" <"$FIX/fidelity.sql"
    fingerprint "$DB" >before.txt
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "DELETE FROM plain; UPDATE item SET blob_col = NULL"
    my -e "SET GLOBAL local_infile = 0"
    printf '[revert]\nmysql_require_local_infile = true\n' >strict.conf
    run "$REVERT" s --config strict.conf --store "$T/store" --yes --no-safety-snapshot
    rc1=$RC
    cp "$T/err" strict.err
    run "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    rc2=$RC
    my -e "SET GLOBAL local_infile = 1"
    [ "$rc1" = 6 ] || fail "with mysql_require_local_infile the revert exited $rc1, expected 6"
    grep -q "SET GLOBAL local_infile = 1" strict.err || fail "no hint on local_infile: $(cat strict.err)"
    [ "$rc2" = 0 ] || { cat "$T/err" >&2; fail "the INSERT path exited $rc2"; }
    fingerprint "$DB" >after.txt
    diff before.txt after.txt >&2 || fail "the INSERT path did not restore the same content"
}

test_kill_during_staging_then_recover() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t SELECT seq, 1 FROM seq_1_to_1000"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "UPDATE t SET v = 2"
    SNAP_FAILPOINT=revert-mysql-loaded expect_rc 137 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    [ "$(my -N "$DB" -e "SELECT SUM(v) FROM t")" = 2000 ] || fail "live changed"
    [ -n "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_revert\\_%'")" ] || fail "no staging schema (the failpoint did not hit)"
    expect_rc 0 "$REVERT" --recover --store "$T/store"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "recovery left a schema"
    [ "$(my -N "$DB" -e "SELECT SUM(v) FROM t")" = 2000 ] || fail "recovery changed live"
    expect_rc 0 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
    [ "$(my -N "$DB" -e "SELECT SUM(v) FROM t")" = 1000 ] || fail "revert after recovery failed"
}

# SIGKILL before and after the RENAME TABLE: recovery leaves the whole old or restored state.
test_kill_during_cutover_then_recover() {
    newdb
    my "$DB" <"$FIX/fidelity.sql"
    fingerprint "$DB" >before.txt
    expect_rc 0 snap_ s --mysql "$DSN"
    for fp in revert-mysql-before-rename revert-mysql-after-rename; do
        my "$DB" -e "UPDATE plain SET a = a + 1; DROP TRIGGER IF EXISTS item_bi2"
        fingerprint "$DB" >damaged.txt
        SNAP_FAILPOINT=$fp expect_rc 137 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
        expect_rc 8 "$REVERT" s --store "$T/store" --yes --no-safety-snapshot
        expect_rc 0 "$REVERT" --recover --store "$T/store"
        fingerprint "$DB" >after.txt
        cmp -s after.txt before.txt || cmp -s after.txt damaged.txt ||
            { diff before.txt after.txt >&2; fail "$fp: after recovery the schema is neither the old nor the restored state"; }
        [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_revert\\_%'")" ] || fail "$fp: recovery left the staging schema"
    done
}

# SIGKILL while snap holds the global read lock: the server drops the lock, nothing is committed.
test_kill_under_lock() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY)"
    SNAP_FAILPOINT=snap-mysql-locked expect_rc 137 snap_ s --mysql "$DSN"
    [ ! -e "$T/store/catalog/s.json" ] || fail "a catalog entry was written"
    my "$DB" -e "SET SESSION lock_wait_timeout = 5; INSERT INTO t VALUES (1)" || fail "the read lock outlived snap"
    expect_rc 0 snap_ s --mysql "$DSN"
}

test_server_restart_during_snap() {
    newdb
    my "$DB" -e "CREATE TABLE big (id INT PRIMARY KEY, s VARCHAR(200)); INSERT INTO big SELECT seq, REPEAT(MD5(seq), 6) FROM seq_1_to_400000"
    cat >snap.conf <<CONF
[snap]
zstd_level = 19
[source $DB]
type = mysql
dsn = $DSN
CONF
    "$SNAP" create s --config snap.conf --store "$T/store" --jobs 1 >out.txt 2>err.txt &
    pid=$!
    sleep 1
    "$T_ROOT/tests/services/mariadb.sh" restart >/dev/null
    set +e
    wait $pid
    rc=$?
    set -e
    [ "$rc" != 0 ] || fail "snap succeeded although the server restarted (too fast?)"
    grep -q "hint:" err.txt || fail "no hint: $(cat err.txt)"
    [ ! -e "$T/store/catalog/s.json" ] || fail "a catalog entry was written"
}

test_server_restart_during_staging() {
    newdb
    my "$DB" -e "CREATE TABLE big (id INT PRIMARY KEY, s VARCHAR(200)); INSERT INTO big SELECT seq, REPEAT(MD5(seq), 6) FROM seq_1_to_300000"
    expect_rc 0 snap_ s --mysql "$DSN"
    my "$DB" -e "DELETE FROM big WHERE id > 100"
    "$REVERT" s --store "$T/store" --yes --no-safety-snapshot --jobs 1 >out.txt 2>err.txt &
    pid=$!
    for _ in $(seq 100); do
        [ -n "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_revert\\_%'" 2>/dev/null)" ] && break
        sleep 0.05
    done
    sleep 0.3
    "$T_ROOT/tests/services/mariadb.sh" restart >/dev/null
    set +e
    wait $pid
    rc=$?
    set -e
    [ "$rc" != 0 ] || fail "revert succeeded although the server restarted (too fast?)"
    [ "$(my -N "$DB" -e "SELECT COUNT(*) FROM big")" = 100 ] || fail "the live table changed"
    "$REVERT" --recover --store "$T/store" >/dev/null 2>&1 || true
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_revert\\_%'")" ] || fail "the staging schema is left after recovery"
}

# Progress for machines: a snap counts the tables' size first (information_schema: InnoDB's
# figure may lag behind a fresh load, so only that there is one), and a revert's progress
# runs to the component's stored bytes; every line validates (docs/json.md).
test_events_have_totals() {
    newdb
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(200));
        INSERT INTO t SELECT seq, REPEAT('x', 150) FROM seq_1_to_20000"
    expect_rc 0 snap_ m1 --mysql "$DSN" --events "$T/snap.ev" --json
    bytes=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(p["size"] for c in m["components"] for p in c["parts"]))' "$T/out")
    my "$DB" -e "DELETE FROM t WHERE id > 10"
    expect_rc 0 "$REVERT" m1 --store "$T/store" --yes --events "$T/revert.ev"
    [ "$(my -N "$DB" -e "SELECT COUNT(*) FROM t")" = 20000 ] || fail "not reverted"
    for f in snap revert; do
        /usr/bin/python3 "$T_ROOT/tests/e2e/json_check.py" events "$T/$f.ev" --lines >"$T/check" 2>&1 ||
            { cat "$T/check" >&2; fail "$f events do not validate"; }
    done
    python3 - "$T/snap.ev" "$T/revert.ev" "$bytes" <<'PYEOF' || fail "totals: $(grep progress "$T"/*.ev)"
import json, sys
snap = [json.loads(l) for l in open(sys.argv[1])]
ticks = [e for e in snap if e["event"] == "progress"]
assert ticks and ticks[0]["bytes_total"] > 0, ticks  # counted before the first byte
rev = [json.loads(l) for l in open(sys.argv[2])]
ticks = [e for e in rev if e["event"] == "progress" and e["label"] != "snap"]
assert ticks and ticks[-1]["bytes_total"] == int(sys.argv[3]), (ticks, sys.argv[3])
PYEOF
}

# One schema named by two sources (another user, a password): a usage error naming both,
# without the password, nothing in the store. A manifest that names one schema twice
# (written before snap refused it, signed with this host's key) is refused before any
# lock or change: exit 5.
test_same_schema_twice() {
    newdb
    local db2=${DB}_b
    my -e "DROP DATABASE IF EXISTS \`$db2\`; CREATE DATABASE \`$db2\`"
    for d in "$DB" "$db2"; do my "$d" -e "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)"; done
    expect_rc 2 snap_ s --mysql "$DSN" --mysql "mysql://app:Secr3t-pw@localhost/$DB?socket=$MY_SOCKET"
    expect_err "sources $DB and $DB-2 both name mysql database $DB on one server"
    expect_err "hint: name each target once"
    ! grep -qF "Secr3t-pw" "$T/out" "$T/err" || fail "the password was printed"
    [ ! -e "$T/store/catalog/s.json" ] || fail "a catalog entry was written"
    [ -z "$(ls "$T/store/data" 2>/dev/null)" ] || fail "parts were written"

    expect_rc 0 snap_ s --mysql "$DSN" --mysql "mysql://root@localhost/$db2?socket=$MY_SOCKET"
    my "$DB" -e "UPDATE t SET v = 2"
    my "$db2" -e "UPDATE t SET v = 3"
    python3 "$T_ROOT/tests/e2e/resign.py" "$T/store" s "$SNAP_STATE_DIR/host.key" "
c = [c for c in m['components'] if c['name'] == '$db2'][0]
c['info']['database'] = '$DB'
c['source'] = c['source'].replace('/$db2', '/$DB')"
    expect_rc 5 "$REVERT" s --store "$T/store" --yes
    expect_err "snapshot s names one target twice: components $DB and $db2 both name mysql database $DB on one server"
    expect_err "nothing was changed"
    [ "$(my -N "$DB" -e "SELECT v FROM t")" = 2 ] || fail "the refused revert changed $DB"
    [ "$(my -N "$db2" -e "SELECT v FROM t")" = 3 ] || fail "the refused revert changed $db2"
    [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "the refused revert left a schema"
    [ "$(ls "$T/store/catalog")" = s.json ] || fail "a safety snapshot was taken"
    expect_rc 0 "$REVERT" s --store "$T/store" --yes --only "$DB" --drop-old --no-safety-snapshot
    [ "$(my -N "$DB" -e "SELECT v FROM t")" = 1 ] || fail "--only did not revert $DB"
    my -e "DROP DATABASE \`$db2\`"
}

# Each table's held-back indexes are built as soon as it holds the rows its manifest
# records, while the other tables load; a manifest that records fewer or more rows than
# the parts hold is refused before the cut-over either way, also when it records as many
# as the first entry holds (the table is finished early, and more rows come).
test_early_indexes_and_row_counts() {
    newdb
    for t in a b c; do
        my "$DB" -e "CREATE TABLE $t (id INT PRIMARY KEY, k INT NOT NULL, s VARCHAR(40), KEY kk (k), UNIQUE KEY us (s));
            INSERT INTO $t SELECT seq, seq % 97, MD5(seq) FROM seq_1_to_30000"
    done
    fingerprint "$DB" >before.txt
    printf '[source %s]\ntype = mysql\ndsn = %s\nchunk_size = 1M\n' "$DB" "$DSN" >snap.conf
    expect_rc 0 "$SNAP" create s --config snap.conf --store "$T/store" --jobs 2
    my "$DB" -e "DELETE FROM a WHERE id % 2 = 0; ALTER TABLE b DROP KEY kk; DROP TABLE c"
    expect_rc 0 "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 2 --no-safety-snapshot --drop-old -vv
    for t in a b c; do expect_err "$t: loaded; its indexes are built while other tables load"; done
    fingerprint "$DB" >after.txt
    diff before.txt after.txt >&2 || fail "the restored schema differs from the snapshot"
    # the same through INSERT, the load of a server without local_infile
    my "$DB" -e "DELETE FROM b WHERE id % 3 = 0; ALTER TABLE c DROP KEY us"
    my -e "SET GLOBAL local_infile = 0"
    run "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 2 --no-safety-snapshot --drop-old -vv
    my -e "SET GLOBAL local_infile = 1"
    [ "$RC" = 0 ] || { cat "$T/err" >&2; fail "the INSERT path exited $RC"; }
    for t in a b c; do expect_err "$t: loaded; its indexes are built while other tables load"; done
    fingerprint "$DB" >after.txt
    diff before.txt after.txt >&2 || fail "the INSERT path restored another schema or other rows"
    my "$DB" -e "DELETE FROM a WHERE id % 2 = 0"
    fingerprint "$DB" >damaged.txt
    first=$(python3 - "$T/store" <<'EOF2'
import json, subprocess, sys, tarfile
st = sys.argv[1]
for p in json.load(open(st + "/catalog/s.json"))["components"][0]["parts"]:
    z = subprocess.Popen(["zstd", "-dc", st + "/" + p["key"]], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=z.stdout, mode="r|") as t:
        for e in t:
            if e.name.startswith("data/b/"):
                print(t.extractfile(e).read().count(b"\n"))
                sys.exit(0)
EOF2
)
    [ "$first" -gt 0 ] && [ "$first" -lt 30000 ] || fail "table b is not cut into entries: $first"
    for want in 29999 30001 "$first"; do
        cp "$T/store/catalog/s.json" s.json.orig
        python3 "$T_ROOT/tests/e2e/resign.py" "$T/store" s "$SNAP_STATE_DIR/host.key" "
m['components'][0]['stats']['table_rows']['b'] = $want"
        # one job: the entries load in order, so the first one ends with b as recorded
        expect_rc 5 "$REVERT" s --config snap.conf --store "$T/store" --yes --jobs 1 --no-safety-snapshot -vv
        [ "$want" != "$first" ] || expect_err "b: loaded; its indexes are built while other tables load"
        expect_err "table b: the snapshot recorded $want rows, 30000 were loaded and the staged table holds 30000"
        cp s.json.orig "$T/store/catalog/s.json"
        fingerprint "$DB" >now.txt
        cmp -s damaged.txt now.txt || fail "a refused revert changed the live schema"
        [ -z "$(my -N -e "SHOW DATABASES LIKE '${DB}\\_\\_%'")" ] || fail "staging or displaced schema left"
    done
}

run_tests "$@"
