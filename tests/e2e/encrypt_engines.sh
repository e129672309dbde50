#!/usr/bin/env bash
# Encryption at rest with every engine (files, PostgreSQL, MariaDB, images) in one
# snapshot, through an encrypted local store and an encrypted S3 store (Ceph RGW): the
# round trip restores every target, and no stored object holds the plaintext of a marker
# row, file or comment.
# needs: rgw postgres mariadb registry
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC1091
. "$T_WORK/service-registry.env"
export PGOPTIONS='--client-min-messages=warning'

MARK=MARKER-c0ffee-$$-secret

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }

# Four sources with a marker each, and a snap.conf naming them with the store's [store] lines.
engines_setup() { # STORE-LINE...
    export SNAP_STATE_DIR=$T/state DOCKER_CONFIG=$T/docker
    unset SNAP_PASSPHRASE
    mkdir -p "$T/docker" "$T/app" "$T/deploy"
    PGDB=t_enc_$$_$RANDOM
    MYDB=t_enc_$$_$RANDOM
    echo "token = $MARK-file" >"$T/app/secret.conf"
    q -d postgres -c "CREATE DATABASE $PGDB"
    q -d "$PGDB" -c "CREATE TABLE accounts (id int PRIMARY KEY, note text); INSERT INTO accounts VALUES (1, '$MARK-pg')"
    my -e "CREATE DATABASE $MYDB"
    my "$MYDB" -e "CREATE TABLE accounts (id int PRIMARY KEY, note text); INSERT INTO accounts VALUES (1, '$MARK-my')"
    repo=$(basename "$T" | tr 'A-Z' 'a-z' | tr -dc 'a-z0-9')
    digest=$("$REG_TOOL" push plain "$repo/app" v1 a1)
    printf '# %s-yaml\nservices:\n  web:\n    image: %s\n' "$MARK" "$REG_PLAIN/$repo/app:v1" >"$T/deploy/compose.yml"
    head -c 32 /dev/urandom >"$T/key" && chmod 600 "$T/key"
    {
        echo "[store]"
        printf '%s\n' "$@"
        echo "key_file = $T/key"
        printf '[source app]\ntype = files\npath = %s\n' "$T/app"
        printf '[source shop]\ntype = postgres\ndsn = dbname=%s\n' "$PGDB"
        printf '[source ledger]\ntype = mysql\ndsn = mysql://root@localhost/%s?socket=%s\n' "$MYDB" "$MY_SOCKET"
        printf '[source deploy]\ntype = images\nmanifests = %s\n' "$T/deploy"
    } >"$T/snap.conf"
}

damage_all() {
    echo broken >"$T/app/secret.conf"
    q -d "$PGDB" -c "UPDATE accounts SET note = 'damaged'"
    my "$MYDB" -e "UPDATE accounts SET note = 'damaged'"
    echo "# edited" >>"$T/deploy/compose.yml"
}

check_all() {
    grep -qx "token = $MARK-file" "$T/app/secret.conf" || fail "files not restored"
    [ "$(q -d "$PGDB" -c 'SELECT note FROM accounts')" = "$MARK-pg" ] || fail "postgres not restored"
    [ "$(my -N "$MYDB" -e 'SELECT note FROM accounts')" = "$MARK-my" ] || fail "mysql not restored"
    ! grep -q edited "$T/deploy/compose.yml" || fail "images manifests not restored"
}

roundtrip() {
    expect_rc 0 "$SNAP" create enc1 --config "$T/snap.conf" --json
    expect_out '"encryption": {'
    expect_rc 0 "$SNAP" verify enc1 --config "$T/snap.conf"
    damage_all
    expect_rc 0 "$REVERT" enc1 --config "$T/snap.conf" --yes
    check_all
    expect_rc 0 "$SNAP" cat enc1 shop --config "$T/snap.conf"
    grep -qaF "$MARK-pg" "$T/out" || fail "snap cat does not give the PostgreSQL data"
}

# scan DIR: no object holds any marker, nor an image digest or a database name.
scan() {
    [ "$(find "$1" -type f | wc -l)" -gt 8 ] || fail "too few objects to scan in $1"
    ! grep -rlaF "$MARK" "$1" >&2 || fail "a marker is stored in the clear"
    ! grep -rlaF "${digest#sha256:}" "$1" >&2 || fail "an image digest is stored in the clear"
    ! grep -rlaF "$PGDB" "$1" >&2 || fail "a database name is stored in the clear"
}

cleanup_dbs() {
    for d in $(q -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE '${PGDB}%'"); do
        q -d postgres -c "DROP DATABASE \"$d\"" || true
    done
    for d in $(my -N -e "SHOW DATABASES LIKE '${MYDB}%'"); do my -e "DROP DATABASE \`$d\`" || true; done
}

test_every_engine_through_an_encrypted_local_store() {
    engines_setup "url = $T/store"
    roundtrip
    scan "$T/store"
    cleanup_dbs
}

test_every_engine_through_an_encrypted_s3_store() {
    export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION
    export AWS_SHARED_CREDENTIALS_FILE=$T/no-credentials AWS_CONFIG_FILE=$T/no-config
    prefix=$(basename "$T")
    # small chunks: a part comes back in several ranged reads that cut segments anywhere
    engines_setup "url = s3://$RGW_BUCKET/$prefix" "endpoint = $RGW_ENDPOINT" "download_chunk = 100000" \
        "download_concurrency = 3"
    head -c 400000 /dev/urandom >"$T/app/blob.bin"
    roundtrip
    aws --endpoint-url "$RGW_ENDPOINT" s3 cp --recursive --quiet "s3://$RGW_BUCKET/$prefix" "$T/copy"
    scan "$T/copy"
    # a flipped byte in a part stored in S3 stops the revert before anything changes
    part=$(cd "$T/copy" && ls data/*/app.0000.tar.zst.enc | head -n 1)
    python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[70000]^=1; open(p,"wb").write(b)' "$T/copy/$part"
    aws --endpoint-url "$RGW_ENDPOINT" s3 cp --quiet "$T/copy/$part" "s3://$RGW_BUCKET/$prefix/$part"
    damage_all
    expect_rc 5 "$REVERT" enc1 --config "$T/snap.conf" --yes
    grep -qx broken "$T/app/secret.conf" || fail "the live files changed"
    [ "$(q -d "$PGDB" -c 'SELECT note FROM accounts')" = damaged ] || fail "the live database changed"
    expect_rc 5 "$SNAP" verify enc1 --config "$T/snap.conf"
    cleanup_dbs
}

# 30% of requests fail in every way the proxy knows (cut bodies are resumed mid-segment):
# an encrypted snap and revert still succeed, bit for bit.
test_encrypted_s3_through_faults() {
    export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
    export AWS_SHARED_CREDENTIALS_FILE=$T/no-credentials AWS_CONFIG_FILE=$T/no-config SNAP_STATE_DIR=$T/state
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION SNAP_PASSPHRASE
    python3 "$T_ROOT/tests/services/s3proxy.py" --upstream "${RGW_ENDPOINT#http://}" --port-file "$T/proxy.port" \
        --rate 0.3 --faults 500,503,reset,cut,stall --stall 4 --seed 11 --log "$T/proxy.log" &
    proxy=$!
    trap 'kill $proxy 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
    head -c 32 /dev/urandom >"$T/key" && chmod 600 "$T/key"
    printf '[store]\nurl = s3://%s/%s\nendpoint = http://127.0.0.1:%s\nkey_file = %s\nretries = 10\ntimeout = 2\npart_size = 5M\ndownload_chunk = 1M\n' \
        "$RGW_BUCKET" "$(basename "$T")" "$(cat "$T/proxy.port")" "$T/key" >"$T/snap.conf"
    mkdir -p "$T/app/sub"
    head -c $((12 << 20)) /dev/urandom >"$T/app/big.bin"
    echo "$MARK" >"$T/app/sub/secret"
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" create faulty --config "$T/snap.conf" --files "$T/app"
    rm -rf "$T/app/sub" && head -c 1000 /dev/urandom >"$T/app/big.bin"
    expect_rc 0 "$REVERT" faulty --config "$T/snap.conf" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs from the snapshot"
    grep -q " cut\$" "$T/proxy.log" || fail "the proxy never cut a body"
}

run_tests "$@"
