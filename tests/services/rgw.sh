#!/usr/bin/env bash
# tests/services/rgw.sh start|stop: a single-node Ceph cluster (one monitor, one memstore
# OSD) with a RADOS Gateway on loopback, for the S3 tests. Objects live in RAM.
#
# start writes "$T_WORK/service-rgw.env" with what the tests need:
#   RGW_ENDPOINT  http://127.0.0.1:PORT
#   RGW_BUCKET    a bucket that exists and is empty
#   RGW_ACCESS_KEY / RGW_SECRET_KEY   the test user's keys
#   RGW_TLS_ENDPOINT  https://localhost:PORT, with a self-signed certificate
#   RGW_CA_FILE       that certificate
#   RGW_OTHER_REGION_BUCKET  a bucket RGW says is elsewhere (301, as AWS for another region)
#   RGW_STS_ENDPOINT  a second gateway of the same zone with STS on (S3 and STS at one URL;
#                     session keys work only there)
#   RGW_ROLE_ARN      a role the test user may assume with STS AssumeRole at RGW_STS_ENDPOINT;
#                     its session keys may do anything on S3
# stop ends the daemons it started (by the pids it recorded) and removes the data.
#
# Facts learned starting one (Ceph 16, Debian 12): with `auth ... required = none` every
# `ms ... mode` must be `crc`, else radosgw hangs at start; run as root, the daemons need
# `--setuser root --setgroup root`; pools of size 1 need `mon allow pool size one`.
set -eu
T_WORK=${T_WORK:-/tmp/snap-rgw}
D=$T_WORK/rgw
CONF=$D/ceph.conf
ACCESS=SNAPTESTACCESSKEY0001
SECRET=snap-test-secret-key-do-not-use-in-production
BUCKET=snap-test
ROLE=snap-test-role
MEM=${RGW_MEMSTORE_BYTES:-3221225472}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ceph_() { ceph -c "$CONF" --connect-timeout 10 "$@"; }

wait_for() { # wait_for SECONDS CMD...: retries CMD every half second
    local n=$(($1 * 2))
    shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        sleep 0.5
    done
}

start() {
    for b in ceph-mon ceph-osd radosgw radosgw-admin ceph; do
        command -v $b >/dev/null || {
            echo "rgw: $b is missing; install ceph-mon ceph-osd radosgw ceph-common" >&2
            exit 1
        }
    done
    stop_daemons 2>/dev/null || true
    rm -rf "$D"
    mkdir -p "$D/mon" "$D/osd/ceph-0" "$D/run" "$D/log" "$D/rgw" "$D/rgw-sts"
    local fsid mon_port rgw_port tls_port sts_port
    fsid=$(cat /proc/sys/kernel/random/uuid)
    mon_port=$(free_port)
    rgw_port=$(free_port)
    tls_port=$(free_port)
    sts_port=$(free_port)
    # A self-signed certificate for the HTTPS endpoint, so tests can check verification.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$D/tls.key" -out "$D/tls.crt" 2>/dev/null
    cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = $MEM
osd op num shards = 1
osd op num threads per shard = 2
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
keyring = $D/keyring
debug ms = 0

[mon.a]
public addr = v2:127.0.0.1:$mon_port

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port ssl_endpoint=127.0.0.1:$tls_port ssl_certificate=$D/tls.crt ssl_private_key=$D/tls.key
rgw data = $D/rgw
rgw dns name = localhost
rgw thread pool size = 64

# A second gateway on the same zone with STS on: it answers an unknown key with AccessDenied
# where the first says InvalidAccessKeyId, so the tests of those answers keep their own.
[client.rgw.sts]
rgw frontends = beast endpoint=127.0.0.1:$sts_port
rgw data = $D/rgw-sts
rgw dns name = localhost
rgw thread pool size = 32
rgw sts key = snapteststskey01
rgw s3 auth use sts = true
EOF
    : >"$D/keyring"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$D/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --setuser root --setgroup root
    ceph-mon -c "$CONF" -i a --setuser root --setgroup root
    wait_for 30 ceph_ mon stat || { echo "rgw: the monitor did not start" >&2; exit 1; }

    local osd_uuid id
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph_ osd new "$osd_uuid")
    ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$osd_uuid" --setuser root --setgroup root
    ceph-osd -c "$CONF" -i "$id" --setuser root --setgroup root
    wait_for 60 sh -c "ceph -c '$CONF' osd stat | grep -q '1 up'" ||
        { echo "rgw: the OSD did not come up" >&2; exit 1; }

    radosgw -c "$CONF" -n client.rgw.a --setuser root --setgroup root
    wait_for 90 curl -sf -o /dev/null "http://127.0.0.1:$rgw_port/" ||
        { echo "rgw: radosgw did not answer on port $rgw_port" >&2; exit 1; }
    radosgw-admin -c "$CONF" user create --uid snap-test --display-name "snap tests" \
        --access-key "$ACCESS" --secret-key "$SECRET" >/dev/null
    AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 \
        aws --endpoint-url "http://127.0.0.1:$rgw_port" s3api create-bucket --bucket "$BUCKET" >/dev/null

    # A bucket "in another region": RGW answers 301 for a bucket whose zonegroup is not its
    # own, as AWS does for a bucket of another region. Moving the bucket's metadata to a
    # zonegroup that does not exist here is enough for that.
    AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 \
        aws --endpoint-url "http://127.0.0.1:$rgw_port" s3api create-bucket --bucket "$BUCKET-elsewhere" >/dev/null
    local bid
    bid=$(radosgw-admin -c "$CONF" metadata get "bucket:$BUCKET-elsewhere" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["bucket"]["bucket_id"])')
    radosgw-admin -c "$CONF" metadata get "bucket.instance:$BUCKET-elsewhere:$bid" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); d["data"]["bucket_info"]["zonegroup"]="elsewhere"; json.dump(d,sys.stdout)' \
            >"$D/elsewhere.json"
    radosgw-admin -c "$CONF" metadata put "bucket.instance:$BUCKET-elsewhere:$bid" <"$D/elsewhere.json"

    # The test user may register OIDC providers (for AssumeRoleWithWebIdentity).
    radosgw-admin -c "$CONF" caps add --uid snap-test --caps "oidc-provider=*" >/dev/null
    # STS: the second gateway, and a role the test user may assume there, allowed all of S3.
    radosgw -c "$CONF" -n client.rgw.sts --setuser root --setgroup root
    wait_for 90 curl -sf -o /dev/null "http://127.0.0.1:$sts_port/" ||
        { echo "rgw: the STS radosgw did not answer on port $sts_port" >&2; exit 1; }
    radosgw-admin -c "$CONF" role create --role-name "$ROLE" --path / \
        --assume-role-policy-doc '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/snap-test"]},"Action":["sts:AssumeRole"]}]}' >/dev/null
    radosgw-admin -c "$CONF" role-policy put --role-name "$ROLE" --policy-name s3-all \
        --policy-doc '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}' >/dev/null

    cat >"$T_WORK/service-rgw.env" <<EOF
export RGW_ENDPOINT=http://127.0.0.1:$rgw_port
export RGW_BUCKET=$BUCKET
export RGW_ACCESS_KEY=$ACCESS
export RGW_SECRET_KEY=$SECRET
export RGW_CONF=$CONF
export RGW_OTHER_REGION_BUCKET=$BUCKET-elsewhere
export RGW_TLS_ENDPOINT=https://localhost:$tls_port
export RGW_CA_FILE=$D/tls.crt
export RGW_ROLE_ARN=arn:aws:iam:::role/$ROLE
export RGW_STS_ENDPOINT=http://127.0.0.1:$sts_port
EOF
    echo "rgw: listening on http://127.0.0.1:$rgw_port, bucket $BUCKET"
}

stop_daemons() {
    local f pid
    for f in "$D"/run/client.rgw.sts.pid "$D"/run/client.rgw.a.pid "$D"/run/osd.*.pid "$D"/run/mon.a.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
    done
}

case ${1:-} in
start) start ;;
stop) stop_daemons; rm -rf "$D" ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
