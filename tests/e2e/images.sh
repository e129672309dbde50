#!/usr/bin/env bash
# End-to-end tests of the images source and target against real registries
# (tests/services/registry.sh: no auth, htpasswd basic auth, token auth).
# needs: registry
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC1091
. "$T_WORK/service-registry.env"

# Every test gets its own repository, store, state directory and Docker config.
setup() {
    REPO=$(basename "$T" | tr 'A-Z' 'a-z' | tr -dc 'a-z0-9')
    export SNAP_STATE_DIR=$T/state DOCKER_CONFIG=$T/docker
    mkdir -p "$T/docker" deploy
    STORE=$T/store
}

push() { "$REG_TOOL" push "$@"; }

docker_login() { # HOST USER PASSWORD
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$1" "$(printf '%s:%s' "$2" "$3" | base64 -w0)" \
        >"$T/docker/config.json"
}

# A Deployment with an init container, a CronJob and a Compose file, comments and all.
write_manifests() { # IMAGE_A IMAGE_B
    cat >deploy/app.yaml <<EOF
# the app tier: keep this comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: '$1'   # runs first
      containers:
        - name: app
          image: "$1"
        - {name: side, image: $2}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: $2
EOF
    mkdir -p deploy/compose
    cat >deploy/compose/compose.yml <<EOF
services:
  web:
    image: $1
    ports: ["8080:80"]
EOF
}

test_snap_show_and_exact_revert() {
    setup
    local d1 d2 before
    d1=$(push plain "$REPO/app" v1 a1)
    d2=$(push plain "$REPO/side" 7 s7)
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/side:7"
    before=$(tree_sum deploy)
    expect_rc 0 "$SNAP" create pre-v42 --images deploy --store "$STORE"
    expect_rc 0 "$SNAP" show pre-v42 --store "$STORE"
    expect_out "$REG_PLAIN/$REPO/app:v1  $d1  (app.yaml:11)"
    expect_out "$REG_PLAIN/$REPO/side:7  $d2  (app.yaml:27)"
    expect_out "$REG_PLAIN/$REPO/app:v1  $d1  (compose.yml:3)"
    expect_out "images: 5"
    # The registry's manifest is kept in the archive, next to the files.
    expect_rc 0 "$SNAP" show pre-v42 --store "$STORE" --json
    python3 - "$T/out" "$d1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
imgs = [c for c in doc["components"] if c["name"] == "deploy"][0]["info"]["images"]
assert len(imgs) == 5, imgs
assert imgs[0]["digest"] == sys.argv[2] and imgs[0]["line"] == 11, imgs[0]
assert imgs[0]["media_type"] == "application/vnd.oci.image.manifest.v1+json", imgs[0]
EOF
    zstd -dc "$STORE"/data/*/deploy.*.tar.zst | tar -itf - >"$T/names"
    grep -qx ".snap-meta/images/sha256/${d1#sha256:}.json" "$T/names" || fail "no manifest of $d1 in the archive"
    # Change everything, then revert: the files come back byte for byte.
    echo "# edited" >>deploy/app.yaml
    rm deploy/compose/compose.yml
    echo new >deploy/new.yaml
    expect_rc 0 "$REVERT" pre-v42 --only deploy --yes --store "$STORE"
    [ "$(tree_sum deploy)" = "$before" ] || fail "the reverted tree differs from the captured one"
    grep -q "image: '$REG_PLAIN/$REPO/app:v1'   # runs first" deploy/app.yaml || fail "not the original bytes"
}

test_pin_rewrites_only_the_references() {
    setup
    local d1 d2
    d1=$(push plain "$REPO/app" v1 a1)
    d2=$(push plain "$REPO/side" 7 s7)
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/side:7"
    # A reference that is already a digest stays exactly as written.
    printf 'kind: Pod\nspec:\n  containers:\n  - image: %s  # pinned\n' "$REG_PLAIN/$REPO/app@$d1" >deploy/pod.yaml
    cp -a deploy orig
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    expect_rc 0 "$REVERT" pre --only deploy --pin --yes --store "$STORE"
    expect_err "pinned 5 image references"
    write_manifests "$REG_PLAIN/$REPO/app:v1@$d1" "$REG_PLAIN/$REPO/side:7@$d2"
    cmp deploy/app.yaml orig/app.yaml >/dev/null && fail "app.yaml was not pinned"
    # The expected bytes: the same text with name:tag@digest, quotes and comments kept.
    sed -e "s|$REG_PLAIN/$REPO/app:v1|&@$d1|" -e "s|$REG_PLAIN/$REPO/side:7|&@$d2|" orig/app.yaml >want.yaml
    cmp deploy/app.yaml want.yaml || { diff want.yaml deploy/app.yaml >&2; fail "pinned app.yaml differs"; }
    sed -e "s|$REG_PLAIN/$REPO/app:v1|&@$d1|" orig/compose/compose.yml >want.yml
    cmp deploy/compose/compose.yml want.yml || fail "pinned compose.yml differs"
    cmp deploy/pod.yaml orig/pod.yaml || fail "a digest reference was changed"
    [ "$(stat -c %a deploy/app.yaml)" = "$(stat -c %a orig/app.yaml)" ] || fail "mode changed"
}

test_images_lock_json() {
    setup
    local d1
    d1=$(push plain "$REPO/app" v1 a1)
    push plain "$REPO/side" 7 s7 >/dev/null
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/side:7"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    echo "# later" >>deploy/app.yaml
    local now
    now=$(sha256sum deploy/app.yaml)
    # A dry run writes the lock for a pipeline and changes nothing else.
    expect_rc 0 "$REVERT" pre --only deploy --dry-run --images-lock out.json --store "$STORE"
    [ "$(sha256sum deploy/app.yaml)" = "$now" ] || fail "a dry run changed the manifests"
    python3 - out.json "$d1" "$REG_PLAIN/$REPO/app:v1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["snapshot"] == "pre" and doc["component"] == "deploy", doc
imgs = {i["image"]: i for i in doc["images"]}
a = imgs[sys.argv[3]]
assert a["digest"] == sys.argv[2], a
assert a["pinned"] == sys.argv[3] + "@" + sys.argv[2], a
assert a["registry"] == "present", a
assert len(a["locations"]) == 3, a["locations"]
assert a["locations"][0]["line"] == 11 and a["locations"][0]["file"].endswith("/deploy/app.yaml")
EOF
}

# A revert killed while it writes the lock leaves the earlier lock as it was, and nothing
# beside it; one that cannot write it says where and why, exit 1, and writes nothing.
test_images_lock_killed_leaves_the_old_one() {
    setup
    push plain "$REPO/app" v1 a1 >/dev/null
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/app:v1"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    mkdir locks
    echo '{"old": true}' >locks/lock.json
    SNAP_FAILPOINT=write-file-synced expect_rc 137 "$REVERT" pre --only deploy --dry-run \
        --images-lock locks/lock.json --store "$STORE"
    [ "$(cat locks/lock.json)" = '{"old": true}' ] || fail "the lock changed: $(cat locks/lock.json)"
    [ "$(ls -A locks)" = lock.json ] || fail "left beside the lock: $(ls -A locks | tr '\n' ' ')"
    expect_rc 0 "$REVERT" pre --only deploy --dry-run --images-lock locks/lock.json --store "$STORE"
    grep -q '"snapshot": "pre"' locks/lock.json || fail "the lock was not written"
    [ "$(ls -A locks)" = lock.json ] || fail "left beside the lock: $(ls -A locks | tr '\n' ' ')"
    expect_rc 3 "$REVERT" pre --only deploy --dry-run --images-lock nowhere/lock.json --store "$STORE"
    expect_err "--images-lock: cannot write $T/nowhere/lock.json"
    [ ! -e nowhere ] || fail "a directory was made"
}

test_malformed_yaml_names_file_and_line() {
    setup
    push plain "$REPO/app" v1 a1 >/dev/null
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/app:v1"
    printf 'kind: Pod\nspec:\n  containers: [\n  - image: x\n' >deploy/broken.yaml
    expect_rc 1 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "deploy/broken.yaml:4:3: invalid YAML: did not find expected node content"
    # Nothing was committed.
    expect_rc 3 "$SNAP" show pre --store "$STORE"
}

test_unreachable_registry_names_the_image() {
    setup
    local port d1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    d1=$(push plain "$REPO/app" v1 a1)
    write_manifests "$REG_PLAIN/$REPO/app:v1" "127.0.0.1:$port/gone/app:v3"
    cp -a deploy orig
    expect_rc 6 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "app.yaml:15"
    expect_err "image 127.0.0.1:$port/gone/app:v3: registry 127.0.0.1:$port did not answer"
    expect_err "hint: "
    expect_rc 3 "$SNAP" show pre --store "$STORE"
    # --allow-unresolved records the tag alone, and --pin leaves it as written.
    expect_rc 0 "$SNAP" create pre --images deploy --allow-unresolved --store "$STORE"
    expect_err "recording the tag alone"
    expect_rc 0 "$SNAP" show pre --store "$STORE"
    expect_out "127.0.0.1:$port/gone/app:v3  unresolved  (app.yaml:15)"
    expect_out "$REG_PLAIN/$REPO/app:v1  $d1"
    expect_rc 0 "$REVERT" pre --only deploy --pin --yes --store "$STORE"
    expect_err "image 127.0.0.1:$port/gone/app:v3 has no recorded digest; left as written"
    grep -qF "image: 127.0.0.1:$port/gone/app:v3" deploy/app.yaml || fail "the unresolved reference changed"
    grep -qF "image: \"$REG_PLAIN/$REPO/app:v1@$d1\"" deploy/app.yaml || fail "the resolved reference was not pinned"
}

test_registry_that_accepts_but_never_answers() {
    setup
    local port pid t0
    # A listener that takes the connection and sits on it (a proxy delaying by 10 minutes).
    exec 3< <(exec python3 "$T_ROOT/bench/latency-proxy.py" 600000 "$REG_PLAIN")
    pid=$!
    read -r port _ <&3
    printf 'kind: Pod\nspec:\n  containers:\n  - image: 127.0.0.1:%s/stuck/app:v1\n' "$port" >deploy/pod.yaml
    printf '[source deploy]\ntype = images\nmanifests = %s/deploy\nregistry_timeout = 2s\n' "$T" >snap.conf
    t0=$(date +%s)
    expect_rc 6 "$SNAP" create pre --config snap.conf --store "$STORE"
    kill "$pid"
    expect_err "deploy/pod.yaml:4: image 127.0.0.1:$port/stuck/app:v1: registry 127.0.0.1:$port did not answer"
    [ $(($(date +%s) - t0)) -lt 20 ] || fail "the timeout was not applied"
}

test_ctrl_c_while_resolving_commits_nothing() {
    setup
    local port pid snap_pid t0 rc=0
    exec 3< <(exec python3 "$T_ROOT/bench/latency-proxy.py" 600000 "$REG_PLAIN")
    pid=$!
    read -r port _ <&3
    printf 'kind: Pod\nspec:\n  containers:\n  - image: 127.0.0.1:%s/stuck/app:v1\n' "$port" >deploy/pod.yaml
    t0=$(date +%s)
    "$SNAP" create pre --images deploy --store "$STORE" 2>err &
    snap_pid=$!
    sleep 1
    kill -INT "$snap_pid"
    wait "$snap_pid" || rc=$?
    kill "$pid"
    [ "$rc" = 130 ] || { cat err >&2; fail "exit code $rc, expected 130"; }
    [ $(($(date +%s) - t0)) -lt 10 ] || fail "the interrupt was not noticed while waiting on the registry"
    expect_rc 3 "$SNAP" show pre --store "$STORE"
}

test_manifest_edited_during_snap_commits_nothing() {
    setup
    local port pid
    push plain "$REPO/app" v1 a1 >/dev/null
    # A slow registry keeps snap busy while the file is edited behind its back.
    exec 3< <(exec python3 "$T_ROOT/bench/latency-proxy.py" 700 "$REG_PLAIN")
    pid=$!
    read -r port _ <&3
    write_manifests "127.0.0.1:$port/$REPO/app:v1" "127.0.0.1:$port/$REPO/app:v1"
    (sleep 1; echo "# edited meanwhile" >>deploy/app.yaml) &
    expect_rc 4 "$SNAP" create pre --images deploy --store "$STORE"
    kill "$pid"
    expect_err "deploy/app.yaml changed while it was captured"
    expect_rc 3 "$SNAP" show pre --store "$STORE"
}

test_tag_that_does_not_exist() {
    setup
    push plain "$REPO/app" v1 a1 >/dev/null
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/app:v9"
    expect_rc 3 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "app.yaml:15: image $REG_PLAIN/$REPO/app:v9: registry $REG_PLAIN has no tag v9"
}

test_invalid_reference_names_file_and_line() {
    setup
    printf 'services:\n  web:\n    image: "app:${TAG}"\n' >deploy/compose.yaml
    expect_rc 2 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "deploy/compose.yaml:3: invalid image reference \"app:\${TAG}\""
    expect_rc 3 "$SNAP" show pre --store "$STORE"
}

test_require_images_with_registry_down() {
    setup
    local port pid
    push plain "$REPO/app" v1 a1 >/dev/null
    # The registry through a proxy that the test can take away.
    exec 3< <(exec python3 "$T_ROOT/bench/latency-proxy.py" 0 "$REG_PLAIN")
    pid=$!
    read -r port _ <&3
    write_manifests "127.0.0.1:$port/$REPO/app:v1" "127.0.0.1:$port/$REPO/app:v1"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "# later" >>deploy/app.yaml
    cp deploy/app.yaml later.yaml
    expect_rc 6 "$REVERT" pre --only deploy --require-images --yes --store "$STORE"
    expect_err "image 127.0.0.1:$port/$REPO/app:v1: registry 127.0.0.1:$port did not answer"
    cmp deploy/app.yaml later.yaml || fail "a failed revert changed the manifests"
    expect_rc 0 "$REVERT" pre --only deploy --yes --store "$STORE"
    expect_err "warning: could not check 127.0.0.1:$port/$REPO/app:v1"
    ! grep -q "# later" deploy/app.yaml || fail "the revert did not happen"
}

test_basic_auth() {
    setup
    local d
    d=$(push basic "$REPO/app" v1 b1)
    write_manifests "$REG_BASIC/$REPO/app:v1" "$REG_BASIC/$REPO/app:v1"
    # No credentials: a clear refusal naming the registry.
    expect_rc 6 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "registry $REG_BASIC requires credentials"
    docker_login "$REG_BASIC" "$REG_USER" "$REG_PASS"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE" --json
    expect_out "$d"
    ! grep -rqF "$REG_PASS" "$T/out" "$T/err" "$STORE" || fail "the password was written out"
}

test_basic_auth_wrong_password() {
    setup
    push basic "$REPO/app" v1 b1 >/dev/null
    write_manifests "$REG_BASIC/$REPO/app:v1" "$REG_BASIC/$REPO/app:v1"
    docker_login "https://$REG_BASIC/" "$REG_USER" "not-$REG_PASS"
    expect_rc 6 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "registry $REG_BASIC refused the credentials of user $REG_USER (from $T/docker/config.json)"
    expect_no_err "not-$REG_PASS"
}

test_token_auth() {
    setup
    local d
    d=$(push token "$REPO/app" v1 t1)
    write_manifests "$REG_TOKEN/$REPO/app:v1" "$REG_TOKEN/$REPO/app:v1"
    expect_rc 6 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "registry $REG_TOKEN requires credentials"
    docker_login "$REG_TOKEN" "$REG_USER" wrong
    expect_rc 6 "$SNAP" create pre --images deploy --store "$STORE"
    expect_err "registry $REG_TOKEN refused the credentials of user $REG_USER"
    docker_login "$REG_TOKEN" "$REG_USER" "$REG_PASS"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE" -v
    expect_rc 0 "$SNAP" show pre --store "$STORE"
    expect_out "$REG_TOKEN/$REPO/app:v1  $d"
    ! grep -rqF "$REG_PASS" "$T/out" "$T/err" "$STORE" || fail "the password was written out"
}

test_credential_helper() {
    setup
    local d
    d=$(push basic "$REPO/app" v1 h1)
    write_manifests "$REG_BASIC/$REPO/app:v1" "$REG_BASIC/$REPO/app:v1"
    # A helper as `docker login` leaves them: it answers for its server, and for no other.
    mkdir bin
    cat >bin/docker-credential-snaptest <<EOF
#!/bin/sh
[ "\$1" = get ] || exit 1
read -r server
echo "\$server" >>"$T/helper-asked"
[ "\$server" = "$REG_BASIC" ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "\$server" "$REG_USER" "$REG_PASS"
EOF
    chmod +x bin/docker-credential-snaptest
    printf '{"credsStore":"snaptest"}\n' >"$T/docker/config.json"
    PATH=$T/bin:$PATH expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    [ "$(sort -u helper-asked)" = "$REG_BASIC" ] || fail "the helper was asked for: $(cat helper-asked)"
    [ "$(wc -l <helper-asked)" = 1 ] || fail "the helper ran $(wc -l <helper-asked) times, not once"
    expect_rc 0 "$SNAP" show pre --store "$STORE"
    expect_out "$REG_BASIC/$REPO/app:v1  $d"
    # A helper with a wrong password is named in the refusal.
    printf '{"credHelpers":{"%s":"snaptest"}}\n' "$REG_BASIC" >"$T/docker/config.json"
    sed -i "s/$REG_PASS/wrong/" bin/docker-credential-snaptest
    PATH=$T/bin:$PATH expect_rc 6 "$SNAP" create pre2 --images deploy --store "$STORE"
    expect_err "refused the credentials of user $REG_USER (from docker-credential-snaptest)"
}

test_tag_moved_revert_gives_back_the_old_digest() {
    setup
    local old new
    old=$(push plain "$REPO/app" v42 first)
    write_manifests "$REG_PLAIN/$REPO/app:v42" "$REG_PLAIN/$REPO/app:v42"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    new=$(push plain "$REPO/app" v42 second)
    [ "$old" != "$new" ] || fail "the test image did not change"
    expect_rc 0 "$REVERT" pre --only deploy --yes --store "$STORE"
    expect_err "the tag moved since the snapshot (now $new, recorded $old); without --pin"
    expect_rc 0 "$REVERT" pre --only deploy --pin --dry-run --store "$STORE"
    expect_out "note: image $REG_PLAIN/$REPO/app:v42: the tag moved to $new since the snapshot; --pin gives back the recorded digest"
    expect_rc 0 "$REVERT" pre --only deploy --pin --yes --store "$STORE"
    grep -qF "$REG_PLAIN/$REPO/app:v42@$old" deploy/app.yaml || fail "not pinned to the old digest"
    ! grep -qF "$new" deploy/app.yaml || fail "the new digest leaked into the manifests"
}

test_deleted_digest_warns_or_fails() {
    setup
    local d
    d=$(push plain "$REPO/app" v1 gone)
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/app:v1"
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    "$REG_TOOL" delete plain "$REPO/app" "$d"
    echo "# later" >>deploy/app.yaml
    cp deploy/app.yaml later.yaml
    expect_rc 0 "$REVERT" pre --only deploy --dry-run --store "$STORE"
    expect_out "note: image $REG_PLAIN/$REPO/app:v1: $d is gone from its registry"
    expect_out "note: 1 image, 0 digests present in the registries"
    expect_rc 3 "$REVERT" pre --only deploy --require-images --yes --store "$STORE"
    expect_err "image $REG_PLAIN/$REPO/app:v1: digest $d is gone from registry $REG_PLAIN"
    cmp deploy/app.yaml later.yaml || fail "a failed revert changed the manifests"
    expect_rc 0 "$REVERT" pre --only deploy --yes --store "$STORE"
    expect_err "warning: image $REG_PLAIN/$REPO/app:v1: digest $d is gone"
    ! grep -q "# later" deploy/app.yaml || fail "the revert did not happen"
}

test_index_is_kept_with_its_media_type() {
    setup
    local m1 m2 idx
    m1=$(push plain "$REPO/multi" amd s1)
    m2=$(push plain "$REPO/multi" arm s2)
    idx=$("$REG_TOOL" push-index plain "$REPO/multi" v1 "$m1" "$m2")
    printf 'services:\n  m:\n    image: %s\n' "$REG_PLAIN/$REPO/multi:v1" >deploy/compose.yaml
    expect_rc 0 "$SNAP" create pre --images deploy --store "$STORE"
    expect_rc 0 "$REVERT" pre --only deploy --dry-run --images-lock lock.json --store "$STORE"
    python3 - lock.json "$idx" <<'EOF'
import json, sys
i = json.load(open(sys.argv[1]))["images"][0]
assert i["digest"] == sys.argv[2], i
assert i["media_type"] == "application/vnd.oci.image.index.v1+json", i
EOF
    zstd -dc "$STORE"/data/*/deploy.*.tar.zst | tar -ixOf - ".snap-meta/images/sha256/${idx#sha256:}.json" |
        sha256sum | grep -q "^${idx#sha256:} " || fail "the kept index is not the registry's bytes"
}

# A kilobyte of nested '<<' merge keys: each merged mapping is looked into once, and the
# scan ends with the one image there is, well within its work budget.
test_merge_key_bomb_stays_within_the_budget() {
    setup
    local d i k line
    d=$(push plain "$REPO/app" v1 b1)
    mkdir -p bomb
    {
        echo "x0: &a0 {name: base}"
        for i in $(seq 1 9); do
            line="x$i: &a$i {<<: ["
            for k in $(seq 1 9); do line+="*a$((i - 1))"; [ "$k" = 9 ] || line+=", "; done
            echo "$line]}"
        done
        echo "services:"
        echo "  web: {<<: [*a9, *a9, *a9, *a9, *a9, *a9, *a9, *a9, *a9]}"
        echo "  db: {image: '$REG_PLAIN/$REPO/app:v1'}"
    } >bomb/compose.yaml
    [ "$(wc -c <bomb/compose.yaml)" -lt 1200 ] || fail "the bomb is not small"
    # followed naively, the scan would run out of its work budget and fail (the unit test
    # test_scan_merge_bomb counts its steps)
    expect_rc 0 timeout 60 "$SNAP" create pre --images bomb --store "$STORE"
    expect_rc 0 "$SNAP" show pre --store "$STORE"
    expect_out "$REG_PLAIN/$REPO/app:v1  $d"
    # lists of aliased lists: millions of pods from a kilobyte end with an error: the work budget stops the scan
    {
        echo "p: &p {kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: '$REG_PLAIN/$REPO/app:v1'}]}}"
        local prev=p
        for i in 1 2 3; do
            line="l$i: &l$i {kind: List, items: ["
            for k in $(seq 1 40); do line+="*$prev"; [ "$k" = 40 ] || line+=", "; done
            echo "$line]}"
            prev=l$i
        done
        echo "kind: List"
        line="items: ["
        for k in $(seq 1 40); do line+="*l3"; [ "$k" = 40 ] || line+=", "; done
        echo "$line]"
    } >bomb/compose.yaml
    expect_rc 1 timeout 60 "$SNAP" create pre2 --images bomb --store "$STORE"
    expect_err "too much work following YAML aliases and merge keys"
}

# The first SIGTERM stops a long scan (a large file of many documents).
# The scan looks at the interruption flag between documents: a snap held at the 100th
# document of 200 and sent a SIGTERM stops there. Had it read on, it would have met the
# YAML error after the last document, and said so.
test_sigterm_stops_a_long_scan() {
    setup
    mkdir -p big
    python3 -c "
import sys
doc = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\nspec:\n  containers:\n  - {name: c, image: \'reg.invalid/x:1\', env: [{name: A, value: \'1\'}]}\n'
sys.stdout.write('---\n'.join(doc % i for i in range(200)) + '---\nkind: [unclosed\n')" >big/all.yaml
    SNAP_FAILPOINT=images-scan-doc@100:wait=$T/go "$SNAP" create pre --images big --store "$STORE" >"$T/out" 2>"$T/err" &
    local pid=$! rc=0
    held "$T/err"
    kill -TERM "$pid"
    touch "$T/go"
    wait "$pid" || rc=$?
    [ "$rc" = 130 ] || fail "snap exited $rc after SIGTERM: $(cat "$T/err")"
    expect_err "interrupted"
    expect_no_err "invalid YAML"
    [ ! -e "$STORE/catalog/pre.json" ] || fail "a snapshot was committed"
    # and without the signal the same scan reads to the end
    expect_rc 1 "$SNAP" create pre --images big --store "$STORE"
    expect_err "all.yaml:1402:1: invalid YAML"
}

# A second snap of unchanged manifests and images stores no part again: the registry's
# manifests carry a fixed time (as database entries do), not the snap's, so the part that
# holds them has the same bytes and becomes a reference to the first snap's.
test_second_snap_of_the_same_images_stores_nothing_new() {
    setup
    local d1 id1 id2
    d1=$(push plain "$REPO/app" v1 a1)
    push plain "$REPO/side" 7 s7 >/dev/null
    write_manifests "$REG_PLAIN/$REPO/app:v1" "$REG_PLAIN/$REPO/side:7"
    expect_rc 0 "$SNAP" create p1 --images deploy --store "$STORE"
    sleep 1.1 # a stamp of the snap's time would differ from p1's now
    expect_rc 0 "$SNAP" create p2 --images deploy --store "$STORE" -v
    id_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$STORE/catalog/$1.json"; }
    id1=$(id_of p1) id2=$(id_of p2)
    [ -z "$(ls "$STORE/data/$id2" 2>/dev/null | grep '\.tar\.zst$')" ] ||
        fail "p2 stored parts of unchanged images again: $(ls "$STORE/data/$id2")"
    python3 - "$STORE/catalog/p1.json" "$STORE/catalog/p2.json" "$id1" <<'EOF2' || fail "p2 does not refer to p1's parts"
import json, sys
p1, p2 = (json.load(open(f))["components"][0]["parts"] for f in sys.argv[1:3])
assert sorted((p["key"], p["size"], p["sha256"]) for p in p2) == sorted((p["key"], p["size"], p["sha256"]) for p in p1), (p1, p2)
assert all(p["key"].startswith("data/" + sys.argv[3] + "/") for p in p2), p2
EOF2
    # the entries are the registry's bytes with the fixed time, and p2 reads back whole
    zstd -dc "$STORE/data/$id1"/deploy.*.tar.zst | TZ=UTC tar -itvf - --full-time >"$T/list"
    grep -F ".snap-meta/images/sha256/${d1#sha256:}.json" "$T/list" | grep -q " 1970-01-01 00:00:00 " ||
        fail "the registry manifest does not carry the fixed time: $(grep -F .snap-meta "$T/list")"
    expect_rc 0 "$SNAP" verify p2 --store "$STORE"
    expect_rc 0 "$SNAP" show p2 --store "$STORE"
    expect_out "$REG_PLAIN/$REPO/app:v1  $d1  (app.yaml:11)"
}

run_tests "$@"
