# bench/lib.sh: timing with peak memory, and ratio printing, for the benchmarks.
set -u
B_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SNAP=$B_ROOT/${SNAP_BUILD:-build}/snap
REVERT=$B_ROOT/${SNAP_BUILD:-build}/revert

# measure NAME CMD...: runs CMD once; sets SECS_NAME and KB_NAME (peak RSS) and prints them.
measure() {
    local name=$1 out
    shift
    sync
    out=$(/usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1)
    local secs=${out% *} kb=${out#* }
    printf -v "SECS_$name" '%s' "$secs"
    printf -v "KB_$name" '%s' "$kb"
    printf '  %-34s %8.2f s  %7d KiB peak\n' "$name" "$secs" "$kb"
}

# ratio LABEL A B: prints A/B
ratio() {
    awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { printf "  %-46s %6.2fx\n", l, (b > 0 ? a / b : 0) }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
