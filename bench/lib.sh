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

# busy_ticks: the CPU time the whole machine has spent busy since boot, in clock ticks
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# timed CMD: "wall user sys busy" of CMD run by sh after a sync: busy is the CPU-seconds
# the whole machine spent while it ran, so a server's work counts too (on a quiet
# machine). A failure stops the bench (a command that fails at once would otherwise count
# as a fast one).
timed() {
    local out b0 b1
    sync
    b0=$(busy_ticks)
    out=$(/usr/bin/time -f '%x %e %U %S' sh -c "$1" 2>&1 >/dev/null | tail -n 1)
    b1=$(busy_ticks)
    if [ "${out%% *}" != 0 ]; then
        echo "bench: failed (exit ${out%% *}): $1" >&2
        return 1
    fi
    echo "${out#* } $(awk -v t=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')"
}
# pairs LABEL N CMD_A CMD_B [CLEAN]: runs the shell commands CMD_A and CMD_B N times each, in
# alternating order (A B, B A, ...), every '{n}' replaced by the round's number, and prints
# the median time of each and the median of the per-round ratios B/A, of wall time, of
# the commands' own CPU time (user + system, which a busy machine disturbs less) and of the
# machine's busy CPU time (servers included). Sets PAIR_WALL, PAIR_CPU, PAIR_BUSY, and
# PAIR_A, PAIR_B: the median times of each.
# CLEAN, untimed, runs after each round (its '{n}' replaced too): to free the disk.
# PAIR_SETTLE, when set, is a bash command run untimed before each timed one: to start each
# from the same quiet state of a server.
pair_settle() {
    [ -z "${PAIR_SETTLE:-}" ] || bash -c "$PAIR_SETTLE" || { echo "bench: failed: $PAIR_SETTLE" >&2; return 1; }
}
pairs() {
    local label=$1 n=$2 ca=$3 cb=$4 clean=${5:-} i wa wb out
    local -a ra=() rb=() rw=() rc=() rm=()
    for i in $(seq "$n"); do
        local a=${ca//\{n\}/$i} b=${cb//\{n\}/$i}
        if [ $((i % 2)) = 1 ]; then
            pair_settle && wa=$(timed "$a") && pair_settle && wb=$(timed "$b") || return 1
        else
            pair_settle && wb=$(timed "$b") && pair_settle && wa=$(timed "$a") || return 1
        fi
        [ -z "$clean" ] || sh -c "${clean//\{n\}/$i}"
        ra+=("${wa%% *}") rb+=("${wb%% *}")
        rw+=("$(awk -v a="$wa" -v b="$wb" 'BEGIN { split(a, x, " "); split(b, y, " ");
                printf "%.3f", (x[1] > 0 ? y[1] / x[1] : 0) }')")
        rc+=("$(awk -v a="$wa" -v b="$wb" 'BEGIN { split(a, x, " "); split(b, y, " ");
                printf "%.3f", (x[2] + x[3] > 0 ? (y[2] + y[3]) / (x[2] + x[3]) : 0) }')")
        rm+=("$(awk -v a="$wa" -v b="$wb" 'BEGIN { split(a, x, " "); split(b, y, " ");
                printf "%.3f", (x[4] > 0 ? y[4] / x[4] : 0) }')")
    done
    med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    PAIR_WALL=$(med "${rw[@]}") PAIR_CPU=$(med "${rc[@]}") PAIR_BUSY=$(med "${rm[@]}")
    PAIR_A=$(med "${ra[@]}") PAIR_B=$(med "${rb[@]}")
    printf '  %s: %s s and %s s (medians of %s), ratio %.2fx wall (rounds: %s), %.2fx CPU, %.2fx machine CPU\n' \
        "$label" "$PAIR_A" "$PAIR_B" "$n" "$PAIR_WALL" "${rw[*]}" "$PAIR_CPU" "$PAIR_BUSY"
}
