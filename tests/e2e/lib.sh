# tests/e2e/lib.sh: what every end-to-end script sources.
#
# A script defines functions named test_*; each runs in its own subshell, in a fresh
# directory ($T), with `set -e`. It passes when it returns 0. Assertions print what the
# user would have seen when they fail. Run a script alone: bash tests/e2e/files.sh [name]
set -u
T_ROOT=${T_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SNAP_BUILD=${SNAP_BUILD:-build}
case $SNAP_BUILD in /*) ;; *) SNAP_BUILD=$T_ROOT/$SNAP_BUILD ;; esac
SNAP=$SNAP_BUILD/snap
REVERT=$SNAP_BUILD/revert
T_WORK=${T_WORK:-$(mktemp -d /tmp/snap-tests.XXXXXX)}
chmod 755 "$T_WORK"
export SNAP REVERT
unset SNAP_STORE SNAP_CONFIG SNAP_FAILPOINT

fail() { echo "    assertion failed: $*" >&2; exit 1; }

# run CMD...: runs it, keeps exit code in $RC, stdout in $T/out, stderr in $T/err.
run() {
    set +e
    "$@" >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    set -e
    return 0
}

# expect_rc N CMD...: runs CMD and fails unless it exits N.
expect_rc() {
    local want=$1
    shift
    run "$@"
    if [ "$RC" != "$want" ]; then
        echo "    \$ $*" >&2
        sed 's/^/    out: /' "$T/out" | head -n 20 >&2
        sed 's/^/    err: /' "$T/err" | head -n 20 >&2
        fail "exit code $RC, expected $want"
    fi
}

# expect_out TEXT / expect_err TEXT: the last run's stdout/stderr contains TEXT.
expect_out() { grep -qF -- "$1" "$T/out" || { sed 's/^/    out: /' "$T/out" | head -n 20 >&2; fail "stdout lacks: $1"; }; }
expect_err() { grep -qF -- "$1" "$T/err" || { sed 's/^/    err: /' "$T/err" | head -n 20 >&2; fail "stderr lacks: $1"; }; }
expect_no_err() { ! grep -qF -- "$1" "$T/err" || fail "stderr has: $1"; }

# A process run with SNAP_FAILPOINT=NAME:wait=$T/go stops at the fail point until the test
# touches $T/go. held FILE: waits until the process has said in FILE (its stderr) that it
# stopped there. release_on FILE TEXT: touches $T/go, in the background, once FILE shows TEXT.
held() {
    local i
    for i in $(seq 1 600); do
        grep -q "^failpoint .*: waiting for" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    sed 's/^/    err: /' "$1" >&2
    fail "the fail point was not reached"
}
release_on() { (for _ in $(seq 1 1200); do grep -qF -- "$2" "$1" 2>/dev/null && break; sleep 0.1; done; touch "$T/go") & }

# other_user: the unprivileged account "snapother" that tests act as, created once. Two test
# runs may start side by side (CI runs the plain and the sanitizer suites together), so the
# creation is serialised.
other_user() {
    id snapother >/dev/null 2>&1 ||
        flock /tmp/snap-tests-useradd.lock sh -c 'id snapother >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin snapother'
}

# tree_sum DIR: a digest of names, types, modes, sizes, link targets and contents.
tree_sum() {
    (cd "$1" && find . -printf '%p\t%y\t%m\t%s\t%l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha256sum | cut -d' ' -f1
}

run_tests() {
    local only=${1:-} f n=0
    for f in $(declare -F | awk '{print $3}' | grep '^test_'); do
        [ -n "$only" ] && [ "$f" != "$only" ] && [ "$f" != "test_$only" ] && continue
        [ -n "${T_FILTER:-}" ] && [[ $f != *"$T_FILTER"* ]] && continue
        n=$((n + 1))
        T=$(mktemp -d "$T_WORK/${f}.XXXXXX")
        chmod 755 "$T"
        # Not in an `if`: bash ignores set -e inside a condition.
        local t0=$SECONDS
        (cd "$T" || exit 1; set -e; "$f") >"$T.log" 2>&1
        if [ $? = 0 ]; then
            echo "PASS: $(basename "$0" .sh): ${f#test_}"
            [ $((SECONDS - t0)) -lt 10 ] || echo "    took $((SECONDS - t0)) s"
        else
            echo "FAIL: $(basename "$0" .sh): ${f#test_}"
            sed 's/^/    /' "$T.log" | tail -n 40
        fi
    done
}
