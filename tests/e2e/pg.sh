#!/usr/bin/env bash
# PostgreSQL: round trips that must reproduce the database exactly, in every mode.
# needs: postgres
# slow
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

test_swap_round_trip_reproduces_everything() {
    pg_setup
    db=$(db_name swap)
    make_fixture "$db"
    capture_state "$db" before
    expect_rc 0 "$SNAP" create pre-v42 --pg "dbname=$db" --store "$STORE" --jobs 2
    damage "$db"
    capture_state "$db" damaged
    ! diff -q "$T/before.content" "$T/damaged.content" >/dev/null || fail "the damage changed nothing"
    expect_rc 0 "$REVERT" pre-v42 --store "$STORE" --yes --jobs 2
    expect_out "reverted 1 component"
    expect_err "cut-over in"
    capture_state "$db" after
    same_state before after
    # the displaced database is the instant undo, and holds the damaged state
    old=$(dbs_like "${db}__pre_revert_")
    [ -n "$old" ] || fail "no displaced database kept"
    capture_state "$old" displaced
    diff -q <(grep -v '^fidelity\|^changed' "$T/damaged.content" | grep -v "^postgres|") \
        <(grep -v '^fidelity\|^changed' "$T/displaced.content" | grep -v "^postgres|") >/dev/null ||
        fail "the displaced database is not the damaged one"
    [ -z "$(dbs_like "${db}__revert_")" ] || fail "a staging database was left behind"
    # both accept connections
    q -d "$db" -c "SELECT 1" >/dev/null
    q -d "$old" -c "SELECT 1" >/dev/null
}

test_manifest_records_the_point() {
    pg_setup
    db=$(db_name manifest)
    make_fixture "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --json
    python3 - "$STORE/catalog/p1.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["components"][0]
i, s = c["info"], c["stats"]
assert c["type"] == "postgres", c["type"]
assert i["server_version"].startswith("15"), i["server_version"]
assert "/" in i["wal_lsn"], i["wal_lsn"]
rows = {(t["schema"], t["name"]): t["rows"] for t in i["tables"]}
assert rows[("app", "big")] == 20000, rows
assert rows[("app", "events_2025")] + rows[("app", "events_2026")] + rows[("app", "events_other")] == 800, rows
assert ("app", "events") not in rows  # a partitioned parent holds no rows of its own
assert sorted(i["roles"]) == ["app_owner", "app_reader", "app_writer", "postgres"], i["roles"]
assert i["database"]["comment"] == "fidelity fixture"
assert s["large_objects"] == 2 and s["rows"] == sum(rows.values()), s
for p in c["parts"]:
    assert len(p["sha256"]) == 64 and p["size"] > 0, p
EOF
    # stock tar reads a part
    part=$(ls "$STORE"/data/*/*.0000.tar.zst)
    tar --zstd -tf "$part" | grep -qx postgres/schema.dump || fail "the first part lacks the schema"
}

# table_formats SNAPSHOT: "schema.name format" per table, from the manifest
table_formats() {
    python3 -c '
import json, sys
for t in json.load(open(sys.argv[1]))["components"][0]["info"]["tables"]:
    print(t["schema"] + "." + t["name"], t["copy_format"])' "$STORE/catalog/$1.json" | sort
}

json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# part_entries: every entry of the store's parts, as stock tar lists them, into $T/entries
part_entries() { for part in "$STORE"/data/*/*.tar.zst; do tar --zstd -tf "$part"; done >"$T/entries"; }

# formats_are N: the manifest of p1 and STORE.json both say format N
formats_are() {
    [ "$(json_field "$STORE/catalog/p1.json" format)" = "$1" ] || fail "the manifest is not format $1"
    [ "$(json_field "$STORE/STORE.json" format)" = "$1" ] || fail "STORE.json is not format $1"
}

# reverts_to_before DB: a damaged DB, reverted in place to p1, is the state "before" again
reverts_to_before() {
    damage "$1"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2
    capture_state "$1" after
    same_state before after
}

test_table_data_is_binary_where_every_column_type_allows() {
    pg_setup
    db=$(db_name binfmt)
    make_fixture "$db"
    # a reg* column names an object: its binary form is an OID, which differs in another database
    q -d "$db" -c "CREATE TABLE app.refs (r regclass, t regtype[]); INSERT INTO app.refs VALUES ('app.big', '{int4,app.mood}')"
    capture_state "$db" before
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    table_formats p1 >"$T/formats"
    # user-defined types (enum, composite, range, a domain over an extension's type, hstore)
    # and reg* types stay text; built-in types, their arrays and ranges go binary
    for want in "app.customers text" "app.invoices text" "app.refs text" "app.big binary" \
        "app.accounts binary" "app.bookings binary" "app.events_2025 binary" \
        "Odd Schema.Weird \"Table\" binary"; do
        grep -qxF "$want" "$T/formats" || { cat "$T/formats" >&2; fail "expected: $want"; }
    done
    # the entries say their format by name, and stock tar still lists every part
    part_entries
    grep -q '^data/[0-9]*/[0-9-]*\.bin$' "$T/entries" || fail "no binary entry in the parts"
    grep -q '^data/[0-9]*/[0-9-]*\.copy$' "$T/entries" || fail "no text entry in the parts"
    # a reader before format 3 would load binary data as text: manifest and store say 3
    formats_are 3
    reverts_to_before "$db"
    [ "$(q -d "$db" -c "SET search_path = ''" -c "SELECT r::text || ' ' || t::text FROM app.refs")" = \
        "app.big {integer,app.mood}" ] ||
        fail "the reg* values were not restored by name"
}

test_text_copy_format_writes_what_earlier_versions_read() {
    pg_setup
    db=$(db_name textfmt)
    make_fixture "$db"
    capture_state "$db" before
    printf '[snap]\npg_copy_format = text\n' >"$T/text.conf"
    expect_rc 0 "$SNAP" create p1 -c "$T/text.conf" --pg "dbname=$db" --store "$STORE"
    ! grep -q ' binary$' <(table_formats p1) || fail "a table was stored in binary format"
    part_entries
    ! grep -q '\.bin$' "$T/entries" || fail "a binary entry was written"
    # the layout of every earlier version: format 1 throughout
    formats_are 1
    reverts_to_before "$db"
    # an unknown format is a usage error before anything is captured
    printf '[snap]\npg_copy_format = csv\n' >"$T/bad.conf"
    expect_rc 2 "$SNAP" create p2 -c "$T/bad.conf" --pg "dbname=$db" --store "$STORE"
    expect_err "pg_copy_format"
}

test_to_restores_beside_and_leaves_the_original() {
    pg_setup
    db=$(db_name to)
    make_fixture "$db"
    capture_state "$db" before
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    damage "$db"
    capture_state "$db" damaged
    expect_rc 0 "$REVERT" p1 --store "$STORE" --to "${db}_check" --yes
    capture_state "${db}_check" copy
    capture_state "$db" live
    # the copy is the point, database name aside; the original is untouched
    sed -i "s/$db\"* IS\b//" "$T/before.schema" "$T/copy.schema"
    diff -u "$T/before.schema" "$T/copy.schema" >&2 || fail "schema of the copy differs"
    diff -u "$T/before.content" "$T/copy.content" >&2 || fail "content of the copy differs"
    same_state damaged live
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
    # a second --to onto an existing name is refused before anything happens
    expect_rc 4 "$REVERT" p1 --store "$STORE" --to "${db}_check" --yes
    expect_err "exists"
}

# catalog_of DB: every index, constraint and trigger as the catalogs hold them, with validity
catalog_of() {
    q -d "$1" -c "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
                  WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3" \
        -c "SELECT i.indexrelid::regclass, i.indisvalid, i.indisready, i.indisclustered, i.indisunique,
                   (SELECT string_agg(h.inhparent::regclass::text, ',') FROM pg_inherits h
                    WHERE h.inhrelid = i.indexrelid)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                                         'pg_toast'::regnamespace) ORDER BY i.indexrelid::regclass::text" \
        -c "SELECT conrelid::regclass, conname, contype, pg_get_constraintdef(oid), convalidated, condeferrable,
                   conparentid <> 0 FROM pg_constraint
            WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
            ORDER BY conrelid::regclass::text, 2, 4" \
        -c "SELECT tgrelid::regclass, tgname, tgenabled, pg_get_triggerdef(oid) FROM pg_trigger
            WHERE NOT tgisinternal ORDER BY tgrelid::regclass::text, 2" \
        -c "SELECT c.relname, d.description FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
            WHERE d.classoid = 'pg_class'::regclass AND c.relkind IN ('i', 'I') ORDER BY 1, 2"
}

test_indexes_built_while_loading_match_the_source() {
    pg_setup
    db=$(db_name overlap)
    make_fixture "$db"
    # more tables across many parts: a table's indexes start once its last rows are in
    q -d "$db" >/dev/null <<'SQL'
CREATE TABLE app.wide (id bigint PRIMARY KEY, label text UNIQUE, k int, CHECK (k >= 0));
INSERT INTO app.wide SELECT g, 'label ' || md5(g::text), g % 1000 FROM generate_series(1, 60000) g;
CREATE INDEX wide_expr ON app.wide ((lower(label) || k::text));
CREATE TABLE app.ref (id int PRIMARY KEY, wide_id bigint REFERENCES app.wide (id), note text);
INSERT INTO app.ref SELECT g, g * 3, 'n' || g FROM generate_series(1, 20000) g;
CREATE INDEX ref_wide ON app.ref (wide_id);
ALTER TABLE app.ref CLUSTER ON ref_wide;
CREATE TABLE app.readings (id int, at int, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.readings_a PARTITION OF app.readings FOR VALUES FROM (0) TO (500);
CREATE TABLE app.readings_b PARTITION OF app.readings FOR VALUES FROM (500) TO (1000);
CREATE INDEX readings_v ON app.readings (v);
ALTER TABLE app.readings ADD CONSTRAINT readings_wide FOREIGN KEY (id) REFERENCES app.wide (id);
INSERT INTO app.readings SELECT g, g % 1000, g % 7 FROM generate_series(1, 30000) g;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.note := NEW.note || '!'; RETURN NEW; END$$;
CREATE TRIGGER ref_touch BEFORE INSERT ON app.ref FOR EACH ROW EXECUTE FUNCTION app.touch();
ALTER TABLE app.ref DISABLE TRIGGER ref_touch;
CREATE TRIGGER wide_touch BEFORE UPDATE ON app.wide FOR EACH ROW WHEN (false) EXECUTE FUNCTION app.touch();
COMMENT ON INDEX app.wide_expr IS 'built early';
CREATE TABLE app.empty (id int PRIMARY KEY, ref int REFERENCES app.ref (id));
SQL
    catalog_of "$db" >"$T/source.catalog"
    capture_state "$db" before
    printf "[snap]\npg_chunk_size = 256K\n" >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf" --pg "dbname=$db" --store "$STORE" --jobs 2
    [ "$(ls "$STORE"/data/*/ | wc -l)" -ge 4 ] || fail "expected several parts"
    damage "$db"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2 --no-safety-snapshot -vv
    grep -Eq "[1-9][0-9]* indexes and constraints are built as their tables load" "$T/err" ||
        fail "no index was built while loading"
    catalog_of "$db" >"$T/after.catalog"
    diff -u "$T/source.catalog" "$T/after.catalog" >&2 || fail "indexes, constraints or triggers differ"
    capture_state "$db" after
    same_state before after
    # each table was analyzed after its indexes: the expression index has statistics
    [ "$(q -d "$db" -c "SELECT count(*) FROM pg_stats WHERE schemaname = 'app' AND tablename = 'wide_expr'")" = 1 ] ||
        fail "the expression index was not analyzed"
    # the rows went in before the trigger existed, and the constraints hold them
    [ "$(q -d "$db" -c "SELECT count(*) FROM app.ref WHERE note LIKE '%!'")" = 0 ] || fail "a trigger fired on load"
    expect_rc 1 q -d "$db" -c "INSERT INTO app.wide VALUES (1, 'dup', 1)"
    expect_rc 1 q -d "$db" -c "INSERT INTO app.readings VALUES (999999, 3, 1)"
}

test_extended_statistics_are_computed_after_the_final_pass() {
    pg_setup
    db=$(db_name extstats)
    make_small "$db"
    q -d "$db" -c "CREATE STATISTICS items_np (ndistinct, dependencies) ON name, price FROM items"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --jobs 2
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2 --no-safety-snapshot
    # extended statistics are post-data: the ANALYZE waited for them
    [ "$(q -d "$db" -c "SELECT count(*) FROM pg_stats_ext WHERE statistics_name = 'items_np' AND n_distinct IS NOT NULL")" = 1 ] ||
        fail "the extended statistics were not computed"
    [ "$(q -d "$db" -c "SELECT count(*) FROM notes")" = 500 ] || fail "notes were not restored"
}

test_transaction_mode_reverts_in_place() {
    pg_setup
    db=$(db_name tx)
    make_fixture "$db"
    capture_state "$db" before
    oid=$(q -d postgres -c "SELECT oid FROM pg_database WHERE datname = '$db'")
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --jobs 2
    damage "$db"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --mode transaction --yes --no-safety-snapshot
    capture_state "$db" after
    same_state before after
    [ "$(q -d postgres -c "SELECT oid FROM pg_database WHERE datname = '$db'")" = "$oid" ] ||
        fail "transaction mode replaced the database instead of reverting it in place"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_transaction_mode_failure_changes_nothing() {
    pg_setup
    db=$(db_name txfail)
    make_fixture "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    damage "$db"
    capture_state "$db" damaged
    # killed after everything is loaded, just before the commit
    SNAP_FAILPOINT=pg-tx-before-commit run "$REVERT" p1 --store "$STORE" --mode transaction --yes --no-safety-snapshot
    [ "$RC" = 137 ] || fail "the revert was not killed (exit $RC)"
    capture_state "$db" after
    same_state damaged after
    # the journal is resolved as rolled back
    expect_rc 0 "$REVERT" --recover --store "$STORE"
    expect_err "rolled-back"
    capture_state "$db" recovered
    same_state damaged recovered
}

test_drop_old_removes_the_displaced_database() {
    pg_setup
    db=$(db_name dropold)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --drop-old --no-safety-snapshot
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "notes not restored"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

# The safety snapshot takes every setting of the source: here a pg_bindir of its own, whose
# pg_dump leaves a trace, so that the capture before the cut-over is seen to use it.
test_safety_snapshot_uses_the_source_settings() {
    pg_setup
    db=$(db_name safetycfg)
    make_small "$db"
    real=$(dirname "$(command -v pg_dump)")
    [ -x /usr/lib/postgresql/15/bin/pg_dump ] && real=/usr/lib/postgresql/15/bin
    mkdir -p "$T/bin"
    for p in pg_dump pg_restore psql; do
        printf '#!/bin/sh\necho "$0" >>%s/used\nexec %s/%s "$@"\n' "$T" "$real" "$p" >"$T/bin/$p"
        chmod 755 "$T/bin/$p"
    done
    printf '[source %s]\ntype = postgres\ndsn = dbname=%s\npg_bindir = %s/bin\n' "$db" "$db" "$T" >"$T/c.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/c.conf" --store "$STORE"
    rm -f "$T/used"
    q -d "$db" -c "DELETE FROM notes"
    expect_rc 0 "$REVERT" p1 --config "$T/c.conf" --store "$STORE" --yes --json
    safety=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["safety_snapshot"])' "$T/out")
    grep -q "$T/bin/pg_dump" "$T/used" || fail "the safety snapshot did not use the source's pg_bindir"
    expect_rc 0 "$SNAP" show "$safety" --store "$STORE" --json
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "notes not restored"
}

# One precedence rule: $SNAP_PG_BINDIR (environment) beats pg_bindir (file).
test_environment_beats_the_config_for_pg_bindir() {
    pg_setup
    db=$(db_name bindirenv)
    make_small "$db"
    real=$(dirname "$(command -v pg_dump)")
    [ -x /usr/lib/postgresql/15/bin/pg_dump ] && real=/usr/lib/postgresql/15/bin
    printf '[source %s]\ntype = postgres\ndsn = dbname=%s\npg_bindir = %s/nowhere\n' "$db" "$db" "$T" >"$T/c.conf"
    run "$SNAP" create p0 --config "$T/c.conf" --store "$STORE"
    [ "$RC" != 0 ] || fail "a pg_bindir without pg_dump was not used"
    expect_err "$T/nowhere"
    SNAP_PG_BINDIR=$real expect_rc 0 "$SNAP" create p1 --config "$T/c.conf" --store "$STORE"
}

test_cutover_ends_sessions_and_is_fast() {
    pg_setup
    db=$(db_name sessions)
    make_small "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE"
    psql -X -q -d "$db" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
    sleeper=$!
    sleep 0.5
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --json --no-safety-snapshot
    wait $sleeper 2>/dev/null || true
    python3 - "$T/out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["targets"][0]
assert t["sessions_ended"] >= 1, t
assert t["cutover_ms"] < 1000, t
print("cut-over", t["cutover_ms"], "ms")
EOF
}

make_scoped() {
    q -d postgres -c "CREATE DATABASE \"$1\""
    q -d "$1" >/dev/null <<'EOF'
CREATE SCHEMA keep;
CREATE SCHEMA other;
CREATE TABLE keep.a (id int PRIMARY KEY, v text);
CREATE TABLE keep.big_log (id int, v text);
CREATE TABLE other.b (id int PRIMARY KEY);
INSERT INTO keep.a SELECT g, 'a' || g FROM generate_series(1, 100) g;
INSERT INTO keep.big_log SELECT g, 'l' FROM generate_series(1, 100) g;
INSERT INTO other.b SELECT generate_series(1, 10);
EOF
}

test_scope_flags_limit_the_capture() {
    pg_setup
    db=$(db_name scope)
    make_scoped "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --pg-schema keep --pg-exclude-table 'keep.big*'
    python3 - "$STORE/catalog/p1.json" <<'EOF'
import json, sys
i = json.load(open(sys.argv[1]))["components"][0]["info"]
names = sorted(t["schema"] + "." + t["name"] for t in i["tables"])
assert names == ["keep.a"], names
assert i["schemas"] == ["keep"] and i["exclude_tables"] == ["keep.big*"], i
EOF
    expect_rc 0 "$REVERT" p1 --store "$STORE" --to "${db}_scoped" --yes
    [ "$(q -d "${db}_scoped" -c "SELECT count(*) FROM keep.a")" = 100 ] || fail "keep.a not restored"
    [ "$(q -d "${db}_scoped" -c "SELECT count(*) FROM pg_class WHERE relname IN ('big_log', 'b')")" = 0 ] ||
        fail "a table out of scope was restored"
    # a swap would lose what the snapshot left out: refused before anything happens
    expect_rc 2 "$REVERT" p1 --store "$STORE" --yes
    expect_err "captured part of"
    expect_err "--to"
    expect_rc 2 "$REVERT" p1 --store "$STORE" --yes --mode transaction
    expect_err "excluded tables"
    [ -z "$(dbs_like "${db}__")" ] || fail "leftover databases: $(dbs_like "${db}__")"
}

test_transaction_mode_replaces_only_the_captured_schemas() {
    pg_setup
    db=$(db_name scopetx)
    make_scoped "$db"
    expect_rc 0 "$SNAP" create p1 --pg "dbname=$db" --store "$STORE" --pg-schema keep
    q -d "$db" -c "DELETE FROM keep.a WHERE id > 10" -c "DELETE FROM other.b WHERE id > 5"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --mode transaction --no-safety-snapshot
    [ "$(q -d "$db" -c "SELECT count(*) FROM keep.a")" = 100 ] || fail "keep.a not restored"
    [ "$(q -d "$db" -c "SELECT count(*) FROM keep.big_log")" = 100 ] || fail "keep.big_log not restored"
    [ "$(q -d "$db" -c "SELECT count(*) FROM other.b")" = 5 ] || fail "a schema out of scope was touched"
}

test_big_table_is_cut_into_chunks_and_reloaded() {
    pg_setup
    db=$(db_name big)
    q -d postgres -c "CREATE DATABASE \"$db\""
    q -d "$db" -c "CREATE TABLE narrow (id int PRIMARY KEY, v int)" \
        -c "INSERT INTO narrow SELECT g, g % 1000 FROM generate_series(1, 2000000) g"
    before=$(q -d "$db" -c "SELECT count(*), sum(v), md5(string_agg(id::text || ':' || v, ',' ORDER BY id)) FROM narrow")
    printf "[snap]\npg_chunk_size = 2M\n" >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf" --pg "dbname=$db" --store "$STORE" --jobs 2
    n=$(ls "$STORE"/data/*/ | wc -l)
    [ "$n" -ge 8 ] || fail "expected the table in many parts, got $n"
    q -d "$db" -c "TRUNCATE narrow"
    expect_rc 0 "$REVERT" p1 --config "$T/snap.conf" --store "$STORE" --yes --jobs 2 --no-safety-snapshot
    after=$(q -d "$db" -c "SELECT count(*), sum(v), md5(string_agg(id::text || ':' || v, ',' ORDER BY id)) FROM narrow")
    [ "$before" = "$after" ] || fail "narrow differs: $before / $after"
}

# Each part names the tables whose rows it holds (info.part_tables), and the revert uses
# it: two connections load two different tables while both have parts left, instead of
# extending one table together. A manifest without it, or with a damaged one, only loses
# that order.
test_loaders_take_different_tables_by_part_tables() {
    pg_setup
    db=$(db_name parttables)
    q -d postgres -c "CREATE DATABASE \"$db\""
    q -d "$db" -c "CREATE TABLE big (id int PRIMARY KEY, pad text)" \
        -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 120000) g" \
        -c "CREATE TABLE small (id int PRIMARY KEY, pad text)" \
        -c "INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
    sums() { q -d "$db" -c "SELECT count(*), md5(string_agg(id || pad, ',' ORDER BY id)) FROM big" \
        -c "SELECT count(*), md5(string_agg(id || pad, ',' ORDER BY id)) FROM small"; }
    before=$(sums)
    # the ranges of the bigger table come first, so the parts in order share it
    printf '[snap]\npg_chunk_size = 256K\npg_split_tables = true\n' >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf" --pg "dbname=$db" --store "$STORE" --jobs 2
    # the manifest's list is what each part holds
    python3 - "$STORE" <<'PY' || fail "part_tables does not name what the parts hold"
import json, subprocess, sys
st = sys.argv[1]
c = json.load(open(st + "/catalog/p1.json"))["components"][0]
ids = {t["name"]: t["id"] for t in c["info"]["tables"]}
pt = c["info"]["part_tables"]
assert len(pt) == len(c["parts"]), pt
for p, listed in zip(c["parts"], pt):
    names = subprocess.run(["tar", "--zstd", "-tf", st + "/" + p["key"]], capture_output=True, text=True, check=True).stdout.split()
    held = sorted({int(n.split("/")[1]) for n in names if n.startswith("data/")})
    assert listed == held, (p["key"], listed, held)
assert sum(1 for l in pt if l == [ids["big"]]) >= 2 and sum(1 for l in pt if l == [ids["small"]]) >= 2, pt
PY
    q -d "$db" -c "DELETE FROM big WHERE id % 3 = 0" -c "UPDATE small SET pad = 'x'"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2 --no-safety-snapshot -vv
    [ "$(sums)" = "$before" ] || fail "the rows differ after the revert"
    first=$(grep -o 'loading part [0-9]*, rows of public\.[a-z]*' "$T/err" | head -n 2 | sed 's/.*\.//' | sort | tr '\n' ' ')
    [ "$first" = "big small " ] || fail "the first two loads were not of different tables: $first"
    # a damaged list (ids out of range, a part too many) orders nothing, and loses nothing
    python3 "$T_ROOT/tests/e2e/resign.py" "$STORE" p1 "$SNAP_STATE_DIR/host.key" "
c = m['components'][0]
c['info']['part_tables'] = [[99999], 'x'] + [[-1]] * len(c['parts'])" || fail "cannot edit the manifest"
    q -d "$db" -c "TRUNCATE big" -c "DELETE FROM small WHERE id > 10"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2 --no-safety-snapshot -vv
    [ "$(sums)" = "$before" ] || fail "the rows differ after the revert of the damaged list"
    ! grep -q 'loading part [0-9]*, rows of' "$T/err" || fail "a damaged list still ordered the loads"
    expect_err "info.part_tables does not fit the parts; they load in their order"
    python3 "$T_ROOT/tests/e2e/resign.py" "$STORE" p1 "$SNAP_STATE_DIR/host.key" "
c = m['components'][0]
c['info']['part_tables'] = [[c['info']['tables'][0]['id'] + 7]] * len(c['parts'])" || fail "cannot edit the manifest"
    q -d "$db" -c "TRUNCATE big"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --jobs 2 --no-safety-snapshot
    [ "$(sums)" = "$before" ] || fail "the rows differ after the revert of ids out of range"
}

# Rows bigger than a chunk and an empty table, in both formats: each entry stays whole
# (in binary: header, rows, trailer) and the worker's buffer grows for the row and shrinks after.
test_rows_bigger_than_a_chunk_and_empty_tables_in_both_formats() {
    pg_setup
    db=$(db_name huge)
    q -d postgres -c "CREATE DATABASE \"$db\""
    q -d "$db" -c "CREATE TABLE blobs (id int PRIMARY KEY, t text, b bytea)" \
        -c "INSERT INTO blobs SELECT g, repeat(md5(g::text), CASE WHEN g % 50 = 0 THEN 12000 ELSE 3 END),
                   decode(repeat(md5((g * 3)::text), CASE WHEN g % 70 = 0 THEN 9000 ELSE 1 END), 'hex')
            FROM generate_series(1, 700) g" \
        -c "CREATE TABLE nothing (id int, note text)"
    sum_of() { q -d "$db" -c "SELECT count(*), md5(string_agg(id || ':' || t || ':' || encode(b, 'hex'), ',' ORDER BY id)) FROM blobs" \
        -c "SELECT count(*) FROM nothing"; }
    before=$(sum_of)
    for fmt in binary text; do
        printf '[snap]\npg_chunk_size = 64K\npg_copy_format = %s\n' "$fmt" >"$T/$fmt.conf"
        expect_rc 0 "$SNAP" create "p-$fmt" --config "$T/$fmt.conf" --pg "dbname=$db" --store "$STORE" --jobs 2
        python3 -c 'import json,sys; m = json.load(open(sys.argv[1]))
assert {t["name"]: t["copy_format"] for t in m["components"][0]["info"]["tables"]} == {"blobs": sys.argv[2], "nothing": sys.argv[2]}, m' \
            "$STORE/catalog/p-$fmt.json" "$fmt" || fail "$fmt: the tables were not stored in $fmt format"
        q -d "$db" -c "UPDATE blobs SET t = 'x' WHERE id % 2 = 0" -c "INSERT INTO nothing VALUES (1, 'y')"
        expect_rc 0 "$REVERT" "p-$fmt" --store "$STORE" --yes --jobs 2 --no-safety-snapshot
        [ "$(sum_of)" = "$before" ] || fail "$fmt: reverted rows differ: $(sum_of) / $before"
    done
}

test_writes_during_snap_never_show_up_half() {
    pg_setup
    db=$(db_name consistent)
    q -d postgres -c "CREATE DATABASE \"$db\""
    q -d "$db" >/dev/null <<'EOF'
CREATE TABLE a (id int PRIMARY KEY, balance bigint NOT NULL, pad text);
CREATE TABLE b (id int PRIMARY KEY, balance bigint NOT NULL, pad text);
INSERT INTO a SELECT g, 100, repeat('a', 200) FROM generate_series(1, 150000) g;
INSERT INTO b SELECT g, 100, repeat('b', 200) FROM generate_series(1, 150000) g;
EOF
    cat >"$T/transfer.sql" <<'EOF'
\set src random(1, 150000)
\set dst random(1, 150000)
BEGIN;
UPDATE a SET balance = balance - 7 WHERE id = :src;
UPDATE b SET balance = balance + 7 WHERE id = :dst;
COMMIT;
EOF
    pgbench -n -c 2 -T 8 -f "$T/transfer.sql" "$db" >"$T/pgbench.log" 2>&1 &
    bench=$!
    sleep 1
    # big tables split by block ranges: several workers read one table, in one snapshot
    printf '[snap]\npg_chunk_size = 1M\npg_split_tables = true\n' >"$T/snap.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf" --pg "dbname=$db" --store "$STORE" --jobs 2
    wait $bench || { cat "$T/pgbench.log" >&2; fail "pgbench failed"; }
    for p in "$STORE"/data/*/*.tar.zst; do tar --zstd -tf "$p"; done | grep -q '^data/[0-9]*/000001-' ||
        fail "the tables were not split into ranges"
    grep -q "number of transactions actually processed: [1-9]" "$T/pgbench.log" || fail "no transfers ran"
    expect_rc 0 "$REVERT" p1 --store "$STORE" --to "${db}_copy" --yes
    total=$(q -d "${db}_copy" -c "SELECT (SELECT sum(balance) FROM a) + (SELECT sum(balance) FROM b)")
    [ "$total" = 30000000 ] || fail "the copy holds half a transfer: total $total"
}

test_password_never_leaks() {
    pg_setup
    db=$(db_name secret)
    make_small "$db"
    dsn="postgresql://$T_PG_PWUSER:$T_PG_PWPASS@$T_PG_TCP_HOST:$PGPORT/$db"
    expect_rc 0 "$SNAP" create p1 --pg "$dsn" --store "$STORE" --json -v
    ! grep -rqF "$T_PG_PWPASS" "$STORE" "$T/out" "$T/err" || fail "the password reached the store or the output"
    grep -qF "postgresql://$T_PG_PWUSER@$T_PG_TCP_HOST:$PGPORT/$db" "$STORE/catalog/p1.json" ||
        fail "the redacted DSN is not in the manifest"
    q -d "$db" -c "DELETE FROM notes"
    # the password comes from libpq's own places at revert: here PGPASSWORD
    PGPASSWORD=$T_PG_PWPASS expect_rc 0 "$REVERT" p1 --store "$STORE" --yes --json -v
    ! grep -rqF "$T_PG_PWPASS" "$STORE" "$T/out" "$T/err" "$SNAP_STATE_DIR" || fail "the password leaked at revert"
    [ "$(q -d "$db" -c 'SELECT count(*) FROM notes')" = 500 ] || fail "notes not restored"
}

run_tests "$@"
