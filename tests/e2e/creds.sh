#!/usr/bin/env bash
# The AWS credential chain of the S3 store (storage/s3_chain.c) against a real Ceph RGW:
# STS AssumeRole for real (RGW implements it: tests/services/rgw.sh makes the role), and
# AssumeRoleWithWebIdentity for real too, with an OIDC provider served over loopback (its
# discovery document and JWKS; the tokens are JWTs signed here with openssl). Container
# credentials and IMDSv2, whose real endpoints are at link-local addresses, through their
# documented override variables at a loopback server (tests/services/aws-meta.py) that
# answers as those protocols do with real RGW STS session keys; it also stands in for AWS
# STS to check AWS's own ExpiredTokenException answer. credential_process with keys RGW
# really stops accepting when they expire, across a transfer that outlives several of them.
# needs: rgw
# slow
. "$(dirname "$0")/lib.sh"

META=$T_ROOT/tests/services/aws-meta.py
PROXY=$T_ROOT/tests/services/s3proxy.py

# A clean AWS environment: no keys, no files, no instance metadata unless a test says so.
c_setup() {
    PREFIX=$(basename "$T")
    STORE=s3://$RGW_BUCKET/$PREFIX
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION \
        AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_STS AWS_WEB_IDENTITY_TOKEN_FILE \
        AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_CONTAINER_CREDENTIALS_FULL_URI \
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN \
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE AWS_EC2_METADATA_SERVICE_ENDPOINT
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    export AWS_SHARED_CREDENTIALS_FILE=$T/credentials AWS_CONFIG_FILE=$T/config
    export SNAP_STATE_DIR=$T/state
    : >"$T/credentials"
    : >"$T/config"
    { echo "[store]"; echo "endpoint = ${EP:-$RGW_STS_ENDPOINT}"; printf '%s\n' "$@"; } >"$T/snap.conf"
    mkdir -p "$T/app/sub"
    head -c 300000 /dev/urandom >"$T/app/data.bin"
    echo "port = 5432" >"$T/app/sub/app.conf"
}

snapc() { "$SNAP" -c "$T/snap.conf" --store "$STORE" "$@"; }

# Real session keys from RGW's STS, as the loopback endpoints hand out: $T/session.json.
session_keys() {
    AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY \
        AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_CONFIG_FILE=/dev/null \
        aws --endpoint-url "$RGW_STS_ENDPOINT" sts assume-role --role-arn "$RGW_ROLE_ARN" \
        --role-session-name snap-tests --duration-seconds 3600 \
        --query Credentials --output json >"$T/session.json"
    grep -q SessionToken "$T/session.json" || fail "no session keys from RGW's STS"
}

# start_meta [ARGS]: the loopback AWS endpoints; sets META_URL; stopped when the test ends.
start_meta() {
    python3 "$META" --port-file "$T/meta.port" --creds "$T/session.json" --log "$T/meta.log" "$@" &
    META_PID=$!
    trap 'kill $META_PID 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$T/meta.port" ] && break; sleep 0.1; done
    [ -s "$T/meta.port" ] || fail "the loopback AWS endpoints did not start"
    META_URL=http://127.0.0.1:$(cat "$T/meta.port")
}

# A snapshot through the chain, then the same bytes back: the keys worked for writes and reads.
roundtrip() {
    local before
    before=$(tree_sum "$T/app")
    expect_rc 0 snapc -v create one --files "$T/app"
    expect_err "credentials from $1"
    expect_rc 0 snapc verify one
    expect_out "all intact"
    rm -rf "$T/app/sub"
    expect_rc 0 "$REVERT" -c "$T/snap.conf" --store "$STORE" one --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs"
}

# The secrets handed out never reach the output, -v included.
no_secret_shown() {
    local f
    for f in "$T/out" "$T/err"; do
        ! grep -qF "$RGW_SECRET_KEY" "$f" || fail "$f shows the secret key"
        if [ -s "$T/session.json" ]; then
            ! grep -qF "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["SecretAccessKey"])' "$T/session.json")" "$f" ||
                fail "$f shows the session secret"
        fi
    done
}

# ---------------------------------------------------------------- AssumeRole (RGW's STS)

test_assume_role_source_profile() {
    c_setup "sts_endpoint = $RGW_STS_ENDPOINT"
    printf '[base]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" >"$T/credentials"
    printf '[profile app]\nrole_arn = %s\nsource_profile = base\nrole_session_name = snap-e2e\n' \
        "$RGW_ROLE_ARN" >"$T/config"
    export AWS_PROFILE=app
    roundtrip "role_arn of profile app (AssumeRole, source: keys of profile base)"
    no_secret_shown
    # The objects were written by the assumed role's session: RGW shows the role's owner
    # all the same, so what proves STS was used is that the base profile alone is not the
    # source: with the role removed from the profile, the source named changes.
    printf '[profile app]\nsource_profile = base\n' >"$T/config"
    expect_rc 6 snapc list
    expect_err "no AWS credentials found (profile app"
}

# AssumeRole signed with session keys (x-amz-security-token signed too): the source
# profile's credential_process hands out keys RGW's STS gave, and the role is assumed again.
test_assume_role_with_session_keys() {
    c_setup "sts_endpoint = $RGW_STS_ENDPOINT"
    session_keys
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["Version"]=1; print(json.dumps(c))' \
        "$T/session.json" >"$T/proc.json"
    printf '[profile base]\ncredential_process = cat %s\n[profile app]\nrole_arn = %s\nsource_profile = base\n' \
        "$T/proc.json" "$RGW_ROLE_ARN" >"$T/config"
    export AWS_PROFILE=app
    roundtrip "role_arn of profile app (AssumeRole, source: credential_process of profile base)"
    no_secret_shown
}

test_assume_role_refused() {
    c_setup "sts_endpoint = $RGW_STS_ENDPOINT"
    printf '[base]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" >"$T/credentials"
    printf '[profile app]\nrole_arn = arn:aws:iam:::role/no-such-role\nsource_profile = base\n' >"$T/config"
    export AWS_PROFILE=app
    expect_rc 6 snapc list
    expect_err "sts AssumeRole of role arn:aws:iam:::role/no-such-role at $RGW_STS_ENDPOINT refused: 404 NoSuchEntity"
    expect_err "hint: check that the role's trust policy"
    expect_rc 6 snapc list --json
    expect_out '"code": "credentials"'
    # Source keys the STS refuses: 403, the same exit code and JSON code.
    printf '[base]\naws_access_key_id = %s\naws_secret_access_key = wrong\n' "$RGW_ACCESS_KEY" >"$T/credentials"
    printf '[profile app]\nrole_arn = %s\nsource_profile = base\n' "$RGW_ROLE_ARN" >"$T/config"
    expect_rc 6 snapc list --json
    expect_out '"code": "credentials"'
    expect_out "refused: 403"
}

test_assume_role_config_errors() {
    c_setup
    printf '[profile app]\nrole_arn = %s\n' "$RGW_ROLE_ARN" >"$T/config"
    export AWS_PROFILE=app
    expect_rc 2 snapc list
    expect_err "profile app has role_arn with neither source_profile nor credential_source"
    printf '[profile app]\nrole_arn = %s\ncredential_source = Nowhere\n' "$RGW_ROLE_ARN" >"$T/config"
    expect_rc 2 snapc list
    expect_err "credential_source \"Nowhere\" is unknown"
    printf '[profile app]\nrole_arn = r\nsource_profile = app2\n[profile app2]\nrole_arn = r\nsource_profile = app\n' >"$T/config"
    expect_rc 2 snapc list
    expect_err "longer than 4 or loops"
    printf '[profile app]\nrole_arn = r\nsource_profile = app2\nmfa_serial = x\n' >"$T/config"
    expect_rc 2 snapc list
    expect_err "mfa_serial is not supported"
}

# ---------------------------------------------------------------- web identity

# An OIDC provider on loopback that RGW trusts, and a role its tokens may assume:
# sets OIDC_PORT and WEB_ROLE_ARN; jwt SECONDS prints a token expiring that much later.
oidc_setup() {
    mkdir -p "$T/oidc/.well-known"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=snap-oidc \
        -keyout "$T/oidc.key" -out "$T/oidc.crt" 2>/dev/null
    OIDC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '{"issuer":"http://127.0.0.1:%s","jwks_uri":"http://127.0.0.1:%s/certs"}' "$OIDC_PORT" "$OIDC_PORT" \
        >"$T/oidc/.well-known/openid-configuration"
    printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"k1","x5c":["%s"]}]}' \
        "$(openssl x509 -in "$T/oidc.crt" -outform DER | base64 -w0)" >"$T/oidc/certs"
    (cd "$T/oidc" && exec python3 -m http.server "$OIDC_PORT" --bind 127.0.0.1 >"$T/oidc.log" 2>&1) &
    OIDC_PID=$!
    trap 'kill $OIDC_PID 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$OIDC_PORT/certs" && break; sleep 0.1; done
    AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY \
        AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_CONFIG_FILE=/dev/null \
        aws --endpoint-url "$RGW_STS_ENDPOINT" iam create-open-id-connect-provider \
        --url "http://127.0.0.1:$OIDC_PORT" --client-id-list snap-tests \
        --thumbprint-list "$(openssl x509 -in "$T/oidc.crt" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')" \
        >/dev/null || fail "RGW did not take the OIDC provider"
    local role=snap-web-$OIDC_PORT
    radosgw-admin -c "$RGW_CONF" role create --role-name "$role" --path / --assume-role-policy-doc \
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Federated\":[\"arn:aws:iam:::oidc-provider/127.0.0.1:$OIDC_PORT\"]},\"Action\":[\"sts:AssumeRoleWithWebIdentity\"]}]}" \
        >/dev/null
    radosgw-admin -c "$RGW_CONF" role-policy put --role-name "$role" --policy-name s3-all --policy-doc \
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}' >/dev/null
    WEB_ROLE_ARN=arn:aws:iam:::role/$role
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

jwt() {
    local h p now
    now=$(date +%s)
    h=$(printf '{"alg":"RS256","typ":"JWT","kid":"k1"}' | b64url)
    p=$(printf '{"iss":"http://127.0.0.1:%s","aud":"snap-tests","sub":"system:serviceaccount:myapp:snap","iat":%s,"exp":%s}' \
        "$OIDC_PORT" "$now" $((now + $1)) | b64url)
    printf '%s.%s.%s\n' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$T/oidc.key" | b64url)"
}

# IRSA as EKS sets it up, with RGW checking the token against the provider's keys.
test_web_identity_rgw_oidc() {
    c_setup "sts_endpoint = $RGW_STS_ENDPOINT"
    oidc_setup
    jwt 600 >"$T/token"
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ROLE_ARN=$WEB_ROLE_ARN AWS_ROLE_SESSION_NAME=snap-e2e
    roundtrip "web identity (AssumeRoleWithWebIdentity)"
    no_secret_shown
    grep -q "GET /certs" "$T/oidc.log" || fail "RGW did not fetch the provider's keys"
    # An expired token: RGW refuses it (403 AccessDenied); the hint reads the token's exp.
    jwt -120 >"$T/token"
    expect_rc 6 snapc list --json
    expect_out '"code": "credentials"'
    expect_out "web identity token $T/token: sts AssumeRoleWithWebIdentity of role $WEB_ROLE_ARN"
    expect_out "refused: 403"
    expect_out "the token expired at"
    ! grep -qF "$(cut -d. -f3 "$T/token")" "$T/out" "$T/err" || fail "the token was shown"
    # A token signed by another key: refused the same way, without the expiry hint.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=x -keyout "$T/oidc.key" -out /dev/null 2>/dev/null
    jwt 600 >"$T/token"
    expect_rc 6 snapc list
    expect_err "refused: 403"
    expect_no_err "the token expired"
}

# AWS STS's own answers (ExpiredTokenException, InvalidIdentityToken) from a stand-in.
test_web_identity() {
    c_setup
    session_keys
    echo "eyJhbGciOiJSUzI1NiJ9.test-token.signature" >"$T/token"
    start_meta --web-token-file "$T/token"
    echo "sts_endpoint = $META_URL/sts" >>"$T/snap.conf"
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ROLE_ARN=$RGW_ROLE_ARN
    roundtrip "web identity (AssumeRoleWithWebIdentity)"
    no_secret_shown
    grep -q "^POST /sts" "$T/meta.log" || fail "the STS stand-in was not asked"
    ! grep -qF "test-token" "$T/err" || fail "the token was shown"
}

test_web_identity_expired_token() {
    c_setup
    session_keys
    echo expired >"$T/token"
    start_meta --web-token-file "$T/token"
    echo "sts_endpoint = $META_URL/sts" >>"$T/snap.conf"
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ROLE_ARN=$RGW_ROLE_ARN
    expect_rc 6 snapc list
    expect_err "web identity token $T/token: sts AssumeRoleWithWebIdentity of role $RGW_ROLE_ARN"
    expect_err "400 ExpiredTokenException"
    expect_err "hint: the web identity token has expired"
    expect_rc 6 snapc list --json
    expect_out '"code": "credentials"'
    # A token file that is missing, and a role ARN that is not set.
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/missing
    expect_rc 6 snapc list
    expect_err "cannot read the web identity token file $T/missing"
    unset AWS_ROLE_ARN
    expect_rc 2 snapc list
    expect_err "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not"
}

# The STS endpoint refusing every call (403), and one that does not listen.
test_sts_refusing() {
    c_setup
    session_keys
    echo tok >"$T/token"
    start_meta --mode refuse
    echo "sts_endpoint = $META_URL/sts" >>"$T/snap.conf"
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ROLE_ARN=$RGW_ROLE_ARN
    expect_rc 6 snapc list
    expect_err "refused: 403 AccessDenied: not allowed"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    c_setup "sts_endpoint = http://127.0.0.1:$port"
    export AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ROLE_ARN=$RGW_ROLE_ARN
    expect_rc 6 snapc list
    expect_err "sts AssumeRoleWithWebIdentity of role $RGW_ROLE_ARN at http://127.0.0.1:$port"
    expect_err "hint: check [store] sts_endpoint"
}

# ---------------------------------------------------------------- container credentials

test_container_credentials() {
    c_setup
    session_keys
    start_meta --container-token "Bearer pod-identity-token"
    echo "Bearer pod-identity-token" >"$T/ctoken"
    export AWS_CONTAINER_CREDENTIALS_FULL_URI=$META_URL/container-creds
    export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$T/ctoken
    roundtrip "container credentials"
    no_secret_shown
    # The token from the variable instead of the file; then a wrong one: 401.
    unset AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    export AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer pod-identity-token"
    expect_rc 0 snapc list
    export AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer wrong"
    expect_rc 6 snapc list --json
    expect_out "container credentials at $META_URL/container-creds: HTTP status refused (401/403)"
    expect_out '"code": "credentials"'
    # http to anything but loopback or the container agents is refused before any request.
    export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://192.0.2.1/creds
    expect_rc 2 snapc list
    expect_err "is neither https nor http to loopback or a container agent"
}

# ---------------------------------------------------------------- IMDSv2

test_imds() {
    c_setup
    session_keys
    start_meta
    unset AWS_EC2_METADATA_DISABLED
    export AWS_EC2_METADATA_SERVICE_ENDPOINT=$META_URL
    roundtrip "instance metadata (IMDSv2)"
    no_secret_shown
    grep -q "^PUT /latest/api/token" "$T/meta.log" || fail "no IMDSv2 session token asked for"
    grep -q "^GET /latest/meta-data/iam/security-credentials/snap-test-instance-role" "$T/meta.log" ||
        fail "the role's credentials were not asked for"
}

# IMDS accepting connections and never answering: the chain gives up after the timeout.
test_imds_not_answering() {
    c_setup
    python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$T/silent.port" &
    SILENT_PID=$!
    local start
    trap 'kill $SILENT_PID 2>/dev/null || true' EXIT
    for _ in $(seq 50); do [ -s "$T/silent.port" ] && break; sleep 0.1; done
    unset AWS_EC2_METADATA_DISABLED
    export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$(cat "$T/silent.port")
    start=$(date +%s)
    expect_rc 6 snapc list --json
    [ $(($(date +%s) - start)) -lt 10 ] || fail "giving up on IMDS took too long"
    expect_out '"code": "credentials"'
    expect_out "no AWS credentials found (profile default; tried the environment"
    expect_out "instance metadata at $AWS_EC2_METADATA_SERVICE_ENDPOINT"
    expect_out "AWS_EC2_METADATA_DISABLED=true skips instance metadata"
    # Turned off, nothing is asked and the message says so.
    export AWS_EC2_METADATA_DISABLED=true
    expect_rc 6 snapc list
    expect_err "instance metadata is off: AWS_EC2_METADATA_DISABLED"
}

# ---------------------------------------------------------------- credential_process

# A credential_process whose keys RGW really stops accepting: each call makes a fresh key
# for the test user and has it removed LIFE seconds later, when its Expiration says.
write_process() {
    cat >"$T/cred-process" <<EOF
#!/bin/sh
set -e
n=\$(date +%s%N)
ak=SNAPTMP\$n
sk=secret\$n
radosgw-admin -c "$RGW_CONF" key create --uid snap-test --key-type s3 --access-key \$ak --secret-key \$sk >/dev/null
exp=\$(date -u -d "+$1 seconds" +%Y-%m-%dT%H:%M:%SZ)
(sleep $1; radosgw-admin -c "$RGW_CONF" key rm --uid snap-test --key-type s3 --access-key \$ak >/dev/null 2>&1) </dev/null >/dev/null 2>&1 &
echo "\$ak \$(date +%s)" >>"$T/calls"
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "Expiration": "%s"}\n' \$ak \$sk \$exp
EOF
    chmod +x "$T/cred-process"
}

# An upload and a download that each outlive several keys succeed without a restart: the
# process is asked again before each expiry.
test_credential_process_renewal() {
    local life=6 before calls first
    c_setup
    write_process $life
    printf '[default]\ncredential_process = %s\n' "$T/cred-process" >"$T/config"
    # A proxy that delays every request, so that the transfers last several key lifetimes.
    python3 "$PROXY" --upstream "${RGW_ENDPOINT#http://}" --port-file "$T/proxy.port" \
        --rate 0 --faults 500 --delay 0.6 --log "$T/proxy.log" &
    PROXY_PID=$!
    trap 'kill $PROXY_PID 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
    printf '[store]\nendpoint = http://127.0.0.1:%s\npart_size = 5M\nupload_concurrency = 1\ndownload_chunk = 1M\ndownload_concurrency = 1\n' \
        "$(cat "$T/proxy.port")" >"$T/snap.conf"
    head -c $((24 * 1024 * 1024)) /dev/urandom >"$T/app/data.bin"
    before=$(tree_sum "$T/app")

    expect_rc 0 snapc -v create big --files "$T/app" --zstd-level 1
    expect_err "credentials from credential_process of profile default"
    expect_err "renewed credentials from credential_process"
    calls=$(wc -l <"$T/calls")
    [ "$calls" -ge 3 ] || fail "credential_process ran $calls times during the upload, expected 3 or more"
    no_secret_shown

    rm -rf "$T/app/sub" "$T/app/data.bin"
    expect_rc 0 "$REVERT" -v -c "$T/snap.conf" --store "$STORE" big --yes --no-safety-snapshot
    [ "$(tree_sum "$T/app")" = "$before" ] || fail "restored tree differs"
    [ "$(wc -l <"$T/calls")" -ge $((calls + 2)) ] || fail "no renewal during the download"

    # The first key really expired: RGW refuses it now.
    first=$(head -n 1 "$T/calls" | cut -d' ' -f1)
    expect_rc 6 env AWS_ACCESS_KEY_ID="$first" AWS_SECRET_ACCESS_KEY="secret${first#SNAPTMP}" \
        "$SNAP" -c "$T/snap.conf" --store "$STORE" list
}

test_credential_process_bad() {
    c_setup
    printf '#!/bin/sh\necho "sso session expired" >&2\nexit 3\n' >"$T/fails"
    printf '#!/bin/sh\necho "<html>login</html>"\n' >"$T/garbage"
    printf '#!/bin/sh\necho "{\\"Version\\": 1, \\"AccessKeyId\\": \\"AK\\"}"\n' >"$T/partial"
    chmod +x "$T/fails" "$T/garbage" "$T/partial"
    printf '[default]\ncredential_process = %s\n' "$T/fails" >"$T/config"
    expect_rc 6 snapc list --json
    expect_out "credential_process failed (exit status 3)"
    expect_out '"code": "credentials"'
    expect_err "sso session expired"
    printf '[default]\ncredential_process = %s\n' "$T/garbage" >"$T/config"
    expect_rc 6 snapc list
    expect_err "credential_process printed no credentials document"
    expect_no_err "login"
    printf '[default]\ncredential_process = %s\n' "$T/partial" >"$T/config"
    expect_rc 6 snapc list
    expect_err "credential_process printed no valid credentials (SecretAccessKey)"
}

# Keys in the shared credentials file win over the profile's credential_process (AWS CLI order).
test_chain_order() {
    c_setup
    printf '#!/bin/sh\necho called >>%s/called; exit 1\n' "$T" >"$T/proc"
    chmod +x "$T/proc"
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" >"$T/credentials"
    printf '[default]\ncredential_process = %s\n' "$T/proc" >"$T/config"
    expect_rc 0 snapc -v create one --files "$T/app"
    expect_err "credentials from shared credentials file"
    [ ! -e "$T/called" ] || fail "credential_process ran although the credentials file had keys"
    # The environment comes first of all.
    export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
    expect_rc 0 snapc -v list
    expect_err "credentials from environment"
}

run_tests "$@"
