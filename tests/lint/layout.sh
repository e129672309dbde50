#!/usr/bin/env bash
# The layout of the tree: which folder includes which, and header names (tests/lint/layers.py).
. "$(dirname "$0")/../e2e/lib.sh"

test_includes_respect_the_layers() {
    run python3 "$T_ROOT/tests/lint/layers.py" "$T_ROOT"
    [ "$RC" = 0 ] || { cat "$T/out" >&2; fail "the tree breaks its layering"; }
}

# The checker itself fails on each kind of broken rule.
test_checker_names_every_broken_rule() {
    mkdir -p common engines snapshot restore
    printf '#include "../restore/revert.h"\n' >common/base.h
    printf '#include "../restore/revert.h"\n' >snapshot/capture.c
    printf '#include "../snapshot/nowhere.h"\n' >engines/client.c
    : >restore/revert.h
    : >engines/same.h
    : >snapshot/same.h
    : >common/err.h
    run python3 "$T_ROOT/tests/lint/layers.py" "$T"
    [ "$RC" = 1 ] || fail "exit code $RC, expected 1"
    expect_out 'common/base.h: common/ includes restore/'
    expect_out 'snapshot/capture.c: snapshot/ includes restore/'
    expect_out 'engines/client.c: includes "../snapshot/nowhere.h", which is not in the tree'
    expect_out 'same.h: 2 project headers share this name'
    expect_out 'common/err.h: shares its name with the system header /usr/include/err.h'
}

run_tests "$@"
