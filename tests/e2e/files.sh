#!/usr/bin/env bash
# End-to-end: snap and revert of files on a local store, and the catalog commands.
. "$(dirname "$0")/lib.sh"

setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/app/conf.d" "$T/app/empty" "$T/app/deep"
    echo "listen 80" >"$T/app/main.conf"
    printf 'a\tb\nc\\d\n' >"$T/app/conf.d/tabs and spaces.conf"
    printf 'x' >"$T/app/$(printf 'new\nline')"
    printf 'y' >"$T/app/$(printf 'latin1-\xe9')"
    chmod 0640 "$T/app/main.conf"
    chmod 0750 "$T/app/conf.d"
    ln -s main.conf "$T/app/link"
    ln "$T/app/main.conf" "$T/app/hard"
    touch -d '2020-01-02 03:04:05' "$T/app/conf.d/tabs and spaces.conf"
}

damage() {
    echo "broken" >"$T/app/main.conf"
    rm -rf "$T/app/conf.d"
    echo "new" >"$T/app/added"
    rm "$T/app/link"
    ln -s /etc/passwd "$T/app/link"
}

test_roundtrip_restores_exact_tree() {
    setup
    # a long path and names that need pax headers
    long=$T/app/deep
    for i in $(seq 1 30); do long=$long/directory-level-$i; done
    mkdir -p "$long" && echo deep >"$long/file"
    setfattr -n user.origin -v snap-test "$T/app/main.conf" 2>/dev/null || true
    setfacl -m u:nobody:r "$T/app/conf.d/tabs and spaces.conf" 2>/dev/null || true
    chown nobody:nogroup "$T/app/empty"
    before=$(tree_sum "$T/app")
    xattr_before=$(getfattr -n user.origin --only-values "$T/app/main.conf" 2>/dev/null || echo none)
    acl_before=$(getfacl -p "$T/app/conf.d/tabs and spaces.conf" 2>/dev/null)
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --label env=test --note "before v42"
    expect_out "snapshot p1"
    damage
    [ "$(tree_sum "$T/app")" != "$before" ] || fail "damage changed nothing"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes
    expect_out "reverted 1 component to p1"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs"
    [ "$(stat -c %i "$T/app/main.conf")" = "$(stat -c %i "$T/app/hard")" ] || fail "hard link lost"
    [ "$(stat -c %U "$T/app/empty")" = nobody ] || fail "owner lost"
    [ "$(stat -c %Y "$T/app/conf.d/tabs and spaces.conf")" = "$(date -d '2020-01-02 03:04:05' +%s)" ] || fail "mtime lost"
    [ "$(getfattr -n user.origin --only-values "$T/app/main.conf" 2>/dev/null || echo none)" = "$xattr_before" ] || fail "xattr lost"
    [ "$(getfacl -p "$T/app/conf.d/tabs and spaces.conf" 2>/dev/null)" = "$acl_before" ] || fail "ACL lost"
    [ "$(cat "$long/file")" = deep ] || fail "long path lost"
    [ ! -e "$T/app/added" ] || fail "a file added after the point survived the revert"
    # the displaced tree is kept beside as the instant undo, with the damage in it
    old=$(ls -d "$T"/.app.pre-revert-*)
    [ "$(cat "$old/main.conf")" = broken ] || fail "displaced tree is not the old state"
}

test_stock_tar_reads_every_part() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    part=$(ls "$ST"/data/*/app.0000.tar.zst)
    tar --zstd -tvf "$part" >"$T/list" || fail "tar cannot list the part"
    grep -q 'main.conf' "$T/list" || fail "tar listing lacks main.conf"
    mkdir "$T/x" && tar --zstd -xf "$part" -C "$T/x" || fail "tar cannot extract the part"
    cmp "$T/app/main.conf" "$T/x$T/app/main.conf" || fail "tar extracted other bytes"
    sha=$(sha256sum "$part" | cut -d' ' -f1)
    grep -q "$sha" "$ST"/catalog/p1.json || fail "manifest lacks the part's sha256"
}

test_large_component_splits_into_parts() {
    setup
    for i in $(seq 1 40); do head -c 50000 /dev/urandom >"$T/app/blob$i"; done
    ln "$T/app/blob1" "$T/app/zz-late-link"
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --part-size 100K --jobs 2
    n=$(ls "$ST"/data/*/app.*.tar.zst | wc -l)
    [ "$n" -ge 4 ] || fail "expected several parts, got $n"
    for p in "$ST"/data/*/app.*.tar.zst; do tar --zstd -tf "$p" >/dev/null || fail "tar cannot list $p"; done
    rm -f "$T"/app/blob*
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --jobs 2
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs"
    [ "$(stat -c %i "$T/app/blob1")" = "$(stat -c %i "$T/app/zz-late-link")" ] || fail "hard link across parts lost"
}

test_config_source_with_exclude() {
    setup
    echo tmp >"$T/app/cache.tmp"
    cat >"$T/snap.conf" <<EOF
[store]
url = $ST
[source appcfg]
type = files
paths = $T/app
exclude = *.tmp
EOF
    expect_rc 0 "$SNAP" create p1 --config "$T/snap.conf"
    expect_rc 0 "$SNAP" show p1 --config "$T/snap.conf"
    expect_out "appcfg"
    tar --zstd -tf "$ST"/data/*/appcfg.0000.tar.zst | grep -q cache.tmp && fail "excluded file captured"
    # the target equals the point exactly; the excluded file is in the safety snapshot
    expect_rc 0 "$REVERT" p1 --config "$T/snap.conf" --yes
    [ ! -e "$T/app/cache.tmp" ] || fail "excluded file survived"
    SNAP_CONFIG=$T/snap.conf expect_rc 0 "$SNAP" list --label revert-of=p1 --json
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["snapshots"]; assert len(d)==1' "$T/out" || fail "no safety snapshot"
}

test_unknown_and_invalid_names() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    expect_rc 3 "$SNAP" show nope --store "$ST"
    expect_err "no snapshot named nope"
    expect_err "hint: "
    expect_rc 3 "$REVERT" nope --store "$ST" --yes
    expect_rc 2 "$SNAP" create "bad/name" --store "$ST" --files "$T/app"
    expect_err "invalid snapshot name"
    expect_rc 2 "$SNAP" create ".hidden" --store "$ST" --files "$T/app"
    expect_rc 3 "$REVERT" p1 --store "$ST" --only nosuch --yes
    expect_err "has no component nosuch"
    expect_rc 2 "$SNAP" frobnicate --store "$ST"
    expect_rc 2 "$SNAP" create p2 --store "$ST" --no-such-flag
}

test_existing_name_conflicts_and_first_stays() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    cp "$ST/catalog/p1.json" "$T/first.json"
    echo changed >"$T/app/main.conf"
    expect_rc 4 "$SNAP" create p1 --store "$ST" --files "$T/app"
    expect_err "already exists"
    cmp "$ST/catalog/p1.json" "$T/first.json" || fail "first manifest changed"
    expect_rc 0 "$SNAP" verify p1 --store "$ST"
    [ "$(ls "$ST/data" | wc -l)" = 1 ] || fail "the failed snap left data"
}

test_concurrent_creates_of_one_name() {
    setup
    for i in $(seq 1 6); do
        ( rc=0; "$SNAP" create same --store "$ST" --files "$T/app" >/dev/null 2>"$T/err$i" || rc=$?; echo $rc >"$T/rc$i" ) &
    done
    wait
    ok=$(cat "$T"/rc* | grep -c '^0$' || true)
    conflict=$(cat "$T"/rc* | grep -c '^4$' || true)
    [ "$ok" = 1 ] || fail "$ok creates succeeded"
    [ "$conflict" = 5 ] || { cat "$T"/rc* "$T"/err* >&2; fail "$conflict creates failed with the conflict code"; }
    expect_rc 0 "$SNAP" verify same --store "$ST"
    [ "$(ls "$ST/data" | wc -l)" = 1 ] || fail "losers left data behind"
}

test_unreadable_and_missing_source() {
    setup
    expect_rc 3 "$SNAP" create p1 --store "$ST" --files "$T/nonexistent"
    expect_err "cannot read $T/nonexistent"
    chmod 0700 "$T/app/conf.d"
    # A store and a state directory of nobody's own: one anybody may write is refused.
    rm -rf "$ST" "$T/state"
    mkdir -p "$ST" "$T/state" && chown nobody "$ST" "$T/state" && chmod 0700 "$ST" "$T/state"
    expect_rc 6 setpriv --reuid=nobody --regid=nogroup --clear-groups env SNAP_STATE_DIR="$T/state" \
        "$SNAP" create p1 --store "$ST" --files "$T/app"
    expect_err "conf.d"
    expect_err "Permission denied"
    expect_err "hint:"
    [ ! -e "$ST/catalog/p1.json" ] || fail "a failed snap was committed"
}

test_store_missing_or_read_only() {
    setup
    expect_rc 3 "$SNAP" list --store "$T/no-store"
    expect_err "hint:"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    chmod -R a+rX "$ST"
    install -d -o nobody -m 0700 "$T/nobody-state"
    expect_rc 6 setpriv --reuid=nobody --regid=nogroup --clear-groups env SNAP_STATE_DIR="$T/nobody-state" \
        "$SNAP" create p2 --store "$ST" --files "$T/app/main.conf"
    expect_err "Permission denied"
    expect_rc 0 setpriv --reuid=nobody --regid=nogroup --clear-groups "$SNAP" list --store "$ST"
    expect_out "p1"
    expect_rc 6 setpriv --reuid=nobody --regid=nogroup --clear-groups "$SNAP" list --store "/root/private-store"
}

corrupt_case() { # corrupt_case HOW: snaps, damages the store in a way, checks verify and revert
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    echo "live edit" >"$T/app/main.conf"
    before=$(tree_sum "$T/app")
    part=$(ls "$ST"/data/*/app.0000.tar.zst)
    case $1 in
    missing) rm "$part" ;;
    truncated) truncate -s -20 "$part" ;;
    flipped) # invert the middle byte, so that it always changes
        python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(0, 2); n = f.tell() // 2
f.seek(n); b = f.read(1)[0]; f.seek(n); f.write(bytes([b ^ 0xff]))' "$part" ;;
    esac
    expect_rc 5 "$SNAP" verify p1 --store "$ST"
    expect_out "app.0000.tar.zst"
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "nothing was changed"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "target changed"
    ls -a "$T" | grep -q snap-stage && fail "staging left behind"
    return 0
}

test_part_missing_stops_before_cutover() { corrupt_case missing; }
test_part_truncated_stops_before_cutover() { corrupt_case truncated; }
test_part_flipped_byte_stops_before_cutover() { corrupt_case flipped; }

# Replaces the part of p1 by a hand-made archive, with a manifest that vouches for it:
# what a tampered store would hold. Revert must refuse the entry.
evil_case() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    before=$(tree_sum "$T/app")
    part=$(ls "$ST"/data/*/app.0000.tar.zst)
    python3 - "$T" "$1" <<'EOF'
import io, sys, tarfile
t, how = sys.argv[1], sys.argv[2]
root = t.lstrip('/') + '/app'
with tarfile.open(t + '/evil.tar', 'w', format=tarfile.PAX_FORMAT) as tf:
    d = tarfile.TarInfo(root); d.type = tarfile.DIRTYPE; d.mode = 0o755; tf.addfile(d)
    if how == 'dotdot':
        i = tarfile.TarInfo(root + '/../../escaped'); data = b'x'; i.size = 1; tf.addfile(i, io.BytesIO(data))
    elif how == 'absolute':
        i = tarfile.TarInfo('/tmp/snap-absolute-escape'); data = b'x'; i.size = 1; tf.addfile(i, io.BytesIO(data))
    elif how == 'symlink':
        i = tarfile.TarInfo(root + '/evil'); i.type = tarfile.SYMTYPE; i.linkname = '/etc'; tf.addfile(i)
EOF
    zstd -q -f "$T/evil.tar" -o "$part"
    python3 - "$ST/catalog/p1.json" "$part" <<'EOF'
import hashlib, json, os, sys
m = json.load(open(sys.argv[1])); p = m['components'][0]['parts'][0]
data = open(sys.argv[2], 'rb').read()
p['sha256'] = hashlib.sha256(data).hexdigest(); p['size'] = len(data); p['entries'] = 2
json.dump(m, open(sys.argv[1], 'w'))
EOF
    # The edited manifest is no longer authenticated: the target is named locally.
    printf '[source app]\ntype = files\npaths = %s\n' "$T/app" >"$T/snap.conf"
    expect_rc 5 "$REVERT" -c "$T/snap.conf" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "refusing"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "target changed"
    [ ! -e "$T/escaped" ] && [ ! -e /tmp/snap-absolute-escape ] || fail "an entry escaped"
    ls -a "$T" | grep -q snap-stage && fail "staging left behind"
    return 0
}

test_entry_with_dotdot_refused() { evil_case dotdot; }
test_entry_with_absolute_path_refused() { evil_case absolute; }
test_symlink_pointing_outside_refused() { evil_case symlink; }

test_sparse_file_keeps_its_holes() {
    setup
    truncate -s 50M "$T/app/sparse"
    echo data | dd of="$T/app/sparse" bs=1 seek=10000000 conv=notrunc status=none
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    expect_rc 0 "$REVERT" p1 --store "$ST" --to "$T/copy" --yes --no-safety-snapshot
    cmp "$T/app/sparse" "$T/copy/sparse" || fail "sparse file differs"
    [ "$(du -k "$T/copy/sparse" | cut -f1)" -lt 1024 ] || fail "the holes were filled"
}

test_disk_full_while_staging() {
    setup
    mkdir "$T/small"
    mount -t tmpfs -o size=6m tmpfs "$T/small" || fail "cannot mount a tmpfs (run as root)"
    mkdir "$T/small/data"
    head -c 3000000 /dev/urandom >"$T/small/data/a"
    head -c 2000000 /dev/urandom >"$T/small/data/b"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/small/data"
    rm "$T/small/data/b"
    before=$(tree_sum "$T/small/data")
    # the free-space check of the plan would refuse; switch it off to hit ENOSPC for real
    cat >"$T/c.conf" <<EOF
[revert]
check_free_space = false
EOF
    expect_rc 1 "$REVERT" p1 --store "$ST" --config "$T/c.conf" --yes --no-safety-snapshot
    expect_err "No space left on device"
    [ "$(tree_sum "$T/small/data")" = "$before" ] || { umount "$T/small"; fail "target changed"; }
    left=$(ls -a "$T/small" | grep -c snap-stage || true)
    # and the plan's own check says so before anything is written
    expect_rc 1 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "not enough free space"
    umount "$T/small"
    [ "$left" = 0 ] || fail "staging left behind"
}

test_ctrl_c_during_snap_commits_nothing() {
    setup
    for i in $(seq 1 30); do head -c 2000000 /dev/urandom >"$T/app/big$i"; done
    "$SNAP" create p1 --store "$ST" --files "$T/app" --zstd-level 19 >"$T/out" 2>"$T/err" &
    pid=$!
    sleep 1
    kill -INT $pid
    wait $pid && rc=0 || rc=$?
    [ "$rc" = 130 ] || fail "exit code $rc, expected 130"
    grep -q interrupted "$T/err" || fail "no word of the interruption"
    expect_rc 0 "$SNAP" list --store "$ST" --json
    [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["snapshots"]))' "$T/out")" = 0 ] || fail "listed"
    [ -z "$(find "$ST/data" -type f 2>/dev/null)" ] || fail "parts left behind"
}

test_ctrl_c_during_revert_leaves_old_state() {
    setup
    for i in $(seq 1 30); do head -c 2000000 /dev/urandom >"$T/app/big$i"; done
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    rm "$T"/app/big*
    before=$(tree_sum "$T/app")
    SNAP_FAILPOINT=stage-end:wait=$T/go "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot >"$T/out" 2>"$T/err" &
    pid=$!
    held "$T/err"
    kill -INT $pid
    touch "$T/go"
    wait $pid && rc=0 || rc=$?
    [ "$rc" = 130 ] || fail "exit code $rc, expected 130"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "target changed"
    ls -a "$T" | grep -q snap-stage && fail "staging left behind"
    [ -z "$(ls "$T/state/journal")" ] || fail "journal left behind"
}

test_second_revert_of_same_target_conflicts() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    damage
    SNAP_FAILPOINT=stage-begin:wait=$T/go "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot >/dev/null 2>"$T/first.err" &
    pid=$!
    held "$T/first.err"
    expect_rc 4 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "$T/app is locked by revert"
    # a snapshot in use by a revert is kept by prune (creation times have whole seconds)
    sleep 2.2
    expect_rc 0 "$SNAP" prune --store "$ST" --keep-within 1s --yes --json
    grep -q kept-in-use "$T/out" || fail "prune did not keep the snapshot in use"
    touch "$T/go"
    wait $pid || fail "first revert failed"
    [ "$(cat "$T/app/main.conf")" = "listen 80" ] || fail "not reverted"
}

test_to_restores_beside_and_never_touches_original() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    point=$(tree_sum "$T/app")
    damage
    now=$(tree_sum "$T/app")
    expect_rc 0 "$REVERT" p1 --store "$ST" --to "$T/check" --yes
    [ "$(tree_sum "$T/check")" = "$point" ] || fail "copy differs from the point"
    [ "$(tree_sum "$T/app")" = "$now" ] || fail "original touched"
    expect_rc 4 "$REVERT" p1 --store "$ST" --to "$T/check" --yes
    expect_err "exists"
}

test_dry_run_prints_plan_and_changes_nothing() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    damage
    now=$(tree_sum "$T/app")
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run
    expect_out "to replace"
    expect_out "+ $T/app/conf.d"
    expect_out "- $T/app/added"
    expect_out "~ $T/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --dry-run --json
    python3 - "$T/out" <<'EOF' || fail "JSON plan lacks the changes"
import json, sys
d = json.load(open(sys.argv[1]))
c = d['targets'][0]['changes']
assert d['dry_run'] is True and c['remove'] == 1 and c['add'] >= 2 and c['replace'] >= 1, c
EOF
    [ "$(tree_sum "$T/app")" = "$now" ] || fail "dry run changed the target"
    expect_rc 0 "$SNAP" list --store "$ST"
    grep -q pre-revert "$T/out" && fail "dry run took a safety snapshot"
    return 0
}

test_no_terminal_requires_yes() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    damage
    now=$(tree_sum "$T/app")
    expect_rc 2 "$REVERT" p1 --store "$ST"
    expect_err "--yes"
    [ "$(tree_sum "$T/app")" = "$now" ] || fail "target changed"
}

test_safety_snapshot_reverts_the_revert() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    damage
    damaged=$(tree_sum "$T/app")
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --json
    expect_err "points outside"   # snap warned while taking the safety snapshot
    safety=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["safety_snapshot"])' "$T/out")
    expect_rc 0 "$SNAP" show "$safety" --store "$ST" --json
    grep -q '"revert-of": "p1"' "$T/out" || fail "safety snapshot lacks its label"
    # the damaged state has a link to /etc/passwd: refused unless allowed by name
    expect_rc 5 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot
    expect_err "--allow-external-symlinks"
    expect_rc 0 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot --allow-external-symlinks
    [ "$(tree_sum "$T/app")" = "$damaged" ] || fail "undo did not restore the state before the revert"
}

test_path_absent_at_point_is_removed() {
    setup
    export SNAP_STATE_DIR=$T/state
    # the safety snapshot of a path that did not exist records it as absent
    mkdir -p "$T/other" && echo x >"$T/other/f"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/other"
    rm -rf "$T/other"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --json
    safety=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["safety_snapshot"])' "$T/out")
    [ -f "$T/other/f" ] || fail "not restored"
    expect_rc 0 "$REVERT" "$safety" --store "$ST" --yes --no-safety-snapshot
    [ ! -e "$T/other" ] || fail "a path absent at the point still exists"
}

test_single_file_source() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app/main.conf"
    echo changed >"$T/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --drop-old
    [ "$(cat "$T/app/main.conf")" = "listen 80" ] || fail "file not restored"
    [ "$(stat -c %a "$T/app/main.conf")" = 640 ] || fail "mode not restored"
    ls -a "$T/app" | grep -q pre-revert && fail "--drop-old kept the old file"
    return 0
}

test_only_selects_components() {
    setup
    mkdir -p "$T/b" && echo b1 >"$T/b/f"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/b"
    expect_rc 0 "$SNAP" show p1 --store "$ST"
    expect_out "app"
    expect_out "b "
    echo changed >"$T/app/main.conf"
    echo b2 >"$T/b/f"
    expect_rc 0 "$REVERT" p1 --store "$ST" --only b --yes
    [ "$(cat "$T/b/f")" = b1 ] || fail "b not reverted"
    [ "$(cat "$T/app/main.conf")" = changed ] || fail "app reverted though not selected"
}

test_delete_prune_and_labels() {
    setup
    for n in a b c d; do expect_rc 0 "$SNAP" create "s-$n" --store "$ST" --files "$T/app" --label "team=$([ $n = d ] && echo x || echo y)"; done
    expect_rc 2 "$SNAP" delete s-a --store "$ST"
    expect_rc 0 "$SNAP" delete s-a --store "$ST" --yes
    expect_rc 3 "$SNAP" show s-a --store "$ST"
    expect_rc 0 "$SNAP" prune --store "$ST" --keep-last 1 --label team=y --dry-run --json
    python3 - "$T/out" <<'EOF' || fail "dry-run prune report"
import json, sys
d = {r['name']: r['action'] for r in json.load(open(sys.argv[1]))['snapshots']}
assert d == {'s-b': 'would-delete', 's-c': 'kept'}, d
EOF
    expect_rc 0 "$SNAP" list --store "$ST"
    expect_out "s-b"
    expect_rc 0 "$SNAP" prune --store "$ST" --keep-last 1 --label team=y --yes
    expect_rc 0 "$SNAP" list --store "$ST" --json
    python3 -c 'import json,sys; n=sorted(s["name"] for s in json.load(open(sys.argv[1]))["snapshots"]); assert n==["s-c","s-d"], n' "$T/out" || fail "prune kept the wrong ones"
    expect_rc 2 "$SNAP" prune --store "$ST" --yes
    expect_err "needs a policy"
    expect_rc 0 "$SNAP" list --store "$ST" --label team=x
    expect_out "s-d"
    grep -q s-c "$T/out" && fail "label filter ignored"
    return 0
}

test_gc_removes_orphans_of_a_killed_snap() {
    setup
    SNAP_FAILPOINT=snap-before-commit expect_rc 137 "$SNAP" create p1 --store "$ST" --files "$T/app"
    expect_rc 3 "$SNAP" show p1 --store "$ST"
    [ -n "$(find "$ST/data" -type f)" ] || fail "the killed snap left no data to collect"
    expect_rc 0 "$SNAP" gc --store "$ST"
    [ -n "$(find "$ST/data" -type f)" ] || fail "gc removed young data a running snap could own"
    expect_rc 0 "$SNAP" gc --store "$ST" --min-age 0 --dry-run
    expect_out "would remove"
    expect_rc 0 "$SNAP" gc --store "$ST" --min-age 0 --json
    grep -q orphaned_snapshots "$T/out" || fail "no JSON report"
    [ -z "$(find "$ST/data" -type f 2>/dev/null)" ] || fail "orphans left"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
}

test_progress_only_on_a_terminal() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir "$T/app"
    for i in 1 2; do head -c 30000000 /dev/urandom >"$T/app/big$i"; done
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --zstd-level 1
    grep -q $'\r' "$T/err" && fail "progress drawn without a terminal"
    # under a pseudo-terminal the revert draws bytes, rate and ETA; a pause after each
    # entry makes it last long enough to draw, whatever the machine
    SNAP_FAILPOINT=stage-entry:pause=1 script -qec "$REVERT p1 --store $ST --yes --no-safety-snapshot --to $T/copy" \
        /dev/null >"$T/tty" </dev/null || fail "revert failed"
    grep -q 'ETA' "$T/tty" || { cat -v "$T/tty" | head >&2; fail "no progress with ETA on a terminal"; }
    grep -q 'MiB/s' "$T/tty" || fail "no rate on a terminal"
}

test_json_output_and_errors() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --json
    python3 - "$T/out" <<'EOF' || fail "create JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d['name'] == 'p1' and d['components'][0]['type'] == 'files'
p = d['components'][0]['parts'][0]
assert len(p['sha256']) == 64 and p['size'] > 0
assert d['components'][0]['stats']['files'] == 5, d['components'][0]['stats']
EOF
    expect_rc 3 "$SNAP" show nope --store "$ST" --json
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["exit_code"]==3 and e["code"]=="not_found"' "$T/out" || fail "error JSON"
    expect_rc 0 "$SNAP" verify p1 --store "$ST" --json
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["intact"] is True' "$T/out" || fail "verify JSON"
}
# One live target named by two sources (the same path, or one inside the other): a usage
# error at snap time that names both, with nothing written to the store.
test_same_path_twice_is_refused_at_snap() {
    setup
    R=$(realpath "$T")
    expect_rc 2 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/app/"
    expect_err "sources app and app-2 both name $R/app"
    expect_err "hint: name each target once"
    expect_rc 2 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/app/conf.d" --json
    expect_err "sources app and conf.d overlap: $R/app/conf.d (source conf.d) is inside $R/app (source app)"
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["exit_code"]==2 and e["code"]=="usage", e' \
        "$T/out" || fail "error JSON"
    # a [source] section and a flag; the inner path written through a symbolic link
    ln -s "$T" "$T/via"
    printf '[source conf]\ntype = files\npaths = %s\n' "$T/via/app/conf.d" >"$T/snap.conf"
    expect_rc 2 "$SNAP" create p1 --store "$ST" --config "$T/snap.conf" --files "$T/app"
    expect_err "sources conf and app overlap: $R/app/conf.d (source conf) is inside $R/app (source app)"
    [ -z "$(ls "$ST/catalog" 2>/dev/null)" ] || fail "the catalog gained $(ls "$ST/catalog")"
    [ -z "$(ls "$ST/data" 2>/dev/null)" ] || fail "parts were written: $(ls "$ST/data")"
    # one source naming a path and one inside it
    printf '[source conf]\ntype = files\npaths = %s %s\n' "$T/app" "$T/app/conf.d" >"$T/snap.conf"
    expect_rc 2 "$SNAP" create p1 --store "$ST" --config "$T/snap.conf"
    expect_err "source conf names $R/app/conf.d inside $R/app"
    # neighbours whose names share a prefix are two targets
    mkdir "$T/app2" && echo two >"$T/app2/f"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/app2"
}

# A manifest that names one target twice (written before snap refused it, signed with this
# host's key) is refused before anything changes: exit 5, and --only reverts one of them.
test_revert_of_one_target_named_twice_changes_nothing() {
    setup
    mkdir -p "$T/other" && echo other >"$T/other/f"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app" --files "$T/other"
    cp "$ST/catalog/p1.json" "$T/p1.json"
    damage
    app=$(tree_sum "$T/app") other=$(tree_sum "$T/other")
    for inner in "" /conf.d; do
        python3 "$T_ROOT/tests/e2e/resign.py" "$ST" p1 "$SNAP_STATE_DIR/host.key" "
c = {c['name']: c for c in m['components']}
c['other']['info']['roots'][0]['path'] = c['app']['info']['roots'][0]['path'] + '$inner'"
        expect_rc 5 "$REVERT" p1 --store "$ST" --yes
        expect_err "snapshot p1 names one target twice: components app and other"
        expect_err "nothing was changed"
        expect_err "--only NAME"
        [ "$(tree_sum "$T/app")" = "$app" ] || fail "the refused revert changed $T/app"
        [ "$(tree_sum "$T/other")" = "$other" ] || fail "the refused revert changed $T/other"
        [ -z "$(ls -a "$T" | grep -e snap-stage -e pre-revert)" ] || fail "staging left: $(ls -a "$T")"
        [ -z "$(ls "$ST/catalog" | grep -v '^p1.json$')" ] || fail "a safety snapshot was taken"
    done
    expect_err "overlap"
    # one component whose own roots nest: refused too (the files driver's own check of the
    # manifest), even when it is the only one chosen
    cp "$T/p1.json" "$ST/catalog/p1.json"
    python3 "$T_ROOT/tests/e2e/resign.py" "$ST" p1 "$SNAP_STATE_DIR/host.key" "
c = {c['name']: c for c in m['components']}
r = dict(c['app']['info']['roots'][0])
r['path'] += '/conf.d'
c['app']['info']['roots'].append(r)"
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes --only app
    expect_err "roots[1] overlaps another root"
    [ "$(tree_sum "$T/app")" = "$app" ] || fail "the refused revert changed $T/app"
    cp "$T/p1.json" "$ST/catalog/p1.json"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --only app --no-safety-snapshot
    [ "$(cat "$T/app/main.conf")" = "listen 80" ] || fail "--only app did not revert"
}

run_tests "$@"
