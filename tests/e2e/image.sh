#!/usr/bin/env bash
# The container image (Dockerfile), built and run on this machine: no image registry can be
# reached here, so the base is made from Debian's packages (mmdebstrap --variant=minbase
# bookworm, then podman import), the image is built with `podman build --isolation chroot`
# and commands run in it with `buildah run --isolation chroot` (`podman run` fails on these
# machines: crun cannot set rlimits; the chroot isolation works and reaches loopback).
# Inside it: the demo, and a snap of the test PostgreSQL over TCP with a password.
#
# The base tarball is kept in $SNAP_IMAGE_CACHE (else /var/tmp/snap-image-cache) for a week:
# making it takes a minute or two. The built image stays as localhost/snap:test, so the next
# build reuses its unchanged layers.
# needs: postgres
# slow
# own build
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

CACHE=${SNAP_IMAGE_CACHE:-/var/tmp/snap-image-cache}
BASE=localhost/snap-test-base:bookworm
IMAGE=localhost/snap:test

image_setup() {
    for b in mmdebstrap podman buildah; do
        command -v $b >/dev/null || fail "$b is missing (scripts/packages.txt)"
    done
    mkdir -p "$CACHE"
    if [ -z "$(find "$CACHE" -maxdepth 1 -name bookworm-minbase.tar -mtime -7 2>/dev/null)" ]; then
        mmdebstrap --variant=minbase --format=tar bookworm "$CACHE/bookworm-minbase.tar.tmp" >"$T/mmdebstrap.log" 2>&1 ||
            { tail -n 20 "$T/mmdebstrap.log" >&2; fail "mmdebstrap failed"; }
        mv "$CACHE/bookworm-minbase.tar.tmp" "$CACHE/bookworm-minbase.tar"
        podman rmi -f "$BASE" >/dev/null 2>&1 || true
    fi
    podman image exists "$BASE" || podman import "$CACHE/bookworm-minbase.tar" "$BASE" >/dev/null
    podman build --isolation chroot --build-arg BASE="$BASE" -t "$IMAGE" "$T_ROOT" >"$T/build.log" 2>&1 ||
        { tail -n 30 "$T/build.log" >&2; fail "podman build failed"; }
    CTR=$(buildah from "$IMAGE")
    trap 'buildah rm "$CTR" >/dev/null 2>&1 || true' EXIT
}

in_image() { buildah run --isolation chroot "$@"; }

test_image_runs_the_demo_and_snaps_postgres() {
    image_setup
    # What the image declares: a non-root user and the state directory as a volume.
    podman image inspect "$IMAGE" --format '{{.Config.User}} {{json .Config.Volumes}}' >"$T/inspect"
    grep -q '^10001:10001 .*"/var/lib/snap"' "$T/inspect" || fail "image config: $(cat "$T/inspect")"
    expect_rc 0 in_image "$CTR" -- id
    expect_out "uid=10001(snap) gid=10001(snap)"
    expect_rc 0 in_image "$CTR" -- pg_dump --version
    expect_out "pg_dump (PostgreSQL) 15."
    # Only runtime pieces: no compiler, no headers.
    expect_rc 0 in_image "$CTR" -- sh -c 'command -v cc gcc make || echo none; ls /usr/include/postgresql 2>&1 || true'
    expect_out "none"
    expect_out "No such file"

    expect_rc 0 in_image -v "$T_ROOT/scripts:/opt/scripts:ro" --env SNAP_BIN=snap --env REVERT_BIN=revert \
        "$CTR" -- bash /opt/scripts/demo
    expect_out "parts verified, all intact"
    grep -q "^listen 8080$" "$T/out" || fail "the demo did not show the file reverted"

    local db
    db=$(db_name image)
    q -d postgres -c "CREATE DATABASE \"$db\""
    q -d "$db" -c "CREATE TABLE t (id int primary key); INSERT INTO t SELECT generate_series(1, 500)"
    q -d "$db" -c "GRANT ALL ON TABLE t TO \"$T_PG_PWUSER\"" 2>/dev/null || true
    expect_rc 0 in_image --env PGPASSWORD="$T_PG_PWPASS" "$CTR" -- snap create pg-in-image \
        --pg "host=$T_PG_TCP_HOST port=$PGPORT dbname=$db user=$T_PG_PWUSER"
    expect_out "snapshot pg-in-image"
    expect_rc 0 in_image "$CTR" -- snap verify pg-in-image
    expect_out "all intact"
    expect_rc 0 in_image "$CTR" -- snap show pg-in-image --json
    expect_out "\"$db\""
}

run_tests "$@"
