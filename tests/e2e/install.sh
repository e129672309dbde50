#!/usr/bin/env bash
# Installing: `make install` into a scratch root (DESTDIR) with PROGRAM_PREFIX and
# PROGRAM_SUFFIX, the bash completion it installs, and the Debian package built from the
# tree (dpkg-buildpackage, lintian without errors), extracted into a scratch root. Each
# runs the demo (scripts/demo) from what it installed.
# own build
. "$(dirname "$0")/lib.sh"

BUILD_DIR=${SNAP_BUILD#"$T_ROOT"/}

# run_demo SNAP REVERT: the demo with those binaries, its store and state in the test's.
run_demo() {
    SNAP_STORE=$T/store SNAP_STATE_DIR=$T/state SNAP_BIN=$1 REVERT_BIN=$2 \
        expect_rc 0 "$T_ROOT/scripts/demo"
    expect_out "parts verified, all intact"
    expect_out "app.conf"
    grep -q "^listen 8080$" "$T/out" || fail "the demo did not show the file reverted"
}

test_make_install_names_follow_prefix_and_suffix() {
    local r=$T/root p=/usr/local
    expect_rc 0 make -s -C "$T_ROOT" BUILD="$BUILD_DIR" install DESTDIR="$r" PREFIX=$p \
        PROGRAM_PREFIX=x PROGRAM_SUFFIX=-2
    for f in bin/xsnap-2 bin/xrevert-2 share/man/man1/xsnap-2.1 share/man/man1/xrevert-2.1 \
        share/man/man5/snap.conf.5 share/doc/xsnap-2/s3.md share/doc/xsnap-2/images.md \
        share/doc/xsnap-2/postgres.md share/doc/xsnap-2/examples/snap.conf \
        share/doc/xsnap-2/recipes/k8s-job.yaml share/bash-completion/completions/xsnap-2 \
        share/bash-completion/completions/xrevert-2; do
        [ -e "$r$p/$f" ] || fail "make install did not install $p/$f"
    done
    [ ! -e "$r$p/bin/snap" ] || fail "the unprefixed name was installed too"
    grep -q '^\.TH XSNAP-2 1' "$r$p/share/man/man1/xsnap-2.1" || fail "the man page's title is not the installed name"
    grep -q '^xrevert-2 \\-' "$r$p/share/man/man1/xrevert-2.1" || fail "the man page's NAME is not the installed name"
    grep -q '^\.BR xrevert-2 (1)' "$r$p/share/man/man1/xsnap-2.1" || fail "SEE ALSO does not name xrevert-2"
    grep -q "$p/share/doc/xsnap-2/" "$r$p/share/man/man1/xsnap-2.1" || fail "snap(1) does not point at the installed documents"
    man -l "$r$p/share/man/man1/xsnap-2.1" >"$T/man.txt" 2>&1 || fail "man cannot render the page"
    grep -q "xsnap-2" "$T/man.txt" || fail "the rendered page lacks its name"
    # The example config is valid.
    expect_rc 0 "$r$p/bin/xsnap-2" -c "$r$p/share/doc/xsnap-2/examples/snap.conf" config check
    run_demo "$r$p/bin/xsnap-2" "$r$p/bin/xrevert-2"
}

# complete WORD...: what the installed completion offers for the last word.
complete_words() {
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _snap_complete; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$COMP_FILE" "$@"
}

test_bash_completion() {
    local r=$T/root p=/usr
    expect_rc 0 make -s -C "$T_ROOT" BUILD="$BUILD_DIR" install DESTDIR="$r" PREFIX=$p PROGRAM_PREFIX=db
    COMP_FILE=$r$p/share/bash-completion/completions/dbsnap
    grep -q '^complete -F _snap_complete dbsnap dbrevert$' "$COMP_FILE" || fail "the completion is not registered for the installed names"
    local S=$r$p/bin/dbsnap R=$r$p/bin/dbrevert
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/app" "$T/etc"
    echo x >"$T/app/a"
    echo y >"$T/etc/b"
    printf '[store]\nurl = %s\n[source app]\ntype = files\npath = %s\n[source etc]\ntype = files\npath = %s\n' \
        "$T/cstore" "$T/app" "$T/etc" >"$T/c.conf"
    expect_rc 0 "$S" -c "$T/c.conf" create before-upgrade
    expect_rc 0 "$S" -c /dev/null --store "$T/ostore" create other --files "$T/app"

    [ "$(complete_words "$S" "")" = "$(printf 'cat\nconfig\ncreate\ndelete\ngc\nhistory\nkey\nlist\nprune\nshow\nverify')" ] ||
        fail "subcommands: $(complete_words "$S" "" | tr '\n' ' ')"
    complete_words "$S" create --la | grep -qx -- --label || fail "options: no --label"
    complete_words "$R" --dr | grep -qx -- --dry-run || fail "revert options: no --dry-run"
    # Snapshot names from the store in force: the config's, or the one on the line.
    [ "$(complete_words "$S" -c "$T/c.conf" show "")" = before-upgrade ] || fail "names of the config's store"
    [ "$(complete_words "$R" --store "$T/ostore" "")" = other ] || fail "names of the --store store"
    [ "$(SNAP_STORE=$T/ostore complete_words "$R" "")" = other ] || fail "names of \$SNAP_STORE"
    # Component names for --only, from the snapshot named on the line.
    [ "$(complete_words "$R" -c "$T/c.conf" before-upgrade --only "")" = "$(printf 'app\netc')" ] ||
        fail "components: $(complete_words "$R" -c "$T/c.conf" before-upgrade --only "" | tr '\n' ' ')"
    # A name already given: nothing more to offer.
    [ -z "$(complete_words "$S" -c "$T/c.conf" show before-upgrade "")" ] || fail "a second name was offered"
}

test_debian_package() {
    command -v dpkg-buildpackage >/dev/null && command -v lintian >/dev/null && command -v dh >/dev/null ||
        fail "dpkg-dev, debhelper and lintian are needed (scripts/packages.txt)"
    local src=$T/src/dbsnap-0.1.0 deb r=$T/root
    mkdir -p "$src"
    # A copy of the tree without build outputs: the package is built from sources only.
    (cd "$T_ROOT" && tar --exclude='./build*' --exclude=./.git --exclude='./debian/dbsnap' \
        --exclude='./debian/.debhelper' -cf - .) | tar -xf - -C "$src"
    (cd "$src" && dpkg-buildpackage -b -us -uc -j2) >"$T/build.log" 2>&1 || {
        tail -n 30 "$T/build.log" >&2
        fail "dpkg-buildpackage failed"
    }
    deb=$T/src/dbsnap_0.1.0_amd64.deb
    [ -f "$deb" ] || fail "no package built"
    lintian --fail-on error "$deb" >"$T/lintian.txt" 2>&1 || { cat "$T/lintian.txt" >&2; fail "lintian reports errors"; }
    dpkg-deb -c "$deb" | awk '{print $6}' >"$T/files"
    grep -qx './usr/bin/dbsnap' "$T/files" || fail "no /usr/bin/dbsnap"
    grep -qx './usr/bin/dbrevert' "$T/files" || fail "no /usr/bin/dbrevert"
    ! grep -qx './usr/bin/snap' "$T/files" || fail "the package installs /usr/bin/snap, snapd's name"
    grep -qx './usr/share/man/man1/dbsnap.1.gz' "$T/files" || fail "no dbsnap(1)"
    grep -qx './usr/share/bash-completion/completions/dbsnap' "$T/files" || fail "no completion"
    dpkg-deb -f "$deb" Package | grep -qx dbsnap || fail "the package is not named dbsnap"
    dpkg-deb -x "$deb" "$r"
    run_demo "$r/usr/bin/dbsnap" "$r/usr/bin/dbrevert"
}

run_tests "$@"
