#!/usr/bin/env bash
# The command line: help, man pages, versions, usage errors.
. "$(dirname "$0")/lib.sh"

# Every option that --help lists must be in the man page, and so must every option that
# each command's (or mode's) own help lists; every option of the overview must show in
# the help of some command, so that a scope naming no command cannot hide it.
options_of() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
man_has() {
    grep -qF -- "$(printf '%s' "$2" | sed 's/-/\\-/g')" "$T_ROOT/docs/$1.1"
}
man_has_every_option() {
    local tool=$1 bin=$2 opt missing=""
    shift 2
    "$bin" --help >"$T/help" || fail "$tool --help failed"
    for opt in $(options_of <"$T/help"); do
        man_has "$tool" "$opt" || missing="$missing $opt"
    done
    [ -z "$missing" ] || fail "docs/$tool.1 lacks:$missing"
    : >"$T/scoped"
    for cmd in "$@"; do
        # shellcheck disable=SC2086 # "--recover" and "NAME" are two words
        "$bin" $cmd --help >"$T/help.cmd" || fail "$tool $cmd --help failed"
        for opt in $(options_of <"$T/help.cmd"); do
            man_has "$tool" "$opt" || fail "docs/$tool.1 lacks $opt of $tool $cmd"
            echo "$opt" >>"$T/scoped"
        done
    done
    for opt in $(options_of <"$T/help"); do
        grep -qx -- "$opt" "$T/scoped" || fail "$opt is in no command's help of $tool"
    done
}

test_snap_man_page_lists_every_option() {
    man_has_every_option snap "$SNAP" create list show verify delete prune gc cat key history
}
# Each option's scope in the overview, "(create list prune)", names only real commands.
test_option_scopes_name_commands() {
    local cmd
    "$SNAP" --help >"$T/help" || fail "snap --help failed"
    for cmd in $(grep -o '([a-z ]*)$' "$T/help" | tr -d '()' | tr ' ' '\n' | sort -u); do
        "$SNAP" help "$cmd" >/dev/null 2>&1 || fail "an option's scope names '$cmd', not a command"
    done
    grep -q '(prune gc)$' "$T/help" || fail "no scope shown in the overview"
}
test_revert_man_page_lists_every_option() { man_has_every_option revert "$REVERT" NAME --recover --kept; }

test_man_pages_document_every_exit_code() {
    for code in 0 1 2 3 4 5 6 7 8 9 10 130; do
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

test_long_options_are_never_abbreviated() {
    mkdir -p "$T/d" && echo 1 >"$T/d/f"
    expect_rc 2 "$SNAP" create p1 --store "$T/s" --file "$T/d"
    expect_err "unknown option --file"
    expect_err "did you mean --files?"
    expect_rc 2 "$SNAP" gc --store "$T/s" --dry
    expect_err "unknown option --dry"
    expect_err "did you mean --dry-run?"
    expect_rc 2 "$REVERT" p1 --store "$T/s" --dry
    expect_err "did you mean --dry-run?"
    [ ! -e "$T/s" ] || fail "a refused command touched the store"
    # far from every option: no guess
    expect_rc 2 "$SNAP" list --store "$T/s" --zzzzzzzz
    expect_err "unknown option --zzzzzzzz"
    expect_no_err "did you mean"
    expect_rc 2 "$SNAP" list --store "$T/s" --json=yes
    expect_err "takes no value"
    # the whole names, --name=value, bundled short options and -- still work
    expect_rc 0 "$SNAP" create --store="$T/s" -qj1 --files "$T/d" -- p1
}

test_unknown_command_gets_a_hint() {
    expect_rc 2 "$SNAP" lst --store "$T/s"
    expect_err "unknown command 'lst'"
    expect_err "did you mean 'list'?"
    expect_rc 2 "$SNAP" help lst
    expect_err "did you mean 'list'?"
    expect_rc 2 "$SNAP" hlep
    expect_err "did you mean 'help'?"
    expect_rc 2 "$SNAP" frobnicate --store "$T/s"
    expect_err "unknown command 'frobnicate'"
    expect_no_err "did you mean"
}

# Only list's synopsis and options, and the common ones; none of the other commands'.
only_list_help() {
    expect_out "usage: snap list [--label KEY=VALUE]... [--json]"
    expect_out "--label KEY=VALUE"
    expect_out "--store URL"
    for other in "snap create" "snap prune" --files --pg --keep-last --dry-run --yes --min-age --jobs; do
        ! grep -qF -- "$other" "$T/out" || fail "list's help shows $other"
    done
}

test_help_of_one_command() {
    expect_rc 0 "$SNAP" help list
    only_list_help
    expect_rc 0 "$SNAP" list --help
    only_list_help
    expect_rc 0 "$SNAP" help prune
    expect_out "--keep-within DURATION"
    expect_out "--yes"
    ! grep -qF -- "--files" "$T/out" || fail "prune's help shows --files"
    # the overview keeps every command and option
    expect_rc 0 "$SNAP" help
    expect_out "snap gc"
    expect_out "--files PATH"
    expect_out "--min-age DURATION"
    # revert's modes
    expect_rc 0 "$REVERT" --recover --help
    expect_out "usage: revert --recover"
    expect_out "--recover"
    for other in "revert NAME" --only --to --dry-run --yes --pin; do
        ! grep -qF -- "$other" "$T/out" || fail "revert --recover --help shows $other"
    done
    expect_rc 0 "$REVERT" p1 --help
    expect_out "usage: revert NAME"
    expect_out "--only COMPONENT"
    ! grep -qF -- "--recover" "$T/out" || fail "revert NAME --help shows --recover"
}

# tty_rc CMD: runs CMD on a pseudo-terminal, answers n, and echoes its exit code.
tty_rc() {
    set +e
    printf 'n\n' | script -qec "$1" /dev/null >"$T/tty" 2>&1
    echo $?
    set -e
}

test_declining_a_prompt_exits_2_everywhere() {
    command -v script >/dev/null || fail "script(1) is needed (util-linux)"
    mkdir -p "$T/d" && echo 1 >"$T/d/f"
    expect_rc 0 "$SNAP" create p1 --store "$T/s" --files "$T/d"
    expect_rc 0 "$SNAP" create p2 --store "$T/s" --files "$T/d"
    echo 2 >"$T/d/f"

    [ "$(tty_rc "$SNAP delete p1 --store $T/s")" = 2 ] || { cat "$T/tty" >&2; fail "declined delete"; }
    grep -qF "delete snapshot p1?" "$T/tty" || fail "no delete prompt"
    grep -qF "delete snapshot p1 cancelled; nothing was changed" "$T/tty" || fail "no delete message"
    [ "$(tty_rc "$SNAP prune --keep-last 1 --store $T/s")" = 2 ] || { cat "$T/tty" >&2; fail "declined prune"; }
    grep -qF "prune cancelled; nothing was changed" "$T/tty" || fail "no prune message"
    [ "$(tty_rc "$REVERT p1 --store $T/s")" = 2 ] || { cat "$T/tty" >&2; fail "declined revert"; }
    grep -qF "revert these targets now?" "$T/tty" || fail "no revert prompt"
    grep -qF "revert cancelled; nothing was changed" "$T/tty" || fail "no revert message"
    [ "$(tty_rc "$REVERT p1 --store $T/s --json")" = 2 ] || fail "declined revert, --json"
    grep -qF '"exit_code": 2' "$T/tty" || { cat "$T/tty" >&2; fail "the JSON error is not exit_code 2"; }
    # nothing changed
    [ "$(cat "$T/d/f")" = 2 ] || fail "the declined revert changed the target"
    expect_rc 0 "$SNAP" list --store "$T/s"
    expect_out p1
    expect_out p2
    # without a terminal, the same code: the question cannot be asked
    expect_rc 2 "$SNAP" delete p1 --store "$T/s"
    expect_err "pass --yes"
    expect_rc 2 "$SNAP" prune --keep-last 1 --store "$T/s"
    expect_err "or --dry-run"
    expect_rc 2 "$REVERT" p1 --store "$T/s"
    # and y goes ahead
    printf 'y\n' | script -qec "$SNAP delete p1 --store $T/s" /dev/null >"$T/tty" 2>&1 || fail "delete answered y"
    expect_rc 0 "$SNAP" list --store "$T/s"
    ! grep -q "^p1 " "$T/out" || fail "p1 not deleted"
}

run_tests "$@"
