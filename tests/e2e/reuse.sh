#!/usr/bin/env bash
# End-to-end: a snap stores only what changed: unchanged files parts of the parent and parts
# already stored become references (manifest format 2), which delete, prune, gc and verify respect.
. "$(dirname "$0")/lib.sh"

setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/app/a" "$T/app/b" "$T/app/c"
    for d in a b c; do
        for i in $(seq 1 40); do echo "$d file $i" >"$T/app/$d/f$i"; done
        head -c 200000 /dev/urandom >"$T/app/$d/blob"
    done
    ln -s a/f1 "$T/app/link"
    # small parts, so that a tree is several of them
    printf '[snap]\npart_size = 4k\n' >"$T/snap.conf"
}

snap_() { expect_rc 0 "$SNAP" create "$@" --store "$ST" --config "$T/snap.conf" --files "$T/app"; }

id_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$ST/catalog/$1.json"; }

# own_parts NAME: how many parts lie in the snapshot's own data directory
own_parts() { ls "$ST/data/$(id_of "$1")" | grep -c '\.tar\.zst$' || true; }
all_parts() { python3 -c 'import json,sys; print(sum(len(c["parts"]) for c in json.load(open(sys.argv[1]))["components"]))' "$ST/catalog/$1.json"; }
format_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["format"])' "$ST/catalog/$1.json"; }

test_second_snap_of_an_unchanged_tree_stores_nothing_new() {
    setup
    before=$(tree_sum "$T/app")
    snap_ p1
    [ "$(own_parts p1)" -ge 4 ] || fail "the tree should be several parts, is $(own_parts p1)"
    [ "$(format_of p1)" = 1 ] || fail "a snapshot without references is format 1"
    store_format() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["format"])' "$ST/STORE.json"; }
    [ "$(store_format)" = 1 ] || fail "a store without references stays format 1"
    snap_ p2
    expect_out "new, the rest reused"
    [ "$(own_parts p2)" = 0 ] || fail "p2 stored $(own_parts p2) parts of an unchanged tree"
    [ "$(all_parts p2)" = "$(all_parts p1)" ] || fail "p2 does not name every part"
    [ "$(format_of p2)" = 2 ] || fail "a snapshot with references must be format 2"
    # the store says so too: a version before references (it reads STORE.json format 1 only)
    # refuses the store rather than deleting parts p2 still uses
    [ "$(store_format)" = 2 ] || fail "STORE.json is format $(store_format) after a reference"
    python3 - "$ST/STORE.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["format"] = 4; json.dump(d, open(sys.argv[1], "w"))
PY
    expect_rc 1 "$SNAP" list --store "$ST"
    expect_err "has format 4, which this version cannot read"
    python3 - "$ST/STORE.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["format"] = 2; json.dump(d, open(sys.argv[1], "w"))
PY
    # what p2 adds is its entry index: under 5 % of the first snap
    bytes=$(du -sb "$ST/data/$(id_of p2)" | cut -f1) first=$(du -sb "$ST/data/$(id_of p1)" | cut -f1)
    [ "$bytes" -lt $((first / 20)) ] || fail "p2 stored $bytes bytes, p1 $first"
    # a referenced part is still a whole tar.zst that stock tar reads
    key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["parts"][0]["key"])' "$ST/catalog/p2.json")
    tar --zstd -tf "$ST/$key" >/dev/null || fail "stock tar cannot read $key"
    rm -rf "$T/app/b" && echo broken >"$T/app/a/f1"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "revert of p2 is not byte-exact"
}

test_a_changed_file_changes_only_its_part() {
    setup
    snap_ p1
    n=$(all_parts p1)
    echo "changed" >"$T/app/b/f7"
    want=$(tree_sum "$T/app")
    snap_ p2
    [ "$(own_parts p2)" = 1 ] || fail "p2 stored $(own_parts p2) parts for one changed file"
    [ "$(all_parts p2)" -ge "$n" ] || fail "p2 names $(all_parts p2) parts, p1 $n"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$want" ] || fail "revert --to of p2 is not byte-exact"
    for d in a b c; do # entries of one directory in reused and new parts: its times still kept
        [ "$(stat -c %Y "$T/dest/$d")" = "$(stat -c %Y "$T/app/$d")" ] || fail "mtime of $d lost"
    done
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --to "$T/dest1" --yes
    [ "$(cat "$T/dest1/b/f7")" = "b file 7" ] || fail "p1 lost its version of the file"
}

test_a_part_with_the_same_bytes_is_not_written_again() {
    setup
    snap_ p1
    # another source name: no parent, but every part has bytes the store holds already
    printf '[snap]\npart_size = 4k\n[source other]\ntype = files\npaths = %s\n' "$T/app" >"$T/other.conf"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --config "$T/other.conf"
    [ "$(own_parts p2)" = 0 ] || fail "p2 wrote $(own_parts p2) parts the store holds already"
    expect_rc 0 "$SNAP" verify p2 --store "$ST"
}

test_delete_keeps_the_parts_another_snapshot_references() {
    setup
    want=$(tree_sum "$T/app")
    snap_ p1
    snap_ p2
    expect_rc 0 "$SNAP" delete p1 --store "$ST" --yes
    expect_rc 0 "$SNAP" verify p2 --store "$ST"
    # what is left of p1 is p2's: gc has nothing to remove, and says so
    expect_rc 0 "$SNAP" gc --store "$ST" --min-age 0s --json
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["orphaned_snapshots"] == [], d' "$T/out" ||
        fail "gc reports the kept parts of p1 as removed"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$want" ] || fail "p2 after deleting p1 is not byte-exact"
    expect_rc 0 "$SNAP" delete p2 --store "$ST" --yes
    [ -z "$(ls "$ST/data")" ] || fail "data left after deleting both: $(ls -R "$ST/data")"
}

test_prune_and_gc_keep_referenced_parts() {
    setup
    snap_ p1
    echo x >"$T/app/c/f1"
    snap_ p2
    want=$(tree_sum "$T/app")
    snap_ p3
    expect_rc 0 "$SNAP" prune --keep-last 1 --store "$ST" --yes
    expect_rc 0 "$SNAP" verify p3 --store "$ST"
    # gc of an orphan (a catalog entry removed by hand) keeps what p3 refers to
    expect_rc 0 "$SNAP" create q1 --store "$ST" --config "$T/snap.conf" --files "$T/app"
    rm "$ST/catalog/p3.json"
    expect_rc 0 "$SNAP" gc --store "$ST" --min-age 0s
    expect_rc 0 "$SNAP" verify q1 --store "$ST"
    expect_rc 0 "$REVERT" q1 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$want" ] || fail "q1 after prune and gc is not byte-exact"
}

test_verify_checks_referenced_parts() {
    setup
    snap_ p1
    snap_ p2
    key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["parts"][1]["key"])' "$ST/catalog/p2.json")
    printf 'X' | dd of="$ST/$key" bs=1 seek=100 conv=notrunc 2>/dev/null
    expect_rc 5 "$SNAP" verify p2 --store "$ST"
    expect_out "$key"
}

# edit NAME PYTHON: rewrites the manifest (m is its JSON; the edit breaks its signature)
edit() {
    python3 - "$ST/catalog/$1.json" "$2" <<'EOF'
import json, sys
path, code = sys.argv[1], sys.argv[2]
m = json.load(open(path))
exec(code)
json.dump(m, open(path, "w"))
EOF
}

test_references_outside_data_are_refused() {
    setup
    snap_ p1
    snap_ p2
    id1=$(id_of p1)
    for bad in "catalog/p1.json" "data/$id1/keys.json" "data/$id1/../../etc/passwd.tar.zst" \
        "leases/x/y.tar.zst" "/etc/app.0000.tar.zst" "data/$id1/sub/app.0000.tar.zst"; do
        cp "$ST/catalog/p2.json" "$T/p2.json"
        edit p2 "m['components'][0]['parts'][0]['key'] = '$bad'"
        expect_rc 5 "$SNAP" show p2 --store "$ST"
        expect_err "damaged"
        expect_rc 5 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
        [ ! -e "$T/dest" ] || fail "a revert of a manifest naming $bad wrote something"
        cp "$T/p2.json" "$ST/catalog/p2.json"
    done
    # a format 1 manifest may not refer to another snapshot's parts at all
    edit p2 "m['format'] = 1"
    expect_rc 5 "$SNAP" show p2 --store "$ST"
    # a format this version does not know is refused, not guessed at
    edit p2 "m['format'] = 4"
    expect_rc 1 "$SNAP" show p2 --store "$ST"
    expect_err "manifest format 4 is not one this version reads"
}

test_an_unauthenticated_parent_is_not_reused() {
    setup
    snap_ p1
    edit p1 "m['note'] = 'edited'"
    snap_ p2
    [ "$(own_parts p2)" = "$(all_parts p1)" ] || fail "p2 reused the parts of a manifest this host does not authenticate"
    expect_rc 3 "$SNAP" create p3 --parent p1 --store "$ST" --config "$T/snap.conf" --files "$T/app"
    expect_err "no snapshot named p1 that this host authenticates"
}

test_explicit_parent() {
    setup
    snap_ p1
    echo y >"$T/app/a/f2"
    snap_ p2
    echo "a file 2" >"$T/app/a/f2"
    touch -r "$T/app/b/f1" "$T/app/a/f2"
    expect_rc 0 "$SNAP" create p3 --parent p2 --store "$ST" --config "$T/snap.conf" --files "$T/app"
    expect_rc 0 "$REVERT" p3 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$(tree_sum "$T/app")" ] || fail "p3 is not byte-exact"
    expect_rc 3 "$SNAP" create p4 --parent nosuch --store "$ST" --config "$T/snap.conf" --files "$T/app"
}

test_encrypted_store_reuses_and_keeps_the_data_key() {
    setup
    export SNAP_PASSPHRASE="correct horse battery"
    want=$(tree_sum "$T/app")
    snap_ p1
    snap_ p2
    [ "$(ls "$ST/data/$(id_of p2)" | grep -c '\.tar\.zst\.enc$' || true)" = 0 ] || fail "p2 stored parts anew"
    expect_rc 0 "$SNAP" delete p1 --store "$ST" --yes
    [ -e "$ST/data/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["parts"][0]["key"].split("/")[1])' <(SNAP_PASSPHRASE=$SNAP_PASSPHRASE "$SNAP" show p2 --store "$ST" --json))/keys.json" ] ||
        fail "the data key of a referenced part was deleted"
    expect_rc 0 "$SNAP" verify p2 --store "$ST"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$want" ] || fail "p2 in the encrypted store is not byte-exact"
}

test_safety_snapshot_reuses_unchanged_parts() {
    setup
    snap_ p1
    echo "late change" >"$T/app/c/f3"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --yes
    safety=$(ls "$ST/catalog" | grep '^pre-revert-' | sed 's/\.json$//')
    [ -n "$safety" ] || fail "no safety snapshot"
    [ "$(own_parts "$safety")" = 1 ] || fail "the safety snapshot stored $(own_parts "$safety") parts for one change"
}

test_plan_lists_changes_from_the_name_index() {
    setup
    snap_ p1
    echo changed >"$T/app/a/f1"
    rm "$T/app/b/f2"
    echo new >"$T/app/c/new"
    # a damaged part: a plan that read the parts would stop on it (exit 5)
    key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["parts"][0]["key"])' "$ST/catalog/p1.json")
    printf 'X' | dd of="$ST/$key" bs=1 seek=100 conv=notrunc 2>/dev/null
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --dry-run --json
    python3 - "$T/out" "$T/app" <<'EOF2' || fail "the plan does not list the changes"
import json, sys
t = json.load(open(sys.argv[1]))["targets"][0]
app = sys.argv[2]
assert t["replace"] == [app + "/a/f1"], t
assert t["add"] == [app + "/b/f2"], t
assert t["remove"] == [app + "/c/new"], t
EOF2
    # the index of a manifest this host does not authenticate is not believed: the parts are read
    edit p1 "m['note'] = 'edited'"
    expect_rc 5 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --dry-run --json
    expect_err "$key"
}

# reindex NAME MODE: rewrites the snapshot's entry index (MODE "pretty": the same JSON, laid
# out with indentation and spaces; "late": the same text with one space before its last
# part; "cut": the text without its last two bytes; "renamed": its last part's key is not
# the manifest's; "damaged": zstd of text that is not JSON), updates its
# size and checksum in the manifest and signs the manifest again with the host key, as a
# version that wrote the index otherwise would have. Checks first that it reproduces the
# manifest's own signature, so that a change in how manifests are signed fails here.
reindex() {
    python3 "$T_ROOT/tests/e2e/resign.py" "$ST" "$1" "$SNAP_STATE_DIR/host.key" "
import subprocess
mode = '$2'
ix = m['components'][0]['index']
ipath = os.path.join(st, ix['key'])
doc = subprocess.run(['zstd', '-dc', ipath], check=True, capture_output=True).stdout
assert doc.startswith(b'{\"format\":1,\"parts\":[{\"key\":'), doc[:80]
if mode == 'pretty':
    text = json.dumps(json.loads(doc), indent=1).encode()
elif mode == 'late':
    head, sep, tail = doc.rpartition(b'},{\"key\":')
    assert sep, 'one part only'
    text = head + b'}, {\"key\":' + tail
elif mode == 'cut':
    text = doc[:-2]
elif mode == 'renamed':
    head, sep, tail = doc.rpartition(b'},{\"key\":\"')
    assert sep, 'one part only'
    text = head + sep + b'x' + tail
else:
    text = b'{\"format\":1,\"parts\":[{'
open(ipath + '.txt', 'wb').write(text)  # from a file, zstd records the content size
packed = subprocess.run(['zstd', '-q', '-c', ipath + '.txt'], check=True, capture_output=True).stdout
os.unlink(ipath + '.txt')
os.chmod(ipath, 0o600)
open(ipath, 'wb').write(packed)
ix['size'], ix['sha256'] = len(packed), hashlib.sha256(packed).hexdigest()
"
}

# layouts READ BAD: p1's index laid out as READ (read whole, or read again after a first
# try) gives what our own layout gives: p2 reuses every part, and the plan lists the change
# without reading a part; p2's laid out as BAD is not believed: the plan reads the parts and
# counts each change once, and p3 stores every entry anew (its parts come out with the
# same bytes, so they still end up as references)
layouts() {
    setup
    snap_ p1
    reindex p1 "$1"
    expect_rc 0 "$SNAP" show p1 --store "$ST"
    snap_ p2 -v
    expect_err "4 of 4 parts of p1 unchanged, reused"
    [ "$(own_parts p2)" = 0 ] || fail "p2 stored $(own_parts p2) parts: the $1 index of p1 was not read"
    echo changed >"$T/app/a/f1"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --dry-run -v
    expect_out "1 to replace, 0 to add, 0 to remove"
    expect_no_err "listing the changes from the parts"
    reindex p2 "$2"
    expect_rc 0 "$REVERT" p2 --store "$ST" --config "$T/snap.conf" --dry-run -v
    expect_err "listing the changes from the parts: entry index"
    expect_out "1 to replace, 0 to add, 0 to remove"
    snap_ p3 -v
    expect_err "is damaged: storing every entry anew"
    expect_no_err "unchanged, reused"
    expect_rc 0 "$REVERT" p3 --store "$ST" --config "$T/snap.conf" --to "$T/dest" --yes
    [ "$(tree_sum "$T/dest")" = "$(tree_sum "$T/app")" ] || fail "p3 is not byte-exact"
}

# indented with spaces: not read one entry at a time but parsed whole; not JSON: damaged
test_an_index_laid_out_otherwise_is_read_whole() {
    layouts pretty damaged
}

# laid out otherwise only before its last part: what was read of the first parts is
# forgotten and the index read again; cut short after its last entry: every entry was
# met, then the index is not believed
test_an_index_that_turns_out_otherwise_late_is_read_again_or_not_at_all() {
    layouts late cut
}

# an index whose last part is not the manifest's: the plan stops reading it there, forgets
# what it counted of the parts before, reads the parts and counts each change once
test_an_index_that_does_not_match_its_manifest_is_left_for_the_parts() {
    setup
    snap_ p1
    reindex p1 renamed
    echo changed >"$T/app/a/f1"
    expect_rc 0 "$REVERT" p1 --store "$ST" --config "$T/snap.conf" --dry-run -v
    expect_err "listing the changes from the parts: the entry index does not name every part"
    expect_out "1 to replace, 0 to add, 0 to remove"
}

# peak_kib CMD...: runs CMD (it must succeed) and prints its peak RSS in KiB
peak_kib() {
    /usr/bin/time -f '%M' -o "$T/peak" "$@" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; fail "$* failed"; }
    tail -n 1 "$T/peak"
}

test_the_entry_index_of_100000_files_costs_little_memory_to_write_and_to_plan() {
    # a sanitizer build (make asan) has other memory figures: nothing to measure there
    if ldd "$SNAP" | grep -q 'libasan'; then
        echo "    skipped: $SNAP is a sanitizer build" >&2
        return 0
    fi
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    python3 - "$T/many" "$T/some" <<'EOF'
import os, sys
for root, dirs in ((sys.argv[1], 200), (sys.argv[2], 40)):
    for d in range(dirs):
        os.makedirs(os.path.join(root, "d%03d" % d))
        for i in range(500):
            open(os.path.join(root, "d%03d" % d, "file-%05d" % i), "w").close()
EOF
    # What a snap needs whatever the number of files (the compression jobs and their
    # chunks, about 13 MiB) is reached from about 20,000 empty files on: the cost of a file
    # is measured above a snap of 20,000, first and second, up to one of 100,000. A first
    # snap costs about 20 bytes a file and a second, which reuses every part, about 35
    # (the 32-byte digests of what it must meet); the index held as text and the reused
    # entries as a tree cost 220 and 390
    for n in 1 2; do
        base=$(peak_kib "$SNAP" create some$n --store "$T/s1" --files "$T/some" --no-progress)
        kib=$(peak_kib "$SNAP" create m$n --store "$ST" --files "$T/many" --no-progress)
        [ $((kib - base)) -lt $((80000 * 64 / 1024)) ] ||
            fail "snap $n of 100,000 files: peak $kib KiB, of 20,000 files $base KiB (64 bytes a file allowed)"
    done
    [ "$(own_parts m2)" = 0 ] || fail "m2 did not reuse the parts of m1"
    # the plan of a revert holds a 16-byte digest of each name, about 25 bytes a file; the
    # index parsed whole and the names as text cost 640
    base=$(peak_kib "$REVERT" some2 --store "$T/s1" --dry-run --no-progress -v)
    expect_no_err "listing the changes from the parts"
    kib=$(peak_kib "$REVERT" m2 --store "$ST" --dry-run --no-progress -v)
    expect_no_err "listing the changes from the parts"
    [ $((kib - base)) -lt $((80000 * 64 / 1024)) ] ||
        fail "plan of 100,000 files: peak $kib KiB, of 20,000 files $base KiB (64 bytes a file allowed)"
}

run_tests "$@"
