#!/usr/bin/env bash
# bench/images.sh: resolving image references, one by one against in parallel.
#
# 200 references (distinct tags, each its own manifest) across the three test registries
# (no auth, basic auth, token auth), named by Deployments in 10 manifest files. snap
# resolves them with registry_jobs = 1, then with the default (8); each run prints the
# time of the resolution alone (from snap -vv) and of the whole snap create. Twice: on
# bare loopback, where the registries' CPU is all there is to wait for, then through
# bench/latency-proxy.py adding DELAY ms each way, as a registry across a network.
#   bench/images.sh [REFS] [DELAY_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
refs=${1:-200}
delay=${2:-10}
SNAP=$PWD/${SNAP_BUILD:-build}/snap
[ -x "$SNAP" ] || { echo "bench/images: build first (make)" >&2; exit 1; }
export T_WORK
T_WORK=$(mktemp -d /tmp/snap-bench-images.XXXXXX)
proxy=
trap '[ -z "$proxy" ] || kill "$proxy"; "$root"/tests/services/registry.sh stop >/dev/null 2>&1 || true; rm -rf "$T_WORK"' EXIT
tests/services/registry.sh start >/dev/null
# shellcheck disable=SC1091
. "$T_WORK/service-registry.env"
cd "$T_WORK"

# Push: 3 registries x 4 repositories, tags spread evenly; one blob upload per repository.
kinds=(plain basic token)
hosts=("$REG_PLAIN" "$REG_BASIC" "$REG_TOKEN")
mkdir -p deploy docker
printf '{"auths":{"%s":{"auth":"%s"},"%s":{"auth":"%s"}}}\n' \
    "$REG_BASIC" "$(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)" \
    "$REG_TOKEN" "$(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)" >docker/config.json
export DOCKER_CONFIG=$T_WORK/docker
declare -A tags
for i in $(seq 0 $((refs - 1))); do
    k=$((i % 3)) r=$((i / 3 % 4))
    tags[$k.$r]="${tags[$k.$r]:-} t$i"
done
for key in "${!tags[@]}"; do
    k=${key%.*} r=${key#*.}
    # shellcheck disable=SC2086
    "$REG_TOOL" push-tags "${kinds[$k]}" "bench/svc$r" "seed$key" ${tags[$key]} >/dev/null
done
manifests() { # HOST0 HOST1 HOST2: the manifests naming the registries at those addresses
    rm -rf deploy
    mkdir deploy
    local h=("$@")
    for i in $(seq 0 $((refs - 1))); do
        k=$((i % 3)) r=$((i / 3 % 4)) f=$((i % 10))
        printf -- '---\nkind: Deployment\nmetadata: {name: d%d}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: %s/bench/svc%d:t%d\n' \
            "$i" "${h[$k]}" "$r" "$i" >>"deploy/m$f.yaml"
    done
}

run() { # JOBS
    local t0 t1 line
    printf '[source deploy]\ntype = images\nmanifests = %s/deploy\nregistry_jobs = %s\n' "$T_WORK" "$1" >snap.conf
    t0=$(date +%s%N)
    "$SNAP" create "b$1-$RANDOM" --config snap.conf --store store -vv >/dev/null 2>log || { cat log >&2; exit 1; }
    t1=$(date +%s%N)
    line=$(grep -o 'resolved [0-9]* references in [0-9]* ms with [0-9]* workers' log)
    printf '  %-50s snap create %5d ms\n' "$line" $(((t1 - t0) / 1000000))
    MS=$(echo "$line" | awk '{print $5}')
}

ratio() { # LABEL ONE_BY_ONE PARALLEL
    awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { printf "  %-50s %6.2fx\n", l, (b > 0 ? a / b : 0) }'
}

echo "images: $refs references, 3 registries (none, basic, token auth), on loopback"
manifests "${hosts[@]}"
run 1
one=$MS
run 8
ratio "one by one / parallel, loopback" "$one" "$MS"

# The same registries behind a delay: credentials are keyed by address, so add the proxies'.
exec 3< <(python3 "$root/bench/latency-proxy.py" "$delay" "${hosts[@]}")
proxy=$!
read -r p0 _ <&3
read -r p1 _ <&3
read -r p2 _ <&3
printf '{"auths":{"%s":{"auth":"%s"},"%s":{"auth":"%s"}}}\n' \
    "127.0.0.1:$p1" "$(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)" \
    "127.0.0.1:$p2" "$(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)" >docker/config.json
echo "images: the same through a proxy adding $delay ms each way"
manifests "127.0.0.1:$p0" "127.0.0.1:$p1" "127.0.0.1:$p2"
run 1
one=$MS
run 8
ratio "one by one / parallel, +$delay ms each way (aim >= 3)" "$one" "$MS"
