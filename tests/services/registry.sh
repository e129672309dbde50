#!/usr/bin/env bash
# tests/services/registry.sh: three CNCF distribution registries (Debian's docker-registry)
# on loopback, with filesystem storage under $T_WORK/registry:
#   plain  no authentication
#   basic  htpasswd (bcrypt) basic authentication
#   token  bearer tokens from a small token server (tests/services/token-server.py)
#   tls    basic's storage and users over TLS signed by a test CA (REG_TLS, REG_TLS_CA), on
#          a non-loopback address of this machine
#
#   registry.sh start          starts all three, writes $T_WORK/service-registry.env
#   registry.sh stop           stops what start started
#   registry.sh push KIND REPO TAG SEED     pushes a one-layer image, prints its digest
#   registry.sh push-tags KIND REPO SEED TAG...      one image under many tags, a manifest each
#   registry.sh push-index KIND REPO TAG DIGEST...   pushes an OCI index of those manifests
#   registry.sh delete KIND REPO DIGEST     deletes a manifest (as garbage collection would)
# KIND is plain, basic or token. Images are pushed with curl alone: a config blob and a
# layer blob (POST, then PUT with digest=), then the manifest under the tag.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${T_WORK:?T_WORK must name the test work directory}"
dir=$T_WORK/registry
envfile=$T_WORK/service-registry.env

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # URL: until it answers at all (any status), 10 s at most
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "registry: $1 did not come up" >&2
    return 1
}

registry_config() { # NAME PORT AUTH_YAML
    mkdir -p "$dir/$1/data"
    cat >"$dir/$1/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/$1/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
$3
CONF
}

start_registry() { # NAME PORT
    docker-registry serve "$dir/$1/config.yml" >"$dir/$1/log" 2>&1 &
    echo $! >"$dir/$1/pid"
    wait_http "http://127.0.0.1:$2/v2/"
}

# tls: the basic registry's storage and users served over TLS, with a certificate signed by
# a test CA, on this machine's first non-loopback IPv4 address (the client verifies TLS for
# any registry but loopback ones). REG_TLS is empty when there is no such address.
start_tls() { # PORT
    tls_ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+\.' | grep -v '^127\.' || true)
    [ -n "$tls_ip" ] || return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=snap-test-ca \
        -keyout "$dir/tls-ca.key" -out "$dir/tls-ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$tls_ip" -keyout "$dir/tls.key" \
        -out "$dir/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:%s\n' "$tls_ip" >"$dir/tls.ext"
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/tls-ca.crt" -CAkey "$dir/tls-ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
    registry_config tls "$1" "auth:
  htpasswd:
    realm: snap-test
    path: $dir/htpasswd"
    sed -i "s|rootdirectory: .*|rootdirectory: $dir/basic/data|; s|addr: 127.0.0.1:|addr: $tls_ip:|" \
        "$dir/tls/config.yml"
    sed -i "/^  secret: /a\\  tls:\\n    certificate: $dir/tls.crt\\n    key: $dir/tls.key" "$dir/tls/config.yml"
    docker-registry serve "$dir/tls/config.yml" >"$dir/tls/log" 2>&1 &
    echo $! >"$dir/tls/pid"
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 --cacert "$dir/tls-ca.crt" "https://$tls_ip:$1/v2/" && return 0
        sleep 0.1
    done
    echo "registry: the TLS registry did not come up" >&2
    return 1
}

start() {
    command -v docker-registry >/dev/null || { echo "registry: docker-registry is not installed" >&2; exit 1; }
    command -v htpasswd >/dev/null || { echo "registry: htpasswd (apache2-utils) is not installed" >&2; exit 1; }
    rm -rf "$dir"
    mkdir -p "$dir"
    local p_plain p_basic p_token p_auth p_tls user=snapuser pass
    pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    p_plain=$(free_port) p_basic=$(free_port) p_token=$(free_port) p_auth=$(free_port)
    p_tls=$(free_port)

    registry_config plain "$p_plain" ""

    htpasswd -Bbc "$dir/htpasswd" "$user" "$pass" 2>/dev/null
    registry_config basic "$p_basic" "auth:
  htpasswd:
    realm: snap-test
    path: $dir/htpasswd"

    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/token.key" -out "$dir/token.crt" \
        -days 2 -subj /CN=snap-test-token 2>/dev/null
    registry_config token "$p_token" "auth:
  token:
    realm: http://127.0.0.1:$p_auth/token
    service: snap-test-registry
    issuer: snap-test-issuer
    rootcertbundle: $dir/token.crt"

    start_registry plain "$p_plain"
    start_registry basic "$p_basic"
    start_registry token "$p_token"
    start_tls "$p_tls"
    python3 "$here/token-server.py" --port "$p_auth" --key "$dir/token.key" --cert "$dir/token.crt" \
        --user "$user" --password "$pass" --issuer snap-test-issuer \
        --service snap-test-registry >"$dir/token-server.log" 2>&1 &
    echo $! >"$dir/token-server.pid"
    wait_http "http://127.0.0.1:$p_auth/token"

    cat >"$envfile" <<ENV
export REG_PLAIN=127.0.0.1:$p_plain
export REG_BASIC=127.0.0.1:$p_basic
export REG_TOKEN=127.0.0.1:$p_token
export REG_TOKEN_REALM=http://127.0.0.1:$p_auth/token
export REG_USER=$user
export REG_PASS=$pass
export REG_TOOL=$here/registry.sh
export REG_TLS=${tls_ip:+$tls_ip:$p_tls}
export REG_TLS_CA=$dir/tls-ca.crt
ENV
    echo "registry: plain $p_plain, basic $p_basic, token $p_token (auth $p_auth)"
}

stop() {
    local f
    for f in "$dir"/*/pid "$dir"/token-server.pid; do
        [ -f "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

# Pushing, with curl. ---------------------------------------------------------------

load_env() {
    # shellcheck disable=SC1090
    . "$envfile"
    case $1 in
    plain) HOST=$REG_PLAIN ;;
    basic) HOST=$REG_BASIC ;;
    token) HOST=$REG_TOKEN ;;
    *) echo "registry: unknown kind $1" >&2; exit 2 ;;
    esac
    KIND=$1
}

auth_args() { # REPO: sets AUTH (curl arguments) for pushing to REPO
    AUTH=()
    case $KIND in
    basic) AUTH=(-u "$REG_USER:$REG_PASS") ;;
    token)
        local tok
        tok=$(curl -sf -u "$REG_USER:$REG_PASS" \
            "$REG_TOKEN_REALM?service=snap-test-registry&scope=repository:$1:pull,push,delete" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
        AUTH=(-H "Authorization: Bearer $tok")
        ;;
    esac
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

put_blob() { # REPO FILE
    local loc digest="sha256:$(sha "$2")"
    loc=$(curl -sf "${AUTH[@]}" -X POST -D - -o /dev/null "http://$HOST/v2/$1/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [ -n "$loc" ] || { echo "registry: no upload location from $HOST" >&2; exit 1; }
    case $loc in /*) loc=http://$HOST$loc ;; esac
    case $loc in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    curl -sf "${AUTH[@]}" -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$2" -o /dev/null "$loc"
}

put_manifest() { # REPO TAG FILE MEDIATYPE: prints the digest
    curl -sf "${AUTH[@]}" -X PUT -H "Content-Type: $4" --data-binary "@$3" -o /dev/null \
        "http://$HOST/v2/$1/manifests/$2"
    echo "sha256:$(sha "$3")"
}

push() { # KIND REPO TAG SEED
    load_env "$1"
    local repo=$2 tag=$3 seed=$4 w
    w=$(mktemp -d "$T_WORK/push.XXXXXX")
    auth_args "$repo"
    printf 'layer of %s\n' "$seed" | gzip -n >"$w/layer"
    printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"seed":"%s"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$seed" "$(printf 'layer of %s\n' "$seed" | sha256sum | cut -d' ' -f1)" >"$w/config"
    put_blob "$repo" "$w/config"
    put_blob "$repo" "$w/layer"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
        "$(sha "$w/config")" "$(stat -c %s "$w/config")" "$(sha "$w/layer")" "$(stat -c %s "$w/layer")" >"$w/manifest"
    put_manifest "$repo" "$tag" "$w/manifest" application/vnd.oci.image.manifest.v1+json
    rm -rf "$w"
}

push_tags() { # KIND REPO SEED TAG...: one image's blobs, a distinct manifest per tag
    load_env "$1"
    local repo=$2 seed=$3 w tag cs ls cd ld
    shift 3
    w=$(mktemp -d "$T_WORK/push.XXXXXX")
    auth_args "$repo"
    printf 'layer of %s\n' "$seed" | gzip -n >"$w/layer"
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$w/config"
    put_blob "$repo" "$w/config"
    put_blob "$repo" "$w/layer"
    cd=$(sha "$w/config") ld=$(sha "$w/layer") cs=$(stat -c %s "$w/config") ls=$(stat -c %s "$w/layer")
    # One curl for every tag: spawning a process per tag is what would take the time.
    : >"$w/curl.conf"
    for tag in "$@"; do
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}],"annotations":{"tag":"%s"}}' \
            "$cd" "$cs" "$ld" "$ls" "$tag" >"$w/m.$tag"
        printf 'url = "http://%s/v2/%s/manifests/%s"\nupload-file = "%s"\noutput = "/dev/null"\n' \
            "$HOST" "$repo" "$tag" "$w/m.$tag" >>"$w/curl.conf"
    done
    curl -sf "${AUTH[@]}" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' -K "$w/curl.conf"
    rm -rf "$w"
}

push_index() { # KIND REPO TAG DIGEST...
    load_env "$1"
    local repo=$2 tag=$3 w d sep="" arch=(amd64 arm64 s390x ppc64le) i=0
    shift 3
    w=$(mktemp -d "$T_WORK/push.XXXXXX")
    auth_args "$repo"
    {
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
        for d in "$@"; do
            local size
            size=$(curl -sf "${AUTH[@]}" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
                "http://$HOST/v2/$repo/manifests/$d" | wc -c)
            printf '%s{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"%s","os":"linux"}}' \
                "$sep" "$d" "$size" "${arch[$i]}"
            sep=, i=$((i + 1))
        done
        printf ']}'
    } >"$w/index"
    put_manifest "$repo" "$tag" "$w/index" application/vnd.oci.image.index.v1+json
    rm -rf "$w"
}

delete() { # KIND REPO DIGEST
    load_env "$1"
    auth_args "$2"
    curl -sf "${AUTH[@]}" -X DELETE -o /dev/null "http://$HOST/v2/$2/manifests/$3"
}

case ${1:-} in
start) start ;;
stop) stop ;;
push) shift; push "$@" ;;
push-tags) shift; push_tags "$@" ;;
push-index) shift; push_index "$@" ;;
delete) shift; delete "$@" ;;
*) echo "usage: registry.sh start|stop|push|push-tags|push-index|delete" >&2; exit 2 ;;
esac
