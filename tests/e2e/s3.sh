#!/usr/bin/env bash
# S3 stores against a real Ceph RGW (tests/services/rgw.sh), through the built tools, with
# the AWS CLI as an independent client and a fault-injecting proxy (tests/services/s3proxy.py).
# needs: rgw
# slow
. "$(dirname "$0")/lib.sh"

PROXY=$T_ROOT/tests/services/s3proxy.py

# Every test gets its own prefix in the shared bucket, keys in the environment and a
# snap.conf pointing at RGW. Extra [store] lines may follow as arguments.
s3_setup() {
    PREFIX=$(basename "$T")
    STORE=s3://$RGW_BUCKET/$PREFIX
    export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION
    export AWS_SHARED_CREDENTIALS_FILE=$T/no-credentials AWS_CONFIG_FILE=$T/no-config
    export SNAP_STATE_DIR=$T/state # revert journals and locks of this test only
    store_conf "$RGW_ENDPOINT" "$@"
}

store_conf() { # store_conf ENDPOINT [LINE]...: writes $T/snap.conf
    local ep=$1
    shift
    { echo "[store]"; echo "endpoint = $ep"; printf '%s\n' "$@"; } >"$T/snap.conf"
}

awsc() { aws --endpoint-url "$RGW_ENDPOINT" "$@"; }

# make_data DIR MB: a tree with one random file of MB MiB, small files and a symlink.
make_data() {
    mkdir -p "$1/sub"
    head -c $(($2 * 1024 * 1024)) /dev/urandom >"$1/big.bin"
    echo "port = 5432" >"$1/app.conf"
    printf 'line %s\n' $(seq 200) >"$1/sub/list.txt"
    ln -s app.conf "$1/link"
}

# start_proxy RATE FAULTS [ARGS]: a proxy to RGW; sets PROXY_URL; stopped when the test ends.
start_proxy() {
    python3 "$PROXY" --upstream "${RGW_ENDPOINT#http://}" --port-file "$T/proxy.port" \
        --rate "$1" --faults "$2" --log "$T/proxy.log" "${@:3}" &
    PROXY_PID=$!
    trap 'kill $PROXY_PID 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
    [ -s "$T/proxy.port" ] || fail "the proxy did not start"
    PROXY_URL=http://127.0.0.1:$(cat "$T/proxy.port")
}

no_uploads_left() {
    awsc s3api list-multipart-uploads --bucket "$RGW_BUCKET" --prefix "$PREFIX/" >"$T/uploads.json"
    ! grep -q '"UploadId"' "$T/uploads.json" || { cat "$T/uploads.json" >&2; fail "multipart uploads left behind"; }
}

# A snapshot larger than a part goes up as a multipart upload, several parts at once, and
# comes back bit-identical through every command.
test_roundtrip_multipart() {
    s3_setup "part_size = 5M" "upload_concurrency = 3" "download_chunk = 1M"
    make_data "$T/app" 14
    local before
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create first --files "$T/app"
    expect_out "snapshot first"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_out "first"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" show first --json
    expect_out '"name": "first"'
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify first
    expect_out "all intact"
    no_uploads_left

    rm -rf "$T/app/sub" "$T/app/big.bin"
    echo changed >"$T/app/app.conf"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --store "$STORE" first --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs from the snapshot"
}

# The store's format is raised with If-Match on the copy just read, and RGW refuses a write
# over a copy that is no longer there, which is what keeps two raises from lowering it.
test_store_format_raised_over_the_copy_read() {
    s3_setup
    make_data "$T/app" 1
    store_json() { awsc s3 cp "s3://$RGW_BUCKET/$PREFIX/STORE.json" - 2>/dev/null; }
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create first --files "$T/app"
    store_json | grep -q '"format": 1' || fail "a store without references is not format 1"
    start_proxy 0 500
    store_conf "$PROXY_URL"
    # unchanged: the second snap refers to the first's parts, so the store becomes format 2
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create second --files "$T/app"
    store_json | grep -q '"format": 2' || { store_json >&2; fail "the store was not raised to format 2"; }
    grep -q "^PUT /$RGW_BUCKET/$PREFIX/STORE.json if-match=[0-9a-f]* ok" "$T/proxy.log" ||
        { grep STORE.json "$T/proxy.log" >&2; fail "STORE.json was not written with If-Match"; }
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$RGW_ACCESS_KEY:$RGW_SECRET_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        -H 'If-Match: 0123456789abcdef0123456789abcdef' -X PUT --data-binary '{"format": 1}' \
        "$RGW_ENDPOINT/$RGW_BUCKET/$PREFIX/STORE.json")
    [ "$code" = 412 ] || fail "RGW answered $code to a PUT with a stale If-Match"
    store_json | grep -q '"format": 2' || fail "a PUT with a stale If-Match changed STORE.json"
    store_conf "$RGW_ENDPOINT"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify second
}

# What snap wrote is plain S3: the AWS CLI lists and downloads it, tar reads the archive.
test_interop_awscli() {
    s3_setup
    make_data "$T/app" 2
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create interop --files "$T/app"
    awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/" >"$T/ls"
    grep -q "$PREFIX/catalog/interop.json" "$T/ls" || { cat "$T/ls" >&2; fail "no manifest listed"; }
    local key
    key=$(grep -o "$PREFIX/data/[^ ]*\.tar\.zst" "$T/ls" | head -n 1)
    [ -n "$key" ] || fail "no archive listed"
    awsc s3 cp --quiet "s3://$RGW_BUCKET/$key" "$T/part.tar.zst"
    "$SNAP" -c "$T/snap.conf" --store "$STORE" show interop --json >"$T/show.json"
    local want got
    want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][0]["parts"][0]["sha256"])' "$T/show.json")
    got=$(sha256sum "$T/part.tar.zst" | cut -d' ' -f1)
    [ "$want" = "$got" ] || fail "downloaded archive sha256 $got, manifest says $want"
    tar --zstd -tvf "$T/part.tar.zst" >"$T/tar.txt"
    grep -q "sub/list.txt" "$T/tar.txt" || { cat "$T/tar.txt" >&2; fail "tar does not list sub/list.txt"; }
    awsc s3 cp --quiet "s3://$RGW_BUCKET/$PREFIX/catalog/interop.json" "$T/manifest.json"
    grep -q '"name": "interop"' "$T/manifest.json" || fail "manifest read by the AWS CLI lacks the name"
}

test_delete_prune_gc() {
    s3_setup
    make_data "$T/app" 1
    for n in one two three; do # each different: no snapshot refers to another's parts
        echo $n >"$T/app/marker"
        expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create $n --files "$T/app"
    done
    local id
    id=$("$SNAP" -c "$T/snap.conf" --store "$STORE" show one --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" delete one --yes
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    ! grep -q "^one " "$T/out" || fail "deleted snapshot still listed"
    [ -z "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/data/$id/")" ] || fail "data of the deleted snapshot left"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" prune --keep-last 1 --yes
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    grep -q "^three " "$T/out" || fail "newest snapshot pruned"
    ! grep -q "^two " "$T/out" || fail "prune kept an old snapshot"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" gc --min-age 0s
    [ "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/data/" | grep -vc '\.index\.json\.zst$')" = 1 ] ||
        fail "gc left orphaned data"
}

# An interrupted upload (made here by the AWS CLI) and the create-only probe of a killed
# process are removed by gc, and only by gc.
test_gc_aborts_stale_uploads() {
    s3_setup
    make_data "$T/app" 1
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create base --files "$T/app"
    awsc s3api create-multipart-upload --bucket "$RGW_BUCKET" --key "$PREFIX/data/x/y.0000.tar.zst" >/dev/null
    echo 1 | awsc s3 cp --quiet - "s3://$RGW_BUCKET/$PREFIX/.create-only-probe-0123456789abcdef"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" gc --dry-run --min-age 0s
    expect_out "2 unfinished uploads"
    awsc s3api list-multipart-uploads --bucket "$RGW_BUCKET" --prefix "$PREFIX/" | grep -q UploadId ||
        fail "dry run aborted the upload"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" gc --min-age 1h
    expect_out "0 unfinished uploads"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" gc --min-age 0s
    expect_out "2 unfinished uploads"
    no_uploads_left
    [ -z "$(awsc s3 ls "s3://$RGW_BUCKET/$PREFIX/.create-only-probe-")" ] || fail "probe left behind"
}

# More keys than one listing page: the continuation token is followed.
test_list_follows_continuation() {
    s3_setup "list_max_keys = 2"
    mkdir "$T/app" && echo x >"$T/app/x"
    for n in a b c d e; do
        expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create snap-$n --files "$T/app"
    done
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    [ "$(grep -c '^snap-[a-e] ' "$T/out")" = 5 ] || { cat "$T/out" >&2; fail "list shows fewer than 5 snapshots"; }
}

# 1,500 orphaned objects (a snap killed before its manifest): gc lists them across pages
# of 1,000 and deletes them in DeleteObjects batches of at most 1,000.
test_gc_many_orphans() {
    s3_setup
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create keep --files "$T/app"
    mkdir "$T/orphans"
    (cd "$T/orphans" && seq -f 'comp%04g.0000.tar.zst' 1500 | xargs touch)
    awsc s3 cp --quiet --recursive "$T/orphans" "s3://$RGW_BUCKET/$PREFIX/data/20200101T000000Z-deadbeef/"
    [ "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/data/" | grep -vc '\.index\.json\.zst$')" = 1501 ] ||
        fail "orphans not uploaded"
    start_proxy 0 500 # no faults: only its log of requests
    store_conf "$PROXY_URL"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" gc --min-age 0s
    expect_out "removed 1 orphaned snapshot"
    [ "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/data/" | grep -vc '\.index\.json\.zst$')" = 1 ] ||
        fail "orphans left behind"
    [ "$(grep -c '^POST [^ ]*?delete' "$T/proxy.log")" = 2 ] || fail "expected 2 DeleteObjects batches"
    grep -q 'continuation-token=' "$T/proxy.log" || fail "no listing went past its first page"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify keep
}

test_name_exists_is_a_conflict() {
    s3_setup
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" -vv create same --files "$T/app"
    expect_err "honours If-None-Match"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create other --files "$T/app" --json
    grep -q '"create_only_check": "if-none-match"' "$T/out" || fail "create --json does not name the check in force"
    expect_rc 4 "$SNAP" -c "$T/snap.conf" --store "$STORE" create same --files "$T/app"
    expect_err "already exists"
}

# Two snaps of one name at once: If-None-Match lets exactly one commit.
test_concurrent_same_name() {
    s3_setup
    make_data "$T/app" 3
    "$SNAP" -c "$T/snap.conf" --store "$STORE" create race --files "$T/app" >/dev/null 2>"$T/e1" &
    local p1=$!
    "$SNAP" -c "$T/snap.conf" --store "$STORE" create race --files "$T/app" >/dev/null 2>"$T/e2" &
    local p2=$! r1=0 r2=0
    wait $p1 || r1=$?
    wait $p2 || r2=$?
    [ "$r1$r2" = 04 ] || [ "$r1$r2" = 40 ] || { cat "$T/e1" "$T/e2" >&2; fail "exit codes $r1 and $r2, expected 0 and 4"; }
    cat "$T/e1" "$T/e2" | grep -q "already exists" || fail "the loser does not say the name exists"
}

test_wrong_secret_key() {
    s3_setup
    export AWS_SECRET_ACCESS_KEY=not-the-secret-5f2a9c
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "403 SignatureDoesNotMatch"
    expect_err "hint: "
    expect_no_err "not-the-secret-5f2a9c"
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" create x --files "$T" --json
    expect_no_err "not-the-secret-5f2a9c"
    ! grep -q "not-the-secret-5f2a9c" "$T/out" || fail "the secret is in the JSON output"
    # refused credentials are "denied", not merely unreachable (docs/json.md)
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"]=="denied" and e["exit_code"]==6, e' \
        "$T/out" || fail "error code: $(cat "$T/out")"
}

test_unknown_access_key() {
    s3_setup
    export AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "403 InvalidAccessKeyId"
    expect_err "AWS_ACCESS_KEY_ID"
}

test_missing_bucket() {
    s3_setup
    expect_rc 3 "$SNAP" -c "$T/snap.conf" --store "s3://no-such-bucket-$$/p" list
    expect_err "bucket no-such-bucket-$$ does not exist"
    expect_err "hint: create the bucket"
    expect_rc 3 "$SNAP" -c "$T/snap.conf" --store "s3://no-such-bucket-$$/p" create x --files "$T"
}

test_bucket_in_another_region() {
    s3_setup
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "s3://$RGW_OTHER_REGION_BUCKET/p" list
    expect_err "301"
    expect_err "another region"
    expect_err "hint: "
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "s3://$RGW_OTHER_REGION_BUCKET/p" create x --files "$T"
}

test_connection_refused() {
    s3_setup
    store_conf http://127.0.0.1:1 "retries = 1"
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "Couldn't connect"
    expect_err "hint: check [store] endpoint"
}

test_no_credentials() {
    s3_setup
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "no AWS credentials found"
}

# Keys from the shared credentials file, profile picked by AWS_PROFILE.
test_credentials_file_profile() {
    s3_setup
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    cat >"$T/credentials" <<EOF
[default]
aws_access_key_id = WRONGDEFAULTKEY00000
aws_secret_access_key = wrong

[rgw-test]
aws_access_key_id = $RGW_ACCESS_KEY
aws_secret_access_key = $RGW_SECRET_KEY
EOF
    export AWS_SHARED_CREDENTIALS_FILE=$T/credentials
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "InvalidAccessKeyId"
    AWS_PROFILE=rgw-test expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create viafile --files "$T/app"
}

test_virtual_hosted_addressing() {
    s3_setup
    # RGW answers for BUCKET.localhost (rgw dns name = localhost); curl maps *.localhost to loopback.
    store_conf "http://localhost:${RGW_ENDPOINT##*:}" "path_style = false"
    mkdir "$T/app" && echo vhost >"$T/app/x"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create vhost --files "$T/app"
    [ -n "$(awsc s3 ls "s3://$RGW_BUCKET/$PREFIX/catalog/vhost.json")" ] || fail "manifest not in the bucket"
}

# HTTPS checks the certificate unless told otherwise by name.
test_tls_verification() {
    s3_setup
    mkdir "$T/app" && echo tls >"$T/app/x"
    store_conf "$RGW_TLS_ENDPOINT" "retries = 0"
    expect_rc 6 "$SNAP" -c "$T/snap.conf" --store "$STORE" create tls --files "$T/app"
    expect_err "certificate"
    expect_err "ca_file"
    store_conf "$RGW_TLS_ENDPOINT" "ca_file = $RGW_CA_FILE"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create tls --files "$T/app"
    store_conf "$RGW_TLS_ENDPOINT"
    AWS_CA_BUNDLE=$RGW_CA_FILE expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify tls
    store_conf "$RGW_TLS_ENDPOINT" "tls_verify = false"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_out "tls"
}

# Forced to the weaker check, commits go through HEAD, PUT and read-back; a name is still taken once.
test_head_then_put_check() {
    s3_setup "create_only_check = head-then-put"
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create weak --files "$T/app" --json
    # the store's description says which check is in force
    grep -q '"create_only_check": "head-then-put"' "$T/out" || fail "create --json does not name the weaker check"
    expect_rc 4 "$SNAP" -c "$T/snap.conf" --store "$STORE" create weak --files "$T/app"
    expect_err "already exists"
}

# The store from [store] url, the endpoint and region from the AWS environment variables.
test_endpoint_and_region_from_environment() {
    s3_setup
    printf '[store]\nurl = %s\n' "$STORE" >"$T/snap.conf"
    mkdir "$T/app" && echo env >"$T/app/x"
    AWS_ENDPOINT_URL=$RGW_ENDPOINT AWS_REGION=us-east-1 \
        expect_rc 0 "$SNAP" -c "$T/snap.conf" create fromenv --files "$T/app"
    AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_ENDPOINT_URL_S3=$RGW_ENDPOINT \
        expect_rc 0 "$SNAP" -c "$T/snap.conf" list
    expect_out "fromenv"
    AWS_ENDPOINT_URL_S3=http://127.0.0.1:1 expect_rc 6 "$SNAP" -c "$T/snap.conf" list
    expect_err "127.0.0.1:1"
}

test_bad_options() {
    s3_setup "part_size = 1M"
    expect_rc 2 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "part_size"
    store_conf "$RGW_ENDPOINT" "sse = rot13"
    expect_rc 2 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "expected AES256 or aws:kms"
    store_conf "ftp://example.com"
    expect_rc 2 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "endpoint"
    s3_setup
    expect_rc 2 "$SNAP" -c "$T/snap.conf" --store "s3://a/p" list
    expect_err "invalid store URL"
}

# storage_class and sse go out with every object: RGW takes STANDARD and refuses the rest.
test_object_options_reach_the_server() {
    s3_setup "storage_class = STANDARD"
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create standard --files "$T/app"
    s3_setup "storage_class = NO_SUCH_CLASS"
    expect_rc 1 "$SNAP" -c "$T/snap.conf" --store "$STORE-2" create bogus --files "$T/app"
    expect_err "400 InvalidArgument"
    expect_err "check [store] storage_class"
    # RGW refuses SSE-S3 without a key backend: the header was sent and the answer shown.
    s3_setup "sse = AES256"
    expect_rc 1 "$SNAP" -c "$T/snap.conf" --store "$STORE-3" create sse --files "$T/app"
    expect_err "400 InvalidRequest"
}

# A part deleted behind the catalog's back: verify and revert name it; nothing changes.
test_object_deleted_behind_catalog() {
    s3_setup
    make_data "$T/app" 1
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create gone --files "$T/app"
    local key
    key=$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/data/" | awk '{print $4}' | head -n 1)
    awsc s3 rm --quiet "s3://$RGW_BUCKET/$key"
    echo "after the snapshot" >"$T/app/app.conf"
    local before
    before=$(tree_sum "$T/app")
    expect_rc 5 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify gone
    grep -qF "${key#"$PREFIX"/}" "$T/out" "$T/err" || fail "verify does not name ${key#"$PREFIX"/}"
    expect_rc 5 "$REVERT" -c "$T/snap.conf" --store "$STORE" gone --yes --no-safety-snapshot
    expect_err "${key#"$PREFIX"/}"
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "revert changed the live tree"
}

# 30% of requests fail in every way the proxy knows; snap and revert still succeed.
test_faults_snap_and_revert() {
    s3_setup
    start_proxy 0.3 500,503,reset,cut,stall --stall 4 --seed 7
    store_conf "$PROXY_URL" "retries = 10" "timeout = 2" "part_size = 5M" "download_chunk = 1M"
    make_data "$T/app" 12
    local before
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create faulty --files "$T/app"
    rm -rf "$T/app/sub"
    head -c 1000 /dev/urandom >"$T/app/big.bin"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --store "$STORE" faulty --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs from the snapshot"
    for f in 500 503 reset cut stall; do
        grep -q " $f\$" "$T/proxy.log" || fail "the proxy never injected $f"
    done
    no_uploads_left
    store_conf "$RGW_ENDPOINT"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" verify faulty
}

# SIGINT in the middle of a multipart upload: exit 130, the upload aborted, no snapshot.
test_interrupt_aborts_upload() {
    s3_setup
    start_proxy 0 500 --delay 0.5
    store_conf "$PROXY_URL" "part_size = 5M" "upload_concurrency = 2"
    make_data "$T/app" 40
    "$SNAP" -c "$T/snap.conf" --store "$STORE" create stopped --files "$T/app" >"$T/out" 2>"$T/err" &
    local pid=$! rc=0
    for _ in $(seq 300); do grep -q "partNumber=2" "$T/proxy.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "partNumber=2" "$T/proxy.log" || fail "no part upload seen"
    kill -INT $pid
    wait $pid || rc=$?
    [ $rc = 130 ] || { cat "$T/err" >&2; fail "exit code $rc, expected 130"; }
    grep -q "^DELETE .*uploadId=" "$T/proxy.log" || fail "the upload was not aborted"
    no_uploads_left
    [ -z "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/catalog/")" ] || fail "a manifest was committed"
}

# Half the downloads break mid-body: each resumes at the byte it reached, not from the start.
test_download_resumes_where_it_broke() {
    s3_setup "download_chunk = 1M"
    make_data "$T/app" 6
    local before
    before=$(tree_sum "$T/app")
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create resume --files "$T/app"
    start_proxy 0.5 cut --methods GET --seed 3
    store_conf "$PROXY_URL" "download_chunk = 1M" "retries = 10"
    rm -rf "$T/app"/*
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --store "$STORE" resume --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs from the snapshot"
    grep -q ' cut$' "$T/proxy.log" || fail "no download was cut"
    # A resumed range starts inside a chunk: not at a multiple of 1 MiB.
    grep -o 'range=bytes=[0-9]*-' "$T/proxy.log" | tr -dc '0-9\n' |
        awk '$1 % 1048576 != 0 { found = 1 } END { exit !found }' || fail "no range resumed mid-chunk"
}

# Every request fails: a clear error, the server's code, and no snapshot committed.
test_every_request_fails() {
    s3_setup
    start_proxy 1.0 503
    store_conf "$PROXY_URL" "retries = 2"
    mkdir "$T/app" && echo x >"$T/app/x"
    expect_rc 1 "$SNAP" -c "$T/snap.conf" --store "$STORE" create doomed --files "$T/app"
    expect_err "503 SlowDown"
    expect_err "gave up after 3 attempts"
    store_conf "$RGW_ENDPOINT"
    [ -z "$(awsc s3 ls --recursive "s3://$RGW_BUCKET/$PREFIX/")" ] || fail "objects were written"
    expect_rc 3 "$SNAP" -c "$T/snap.conf" --store "$STORE" show doomed
}

# A listing that always says "more": stopped on a token seen before, or past the page cap,
# with a clear error instead of paging forever.
test_endless_listing_stops() {
    s3_setup "list_max_keys = 2"
    mkdir "$T/app" && echo x >"$T/app/x"
    for n in s1 s2 s3; do expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" create $n --files "$T/app"; done
    start_proxy 0 500 --listing same
    store_conf "$PROXY_URL" "list_max_keys = 2"
    expect_rc 1 timeout 30 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "the server sent the same continuation token twice"
    kill "$PROXY_PID"
    rm -f "$T/proxy.port" "$T/proxy.log"
    start_proxy 0 500 --listing fresh
    store_conf "$PROXY_URL" "list_max_keys = 2" "list_max_pages = 20"
    expect_rc 1 timeout 30 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    expect_err "the listing goes on past 20 pages"
    [ "$(grep -c 'list-type=2' "$T/proxy.log")" -le 21 ] || fail "more pages were asked for than allowed"
    # the listing itself, paged two keys at a time, is whole without the proxy
    store_conf "$RGW_ENDPOINT" "list_max_keys = 2"
    expect_rc 0 "$SNAP" -c "$T/snap.conf" --store "$STORE" list
    for n in s1 s2 s3; do expect_out "$n"; done
}

run_tests "$@"
