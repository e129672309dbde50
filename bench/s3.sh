#!/usr/bin/env bash
# bench/s3.sh: snap and revert against an S3 store beside `aws s3 cp` of the same bytes,
# both ways, against the same Ceph RGW in the same run. Prints MiB/s, ratios and snap's
# peak memory. Not a test: it asserts nothing and is run by hand or by `make bench`.
#
#   bench/s3.sh [SIZE_MIB]        (default 1024)
#
# Uses the RGW of $RGW_ENDPOINT when set (tests/services/rgw.sh's environment), else starts
# one of its own and stops it at the end.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
MIB=${1:-1024}
SNAP_BUILD=${SNAP_BUILD:-build}
SNAP=$ROOT/$SNAP_BUILD/snap
REVERT=$ROOT/$SNAP_BUILD/revert
W=$(mktemp -d /tmp/snap-bench-s3.XXXXXX)
own_rgw=0
cleanup() {
    [ $own_rgw = 1 ] && T_WORK=$W tests/services/rgw.sh stop >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT

if [ -z "${RGW_ENDPOINT:-}" ]; then
    echo "starting RGW ..."
    RGW_MEMSTORE_BYTES=$(((MIB * 3 + 1024) * 1024 * 1024)) T_WORK=$W tests/services/rgw.sh start >"$W/rgw.log" 2>&1 ||
        { tail -n 20 "$W/rgw.log"; exit 1; }
    own_rgw=1
    . "$W/service-rgw.env"
fi
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
aws_() { aws --endpoint-url "$RGW_ENDPOINT" "$@"; }
printf '[store]\nendpoint = %s\n' "$RGW_ENDPOINT" >"$W/snap.conf"
STORE=s3://$RGW_BUCKET/bench-$$

export SNAP_STATE_DIR=$W/state
mkdir -p "$W/data"
echo "making $MIB MiB of incompressible data ..."
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$W/data/blob.bin"
sync

secs() { # secs CMD...: runs CMD under /usr/bin/time, prints seconds; peak RSS to $W/rss
    /usr/bin/time -f '%e %M' -o "$W/time" "$@" >/dev/null 2>"$W/cmd.err" ||
        { cat "$W/cmd.err" >&2; exit 1; }
    awk '{print $2}' "$W/time" >"$W/rss"
    awk '{print $1}' "$W/time"
}
rate() { awk -v m="$MIB" -v s="$1" 'BEGIN { printf "%.1f", m / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

echo "upload ..."
t_snap_up=$(secs "$SNAP" -c "$W/snap.conf" --store "$STORE" -q create bench --files "$W/data")
rss_up=$(($(cat "$W/rss") / 1024))
t_aws_up=$(secs aws --endpoint-url "$RGW_ENDPOINT" s3 cp --quiet "$W/data/blob.bin" "s3://$RGW_BUCKET/bench-$$-aws/blob.bin")

echo "download ..."
mv "$W/data/blob.bin" "$W/blob.orig"
t_snap_down=$(secs "$REVERT" -c "$W/snap.conf" --store "$STORE" -q bench --yes --no-safety-snapshot)
rss_down=$(($(cat "$W/rss") / 1024))
cmp -s "$W/data/blob.bin" "$W/blob.orig" || { echo "restored data differs" >&2; exit 1; }
rm -f "$W/blob.orig"
t_aws_down=$(secs aws --endpoint-url "$RGW_ENDPOINT" s3 cp --quiet "s3://$RGW_BUCKET/bench-$$-aws/blob.bin" "$W/aws.bin")

echo
printf '%-28s %8s %10s %12s\n' "$MIB MiB, RGW on loopback" seconds MiB/s "peak RSS"
printf '%-28s %8s %10s %9s MiB\n' "snap create (upload)" "$t_snap_up" "$(rate "$t_snap_up")" "$rss_up"
printf '%-28s %8s %10s\n' "aws s3 cp (upload)" "$t_aws_up" "$(rate "$t_aws_up")"
printf '%-28s %8s %10s %9s MiB\n' "revert (download)" "$t_snap_down" "$(rate "$t_snap_down")" "$rss_down"
printf '%-28s %8s %10s\n' "aws s3 cp (download)" "$t_aws_down" "$(rate "$t_aws_down")"
echo "snap/aws throughput: upload $(ratio "$t_snap_up" "$t_aws_up")x, download $(ratio "$t_snap_down" "$t_aws_down")x"
echo "memory aim: part_size x upload_concurrency + 64 MiB = $((16 * 4 + 64)) MiB at the defaults"

"$SNAP" -c "$W/snap.conf" --store "$STORE" -q delete bench --yes >/dev/null 2>&1 || true
aws_ s3 rm --quiet --recursive "s3://$RGW_BUCKET/bench-$$-aws/" || true
