#!/usr/bin/env bash
# Targets are never chosen by the store alone: a revert replaces what the local
# configuration or the command line names, or what an authenticated manifest names.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"

setup() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/data/app/conf.d" "$T/data/other"
    echo "listen 80" >"$T/data/app/main.conf"
    echo "x" >"$T/data/app/conf.d/a.conf"
    echo "keep me" >"$T/data/other/precious"
    echo "sibling" >"$T/data/sibling"
}

# listing DIR: every name, type, mode, owner, size, link target and content digest.
listing() {
    (cd "$1" && find . -printf '%p\t%y\t%m\t%u\t%s\t%l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}

# edit_manifest FILE PYTHON: runs PYTHON with the manifest as `m`, writes it back as it
# is (the signature is not recomputed: whoever edits a store holds no key).
edit_manifest() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(m, open(sys.argv[1], 'w'))
EOF
}

key_file() { # PATH: 32 random bytes, 0600
    head -c 32 /dev/urandom >"$1"
    chmod 600 "$1"
}

# A loopback listener that records every connection in $T/connections; its port in $port.
start_listener() {
    python3 - "$T/port" "$T/connections" <<'EOF' &
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    c, _ = s.accept()
    with open(sys.argv[2], "a") as f:
        f.write("connected\n")
    c.close()
EOF
    listener=$!
    for _ in $(seq 50); do [ -e "$T/port" ] && break; sleep 0.1; done
    port=$(cat "$T/port")
}

stop_listener() {
    sleep 0.3
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
}

test_snap_signs_with_a_host_key_made_on_first_use() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/data/app"
    [ "$(stat -c '%a %s %U' "$SNAP_STATE_DIR/host.key")" = "600 32 $(id -un)" ] || fail "host key: $(stat -c '%a %s %U' "$SNAP_STATE_DIR/host.key")"
    expect_rc 0 "$SNAP" create p2 --store "$ST" --files "$T/data/app"
    python3 - "$ST/catalog/p1.json" "$ST/catalog/p2.json" <<'EOF' || fail "manifests not signed by the same host key"
import json, sys
a, b = (json.load(open(p))["auth"] for p in sys.argv[1:])
assert len(a) == 1 and a[0]["alg"] == "hmac-sha256" and len(a[0]["hmac"]) == 64, a
assert a[0]["key_id"] == b[0]["key_id"] and a[0]["hmac"] != b[0]["hmac"], (a, b)
EOF
    # the snapshots this host took name their own targets
    echo "broken" >"$T/data/app/main.conf"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes -v
    expect_err "is authenticated by key"
    [ "$(cat "$T/data/app/main.conf")" = "listen 80" ] || fail "not reverted"
}

# A manifest edited by hand whose files root points at another directory.
test_edited_files_root_is_refused_and_nothing_changes() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/data/app"
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['info']['roots'][0]['path'] = '$T/data/other'"
    before=$(listing "$T/data")
    for mode in --dry-run --yes; do
        expect_rc 5 "$REVERT" p1 --store "$ST" $mode -v
        expect_err "is not authenticated: its signature does not match"
        expect_err "component app asks to replace $T/data/other"
        expect_err "hint: name $T/data/other in the configuration ([source app] type = files"
        expect_err "--to DIR"
        expect_err "auth_key_file"
        [ "$(listing "$T/data")" = "$before" ] || fail "something changed with $mode"
    done
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes --json
    python3 - "$T/out" "$T/data/other" <<'EOF' || fail "JSON plan"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["authenticated"] is False and r["error"]["exit_code"] == 5, r
t, = r["targets"]
assert t["component"] == "app" and t["requested"] == sys.argv[2] and t["refused"], t
EOF
    [ "$(listing "$T/data")" = "$before" ] || fail "something changed"
    ls "$SNAP_STATE_DIR/journal" | grep -q . && fail "a journal was left"
    return 0
}

# A relative path in the configuration names no target: it would depend on where revert
# runs, and a manifest could then name that directory anywhere.
test_relative_config_path_names_no_target() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/data/app"
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['info']['roots'][0]['path'] = '$T/data/other'"
    printf '[source app]\ntype = files\npaths = other\n' >"$T/rel.conf"
    before=$(listing "$T/data")
    (cd "$T/data" && expect_rc 5 "$REVERT" p1 --config "$T/rel.conf" --store "$ST" --yes)
    expect_err "component app asks to replace $T/data/other"
    [ "$(listing "$T/data")" = "$before" ] || fail "something changed"
}

# A store written by snap 0.1.0 (tests/e2e/fixtures/store-0.1.0, from before manifests were
# signed) stays readable: listed, verified, restored beside with --to; its live target is
# not replaced on its word alone.
test_store_of_the_previous_version_stays_readable() {
    setup
    cp -r "$T_ROOT/tests/e2e/fixtures/store-0.1.0" "$T/old"
    expect_rc 0 "$SNAP" list --store "$T/old" --json
    expect_out '"v010"'
    expect_rc 0 "$SNAP" verify v010 --store "$T/old"
    expect_rc 0 "$REVERT" v010 --store "$T/old" --to "$T/restored" --yes
    [ "$(cat "$T/restored/main.conf")" = "listen 80" ] || fail "main.conf not restored"
    [ "$(cat "$T/restored/conf.d/a.conf")" = x ] || fail "conf.d/a.conf not restored"
    [ "$(readlink "$T/restored/current.conf")" = main.conf ] || fail "the symlink not restored"
    expect_rc 5 "$REVERT" v010 --store "$T/old" --yes
    expect_err "is not authenticated"
    # this version writes into it without changing its layout: a snapshot without
    # references leaves STORE.json at format 1, so 0.1.0 still reads the store
    expect_rc 0 "$SNAP" create v2 --store "$T/old" --files "$T/restored"
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["format"] == 1' "$T/old/STORE.json" ||
        fail "STORE.json of the old store changed format: $(cat "$T/old/STORE.json")"
    grep -q '"format": 1' "$T/old/catalog/v2.json" || fail "the new manifest is not format 1"
    expect_rc 0 "$SNAP" verify v010 --store "$T/old"
    expect_rc 0 "$SNAP" verify v2 --store "$T/old"
}

# Images: the manifests path of an unauthenticated manifest is not a target either.
test_images_manifests_path_edited_is_refused() {
    setup
    mkdir -p "$T/data/deploy"
    printf 'services:\n  web:\n    image: 127.0.0.1:1/app:v1\n' >"$T/data/deploy/compose.yaml"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --images "$T/data/deploy" --allow-unresolved
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['info']['roots'][0]['path'] = '$T/data/other'"
    before=$(listing "$T/data")
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes
    expect_err "component deploy asks to replace $T/data/other"
    expect_err "([source deploy] type = images, manifests = ...)"
    [ "$(listing "$T/data")" = "$before" ] || fail "something changed"
    # a files source naming the path does not name an images target; an images one does
    printf '[source x]\ntype = files\npaths = %s/data/other\n' "$T" >"$T/files.conf"
    expect_rc 5 "$REVERT" -c "$T/files.conf" p1 --store "$ST" --dry-run
    printf '[source x]\ntype = images\nmanifests = %s/data/other\n' "$T" >"$T/images.conf"
    expect_rc 0 "$REVERT" -c "$T/images.conf" p1 --store "$ST" --dry-run
    expect_out "target named by the configuration"
    [ "$(listing "$T/data")" = "$before" ] || fail "something changed"
}

# A manifest that is not authenticated, whose roots are not normalised, is damaged.
test_root_with_dotdot_is_refused() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/data/app"
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['info']['roots'][0]['path'] = '$T/data/app/../other'"
    before=$(listing "$T/data")
    mkdir "$T/copy"
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes --to "$T/copy/x"
    expect_err "normalised path"
    [ "$(listing "$T/data")" = "$before" ] || fail "something changed"
}

# A PostgreSQL manifest whose source points at another server: no connection at all,
# so no password goes there, even for --dry-run.
test_pg_source_changed_to_another_host_gets_no_connection() {
    setup
    db=t_trust_$$
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    psql -X -q -d "$db" -c "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --pg "dbname=$db"
    start_listener
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['source'] = 'host=127.0.0.1 port=$port user=victim dbname=$db'"
    PGPASSWORD=s3cret-pw expect_rc 5 "$REVERT" p1 --store "$ST" --dry-run
    expect_err "component $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["name"])' "$ST/catalog/p1.json") asks to replace database $db on host=127.0.0.1 port=$port"
    expect_err "no connection was made"
    expect_err "type = postgres, dsn = "
    PGPASSWORD=s3cret-pw expect_rc 5 "$REVERT" p1 --store "$ST" --yes
    stop_listener
    [ ! -s "$T/connections" ] || fail "revert connected to the host the manifest named"
    [ "$(psql -X -At -d "$db" -c 'SELECT count(*) FROM t')" = 1 ] || fail "the database changed"
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db"
}

# The same for MySQL: a source moved to another host gets no connection, and no MYSQL_PWD.
test_mysql_source_changed_to_another_host_gets_no_connection() {
    setup
    my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }
    db=t_trust_$$
    my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db; CREATE TABLE $db.t (id int); INSERT INTO $db.t VALUES (1)"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --mysql "mysql://root@localhost/$db?socket=$MY_SOCKET"
    start_listener
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['source'] = 'mysql://victim@127.0.0.1:$port/$db'"
    MYSQL_PWD=s3cret-pw expect_rc 5 "$REVERT" p1 --store "$ST" --dry-run
    expect_err "asks to replace database $db on mysql://victim@127.0.0.1:$port/$db"
    expect_err "type = mysql, dsn = "
    MYSQL_PWD=s3cret-pw expect_rc 5 "$REVERT" p1 --store "$ST" --yes
    stop_listener
    [ ! -s "$T/connections" ] || fail "revert connected to the host the manifest named"
    [ "$(my -N -e "SELECT count(*) FROM $db.t")" = 1 ] || fail "the database changed"
    # named in the configuration, the revert goes on to the configured server
    name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["name"])' "$ST/catalog/p1.json")
    printf '[source %s]\ntype = mysql\ndsn = mysql://root@localhost/%s?socket=%s\n' "$name" "$db" "$MY_SOCKET" >"$T/snap.conf"
    my -e "DELETE FROM $db.t"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" p1 --store "$ST" --yes --no-safety-snapshot --drop-old
    [ "$(my -N -e "SELECT count(*) FROM $db.t")" = 1 ] || fail "not reverted"
    my -e "DROP DATABASE IF EXISTS $db"
}

# A [source] naming the server, but another database than the manifest's: refused.
test_pg_config_naming_another_database_is_refused() {
    setup
    db=t_trust2_$$ other=t_trust2_other_$$
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS $other" \
        -c "CREATE DATABASE $db" -c "CREATE DATABASE $other"
    psql -X -q -d "$other" -c "CREATE TABLE precious (id int); INSERT INTO precious VALUES (7)"
    expect_rc 0 "$SNAP" create p1 --store "$ST" --pg "dbname=$db"
    name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["name"])' "$ST/catalog/p1.json")
    edit_manifest "$ST/catalog/p1.json" "m['components'][0]['info']['database_name'] = '$other'"
    printf '[source %s]\ntype = postgres\ndsn = dbname=%s\n' "$name" "$db" >"$T/snap.conf"
    expect_rc 5 "$REVERT" -c "$T/snap.conf" p1 --store "$ST" --yes --no-safety-snapshot
    expect_err "names database $db, not $other"
    [ "$(psql -X -At -d "$other" -c 'SELECT id FROM precious')" = 7 ] || fail "the other database changed"
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS $other"
}

# Two hosts that revert each other's snapshots share a key; each has its own host key.
test_shared_key_lets_another_host_revert() {
    setup
    key_file "$T/shared.key"
    printf '[store]\nauth_key_file = %s\n' "$T/shared.key" >"$T/shared.conf"
    SNAP_STATE_DIR=$T/host-a expect_rc 0 "$SNAP" -c "$T/shared.conf" create p1 --store "$ST" --files "$T/data/app"
    python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["auth"]) == 2' "$ST/catalog/p1.json" ||
        fail "not signed with both keys"
    echo "broken" >"$T/data/app/main.conf"
    before=$(listing "$T/data")
    # host b without the shared key: the manifest names a target it cannot trust
    SNAP_STATE_DIR=$T/host-b expect_rc 5 "$REVERT" p1 --store "$ST" --yes -v
    expect_err "signed only by keys this host does not hold"
    # host c with a different shared key: refused as well
    key_file "$T/wrong.key"
    printf '[store]\nauth_key_file = %s\n' "$T/wrong.key" >"$T/wrong.conf"
    SNAP_STATE_DIR=$T/host-c expect_rc 5 "$REVERT" -c "$T/wrong.conf" p1 --store "$ST" --yes
    expect_err "is not authenticated"
    [ "$(listing "$T/data")" = "$before" ] || fail "a refused revert changed something"
    # host b with the shared key
    SNAP_STATE_DIR=$T/host-b expect_rc 0 "$REVERT" -c "$T/shared.conf" p1 --store "$ST" --yes
    [ "$(cat "$T/data/app/main.conf")" = "listen 80" ] || fail "not reverted"
    # and its safety snapshot is signed with the shared key too: host a may revert it
    safety=$(ls "$ST/catalog" | grep '^pre-revert-' | sed 's/\.json$//')
    SNAP_STATE_DIR=$T/host-a expect_rc 0 "$REVERT" -c "$T/shared.conf" "$safety" --store "$ST" --yes
    [ "$(cat "$T/data/app/main.conf")" = "broken" ] || fail "the safety snapshot was not reverted"
}

test_key_file_open_to_others_is_refused() {
    setup
    key_file "$T/shared.key"
    printf '[store]\nauth_key_file = %s\n' "$T/shared.key" >"$T/shared.conf"
    chmod 644 "$T/shared.key"
    expect_rc 2 "$SNAP" -c "$T/shared.conf" create p1 --store "$ST" --files "$T/data/app"
    expect_err "key file $T/shared.key is open to other users (mode 0644)"
    expect_err "hint: run \`chmod 600 $T/shared.key\`"
    [ ! -e "$ST/catalog/p1.json" ] || fail "a snapshot was committed"
    chmod 600 "$T/shared.key"
    expect_rc 0 "$SNAP" -c "$T/shared.conf" create p1 --store "$ST" --files "$T/data/app"
    chmod 660 "$T/shared.key"
    expect_rc 2 "$REVERT" -c "$T/shared.conf" p1 --store "$ST" --yes
    expect_err "open to other users"
    # owned by another user, even with mode 0600
    other_user
    chmod 600 "$T/shared.key"
    chown snapother "$T/shared.key"
    expect_rc 2 "$REVERT" -c "$T/shared.conf" p1 --store "$ST" --yes
    expect_err "is owned by uid $(id -u snapother)"
    # a host key others may read is refused as well
    chown root "$T/shared.key"
    chmod 644 "$SNAP_STATE_DIR/host.key"
    expect_rc 2 "$SNAP" create p2 --store "$ST" --files "$T/data/app"
    expect_err "host.key is open to other users"
    # in a directory others may write, where the key could be renamed away or replaced
    chmod 600 "$SNAP_STATE_DIR/host.key"
    mkdir -p "$T/keys" && chmod 777 "$T/keys" && mv "$T/shared.key" "$T/keys/"
    printf '[store]\nauth_key_file = %s\n' "$T/keys/shared.key" >"$T/shared.conf"
    expect_rc 2 "$SNAP" -c "$T/shared.conf" create p3 --store "$ST" --files "$T/data/app"
    expect_err "is in $T/keys, which group or others may write"
}

# Manifests of the earlier format carry no signature: they stay readable, and revert
# their targets when the configuration or --to names them.
test_unsigned_manifest_reverts_where_configured() {
    setup
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/data/app"
    edit_manifest "$ST/catalog/p1.json" "del m['auth']"
    echo "broken" >"$T/data/app/main.conf"
    expect_rc 0 "$SNAP" show p1 --store "$ST"
    expect_rc 0 "$SNAP" verify p1 --store "$ST"
    expect_rc 5 "$REVERT" p1 --store "$ST" --yes -v
    expect_err "is not authenticated: not signed"
    [ "$(cat "$T/data/app/main.conf")" = "broken" ] || fail "reverted without a name"
    expect_rc 0 "$REVERT" p1 --store "$ST" --to "$T/copy" --yes
    [ "$(cat "$T/copy/main.conf")" = "listen 80" ] || fail "--to did not restore"
    printf '[source app]\ntype = files\npaths = %s/data/../data/app/\n' "$T" >"$T/snap.conf"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" p1 --store "$ST" --dry-run
    expect_out "target named by the configuration"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" p1 --store "$ST" --yes
    [ "$(cat "$T/data/app/main.conf")" = "listen 80" ] || fail "not reverted"
    # a [source] of another type does not name a files target
    printf '[source app]\ntype = images\nmanifests = %s/data/app\n' "$T" >"$T/images.conf"
    expect_rc 5 "$REVERT" -c "$T/images.conf" p1 --store "$ST" --yes
}

run_tests "$@"
