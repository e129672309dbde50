#!/usr/bin/env bash
# A second, unprivileged local user against root's snap and revert: races won with fail
# points (the capture's walk against its open, a snap against a revert), and the places
# snap trusts (config file, store, state directory) made by or writable for that user.
. "$(dirname "$0")/lib.sh"

OTHER=snapother

setup() {
    other_user
    OTHER_UID=$(id -u "$OTHER")
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    # what only root may read, and a tree the other user may write in
    mkdir -p "$T/secret" && echo "ROOT-ONLY-SECRET" >"$T/secret/key" && chmod -R go-rwx "$T/secret"
    mkdir -p "$T/app/d"
    echo "mine" >"$T/app/d/f"
    chown -R "$OTHER:" "$T/app"
}

# as_other CMD...: runs CMD as the other user
as_other() { setpriv --reuid="$OTHER" --regid="$(id -g "$OTHER")" --clear-groups "$@"; }

parts() { find "$ST/data" -type f 2>/dev/null | wc -l; }

# nothing_committed NAME [PARTS]: the snapshot is not in the catalog, and the store holds
# no more parts than it did before (PARTS, else none)
nothing_committed() {
    [ ! -e "$ST/catalog/$1.json" ] || fail "a snap that failed was committed"
    expect_rc 3 "$SNAP" show "$1" --store "$ST"
    [ "$(parts)" = "${2:-0}" ] || fail "parts of the failed snap were left in the store"
}

# snap_racing NAME N ACTION...: a snap of $T/app held at the Nth entry it opens, while
# the other user runs ACTION (a shell command) in $T/app
snap_racing() {
    local name=$1 n=$2 pid
    shift 2
    SNAP_FAILPOINT=snap-files-open@$n:wait=$T/go "$SNAP" create "$name" --store "$ST" --files "$T/app" \
        >"$T/snap.out" 2>"$T/snap.err" &
    pid=$!
    held "$T/snap.err"
    as_other sh -c "cd '$T/app' && $*"
    touch "$T/go"
    set +e
    wait $pid
    RC=$?
    set -e
    cp "$T/snap.err" "$T/err"
}

test_directory_swapped_for_symlink_during_capture() {
    setup
    # the walk has seen d as a directory; before snap opens it, d becomes a link to root's
    snap_racing p1 1 "mv d d.old && ln -s '$T/secret' d"
    [ "$RC" = 4 ] || { cat "$T/err" >&2; fail "exit code $RC, expected 4"; }
    expect_err "$T/app/d changed while snap was reading it"
    expect_err "hint: something changed the tree during capture; run snap again"
    nothing_committed p1
    # and with the tree left alone the snap works and holds the user's file, not root's
    rm "$T/app/d" && mv "$T/app/d.old" "$T/app/d"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    rm -rf "$T/app" && expect_rc 0 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    [ "$(cat "$T/app/d/f")" = mine ] || fail "the snapshot does not hold the user's file"
    ! grep -rq ROOT-ONLY-SECRET "$T/app" || fail "root-only data was stored"
}

test_file_swapped_for_symlink_during_capture() {
    setup
    # entries are opened in order: d (1st), then d/f (2nd)
    snap_racing p1 2 "rm d/f && ln -s '$T/secret/key' d/f"
    [ "$RC" = 4 ] || { cat "$T/err" >&2; fail "exit code $RC, expected 4"; }
    expect_err "$T/app/d/f changed while snap was reading it"
    nothing_committed p1
}

test_file_swapped_for_another_file_during_capture() {
    setup
    echo "other" >"$T/app/d/g" && chown "$OTHER:" "$T/app/d/g"
    # no symlink at all: the name now holds another inode than the one the walk saw
    snap_racing p1 2 "mv d/g d/f"
    [ "$RC" = 4 ] || { cat "$T/err" >&2; fail "exit code $RC, expected 4"; }
    expect_err "$T/app/d/f changed while snap was reading it"
    nothing_committed p1
}

test_snap_refused_while_a_revert_of_the_root_runs() {
    setup
    mkdir -p "$T/b" && echo b1 >"$T/b/conf"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/b"
    echo changed >"$T/app/d/f"
    echo b2 >"$T/b/conf"
    before=$(parts)
    SNAP_FAILPOINT=stage-begin:wait=$T/go "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot \
        >/dev/null 2>"$T/revert.err" &
    pid=$!
    held "$T/revert.err"
    # either root of the revert, the first or the second
    expect_rc 4 "$SNAP" create p2 --store "$ST" --files "$T/app"
    expect_err "a revert of $T/app is running"
    expect_err "hint: snap it again when the revert has finished"
    expect_rc 4 "$SNAP" create p3 --store "$ST" --files "$T/b"
    expect_err "a revert of $T/b is running"
    touch "$T/go"
    wait $pid || fail "the revert failed"
    nothing_committed p2 "$before"
    nothing_committed p3 "$before"
    [ "$(cat "$T/app/d/f")" = mine ] && [ "$(cat "$T/b/conf")" = b1 ] || fail "not reverted"
    # once it is done, the snap goes through
    expect_rc 0 "$SNAP" create p2 --store "$ST" --files "$T/app"
}

test_revert_refused_while_a_snap_of_the_root_runs() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    before=$(tree_sum "$T/app")
    SNAP_FAILPOINT=snap-files-open@1:wait=$T/go "$SNAP" create p2 --store "$ST" --files "$T/app" \
        >/dev/null 2>"$T/snap.err" &
    pid=$!
    held "$T/snap.err"
    expect_rc 4 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "target $T/app is locked by a snap, pid $pid on host "
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "the refused revert changed the tree"
    touch "$T/go"
    wait $pid || fail "the snap failed"
    expect_rc 0 "$SNAP" show p2 --store "$ST"
}

test_snap_conf_in_current_directory_is_ignored() {
    setup
    mkdir -p "$T/cwd" && chown "$OTHER:" "$T/cwd"
    cat >"$T/cwd/snap.conf" <<EOF
[store]
url = $T/their-store
[source loot]
type = files
paths = $T/secret
EOF
    chown "$OTHER:" "$T/cwd/snap.conf"
    (cd "$T/cwd" && expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --json)
    expect_rc 0 "$SNAP" show p1 --store "$ST" --json
    ! grep -q "loot\|$T/secret" "$T/out" || fail "./snap.conf added a source"
    # without --store, the default store, not the one ./snap.conf names
    (cd "$T/cwd" && run "$SNAP" list)
    ! grep -q their-store "$T/out" "$T/err" || fail "./snap.conf chose the store"
    [ ! -e "$T/their-store" ] || fail "./snap.conf chose the store"
}

test_config_file_another_user_could_write_is_refused() {
    setup
    printf '[snap]\njobs = 1\n' >"$T/theirs.conf" && chown "$OTHER:" "$T/theirs.conf"
    expect_rc 2 "$SNAP" list --store "$ST" --config "$T/theirs.conf"
    expect_err "config file $T/theirs.conf is owned by uid $OTHER_UID (neither root nor you)"
    expect_err "hint: another user could change it"
    SNAP_CONFIG=$T/theirs.conf expect_rc 2 "$REVERT" p1 --store "$ST" --dry-run
    expect_err "config file $T/theirs.conf is owned by uid $OTHER_UID"
    for mode in 0664 0646; do
        printf '[snap]\njobs = 1\n' >"$T/lax.conf" && chmod $mode "$T/lax.conf"
        expect_rc 2 "$SNAP" list --store "$ST" --config "$T/lax.conf"
        expect_err "config file $T/lax.conf may be written by group or others"
        expect_err "chmod go-w $T/lax.conf"
    done
    # a file of root's own, in a directory that the other user owns, is refused too
    mkdir -p "$T/theirdir" && chown "$OTHER:" "$T/theirdir"
    printf '[snap]\njobs = 1\n' >"$T/theirdir/snap.conf"
    expect_rc 2 "$SNAP" list --store "$ST" --config "$T/theirdir/snap.conf"
    expect_err "config file $T/theirdir/snap.conf is in $T/theirdir, which is owned by uid $OTHER_UID"
    # a symlink is judged where it leads
    ln -s "$T/lax.conf" "$T/link.conf"
    expect_rc 2 "$SNAP" list --store "$ST" --config "$T/link.conf"
    expect_err "may be written by group or others"
    # and a proper one is read
    chmod 0644 "$T/lax.conf"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --config "$T/link.conf"
    expect_rc 0 "$SNAP" list --store "$ST" --config "$T/link.conf"
}

# /dev/null, which every user may write, reads as nothing: it stands for "no config".
test_config_dev_null_is_no_config() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --config /dev/null
    expect_rc 0 "$SNAP" show p1 --store "$ST" --config /dev/null
    # a world-writable character device that is not /dev/null is still refused
    mknod -m 0666 "$T/zero" c 1 5
    expect_rc 2 "$SNAP" list --store "$ST" --config "$T/zero"
    expect_err "may be written by group or others"
}

# Every directory above a config file counts: another user who owns one of them could swap
# the directory below it between our check and our open.
test_config_under_a_directory_another_user_owns_higher_up_is_refused() {
    setup
    mkdir -p "$T/g/p"
    chown "$OTHER:" "$T/g"
    printf '[store]\nurl = %s\n' "$ST" >"$T/g/p/c.conf"
    chmod 600 "$T/g/p/c.conf"
    expect_rc 2 "$SNAP" list --config "$T/g/p/c.conf"
    expect_err "is in $T/g, which is owned by uid"
}

test_store_another_user_could_write_is_refused() {
    setup
    mkdir -p "$T/theirs" && chown "$OTHER:" "$T/theirs" && chmod 0700 "$T/theirs"
    expect_rc 6 "$SNAP" create p1 --store "$T/theirs" --files "$T/app"
    expect_err "store $T/theirs is owned by uid $OTHER_UID (neither root nor you)"
    [ -z "$(ls -A "$T/theirs")" ] || fail "snap wrote into the refused store"
    expect_rc 6 "$REVERT" p1 --store "$T/theirs" --dry-run
    expect_err "store $T/theirs is owned by uid $OTHER_UID"
    mkdir -p "$T/open" && chmod 0777 "$T/open"
    expect_rc 6 "$SNAP" create p1 --store "$T/open" --files "$T/app"
    expect_err "store $T/open may be written by group or others"
    expect_err "hint: another user could change it: \`chmod go-w $T/open\`"
    [ -z "$(ls -A "$T/open")" ] || fail "snap wrote into the refused store"
    # a new store in a directory that others may write (and is not sticky) is refused
    expect_rc 6 "$SNAP" create p1 --store "$T/open/new" --files "$T/app"
    expect_err "store $T/open/new is in $T/open, which group or others may write"
    [ ! -e "$T/open/new" ] || fail "the store was created"
    # one of root's own in a sticky directory, like /tmp, is fine
    mkdir -p "$T/sticky" && chmod 1777 "$T/sticky"
    expect_rc 0 "$SNAP" create p1 --store "$T/sticky/store" --files "$T/app"
}

test_state_directory_another_user_could_write_is_refused() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    echo changed >"$T/app/d/f"
    before=$(parts)
    mkdir -p "$T/theirstate" && chown "$OTHER:" "$T/theirstate" && chmod 0700 "$T/theirstate"
    SNAP_STATE_DIR=$T/theirstate expect_rc 6 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "state directory $T/theirstate is owned by uid $OTHER_UID (neither root nor you)"
    [ "$(cat "$T/app/d/f")" = changed ] || fail "the refused revert changed the target"
    # snap locks its roots there too
    SNAP_STATE_DIR=$T/theirstate expect_rc 6 "$SNAP" create p2 --store "$ST" --files "$T/app"
    expect_err "state directory $T/theirstate is owned by uid $OTHER_UID"
    nothing_committed p2 "$before"
    mkdir -p "$T/openstate" && chmod 0777 "$T/openstate"
    SNAP_STATE_DIR=$T/openstate expect_rc 6 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "state directory $T/openstate may be written by group or others"
    [ "$(cat "$T/app/d/f")" = changed ] || fail "the refused revert changed the target"
    [ -z "$(ls -A "$T/openstate")" ] || fail "revert wrote into the refused state directory"
    # a subdirectory planted by the other user is refused as well
    mkdir -p "$T/state/journal" && chown "$OTHER:" "$T/state/journal"
    expect_rc 6 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "state directory $T/state/journal is owned by uid $OTHER_UID"
}

test_no_default_under_tmp_without_home() {
    setup
    mkdir -p "$T/cwd" && chmod 0755 "$T/cwd"
    had=no && [ -e /tmp/.local ] && had=yes
    # a user other than root without HOME: asked for a store, nothing made under /tmp
    run as_other env -u HOME -u XDG_DATA_HOME -u XDG_STATE_HOME -C "$T/cwd" "$SNAP" list
    [ "$RC" = 2 ] || { cat "$T/err" >&2; fail "exit code $RC, expected 2"; }
    expect_err "no store: HOME is not set"
    expect_err "hint: pass --store URL"
    run as_other env -u HOME -u XDG_DATA_HOME -u XDG_STATE_HOME -C "$T/cwd" "$REVERT" p1 --dry-run
    [ "$RC" = 2 ] || { cat "$T/err" >&2; fail "exit code $RC, expected 2"; }
    expect_err "no store: HOME is not set"
    [ "$had" = yes ] || [ ! -e /tmp/.local ] || fail "a default under /tmp was created"
    # root without HOME: the store under /var/lib, never /tmp
    env -u HOME -u XDG_DATA_HOME "$SNAP" list --json >"$T/out" 2>"$T/err" || true
    ! grep -q '/tmp' "$T/out" "$T/err" || fail "root's default store is under /tmp"
    if [ ! -d /var/lib/snap/store ]; then
        expect_err "/var/lib/snap/store"
    fi
}

test_root_whose_name_is_not_utf8_is_refused() {
    setup
    bad=$T/$(printf 'latin1-\xe9')
    mkdir -p "$bad" && echo x >"$bad/f"
    expect_rc 2 "$SNAP" create p1 --store "$ST" --files "$bad"
    expect_err "its name is not valid UTF-8"
    expect_err "hint: rename it, or capture the directory that holds it"
    nothing_committed p1
    # beneath a root, such a name is stored and restored as it is
    mkdir -p "$T/holder" && mv "$bad" "$T/holder/"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --files "$T/holder"
    rm -rf "$T/holder"
    expect_rc 0 "$REVERT" p2 --store "$ST" --yes --no-safety-snapshot
    [ "$(cat "$T/holder/$(printf 'latin1-\xe9')/f")" = x ] || fail "the name beneath the root was not restored"
}

run_tests "$@"
