#!/usr/bin/env bash
# bench/pg.sh: snap and revert of a PostgreSQL database beside the tools users would pick
# instead, on one throwaway cluster (tests/services/postgres.sh). Runs each tool once.
#
#   SCALE=50 ROWS=1000000 JOBS=2 bench/pg.sh
#
# Data set (issue 3): pgbench -i -s SCALE, plus a table of ROWS rows with text, jsonb and
# bytea columns and two indexes. Prints times, sizes, peak memory, ratios and the cut-over.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
SCALE=${SCALE:-50}
ROWS=${ROWS:-1000000}
JOBS=${JOBS:-2}
BUILD=${SNAP_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
[ -x "$BUILD/snap" ] || { echo "bench/pg.sh: build first (make)" >&2; exit 1; }

export T_WORK=$(mktemp -d /tmp/snap-bench.XXXXXX)
chmod 755 "$T_WORK"
W=$T_WORK/work
mkdir -p "$W"
trap 'tests/services/postgres.sh stop >/dev/null 2>&1; rm -rf "$T_WORK"' EXIT
tests/services/postgres.sh start >/dev/null
. "$T_WORK/service-postgres.env"
export PGOPTIONS='--client-min-messages=warning'
export SNAP_STATE_DIR=$W/state
BIN=$T_PG_BIN

echo "data set: pgbench -s $SCALE + $ROWS wide rows (text, jsonb, bytea, two indexes)"
createdb bench
pgbench -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -X -q -d bench <<EOF
CREATE TABLE wide (id bigint PRIMARY KEY, label text, doc jsonb, blob bytea);
INSERT INTO wide SELECT g, 'label ' || md5(g::text), jsonb_build_object('k', g % 1000, 'name', md5(g::text), 'tags', jsonb_build_array(g % 7, g % 11)),
       decode(md5(g::text) || md5((g + 1)::text), 'hex')
FROM generate_series(1, $ROWS) g;
CREATE INDEX wide_label ON wide (label);
CREATE INDEX wide_k ON wide (((doc ->> 'k')::int));
VACUUM ANALYZE;
CHECKPOINT;
EOF
echo "database size: $(psql -X -At -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")"

# settle: untimed, before every measured run: a VACUUM of every database does now what
# autovacuum would do in the next minute to the tables the run before loaded (it overlapped
# the next timed run: in the pairs, pg_restore's database was vacuumed during the revert
# after it); a CHECKPOINT writes what is dirty in shared buffers, and sync what is left in
# the page cache. Without them the runs after a revert (5 GB at SCALE=250) paid for its
# vacuum, checkpoint and write-back.
settle() { vacuumdb --all --quiet && psql -X -q -d postgres -c CHECKPOINT && sync; }
export -f settle
export PAIR_SETTLE=settle  # bench/lib.sh pairs: before each timed run too

# measure NAME CMD...: wall seconds and peak RSS (KiB) of CMD, into $NAME_s / $NAME_kb
measure() {
    local name=$1 t0 t1
    shift
    settle
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$W/$name.rss" "$@"
    t1=$(date +%s.%N)
    printf -v "${name}_s" '%.2f' "$(echo "$t1 - $t0" | bc)"
    printf -v "${name}_kb" '%s' "$(tail -n 1 "$W/$name.rss")"
}
size_of() { du -sb "$1" | cut -f1; }
mib() { echo "scale=1; $1 / 1048576" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }

measure dumpc "$BIN/pg_dump" -Fc -f "$W/bench.dump" bench
measure dumpd "$BIN/pg_dump" -Fd -j "$JOBS" -f "$W/bench.dir" bench
measure dumpz sh -c "'$BIN/pg_dump' -Fp bench | zstd -q -3 -T2 -o '$W/bench.sql.zst'"
measure floor sh -c "psql -X -q -d bench -c '\\copy pgbench_accounts to /dev/null' &
                     psql -X -q -d bench -c '\\copy wide to /dev/null'; wait"
measure snap "$BUILD/snap" create b1 --pg dbname=bench --store "$W/store" --jobs "$JOBS" -q
snap_b=$(size_of "$W/store/data")
# a second snap of the unchanged database: its parts are references to the first's
measure snap2 "$BUILD/snap" create b2 --pg dbname=bench --store "$W/store" --jobs "$JOBS" -q
snap2_b=$(($(size_of "$W/store/data") - snap_b))

# the layout of earlier versions: every table in COPY text format (docs/formats.md)
printf '[snap]\npg_copy_format = text\n' >"$W/text.conf"
measure snap_text "$BUILD/snap" create b1 --pg dbname=bench --config "$W/text.conf" --store "$W/tstore" --jobs "$JOBS" -q

# the same snap through an encrypted store (docs/encryption.md)
head -c 32 /dev/urandom >"$W/key" && chmod 600 "$W/key"
printf '[store]\nurl = %s\nkey_file = %s\n' "$W/enc" "$W/key" >"$W/enc.conf"
measure snap_enc "$BUILD/snap" create b1 --pg dbname=bench --config "$W/enc.conf" --jobs "$JOBS" -q

createdb restored
measure restore "$BIN/pg_restore" -j "$JOBS" -d restored "$W/bench.dir"
measure revert sh -c "exec '$BUILD/revert' b1 --store '$W/store' --yes --jobs $JOBS --no-safety-snapshot \
    --json -q >'$W/revert.json'"
measure revert_enc sh -c "exec '$BUILD/revert' b1 --config '$W/enc.conf' --yes --jobs $JOBS --no-safety-snapshot -q"
# in place with the safety snapshot: the targets are back in service at cutover_at_ms
# (a build without it reports the total there)
measure revert_safety sh -c "exec '$BUILD/revert' b1 --store '$W/store' --yes --jobs $JOBS --json -q \
    >'$W/revert_safety.json'"
safety_at=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d.get("cutover_at_ms", 0) / 1000))' \
    "$W/revert_safety.json" 2>/dev/null || echo 0)
[ "$safety_at" = 0.00 ] && safety_at=$revert_safety_s
cutover=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["targets"][0]["cutover_ms"])' \
    "$W/revert.json" 2>/dev/null || echo "?")

printf '\n%-34s %8s %10s %10s\n' tool seconds "size MiB" "peak MiB"
row() { printf '%-34s %8s %10s %10s\n' "$1" "$2" "$3" "$(echo "scale=1; $4 / 1024" | bc)"; }
row "pg_dump -Fc" "$dumpc_s" "$(mib "$(size_of "$W/bench.dump")")" "$dumpc_kb"
row "pg_dump -Fd -j$JOBS" "$dumpd_s" "$(mib "$(size_of "$W/bench.dir")")" "$dumpd_kb"
row "pg_dump -Fp | zstd -3 -T2" "$dumpz_s" "$(mib "$(size_of "$W/bench.sql.zst")")" "$dumpz_kb"
row "2 x COPY TO /dev/null (floor)" "$floor_s" - "$floor_kb"
row "snap create --jobs $JOBS" "$snap_s" "$(mib "$snap_b")" "$snap_kb"
row "second snap, nothing changed" "$snap2_s" "$(echo "scale=3; $snap2_b / 1048576" | bc)" "$snap2_kb"
row "snap create, encrypted store" "$snap_enc_s" "$(mib "$(size_of "$W/enc/data")")" "$snap_enc_kb"
row "snap create, text format" "$snap_text_s" "$(mib "$(size_of "$W/tstore/data")")" "$snap_text_kb"
row "pg_restore -j$JOBS -d (directory)" "$restore_s" - "$restore_kb"
row "revert --jobs $JOBS (stage+verify+swap)" "$revert_s" - "$revert_kb"
row "revert, encrypted store" "$revert_enc_s" - "$revert_enc_kb"
row "revert with safety snapshot" "$revert_safety_s" - "$revert_safety_kb"
row "  of which until the cut-over" "$safety_at" - "$revert_safety_kb"
echo
echo "snap / pg_dump -Fc            $(ratio "$snap_s" "$dumpc_s")   (aim <= 0.5)"
echo "snap / pg_dump -Fp | zstd     $(ratio "$snap_s" "$dumpz_s")   (aim <= 1.0)"
echo "snap size / pg_dump|zstd size $(ratio "$snap_b" "$(size_of "$W/bench.sql.zst")")   (aim <= 1.0)"
echo "second snap stored / first   $(echo "scale=4; $snap2_b / $snap_b" | bc)   (aim <= 0.05)"
echo "revert / pg_restore -j$JOBS      $(ratio "$revert_s" "$restore_s")   (aim <= 0.75)"
echo "revert+safety / pg_restore   $(ratio "$revert_safety_s" "$restore_s")   (aim <= 1.2)"
echo "  to cut-over / pg_restore    $(ratio "$safety_at" "$restore_s")   (aim <= 0.8)"
# encryption's cost, in rounds that alternate plain and encrypted (bench/lib.sh pairs)
n=${BENCH_PAIRS:-3}
pairs "snap plain, encrypted" "$n" \
    "'$BUILD/snap' create p --pg dbname=bench --store '$W/pp{n}' --jobs $JOBS -q" \
    "'$BUILD/snap' create p --pg dbname=bench --config '$W/enc.conf' --store '$W/pe{n}' --jobs $JOBS -q"
echo "snap encrypted / plain        $PAIR_WALL   (aim <= 1.1; CPU $PAIR_CPU)"
pairs "revert plain, encrypted" "$n" \
    "'$BUILD/revert' b1 --store '$W/store' --yes --jobs $JOBS --no-safety-snapshot -q" \
    "'$BUILD/revert' b1 --config '$W/enc.conf' --yes --jobs $JOBS --no-safety-snapshot -q"
echo "revert encrypted / plain      $PAIR_WALL   (aim <= 1.1; CPU $PAIR_CPU)"
# revert --to against pg_restore into a new database, and the binary format against the
# text one, in alternating rounds: single runs on this machine swing by a third
pairs "pg_restore -j$JOBS, revert --to" "$n" \
    "createdb pr{n} && '$BIN/pg_restore' -j $JOBS -d pr{n} '$W/bench.dir'" \
    "'$BUILD/revert' b1 --store '$W/store' --yes --jobs $JOBS --to rt{n} -q"
echo "revert --to / pg_restore -j$JOBS $PAIR_WALL   (aim <= 0.75; machine CPU, server included, $PAIR_BUSY)"
for i in $(seq "$n"); do dropdb "pr$i"; dropdb "rt$i"; done
pairs "revert --to, text then binary format" "$n" \
    "'$BUILD/revert' b1 --store '$W/tstore' --yes --jobs $JOBS --to tt{n} -q" \
    "'$BUILD/revert' b1 --store '$W/store' --yes --jobs $JOBS --to tb{n} -q"
echo "revert binary / text format   $PAIR_WALL"
for i in $(seq "$n"); do dropdb "tt$i"; dropdb "tb$i"; done
echo "cut-over                      $cutover ms   (aim < 1000)"
echo "peak memory snap / revert     $(echo "scale=1; $snap_kb / 1024" | bc) / $(echo "scale=1; $revert_kb / 1024" | bc) MiB   (aim < 256)"
