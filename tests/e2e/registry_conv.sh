#!/usr/bin/env bash
# Registry conventions of podman and skopeo besides Docker's: the auth files in skopeo's
# order (REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
# ~/.config/containers/auth.json, Docker's config.json) and a registry's own CA from the
# certs.d directories, against the registries of tests/services/registry.sh (the TLS one
# serves the basic one's images with a certificate signed by a test CA).
# needs: registry
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC1091
. "$T_WORK/service-registry.env"

setup() {
    REPO=$(basename "$T" | tr 'A-Z' 'a-z' | tr -dc 'a-z0-9')
    unset REGISTRY_AUTH_FILE
    export SNAP_STATE_DIR=$T/state HOME=$T/home DOCKER_CONFIG=$T/docker
    export XDG_RUNTIME_DIR=$T/run XDG_CONFIG_HOME=$T/config
    export SNAP_REGISTRY_CERTS_DIRS=$T/containers-certs.d:$T/docker-certs.d
    mkdir -p "$T/home" "$T/docker" "$T/run/containers" "$T/config/containers" deploy
    STORE=$T/store
}

auth_json() { # FILE HOST USER PASSWORD
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$2" "$(printf '%s:%s' "$3" "$4" | base64 -w0)" >"$1"
}

deployment() { # IMAGE
    printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: %s\n' \
        "$1" >deploy/app.yaml
}

# The first file that has the registry wins: runtime dir, then config dir, then Docker's.
test_auth_file_order() {
    setup
    local d
    d=$("$REG_TOOL" push basic "$REPO/app" v1 o1)
    deployment "$REG_BASIC/$REPO/app:v1"
    auth_json "$T/run/containers/auth.json" "$REG_BASIC" "$REG_USER" "runtime-wrong"
    auth_json "$T/config/containers/auth.json" "$REG_BASIC" "$REG_USER" "config-wrong"
    auth_json "$T/docker/config.json" "$REG_BASIC" "$REG_USER" "$REG_PASS"
    expect_rc 6 "$SNAP" create a --images deploy --store "$STORE"
    expect_err "refused the credentials of user $REG_USER (from $T/run/containers/auth.json)"
    rm "$T/run/containers/auth.json"
    expect_rc 6 "$SNAP" create a --images deploy --store "$STORE"
    expect_err "(from $T/config/containers/auth.json)"
    # An entry for another registry does not hide the next file's.
    auth_json "$T/config/containers/auth.json" "other.example:5000" "$REG_USER" "x"
    expect_rc 0 "$SNAP" create a --images deploy --store "$STORE" --json
    expect_out "$d"
    ! grep -rqF "$REG_PASS" "$T/out" "$T/err" "$STORE" || fail "the password was written out"
    # Without XDG_CONFIG_HOME the config dir is ~/.config.
    unset XDG_CONFIG_HOME
    mkdir -p "$HOME/.config/containers"
    auth_json "$HOME/.config/containers/auth.json" "$REG_BASIC" "$REG_USER" "home-wrong"
    expect_rc 6 "$SNAP" create b --images deploy --store "$STORE"
    expect_err "(from $HOME/.config/containers/auth.json)"
}

# REGISTRY_AUTH_FILE alone is read when set, as by podman and skopeo.
test_registry_auth_file() {
    setup
    local d
    d=$("$REG_TOOL" push basic "$REPO/app" v1 r1)
    deployment "$REG_BASIC/$REPO/app:v1"
    auth_json "$T/run/containers/auth.json" "$REG_BASIC" "$REG_USER" "runtime-wrong"
    auth_json "$T/mine.json" "$REG_BASIC" "$REG_USER" "$REG_PASS"
    export REGISTRY_AUTH_FILE=$T/mine.json
    expect_rc 0 "$SNAP" create a --images deploy --store "$STORE" --json
    expect_out "$d"
    auth_json "$T/mine.json" "$REG_BASIC" "$REG_USER" "mine-wrong"
    auth_json "$T/run/containers/auth.json" "$REG_BASIC" "$REG_USER" "$REG_PASS"
    expect_rc 6 "$SNAP" create b --images deploy --store "$STORE"
    expect_err "(from $T/mine.json)"
    # Nothing for the registry there: the other files are not asked.
    echo '{"auths":{}}' >"$T/mine.json"
    expect_rc 6 "$SNAP" create b --images deploy --store "$STORE"
    expect_err "registry $REG_BASIC requires credentials"
    expect_err "podman login $REG_BASIC"
}

# A registry whose certificate is signed by its own CA: refused until the CA is in its
# certs.d directory (containers' or Docker's), then resolved with the credentials.
test_registry_ca_certs_d() {
    setup
    [ -n "${REG_TLS:-}" ] || fail "the TLS registry did not start (no non-loopback address)"
    local d
    d=$("$REG_TOOL" push basic "$REPO/app" v1 c1)
    deployment "$REG_TLS/$REPO/app:v1"
    auth_json "$T/run/containers/auth.json" "$REG_TLS" "$REG_USER" "$REG_PASS"
    expect_rc 6 "$SNAP" create a --images deploy --store "$STORE"
    expect_err "registry $REG_TLS did not answer: SSL certificate problem"
    expect_err "hint: put the registry's CA in /etc/containers/certs.d/$REG_TLS/ca.crt"
    mkdir -p "$T/docker-certs.d/$REG_TLS"
    cp "$REG_TLS_CA" "$T/docker-certs.d/$REG_TLS/ca.crt"
    expect_rc 0 "$SNAP" create a --images deploy --store "$STORE" --json
    expect_out "$d"
    rm -r "$T/docker-certs.d/$REG_TLS"
    mkdir -p "$T/containers-certs.d/$REG_TLS"
    cp "$REG_TLS_CA" "$T/containers-certs.d/$REG_TLS/registry-ca.crt"
    expect_rc 0 "$SNAP" create b --images deploy --store "$STORE" --json
    expect_out "$d"
    # The CA of another host's directory is not trusted for this one.
    rm -r "$T/containers-certs.d/$REG_TLS"
    mkdir -p "$T/containers-certs.d/other.example:443"
    cp "$REG_TLS_CA" "$T/containers-certs.d/other.example:443/ca.crt"
    expect_rc 6 "$SNAP" create c --images deploy --store "$STORE"
    expect_err "certificate"
}

run_tests "$@"
