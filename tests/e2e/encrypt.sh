#!/usr/bin/env bash
# End-to-end: encryption at rest on a local store (docs/encryption.md): keys, fail-closed
# refusals, every kind of tampering refused before anything live changes, rotation, and
# `snap cat`. The engines' round trips through encrypted local and S3 stores are in
# encrypt_engines.sh.
. "$(dirname "$0")/lib.sh"

MARK=MARKER-7f3a91-plaintext
SEG=65552 # a stored segment: 64 KiB and its tag
HDR=44

# A tree with a marker in a text file and 300 KB that zstd cannot shrink (five segments).
enc_setup() {
    export SNAP_STATE_DIR=$T/state
    unset SNAP_PASSPHRASE
    ST=$T/store
    mkdir -p "$T/app/sub"
    echo "password = $MARK" >"$T/app/secret.conf"
    head -c 300000 /dev/urandom >"$T/app/sub/blob.bin"
    head -c 32 /dev/urandom >"$T/key"
    chmod 600 "$T/key"
    conf "key_file = $T/key"
}

conf() { { echo "[store]"; echo "url = $ST"; printf '%s\n' "$@"; } >"$T/snap.conf"; }

# no_plaintext DIR: no stored object holds the marker, nor the tar's names.
no_plaintext() {
    ! grep -rqaF "$MARK" "$1" || fail "the marker is stored in the clear: $(grep -rlaF "$MARK" "$1")"
    ! grep -rqaF "secret.conf" "$1" || fail "a file name is stored in the clear"
}

part_of() { # part_of NAME: the path of the first part of snapshot NAME's component app
    local id
    id=$("$SNAP" show "$1" --config "$T/snap.conf" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    echo "$ST/data/$id/app.0000.tar.zst.enc"
}

test_roundtrip_and_nothing_in_the_clear() {
    enc_setup
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app" --label env=prod --note "$MARK-note"
    grep -q '"scheme": "snap-aead-1"' "$ST/STORE.json" || fail "STORE.json does not declare the scheme"
    ls "$ST"/data/*/app.0000.tar.zst.enc >/dev/null || fail "no sealed part"
    expect_rc 0 "$SNAP" list --config "$T/snap.conf" --json
    expect_out '"env": "prod"'
    expect_rc 0 "$SNAP" verify s1 --config "$T/snap.conf"
    echo changed >"$T/app/secret.conf"
    rm -rf "$T/app/sub"
    expect_rc 0 "$REVERT" s1 --config "$T/snap.conf" --yes
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "the revert did not restore the tree"
    # the safety snapshot and the revert record are sealed too
    ls "$ST"/reverts/*.json >/dev/null || fail "no revert record"
    grep -q '"sealed"' "$ST"/reverts/*.json || fail "the revert record is not sealed"
    # so is the record of the displaced state kept, and the history keeps no labels
    ls "$ST"/kept/*.json >/dev/null || fail "no kept record"
    grep -q '"sealed"' "$ST"/kept/*.json || fail "the kept record is not sealed"
    expect_rc 0 "$REVERT" --kept --config "$T/snap.conf" --json
    expect_out '"snapshot": "s1"'
    ls "$ST"/history/*.json >/dev/null || fail "no history"
    ! grep -qa "prod" "$ST"/history/*.json || fail "a label is readable in the history"
    expect_rc 0 "$SNAP" history --config "$T/snap.conf"
    expect_out "s1"
    no_plaintext "$ST"
    # the label's key as JSON in the clear: quotes never occur in a sealed document's base64
    ! grep -rqa '"env"' "$ST/catalog" || fail "labels are readable in the catalog"
}

test_snap_cat_gives_the_tar() {
    enc_setup
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app" --part-size 64K
    mkdir "$T/x"
    "$SNAP" cat s1 app --config "$T/snap.conf" | tar -xf - -C "$T/x"
    [ "$(tree_sum "$T/x$T/app")" = "$(tree_sum "$T/app")" ] || fail "snap cat | tar -x differs"
    "$SNAP" cat s1 app --part 0 --config "$T/snap.conf" | tar -tf - >"$T/list"
    grep -q "secret.conf\|blob.bin" "$T/list" || fail "part 0 lists nothing known"
    expect_rc 3 "$SNAP" cat s1 nosuch --config "$T/snap.conf"
    expect_err "has no component nosuch"
    expect_rc 3 "$SNAP" cat s1 app --part 99 --config "$T/snap.conf"
}

test_wrong_missing_and_open_keys() {
    enc_setup
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app"
    head -c 32 /dev/urandom >"$T/other"
    chmod 600 "$T/other"
    conf "key_file = $T/other"
    expect_rc 6 "$SNAP" list --config "$T/snap.conf" --json
    expect_out '"code": "denied"'
    expect_rc 6 "$REVERT" s1 --config "$T/snap.conf" --yes
    expect_err "is not one of this store's keys"
    conf
    expect_rc 6 "$SNAP" create s2 --config "$T/snap.conf" --files "$T/app" --json
    expect_out '"code": "key_unavailable"'
    expect_err "no key is configured"
    chmod 640 "$T/key"
    conf "key_file = $T/key"
    expect_rc 2 "$SNAP" list --config "$T/snap.conf"
    expect_err "chmod 600"
    chmod 600 "$T/key"
    conf "key_command = echo no vault here >&2; exit 3"
    expect_rc 6 "$SNAP" list --config "$T/snap.conf" --json
    expect_err "key_command failed (exit status 3)"
    expect_out '"code": "key_unavailable"'
    conf "key_command = cat $T/key"
    expect_rc 0 "$SNAP" list --config "$T/snap.conf"
    expect_out s1
    conf "key_command = cat $T/key" "key_file = $T/key"
    expect_rc 2 "$SNAP" list --config "$T/snap.conf"
}

test_passphrase_and_plain_store_refused() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/app" && echo "$MARK" >"$T/app/f"
    conf
    SNAP_PASSPHRASE="correct horse battery" expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app"
    grep -q '"alg": "scrypt"' "$ST/STORE.json" || fail "no scrypt parameters stored"
    no_plaintext "$ST"
    SNAP_PASSPHRASE="wrong horse" expect_rc 6 "$SNAP" list --config "$T/snap.conf"
    SNAP_PASSPHRASE="correct horse battery" expect_rc 0 "$SNAP" verify s1 --config "$T/snap.conf"
    # a passphrase in a key file (with its newline) is the same key
    echo "correct horse battery" >"$T/pass" && chmod 600 "$T/pass"
    conf "key_file = $T/pass"
    expect_rc 0 "$SNAP" list --config "$T/snap.conf"
    # a plain store with a key configured: nothing is written in the clear
    ST=$T/plain
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/app"
    conf "key_file = $T/pass"
    expect_rc 5 "$SNAP" create p2 --config "$T/snap.conf" --files "$T/app"
    expect_err "is not encrypted, and a key is configured"
    [ ! -e "$ST/catalog/p2.json" ] || fail "p2 was written"
}

# tamper_case NAME CMD: after CMD damaged the store, verify and revert exit 5 and the live
# tree is as it was (the safety snapshot aside, nothing happened).
tamper_case() {
    local what=$1 live
    shift
    "$@"
    live=$(tree_sum "$T/app")
    expect_rc 5 "$SNAP" verify s2 --config "$T/snap.conf"
    expect_rc 5 "$REVERT" s2 --config "$T/snap.conf" --yes
    [ "$(tree_sum "$T/app")" = "$live" ] || fail "$what: the live tree changed"
    ! ls -d "$T"/.app.snap-stage-* >/dev/null 2>&1 || fail "$what: staging left behind"
}

flip() { # flip FILE OFFSET: one bit of one byte
    python3 -c 'import sys; p,o=sys.argv[1],int(sys.argv[2]); b=bytearray(open(p,"rb").read()); b[o]^=1; open(p,"wb").write(b)' "$1" "$2"
}

test_tampering_is_refused_before_any_change() {
    enc_setup
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app"
    echo "v2" >>"$T/app/secret.conf"
    expect_rc 0 "$SNAP" create s2 --config "$T/snap.conf" --files "$T/app"
    echo "v3" >>"$T/app/secret.conf"
    p=$(part_of s2)
    size=$(stat -c %s "$p")
    [ "$size" -gt $((HDR + 3 * SEG)) ] || fail "the part is too small for the test ($size)"
    cp "$p" "$T/good"
    tamper_case header flip "$p" 20
    cp "$T/good" "$p"
    tamper_case segment flip "$p" $((HDR + SEG + 100))
    cp "$T/good" "$p"
    tamper_case last-segment flip "$p" $((size - 3))
    cp "$T/good" "$p"
    tamper_case truncated truncate -s $((HDR + 2 * SEG)) "$p"
    cp "$T/good" "$p"
    swap() { python3 -c 'import sys; p,h,s=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]); b=open(p,"rb").read(); a=b[h:h+s]; c=b[h+s:h+2*s]; open(p,"wb").write(b[:h]+c+a+b[h+2*s:])' "$p" $HDR $SEG; }
    tamper_case swapped swap
    cp "$(part_of s1)" "$p"
    tamper_case copied-from-s1 true
    cp "$T/good" "$p"
    expect_rc 0 "$SNAP" verify s2 --config "$T/snap.conf"
    # a plaintext manifest from a plain store, put in place of s2's
    cp "$ST/catalog/s2.json" "$T/sealed-s2.json"
    expect_rc 0 "$SNAP" create s2 --store "$T/plain" --files "$T/app"
    cp "$T/plain/catalog/s2.json" "$ST/catalog/s2.json"
    live=$(tree_sum "$T/app")
    expect_rc 5 "$REVERT" s2 --config "$T/snap.conf" --yes
    expect_err "its manifest is not encrypted, and the store is"
    [ "$(tree_sum "$T/app")" = "$live" ] || fail "plaintext manifest: the live tree changed"
    cp "$T/sealed-s2.json" "$ST/catalog/s2.json"
    expect_rc 0 "$SNAP" verify s2 --config "$T/snap.conf"
    # s1's wrapped data key in place of s2's, relabelled: it does not open
    id1=$(basename "$(dirname "$(part_of s1)")")
    id2=$(basename "$(dirname "$p")")
    sed "s/$id1/$id2/" "$ST/data/$id1/keys.json" >"$ST/data/$id2/keys.json"
    expect_rc 5 "$SNAP" verify s2 --config "$T/snap.conf"
    expect_err "does not open"
}

test_rotation_then_revert_with_only_the_new_key() {
    enc_setup
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app"
    sums=$(find "$ST/data" -name '*.enc' -exec sha256sum {} + | sort)
    head -c 32 /dev/urandom >"$T/new" && chmod 600 "$T/new"
    chmod 644 "$T/new"
    expect_rc 2 "$SNAP" key rotate --new-key-file "$T/new" --config "$T/snap.conf"
    chmod 600 "$T/new"
    expect_rc 0 "$SNAP" key add --new-key-file "$T/new" --config "$T/snap.conf" --json
    expect_rc 0 "$SNAP" key list --config "$T/snap.conf" --json
    [ "$(grep -c key_id "$T/out")" = 2 ] || fail "two keys expected"
    expect_rc 0 "$SNAP" key rotate --new-key-file "$T/new" --config "$T/snap.conf" --json
    expect_out '"snapshots_rewrapped": 1'
    [ "$(find "$ST/data" -name '*.enc' -exec sha256sum {} + | sort)" = "$sums" ] || fail "rotation rewrote data"
    expect_rc 6 "$SNAP" list --config "$T/snap.conf"
    conf "key_file = $T/new"
    echo broken >"$T/app/secret.conf"
    expect_rc 0 "$REVERT" s1 --config "$T/snap.conf" --yes
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "revert after rotation differs"
    expect_rc 0 "$SNAP" key list --config "$T/snap.conf" --json
    [ "$(grep -c key_id "$T/out")" = 1 ] || fail "the old key is still listed"
    expect_rc 2 "$SNAP" key remove "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["key_id"])' "$T/out")" --config "$T/snap.conf"
    expect_err "the one in use"
}

# A revert killed during its cut-over finishes from the local journal, even with the key
# command of the encrypted store down.
test_recover_without_the_key() {
    enc_setup
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" create s1 --config "$T/snap.conf" --files "$T/app"
    echo changed >"$T/app/secret.conf"
    SNAP_FAILPOINT=cutover-begin expect_rc 137 "$REVERT" s1 --config "$T/snap.conf" --yes --no-safety-snapshot
    conf "key_command = exit 1"
    expect_rc 0 "$REVERT" --recover --config "$T/snap.conf" --json
    expect_out '"outcome": "completed"'
    expect_err "recovering without the store"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "recovery did not complete the revert"
}

test_old_plain_store_unchanged() {
    export SNAP_STATE_DIR=$T/state
    cp -r "$T_ROOT/tests/e2e/fixtures/store-0.1.0" "$T/old"
    sum=$(tree_sum "$T/old")
    expect_rc 0 "$SNAP" verify v010 --store "$T/old"
    expect_rc 0 "$SNAP" list --store "$T/old"
    [ "$(tree_sum "$T/old")" = "$sum" ] || fail "reading changed the old store"
    expect_rc 2 "$SNAP" key list --store "$T/old"
    expect_err "is not encrypted"
}

run_tests "$@"
