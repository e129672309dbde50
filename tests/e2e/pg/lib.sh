# tests/e2e/pg/lib.sh: helpers of the PostgreSQL end-to-end scripts (after tests/e2e/lib.sh).
# The server comes from tests/services/postgres.sh: PGHOST/PGPORT/PGUSER point at it.

PG_FIXTURE=$T_ROOT/tests/e2e/pg/fixture.sql
export PGOPTIONS='--client-min-messages=warning'

# Each test gets its own store and revert state directory.
pg_setup() {
    export SNAP_STATE_DIR=$T/state
    STORE=$T/store
}

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Test databases carry the test's name so that a failure leaves evidence, not collisions.
db_name() { echo "t_${1}_$$"; }

pg_roles() {
    q -d postgres <<'EOF'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_owner') THEN CREATE ROLE app_owner; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_reader') THEN CREATE ROLE app_reader; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_writer') THEN CREATE ROLE app_writer; END IF;
END $$;
EOF
}

# make_fixture DB: a database with every kind of object of the fidelity fixture.
make_fixture() {
    pg_roles
    q -d postgres -c "CREATE DATABASE \"$1\""
    q -d "$1" -v DBNAME="$1" -f "$PG_FIXTURE" >/dev/null
}

# make_small DB: two tables and a sequence, for tests that need little.
make_small() {
    q -d postgres -c "CREATE DATABASE \"$1\""
    q -d "$1" >/dev/null <<'EOF'
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2));
CREATE INDEX items_name ON items (name);
INSERT INTO items (name, price) SELECT 'item ' || g, g * 1.25 FROM generate_series(1, 1000) g;
CREATE TABLE notes (id int PRIMARY KEY REFERENCES items (id), body text);
INSERT INTO notes SELECT g, repeat('n', g % 50) FROM generate_series(1, 500) g;
EOF
}

# schema_of DB: pg_dump --schema-only, without the per-run \restrict key.
schema_of() { pg_dump --schema-only "$1" | grep -v '^\\\(un\)\?restrict '; }

# content_of DB: one line per table, "schema.table rows md5-of-rows-in-order"; then
# sequences, large objects and the database's own properties.
content_of() {
    local db=$1 t
    for t in $(q -d "$db" -c "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'm') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
            ORDER BY 1" | sed 's/ /%20/g'); do
        t=${t//%20/ }
        # rows as jsonb: by column name, so a different column order (inherited tables,
        # as pg_dump recreates them) does not count as different content
        q -d "$db" -c "SELECT '$t', count(*), md5(coalesce(string_agg(to_jsonb(x)::text, E'\n'
                       ORDER BY to_jsonb(x)::text), '')) FROM ONLY $t x"
    done
    q -d "$db" -c "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences ORDER BY 1"
    q -d "$db" -c "SELECT oid, md5(lo_get(oid)), pg_get_userbyid(lomowner), obj_description(oid, 'pg_largeobject')
                   FROM pg_largeobject_metadata ORDER BY oid"
    q -d "$db" -c "SELECT pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database'),
                   (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(datacl) a)
                   FROM pg_database WHERE datname = current_database()"
    # the revert marker snap.revert (docs/formats.md) is the revert's, not the database's
    q -d "$db" -c "SELECT v FROM pg_db_role_setting, unnest(setconfig) v
                   WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND v NOT LIKE 'snap.revert=%' ORDER BY 1"
}

# snapshot of a database: schema and content in two files under $T.
capture_state() { # DB LABEL
    schema_of "$1" >"$T/$2.schema"
    content_of "$1" >"$T/$2.content"
}

same_state() { # LABEL_A LABEL_B
    diff -u "$T/$1.schema" "$T/$2.schema" >&2 || fail "schema of $2 differs from $1"
    diff -u "$T/$1.content" "$T/$2.content" >&2 || fail "content of $2 differs from $1"
}

db_exists() { [ "$(q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$1'")" = 1 ]; }

# the databases whose name starts with a prefix
dbs_like() { q -d postgres -c "SELECT datname FROM pg_database WHERE left(datname, length('$1')) = '$1' ORDER BY 1"; }

snapshot_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$STORE/catalog/$1.json"; }

# damage DB: what a bad migration does
damage() {
    q -d "$1" >/dev/null <<'EOF'
DROP TABLE app.cache;
DELETE FROM app.big WHERE id % 3 = 0;
UPDATE app.customers SET name = 'migrated';
ALTER TABLE app.invoices ADD COLUMN migrated boolean DEFAULT true;
DROP SCHEMA "Odd Schema" CASCADE;
SELECT nextval('app.invoice_no');
SELECT lo_unlink(424242);
CREATE TABLE app.new_table (x int);
EOF
    q -d postgres -c "ALTER DATABASE \"$1\" SET work_mem = '64MB'" -c "COMMENT ON DATABASE \"$1\" IS 'changed'"
}

pg_restart() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$T_PG_OWNER" -- "$T_PG_BIN/pg_ctl" -D "$T_PG_DATA" -m fast -w -t 60 restart >/dev/null
    else
        "$T_PG_BIN/pg_ctl" -D "$T_PG_DATA" -m fast -w -t 60 restart >/dev/null
    fi
}
