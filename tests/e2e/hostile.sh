#!/usr/bin/env bash
# The hostile-store suite: real snapshots whose parts and manifests are then crafted
# (tests/e2e/hostile/craft.py: a pax tar, zstd, the right sizes and SHA-256) to attack
# the revert that reads them, in place, with --to and through the images target. Each
# asserts the exit code, the message, and that full listings of the target's parent (the
# live tree and a sibling in it) and of another directory are the same before and after.
. "$(dirname "$0")/lib.sh"
CRAFT=$T_ROOT/tests/e2e/hostile/craft.py

# listing DIR: every name with type, mode, owner, size and link target, then contents.
listing() {
    (cd "$1" && find . -printf '%p %y %m %U:%G %s %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}

# setup MODE (inplace, to or images): a live target, a sibling, another directory
# elsewhere, and a real snapshot p1 of the target named by a config file.
setup() {
    MODE=$1
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/top/app/sub" "$T/top/sib" "$T/other"
    echo secret >"$T/top/sib/secret"
    chmod 600 "$T/top/sib/secret"
    echo keep >"$T/other/keep"
    echo v1 >"$T/top/app/main.conf"
    if [ "$MODE" = images ]; then
        printf 'kind: ConfigMap\n' >"$T/top/app/cm.yaml"
        printf '[source app]\ntype = images\nmanifests = %s/top/app\n' "$T" >"$T/c.conf"
    else
        printf '[source app]\ntype = files\npaths = %s/top/app\n' "$T" >"$T/c.conf"
    fi
    expect_rc 0 "$SNAP" create p1 --config "$T/c.conf" --store "$ST"
    R=${T#/}/top/app # the stored name of the root
    TO=$T/top/new
    LIVE=$T/top/app
    [ "$MODE" = to ] && LIVE=$TO
    return 0
}

before() { listing "$T/top" >"$T/before.top"; listing "$T/other" >"$T/before.other"; }

unchanged() {
    listing "$T/top" >"$T/after.top"
    listing "$T/other" >"$T/after.other"
    diff "$T/before.top" "$T/after.top" >&2 || fail "the target's parent changed"
    diff "$T/before.other" "$T/after.other" >&2 || fail "a directory outside the target changed"
}

craft() { python3 "$CRAFT" "$ST" p1 "$@"; }

# revert_p1 RC [FLAGS...]: in place (the config names the target) or --to, as MODE says.
revert_p1() {
    local want=$1
    shift
    if [ "$MODE" = to ]; then
        expect_rc "$want" "$REVERT" p1 --config "$T/c.conf" --store "$ST" --yes --no-safety-snapshot --to "$TO" "$@"
    else
        expect_rc "$want" "$REVERT" p1 --config "$T/c.conf" --store "$ST" --yes --no-safety-snapshot "$@"
    fi
}

# Each link looks inside on its own; together they end in the sibling directory.
case_symlink_chain() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/d", "type": "dir"},
 {"name": "$R/d/l1", "type": "symlink", "target": ".."},
 {"name": "$R/d/l2", "type": "symlink", "target": "l1/../sib"},
 {"name": "$R/d/l2/evil", "type": "hardlink", "target": "$R/f"},
 {"name": "$R/f", "type": "file", "data": "pwned"}]
J
    before
    revert_p1 5
    expect_err "refusing symlink /$R/d/l2 -> l1/../sib: it points outside $LIVE"
    unchanged
}

# The same chain with a link named through "." so that it would not be found by its name.
case_symlink_chain_dot_name() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/d", "type": "dir"},
 {"name": "$R/d/./l1", "type": "symlink", "target": ".."},
 {"name": "$R/d/l2", "type": "symlink", "target": "l1/../sib"},
 {"name": "$R/d/l2/evil", "type": "hardlink", "target": "$R/f"},
 {"name": "$R/f", "type": "file", "data": "pwned"}]
J
    before
    revert_p1 5
    expect_err "refusing archive entry '$R/d/./l1': its name is not in normal form"
    unchanged
}

# A hard link whose first name comes later, reached through a symlink of the archive.
case_hardlink_later() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/sub", "type": "dir"},
 {"name": "$R/l", "type": "symlink", "target": "sub"},
 {"name": "$R/h", "type": "hardlink", "target": "$R/l/f"},
 {"name": "$R/sub/f", "type": "file", "data": "data"}]
J
    before
    revert_p1 5
    expect_err "refusing archive entry '$R/l/f': its path goes through a symlink"
    expect_err "nothing was changed"
    unchanged
}

# A second name of a symlink that points inside from where it is, but not from the other.
case_hardlinked_symlink() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/a", "type": "dir"}, {"name": "$R/a/b", "type": "dir"},
 {"name": "$R/a/b/l", "type": "symlink", "target": "../.."},
 {"name": "$R/l2", "type": "hardlink", "target": "$R/a/b/l"}]
J
    before
    revert_p1 5
    expect_err "refusing symlink /$R/l2 -> ../..: it points outside $LIVE"
    unchanged
}

# A link to a link to a symlink: the symlink's third name must be judged from where it is.
case_hardlink_chain_to_symlink() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/a", "type": "dir"},
 {"name": "$R/a/s", "type": "symlink", "target": "../sib/secret"},
 {"name": "$R/a/l1", "type": "hardlink", "target": "$R/a/s"},
 {"name": "$R/l2", "type": "hardlink", "target": "$R/a/l1"}]
J
    before
    revert_p1 5
    expect_err "refusing symlink /$R/l2 -> ../sib/secret: it points outside $LIVE"
    unchanged
}

# File capabilities make a program as strong as set-user-ID root.
case_capabilities() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"},
 {"name": "$R/tool", "type": "file", "data": "#!/bin/sh\n", "mode": 493,
  "pax": {"LIBARCHIVE.xattr.security.capability": "AQAAAoAAAAAAAAAAAAAAAAAAAAA="}}]
J
    before
    revert_p1 5
    expect_err "refusing archive entry '$R/tool': a file with capabilities (security.capability)"
    unchanged
}

case_absolute_and_dotdot() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "${T#/}/other/abs", "type": "file", "data": "x"}]
J
    before
    revert_p1 5
    expect_err "refusing archive entry '${T#/}/other/abs': it is outside the captured paths"
    unchanged
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "/$R/abs", "type": "file", "data": "x"}]
J
    revert_p1 5
    expect_err "refusing archive entry '/$R/abs': it escapes the target"
    unchanged
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/../sib/dotdot", "type": "file", "data": "x"}]
J
    revert_p1 5
    expect_err "refusing archive entry '$R/../sib/dotdot': it escapes the target"
    unchanged
}

# --allow-external-symlinks creates the outward link, but nothing goes through it.
case_external_symlink_and_deferred_link() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"},
 {"name": "$R/out", "type": "symlink", "target": "$T/top/sib"},
 {"name": "$R/out/pwn", "type": "hardlink", "target": "$R/f"},
 {"name": "$R/f", "type": "file", "data": "pwned"}]
J
    before
    revert_p1 5 --allow-external-symlinks
    expect_err "refusing archive entry '$R/out/pwn': its path goes through a symlink"
    unchanged
}

# A link to the live root looks inside; staging must not write through it.
case_write_into_live_tree() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"},
 {"name": "$R/cur", "type": "symlink", "target": "$T/top/app"},
 {"name": "$R/cur/planted", "type": "hardlink", "target": "$R/f"},
 {"name": "$R/f", "type": "file", "data": "pwned"}]
J
    before
    revert_p1 5
    if [ "$MODE" = to ]; then
        expect_err "refusing symlink /$R/cur -> $T/top/app: it points outside $TO"
    else
        expect_err "refusing archive entry '$R/cur/planted': its path goes through a symlink"
    fi
    unchanged
    [ ! -e "$T/top/app/planted" ] || fail "written into the live tree"
}

case_special_files() {
    setup "$1"
    craft <<J
[{"name": "$R", "type": "dir"}, {"name": "$R/fifo", "type": "fifo", "mode": 420},
 {"name": "$R/null", "type": "chr", "mode": 438, "rdev": [1, 3]},
 {"name": "$R/suid", "type": "file", "data": "#!/bin/sh\n", "mode": 2541}]
J
    before
    expect_rc 0 "$REVERT" p1 --config "$T/c.conf" --store "$ST" --dry-run
    expect_out "warning: 3 device nodes, FIFOs or set-id files"
    expect_out "refuses them without --allow-special-files"
    expect_rc 0 "$REVERT" p1 --config "$T/c.conf" --store "$ST" --dry-run --json
    python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["targets"][0]; assert t["special_files"] == 3 and len(t["special"]) == 3, t' "$T/out" ||
        fail "--json does not list the special files"
    revert_p1 5
    expect_err "refusing archive entry '$R/"
    expect_err "pass --allow-special-files"
    unchanged
    revert_p1 0 --allow-special-files
    [ -p "$LIVE/fifo" ] && [ -c "$LIVE/null" ] || fail "special files not restored"
    [ "$(stat -c %a "$LIVE/suid")" = 4755 ] || fail "set-user-ID bit not restored"
    # the same through the config
    rm -rf "$TO"
    printf '[revert]\nallow_special_files = true\n' >>"$T/c.conf"
    revert_p1 0
    [ "$(stat -c %a "$LIVE/suid")" = 4755 ] || fail "set-user-ID bit not restored"
}

case_malformed_roots() {
    setup "$1"
    before
    local info want
    while IFS='|' read -r info want; do
        craft --info "$info" <<J
[{"name": "$R", "type": "dir"}]
J
        revert_p1 5
        expect_err "$want"
        expect_err "damaged"
        unchanged
        expect_rc 5 "$REVERT" p1 --config "$T/c.conf" --store "$ST" --dry-run
        expect_err "$want"
    done <<EOF2
{"roots": [{"type": "dir"}]}|app: the manifest's roots[0] has no "path" string
{"roots": [{"path": "$T/top/app"}]}|app: the manifest's roots[0] has no "type" string
{"roots": [{"path": 7, "type": "dir"}]}|roots[0] has no "path" string
{"roots": [{"path": "$T/top/app", "type": ["dir"]}]}|roots[0] has no "type" string
{"roots": [{"path": "$T/top/app", "type": "pipe"}]}|roots[0] has an unknown "type"
{"roots": [5]}|roots[0] is not an object
{"roots": [{"path": "$T/top/../top/app", "type": "dir"}]}|roots[0] "path" is not an absolute, normalised path
{"roots": [{"path": "", "type": "dir"}]}|roots[0] "path" is not an absolute, normalised path
{"roots": [{"path": "$T/top/app", "type": "dir"}, {"path": "$T/top/app/sub", "type": "dir"}]}|roots[1] overlaps another root
{"roots": []}|the manifest lists no roots
{"roots": "$T/top/app"}|the manifest lists no roots
[]|manifest is damaged: a required field is missing or of the wrong type
EOF2
}

# A root the manifest calls absent holds nothing: an entry for it would be left behind,
# outside the tree, wherever the staging put it.
test_entry_of_an_absent_root_is_refused() {
    setup inplace
    craft <<J
[{"name": "$R", "type": "file", "data": "planted", "mode": 438}]
J
    python3 - "$ST/catalog/p1.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m.pop("auth", None)
m["components"][0]["info"]["roots"][0]["type"] = "absent"
json.dump(m, open(sys.argv[1], "w"))
PY
    before
    revert_p1 5
    expect_err "the manifest says its root did not exist"
    unchanged
}

# Immutable and append-only flags from a snapshot that is not authenticated would block
# the cut-over and the removal of the staged or displaced tree: they are not restored.
test_immutable_flag_from_an_unauthenticated_snapshot_is_dropped() {
    setup inplace
    craft <<J
[{"name": "$R", "type": "dir"},
 {"name": "$R/f", "type": "file", "data": "v2", "pax": {"SCHILY.fflags": "schg"}}]
J
    revert_p1 0 --drop-old
    expect_err "not restoring its immutable or append-only flag"
    [ "$(cat "$LIVE/f")" = v2 ] || fail "the file was not restored"
    ! lsattr -d "$LIVE/f" 2>/dev/null | cut -d' ' -f1 | grep -q i || fail "$LIVE/f is immutable"
    rm -f "$LIVE/f" || fail "the restored file cannot be removed"
}

for c in symlink_chain symlink_chain_dot_name hardlink_later hardlinked_symlink hardlink_chain_to_symlink capabilities \
    absolute_and_dotdot external_symlink_and_deferred_link \
    write_into_live_tree special_files malformed_roots; do
    for m in inplace to images; do
        eval "test_${c}_$m() { case_$c $m; }"
    done
done

# A local user who owns a directory inside the displaced tree swaps a subdirectory of it
# for a symlink to a sibling while --drop-old is about to remove that tree.
removal_race() { # WHAT: displaced (--drop-old) or staged (a failing revert's cleanup)
    other_user
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/top/app/home/sub" "$T/top/sib"
    echo v1 >"$T/top/app/home/sub/f"
    echo secret >"$T/top/sib/secret"
    chown -R snapother "$T/top/app/home"
    printf '[source app]\ntype = files\npaths = %s/top/app\n' "$T" >"$T/c.conf"
    expect_rc 0 "$SNAP" create p1 --config "$T/c.conf" --store "$ST"
    if [ "$1" = staged ]; then
        # a revert killed once staging is done: --recover removes the staged tree
        SNAP_FAILPOINT=stage-end run "$REVERT" p1 --config "$T/c.conf" --store "$ST" --yes --no-safety-snapshot
        [ "$RC" = 137 ] || fail "exit code $RC, expected the kill of the fail point"
    fi
    listing "$T/top/sib" >"$T/before.sib"
    if [ "$1" = staged ]; then
        SNAP_FAILPOINT=files-before-remove:wait=$T/go "$REVERT" --recover --store "$ST" >"$T/out" 2>"$T/err" &
    else
        SNAP_FAILPOINT=files-before-remove:wait=$T/go "$REVERT" p1 --config "$T/c.conf" --store "$ST" --yes \
            --no-safety-snapshot --drop-old >"$T/out" 2>"$T/err" &
    fi
    pid=$!
    local d=""
    held "$T/err"
    d=$(ls -d "$T"/top/.app.pre-revert-* "$T"/top/.app.snap-stage-* 2>/dev/null | head -n1)
    [ -n "$d" ] && [ -d "$d/home/sub" ] || fail "no $1 tree to attack"
    # the user owns home/ in that tree: the swap needs no privilege
    runuser -u snapother -- sh -c "mv '$d/home/sub' '$d/home/sub.x' && ln -s '$T/top/sib' '$d/home/sub'" ||
        fail "the swap failed"
    touch "$T/go"
    wait $pid && rc=0 || rc=$?
    [ "$rc" = 0 ] || { cat "$T/err" >&2; fail "exit code $rc"; }
    listing "$T/top/sib" >"$T/after.sib"
    diff "$T/before.sib" "$T/after.sib" >&2 || fail "the sibling changed"
    [ ! -e "$d" ] || fail "$d was not removed"
}

test_removal_race_drop_old() { removal_race displaced; }
test_removal_race_staging_cleanup() { removal_race staged; }

run_tests "$@"
