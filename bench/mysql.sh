#!/usr/bin/env bash
# bench/mysql.sh: snap and revert of MySQL/MariaDB beside the tools users would pick instead.
#
# Data set: four tables of $ROWS rows each (integers, varchar, text, datetime, secondary
# indexes); ROWS=2500000 gives about 1.4 GB, the size of the figures in docs/mysql.md.
# Starts its own MariaDB (tests/services/mariadb.sh) unless MY_SOCKET names a running one.
# In one run: snap beside `mydumper -t 2 -c` and `mariadb-dump --single-transaction |
# zstd -3 -T2`; revert beside `myloader -t 2` and `zstd -dc dump | mariadb`, and
# `revert --to` against myloader in BENCH_PAIRS alternating rounds (default 3). Prints
# times, ratios, output sizes, the cut-over time and peak memory (RSS) of snap and revert.
# Every run that writes, and every run after one, starts once InnoDB has purged and
# flushed what the one before left (settle).
# BENCH_SHORT=1 runs only what the aims and the memory need, for the larger sets: no
# second snap, no paired snaps, no revert with the safety snapshot, no plain load, and
# myloader only in the pairs.
#
#   bench/mysql.sh                 full size
#   ROWS=500000 bench/mysql.sh     a fifth
#   ROWS=12500000 BENCH_SHORT=1 BENCH_PAIRS=1 bench/mysql.sh     five times, once
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
ROOT=$PWD
ROWS=${ROWS:-2500000}
SHORT=${BENCH_SHORT:-0}
JOBS=${JOBS:-2}
BUILD=${SNAP_BUILD:-build}
SNAP=$ROOT/$BUILD/snap
REVERT=$ROOT/$BUILD/revert
own_work=
[ -n "${T_WORK:-}" ] || own_work=$(mktemp -d /tmp/snap-bench.XXXXXX)
export T_WORK=${T_WORK:-$own_work}
W=$T_WORK/bench
rm -rf "$W"
mkdir -p "$W"
export OWN_SERVER=0
if [ -z "${MY_SOCKET:-}" ]; then
    tests/services/mariadb.sh start >/dev/null
    OWN_SERVER=1
    . "$T_WORK/service-mariadb.env"
fi
cleanup() {
    [ $OWN_SERVER = 1 ] && tests/services/mariadb.sh stop >/dev/null 2>&1 || true
    rm -rf "$W"
    [ -z "$own_work" ] || rm -rf "$own_work"
}
trap cleanup EXIT
my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }
DB=benchdb
export SNAP_STATE_DIR=$W/state

secs() { # secs CMD...: runs it, prints elapsed seconds; peak RSS (KiB) goes to $W/rss
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$W/rss" "$@" >"$W/cmd.out" 2>"$W/cmd.err" || {
        cat "$W/cmd.err" >&2
        echo "bench: failed: $*" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}
# settle: waits (untimed, up to 10 minutes) until InnoDB has purged the undo of the last
# load and flushed its dirty pages, so that no measured command pays for the one before.
# Only the server the bench started is told to flush at once, and has its binlog purged
# (it holds every load again: at 5x, tens of GB); a user's own server is only waited for.
settle() {
    local status i
    [ "$OWN_SERVER" = 0 ] || my -e "SET GLOBAL innodb_max_dirty_pages_pct = 0"
    for i in $(seq 300); do
        status=$(my -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_history_list_length',
            'Innodb_buffer_pool_pages_dirty')") || return 1
        echo "$status" | awk '$2 > 100 { busy = 1 } END { exit busy }' && break
        [ "$i" != 300 ] || echo "bench: the server did not settle in 10 minutes: $status" >&2
        sleep 2
    done
    [ "$OWN_SERVER" = 0 ] || my -e "SET GLOBAL innodb_max_dirty_pages_pct = $DIRTY_PCT;
        FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW()"
}
export DIRTY_PCT=$(my -N -e "SELECT @@innodb_max_dirty_pages_pct")
export -f my settle
export PAIR_SETTLE=settle  # bash -c sees the exported functions
size_of() { du -sb "$1" | cut -f1; }
mb() { echo "$1 / 1048576" | bc -l | xargs printf '%.0f MB'; }
ratio() { # A/B, or - when either was not measured
    if [ -n "$1" ] && [ -n "$2" ]; then echo "$1 / $2" | bc -l | xargs printf '%.2f'; else echo -; fi
}
t_snap2= s_snap2= snap_pair=- snap_pair_busy=- t_safety= safety_at= t_myloader= t_load=

echo "== loading 4 x $ROWS rows"
# Above the 1x size the secondary keys are added after the rows: inserted one row at a time
# into the test server's 128 MB buffer pool, they made the 5x load alone last hours. The
# tables are the same; only the keys' pages are laid out by a sort.
keys="KEY ka (a), KEY kcreated (created)" late=
[ "$ROWS" -le 2500000 ] || { late="ADD KEY ka (a), ADD KEY kcreated (created)"; keys=; }
my -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
for t in 1 2 3 4; do
    my "$DB" -e "CREATE TABLE t$t (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b INT NOT NULL,
        name VARCHAR(64) NOT NULL, body TEXT, created DATETIME NOT NULL${keys:+, $keys})
        ENGINE=InnoDB"
    my "$DB" -e "SET unique_checks=0; INSERT INTO t$t SELECT seq, seq % 10007, FLOOR(RAND(seq) * 1000000),
        CONCAT('name-', seq, '-', MD5(seq)), CONCAT(REPEAT(SHA1(seq), 1 + seq % 2), ' tail ', seq),
        '2020-01-01' + INTERVAL (seq % 100000000) SECOND FROM seq_1_to_$ROWS${late:+; ALTER TABLE t$t $late}" &
done
wait
my "$DB" -e "ANALYZE TABLE t1, t2, t3, t4" >/dev/null
data=$(my -N -e "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA='$DB'")
echo "data set: $(mb "$data") in InnoDB"
DSN="mysql://root@localhost/$DB?socket=$MY_SOCKET"
sum_before=$(my -N "$DB" -e "CHECKSUM TABLE t1, t2, t3, t4" | cut -f2 | tr '\n' ' ')

echo "== capture"
settle
t_snap=$(secs "$SNAP" create bench --mysql "$DSN" --store "$W/store" --jobs "$JOBS")
rss_snap=$(cat "$W/rss")
s_snap=$(size_of "$W/store/data")
# a second snap of the unchanged database: its parts are references to the first's
if [ "$SHORT" = 0 ]; then
    t_snap2=$(secs "$SNAP" create bench2 --mysql "$DSN" --store "$W/store" --jobs "$JOBS")
    s_snap2=$(($(size_of "$W/store/data") - s_snap))
fi
t_mydumper=$(secs mydumper -S "$MY_SOCKET" -u root -B "$DB" -t 2 -c -o "$W/mydumper")
s_mydumper=$(size_of "$W/mydumper")
t_dump=$(secs sh -c "mariadb-dump --no-defaults -S '$MY_SOCKET' -uroot --single-transaction --routines --events --triggers '$DB' | zstd -3 -T2 -q -o '$W/dump.sql.zst'")
s_dump=$(size_of "$W/dump.sql.zst")
# the ratio is also taken from alternating rounds, each snap into a store of its own (each
# run of a pair settles first too)
if [ "$SHORT" = 0 ]; then
    pairs "mariadb-dump | zstd, snap" "${BENCH_PAIRS:-3}" \
        "mariadb-dump --no-defaults -S '$MY_SOCKET' -uroot --single-transaction --routines --events --triggers '$DB' | zstd -3 -T2 -q -f -o '$W/pdump{n}.zst'" \
        "'$SNAP' create p{n} --mysql '$DSN' --store '$W/pstore{n}' --jobs $JOBS -q" \
        "rm -rf '$W/pdump{n}.zst' '$W/pstore{n}'"
    snap_pair=$PAIR_WALL snap_pair_busy=$PAIR_BUSY
fi

echo "== restore"
# the same damage before each restore, so each restores into a changed schema
my "$DB" -e "DELETE FROM t1 WHERE id % 10 = 0"
settle
t_revert=$(secs "$REVERT" bench --store "$W/store" --yes --jobs "$JOBS" --no-safety-snapshot --drop-old)
rss_revert=$(cat "$W/rss")
cutover=$(grep -o 'switched 4 table(s) in [0-9]* ms' "$W/cmd.err" | grep -o '[0-9]* ms' || echo '?')
sum_after=$(my -N "$DB" -e "CHECKSUM TABLE t1, t2, t3, t4" | cut -f2 | tr '\n' ' ')
[ "$sum_before" = "$sum_after" ] || { echo "bench: revert result differs from the source" >&2; exit 1; }
if [ "$SHORT" = 0 ]; then
    # in place with the safety snapshot, taken of the displaced tables after the cut-over:
    # the schema is back in service at cutover_at_ms. Right after the revert above, from the
    # same state: after the drops of the loads below, one run reached its cut-over 11 s later
    # than the revert without it, where runs side by side differ by less than the noise.
    my "$DB" -e "DELETE FROM t1 WHERE id % 10 = 0"
    settle
    t_safety=$(secs "$REVERT" bench --store "$W/store" --yes --jobs "$JOBS" --drop-old --json)
    safety_at=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["cutover_at_ms"] / 1000))' "$W/cmd.out")
    my -e "DROP DATABASE IF EXISTS myl; DROP DATABASE IF EXISTS plain"
    settle
    t_myloader=$(secs myloader -S "$MY_SOCKET" -u root -B myl -t 2 -d "$W/mydumper" -o)
    my -e "CREATE DATABASE plain"
    settle
    t_load=$(secs sh -c "zstd -dc '$W/dump.sql.zst' | mariadb --no-defaults -S '$MY_SOCKET' -uroot plain")
    my -e "DROP DATABASE myl; DROP DATABASE plain"
fi
# revert --to against myloader into a new schema, in alternating rounds (bench/lib.sh)
pairs "myloader -t 2, revert --to" "${BENCH_PAIRS:-3}" \
    "myloader -S '$MY_SOCKET' -u root -B myl{n} -t 2 -d '$W/mydumper' -o" \
    "'$REVERT' bench --store '$W/store' --yes --jobs $JOBS --to to{n} -q" \
    "mariadb --no-defaults -S '$MY_SOCKET' -uroot -e 'DROP DATABASE myl{n}; DROP DATABASE to{n}'"
[ -n "$t_myloader" ] || t_myloader=$PAIR_A

cat <<OUT

                               time      output
snap --jobs $JOBS              ${t_snap} s   $(mb "$s_snap")   peak RSS $((rss_snap / 1024)) MiB
second snap, nothing changed  ${t_snap2:--} s   ${s_snap2:+$((s_snap2 / 1024)) KiB more stored}
mydumper -t 2 -c               ${t_mydumper} s   $(mb "$s_mydumper")
mariadb-dump | zstd -3 -T2     ${t_dump} s   $(mb "$s_dump")
revert --jobs $JOBS            ${t_revert} s   cut-over ${cutover}   peak RSS $((rss_revert / 1024)) MiB
revert with safety snapshot    ${t_safety:--} s   of which until the cut-over ${safety_at:--} s
myloader -t 2                  ${t_myloader} s
zstd -dc dump | mariadb        ${t_load:--} s

snap / mydumper -c             $(ratio "$t_snap" "$t_mydumper")   (aim <= 0.50)
snap / mariadb-dump|zstd       $(ratio "$t_snap" "$t_dump")   (aim <= 0.75)
  paired                       ${snap_pair}   (aim <= 0.75; machine CPU ${snap_pair_busy})
snap size / mariadb-dump size  $(ratio "$s_snap" "$s_dump")   (aim <= 1.00)
second snap stored / first     $(ratio "$s_snap2" "$s_snap")   (aim <= 0.05)
revert / myloader              $(ratio "$t_revert" "$t_myloader")   (in place, no safety snapshot)
revert / mariadb < dump        $(ratio "$t_revert" "$t_load")
revert --to / myloader         $PAIR_WALL   (aim <= 0.45; paired, machine CPU $PAIR_BUSY)
  with safety, to cut-over     $(ratio "$safety_at" "$t_myloader")   (aim <= 0.50)
  with safety, total           $(ratio "$t_safety" "$t_myloader")
OUT
