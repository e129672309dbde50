#!/usr/bin/env bash
# The declared configuration: unknown sections, keys and bad values are refused with
# file:line (exit 2); config check/show; precedence flag > environment > file > default;
# where the files come from.
. "$(dirname "$0")/lib.sh"

setup() {
    ST=$T/store
    export SNAP_STATE_DIR=$T/state
    unset SNAP_JOBS XDG_CONFIG_HOME
    export HOME=$T/home # no ~/.config/snap/snap.conf of the machine's user
    mkdir -p "$T/data" "$HOME"
    echo hello >"$T/data/f"
}

conf() { # FILE TEXT: a config file, 0600
    printf '%b' "$2" >"$1"
    chmod 600 "$1"
}

# A command refuses the file before it opens or creates a store.
refused() { # FILE: snap create with this config exits 2 and leaves no store behind
    expect_rc 2 "$SNAP" create p1 --config "$1" --store "$ST" --files "$T/data"
    [ ! -e "$ST" ] || fail "a store was created under a refused config"
}

test_unknown_key_names_file_line_and_near_key() {
    setup
    conf "$T/c1" '[store]\nurll = /x\n'
    refused "$T/c1"
    expect_err "config file $T/c1:2: unknown key 'urll' in [store]"
    expect_err "hint: did you mean 'url'?"
    conf "$T/c2" '# comment\n[snap]\njobs = 2\nzstd_levl = 5\n'
    refused "$T/c2"
    expect_err "$T/c2:4: unknown key 'zstd_levl' in [snap]"
    expect_err "did you mean 'zstd_level'?"
    conf "$T/c3" "[source web]\ntype = files\npathz = $T/data\n"
    refused "$T/c3"
    expect_err "$T/c3:3: unknown key 'pathz' in [source web]"
    expect_err "did you mean 'path"
    # far from every key: no guess, a pointer to the list
    conf "$T/c4" '[store]\nflavour = mint\n'
    refused "$T/c4"
    expect_err "unknown key 'flavour'"
    expect_no_err "did you mean"
}

test_unknown_section_is_refused() {
    setup
    conf "$T/c" "[store]\nurl = $ST\n\n[sorce web]\ntype = files\npath = $T/data\n"
    refused "$T/c"
    expect_err "config file $T/c:4: unknown section [sorce web]"
    expect_err "did you mean [source web]?"
    # even with no key under it
    conf "$T/c" '[snap]\njobs = 2\n[images]\n'
    expect_rc 2 "$SNAP" config check --config "$T/c"
    expect_err "$T/c:3: unknown section [images]"
}

test_bad_boolean_duration_size_list_enum() {
    setup
    conf "$T/c" '[revert]\nallow_external_symlinks = maybe\n'
    refused "$T/c"
    expect_err "$T/c:2: [revert]: allow_external_symlinks = maybe: expected a boolean"
    conf "$T/c" '[revert]\nkeep_old = 7 days\n'
    refused "$T/c"
    expect_err "$T/c:2: [revert]: keep_old = 7 days: expected a duration"
    expect_err "90s, 15m, 12h, 7d or 2w"
    conf "$T/c" '[snap]\n\npart_size = 12Q\n'
    refused "$T/c"
    expect_err "$T/c:3: [snap]: part_size = 12Q: expected a size"
    conf "$T/c" '[snap]\nzstd_level = 40\n'
    refused "$T/c"
    expect_err "zstd_level = 40: expected a whole number from 1 to 19"
    conf "$T/c" "[source web]\ntype = files\npaths = $T/data\nexclude = *.tmp,*.bak\n"
    refused "$T/c"
    expect_err "$T/c:4: [source web]: exclude = *.tmp,*.bak: list items are separated by spaces"
    conf "$T/c" '[revert]\nmode = fast\n'
    expect_rc 2 "$REVERT" p1 --config "$T/c" --store "$ST" --yes
    expect_err "mode = fast: expected swap or transaction"
    # a bad value in the environment is named by its variable
    conf "$T/c" '[snap]\n'
    SNAP_JOBS=lots expect_rc 2 "$SNAP" config check --config "$T/c"
    expect_err "SNAP_JOBS"
}

# `yes` (any case) is true for every boolean, as on/1: once silently false for some keys.
test_yes_is_true_everywhere() {
    setup
    mkdir -p "$T/app"
    ln -s /etc/hostname "$T/app/link"
    echo a >"$T/app/a"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    rm -rf "$T/app"
    conf "$T/no" '[revert]\nallow_external_symlinks = No\n'
    expect_rc 5 "$REVERT" p1 --config "$T/no" --store "$ST" --yes --no-safety-snapshot
    expect_err "--allow-external-symlinks"
    [ ! -e "$T/app" ] || fail "a refused revert changed the target"
    conf "$T/yes" '[revert]\nallow_external_symlinks = Yes\n'
    expect_rc 0 "$REVERT" p1 --config "$T/yes" --store "$ST" --yes --no-safety-snapshot
    [ "$(readlink "$T/app/link")" = /etc/hostname ] || fail "the external symlink was not restored"
    expect_rc 0 "$SNAP" config show --json --config "$T/yes"
    python3 - "$T/out" <<'PY' || fail "config show does not print the boolean as true"
import json, sys
assert json.load(open(sys.argv[1]))["config"]["revert"]["allow_external_symlinks"]["value"] == "true"
PY
}

test_config_check_touches_no_store() {
    setup
    conf "$T/c" "[store]\nurl = $ST\n[source web]\ntype = files\npath = $T/data\n"
    expect_rc 0 "$SNAP" config check --config "$T/c"
    expect_out "$T/c: ok"
    [ ! -e "$ST" ] || fail "config check created the store"
    conf "$T/s3" '[store]\nurl = s3://bucket/p\nendpoint = http://127.0.0.1:1\n'
    expect_rc 0 "$SNAP" config check --config "$T/s3"
    expect_rc 2 "$SNAP" config check --config "$T/missing"
    expect_err "$T/missing"
    expect_rc 2 "$SNAP" config frobnicate --config "$T/c"
    expect_err "unknown config command 'frobnicate'"
    # a file others may write is refused, as for every command
    chmod 620 "$T/c"
    expect_rc 2 "$SNAP" config check --config "$T/c"
}

test_config_show_names_origins_and_redacts_secrets() {
    setup
    conf "$T/c" "[store]\nurl = $ST\n[snap]\nzstd_level = 7\n[source db]\ntype = postgres\ndsn = postgresql://app:s3cr3tpw@db.example/app\n"
    SNAP_JOBS=3 expect_rc 0 "$SNAP" config show --json --config "$T/c" --part-size 64M
    ! grep -q s3cr3tpw "$T/out" || fail "the password of a DSN is shown"
    python3 - "$T/out" "$T/c" <<'PY' || fail "config show --json has wrong values or origins"
import json, sys
d = json.load(open(sys.argv[1])); c = d["config"]; f = sys.argv[2]
assert d["files"] == [f], d["files"]
assert c["store"]["url"]["origin"] == f + ":2", c["store"]["url"]
assert c["snap"]["zstd_level"] == {"value": "7", "origin": f + ":4"}, c["snap"]["zstd_level"]
assert c["snap"]["zstd_threads"] == {"value": "2", "origin": "default"}, c["snap"]["zstd_threads"]
assert c["snap"]["jobs"] == {"value": "3", "origin": "environment $SNAP_JOBS"}, c["snap"]["jobs"]
assert c["source db"]["dsn"] == {"value": "<redacted>", "origin": f + ":7"}, c["source db"]["dsn"]
assert "path" not in c["source db"]  # keys of other source types are not shown
PY
    expect_rc 0 "$SNAP" config show --config "$T/c"
    expect_out "zstd_level = 7    ; $T/c:4"
    expect_out "dsn = <redacted>"
    ! grep -q s3cr3tpw "$T/out" || fail "the password of a DSN is shown"
}

test_precedence_flag_env_file_default() {
    setup
    conf "$T/c" '[snap]\njobs = 3\n'
    jobs_of() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["config"]["snap"]["jobs"]; print(j["value"], j["origin"])' "$T/out"; }
    expect_rc 0 "$SNAP" config show --json --config /dev/null
    [ "$(jobs_of)" = "0 (CPUs, at most 4) default" ] || fail "default: $(jobs_of)"
    expect_rc 0 "$SNAP" config show --json --config "$T/c"
    [ "$(jobs_of)" = "3 $T/c:2" ] || fail "file: $(jobs_of)"
    SNAP_JOBS=4 expect_rc 0 "$SNAP" config show --json --config "$T/c"
    [ "$(jobs_of)" = "4 environment \$SNAP_JOBS" ] || fail "environment: $(jobs_of)"
    SNAP_JOBS=4 expect_rc 0 "$SNAP" config show --json --config "$T/c" --jobs 5
    [ "$(jobs_of)" = "5 flag --jobs" ] || fail "flag: $(jobs_of)"
    # the same rule for the state directory: $SNAP_STATE_DIR beats [revert] state_dir
    conf "$T/s" "[revert]\nstate_dir = $T/from-file\n"
    SNAP_STATE_DIR=$T/from-env expect_rc 0 "$SNAP" create p1 --config "$T/s" --store "$ST" --files "$T/data"
    [ -d "$T/from-env" ] || fail "the environment's state directory was not used"
    [ ! -e "$T/from-file" ] || fail "[revert] state_dir beat \$SNAP_STATE_DIR"
    unset SNAP_STATE_DIR
    expect_rc 0 "$SNAP" create p2 --config "$T/s" --store "$ST" --files "$T/data"
    [ -d "$T/from-file" ] || fail "[revert] state_dir was not used without the environment"
}

test_user_config_file_and_dev_null() {
    setup
    mkdir -p "$T/xdg/snap" "$HOME/.config/snap"
    conf "$T/xdg/snap/snap.conf" '[snap]\nzstd_level = 9\n'
    conf "$HOME/.config/snap/snap.conf" '[snap]\nzstd_level = 4\n'
    # $XDG_CONFIG_HOME first, else ~/.config
    XDG_CONFIG_HOME=$T/xdg expect_rc 0 "$SNAP" config show --json -v
    expect_err "config file: $T/xdg/snap/snap.conf"
    grep -q '"origin": "'"$T"'/xdg/snap/snap.conf:2"' "$T/out" || fail "the XDG file was not read"
    expect_rc 0 "$SNAP" config show -v
    expect_err "config file: $HOME/.config/snap/snap.conf"
    expect_out "zstd_level = 4    ; $HOME/.config/snap/snap.conf:2"
    # $SNAP_CONFIG and --config replace the search; /dev/null means no file
    conf "$T/c" '[snap]\nzstd_level = 2\n'
    SNAP_CONFIG=$T/c expect_rc 0 "$SNAP" config show
    expect_out "zstd_level = 2    ; $T/c:2"
    expect_rc 0 "$SNAP" config check --config /dev/null -v
    expect_out "no config file: the defaults apply"
    # a user file that others may write is refused, not skipped
    chmod 666 "$HOME/.config/snap/snap.conf"
    expect_rc 2 "$SNAP" config check
    expect_err "$HOME/.config/snap/snap.conf"
    # never a snap.conf in the current directory
    chmod 600 "$HOME/.config/snap/snap.conf"
    conf "$T/data/snap.conf" '[snap]\nzstd_level = 1\n'
    (cd "$T/data" && "$SNAP" config show) >"$T/out"
    expect_out "zstd_level = 4    ; $HOME/.config/snap/snap.conf:2"
}

run_tests "$@"
