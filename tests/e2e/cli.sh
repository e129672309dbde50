#!/usr/bin/env bash
# The command line: help, man pages, versions, usage errors.
. "$(dirname "$0")/lib.sh"

# Every option that --help lists must be in the man page.
man_has_every_option() {
    local tool=$1 bin=$2 opt missing=""
    "$bin" --help >"$T/help" || fail "$tool --help failed"
    for opt in $(grep -o -- '--[a-z][a-z0-9-]*' "$T/help" | sort -u); do
        grep -qF -- "$(printf '%s' "$opt" | sed 's/-/\\-/g')" "$T_ROOT/docs/$tool.1" || missing="$missing $opt"
    done
    [ -z "$missing" ] || fail "docs/$tool.1 lacks:$missing"
}

test_snap_man_page_lists_every_option() { man_has_every_option snap "$SNAP"; }
test_revert_man_page_lists_every_option() { man_has_every_option revert "$REVERT"; }

test_man_pages_document_every_exit_code() {
    for code in 0 1 2 3 4 5 6 7 8 130; do
        grep -q "^\.B $code\$" "$T_ROOT/docs/snap.1" || fail "snap.1 lacks exit code $code"
    done
    grep -q "8 recovery needed" "$T_ROOT/docs/revert.1" || fail "revert.1 lacks exit code 8"
}

test_help_and_version() {
    expect_rc 0 "$SNAP" --help
    expect_out "usage: snap create NAME"
    expect_rc 0 "$REVERT" --help
    expect_out "revert --recover"
    expect_rc 0 "$SNAP" --version
    expect_out "snap 0."
    expect_rc 2 "$SNAP"
    expect_err "usage:"
}

test_usage_errors() {
    expect_rc 2 "$SNAP" create
    expect_err "needs a snapshot name"
    expect_rc 2 "$SNAP" create a b --store "$T/s"
    expect_err "unexpected argument"
    expect_rc 2 "$SNAP" list --store
    expect_err "needs a value"
    expect_rc 2 "$SNAP" create p --store "$T/s"
    expect_err "nothing to capture"
    expect_rc 2 "$REVERT"
    expect_rc 2 "$REVERT" --recover extra
    expect_rc 2 "$SNAP" prune --store "$T/s" --keep-last x --yes
    expect_rc 2 "$SNAP" create p --store "$T/s" --files "$T" --label novalue
    expect_err "invalid label"
    expect_rc 2 "$SNAP" create p --config "$T/none.conf" --files "$T"
    expect_err "cannot open config file"
    printf '[store\nurl=x\n' >"$T/bad.conf"
    expect_rc 2 "$SNAP" list --config "$T/bad.conf"
    expect_err "syntax error on line 1"
}

test_options_after_words_and_environment() {
    mkdir -p "$T/d" && echo 1 >"$T/d/f"
    SNAP_STORE=$T/s expect_rc 0 "$SNAP" create --files "$T/d" p1
    expect_rc 0 "$SNAP" list --store "$T/s"
    expect_out "p1"
    # a flag beats the environment
    SNAP_STORE=$T/elsewhere expect_rc 0 "$SNAP" show p1 --store "$T/s"
}

run_tests "$@"
