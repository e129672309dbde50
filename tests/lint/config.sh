#!/usr/bin/env bash
# The declared configuration (common/cfg_keys.c, printed by `snap config keys`): the docs list
# every key, and every key the code reads by name is declared.
. "$(dirname "$0")/../e2e/lib.sh"

# section<TAB>name for each declared key
declared() { "$SNAP" --config /dev/null config keys | awk -F'\t' '{print $1 "\t" $3}'; }

# docs/config.md: a table row `| `name` |` under the section's "### [section]" heading.
test_config_md_lists_every_key() {
    local missing=0 sec name heading
    declared >"$T/keys"
    [ "$(wc -l <"$T/keys")" -gt 40 ] || fail "snap config keys printed too little"
    while IFS=$'\t' read -r sec name; do
        heading="### [$sec]"
        [ "$sec" = "source *" ] && heading="### [source NAME]"
        awk -v h="$heading" '$0 == h {on = 1; next} /^### / {on = 0} on' "${DOCS:-$T_ROOT/docs}/config.md" |
            grep -qF "| \`$name\` |" || { echo "docs/config.md lacks [$sec] $name" >&2; missing=1; }
    done <"$T/keys"
    [ "$missing" = 0 ] || fail "docs/config.md misses keys of the table"
}

# docs/snap.conf.5: a `.B name` entry under the section's .SH heading.
test_man_page_lists_every_key() {
    local missing=0 sec name heading esc
    declared >"$T/keys"
    while IFS=$'\t' read -r sec name; do
        heading=".SH $(echo "$sec" | tr a-z A-Z)"
        [ "$sec" = "source *" ] && heading=".SH SOURCE NAME"
        esc=${name//-/\\-}
        awk -v h="$heading" '$0 == h {on = 1; next} /^\.SH / {on = 0} on' "${DOCS:-$T_ROOT/docs}/snap.conf.5" |
            grep -qxF ".B $esc" || { echo "docs/snap.conf.5 lacks [$sec] $name" >&2; missing=1; }
    done <"$T/keys"
    [ "$missing" = 0 ] || fail "docs/snap.conf.5 misses keys of the table"
}

# The check itself fails when a key is missing from either document.
test_check_catches_a_missing_key() {
    mkdir -p "$T/root/docs"
    grep -vF '| `zstd_level` |' "$T_ROOT/docs/config.md" >"$T/root/docs/config.md"
    sed '/^\.B zstd_level$/d' "$T_ROOT/docs/snap.conf.5" >"$T/root/docs/snap.conf.5"
    set +e
    (DOCS="$T/root/docs" test_config_md_lists_every_key) >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    [ "$RC" != 0 ] || fail "a config.md without zstd_level passed"
    expect_err "docs/config.md lacks [snap] zstd_level"
    set +e
    (DOCS="$T/root/docs" test_man_page_lists_every_key) >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    [ "$RC" != 0 ] || fail "a snap.conf.5 without zstd_level passed"
    expect_err "docs/snap.conf.5 lacks [snap] zstd_level"
}

# Every key read by name in the code (cfg_* typed reads and the rest, s3's opt) is declared:
# reading an undeclared one aborts at run time.
test_code_reads_only_declared_keys() {
    local bad=0 key
    declared | cut -f2 | sort -u >"$T/names"
    grep -rhoE '(cfg_(get|int|size|bool|duration|str|list|set|set_from|add|each)\([^,]+, *("[^"]+"|[a-z_>.-]+), *"[a-z_-]+"|[^_a-z]opt\(c, *"[a-z_-]+")' \
        "$T_ROOT"/common "$T_ROOT"/storage "$T_ROOT"/catalog "$T_ROOT"/engines "$T_ROOT"/snapshot \
        "$T_ROOT"/restore "$T_ROOT"/cmd --include='*.c' | grep -oE '"[a-z_-]+"\)?$|"[a-z_-]+"$' |
        tr -d '")' | sort -u >"$T/read"
    [ "$(wc -l <"$T/read")" -gt 30 ] || fail "found too few key reads: the pattern is broken"
    while read -r key; do
        grep -qxF "$key" "$T/names" || { echo "the code reads undeclared key $key" >&2; bad=1; }
    done <"$T/read"
    [ "$bad" = 0 ] || fail "keys read but not declared in common/cfg_keys.c"
}

run_tests "$@"
