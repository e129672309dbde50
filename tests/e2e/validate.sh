#!/usr/bin/env bash
# Input that is damaged, hostile or badly encoded: journals, engine info, catalog entries,
# durations, labels and notes, control characters in what is printed, long config lines
# and a current directory that is gone. Each case: no crash, the exit code, what is said.
. "$(dirname "$0")/lib.sh"

ESC=$(printf '\033')

setup_files() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/a/sub"
    for i in 1 2 3; do echo "a$i" >"$T/a/sub/f$i"; done
    expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/a"
    POINT=$(tree_sum "$T/a")
    echo changed >"$T/a/sub/f1"
    echo new >"$T/a/new"
}

# journal_left_at FAILPOINT: a revert killed there, its journal in $J
journal_left_at() {
    SNAP_FAILPOINT=$1 expect_rc 137 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    J=$(ls "$T/state/journal/"*.json)
    [ -f "$J" ] || fail "no journal left by the kill"
}

# edit_journal PYTHON: runs PYTHON with the journal as d, then writes it back
edit_journal() {
    python3 - "$J" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(d, open(sys.argv[1], "w"))
EOF
}

# damaged_journal_is_set_aside WHAT-THE-ERROR-SAYS HINT-TEXT
damaged_journal_is_set_aside() {
    # a damaged journal blocks a revert until recovery sees it, as any pending one does
    expect_rc 8 "$REVERT" p1 --store "$ST" --yes
    expect_err "revert --recover"
    expect_rc 5 "$REVERT" --recover --store "$ST"
    expect_err "is damaged: $1"
    expect_err "hint: it was set aside as $J.damaged"
    expect_err "$2"
    [ ! -e "$J" ] || fail "the damaged journal is still where every revert looks"
    [ "$(stat -c %a "$J.damaged")" = 600 ] || fail "the set-aside journal is not 0600"
    # not a dead end: recovery is clean now, and the next revert proceeds
    expect_rc 0 "$REVERT" --recover --store "$ST"
    expect_rc 0 "$REVERT" p1 --store "$ST" --yes --no-safety-snapshot
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "the next revert did not reach the point"
}

test_journal_missing_a_field_is_set_aside() {
    setup_files
    local field
    for field in phase targets revert_id format; do
        echo changed >"$T/a/sub/f1"
        journal_left_at cutover-begin
        edit_journal "del d['$field']"
        damaged_journal_is_set_aside "\"$field\" is missing" "Check each target"
        rm -f "$T/state/journal/"*.damaged
    done
}

test_journal_target_missing_a_field_is_set_aside() {
    setup_files
    local field
    for field in switched type component state; do
        echo changed >"$T/a/sub/f1"
        journal_left_at cutover-begin
        edit_journal "del d['targets'][0]['$field']"
        damaged_journal_is_set_aside "target 0: \"$field\" is missing" "stopped during the cut-over to snapshot p1"
        rm -f "$T/state/journal/"*.damaged
    done
}

test_truncated_journal_is_set_aside_with_what_could_be_read() {
    setup_files
    journal_left_at cutover-begin
    head -c 300 "$J" >"$J.cut" && mv "$J.cut" "$J"
    damaged_journal_is_set_aside "it is not valid JSON" \
        "stopped during the cut-over to snapshot p1: switched: unknown"
}

test_journal_that_is_not_json_at_all() {
    setup_files
    journal_left_at stage-end
    printf '\0\1\2garbage' >"$J"
    damaged_journal_is_set_aside "it is not valid JSON" "what it did cannot be read"
}

test_journal_of_wrong_types_is_set_aside() {
    setup_files
    journal_left_at stage-end
    edit_journal "d['targets'][0]['switched'] = 'yes'"
    damaged_journal_is_set_aside "target 0: \"switched\" is not true or false" "stopped before the cut-over"
    echo changed >"$T/a/sub/f1"
    journal_left_at stage-end
    edit_journal "d['targets'] = 'a'"
    damaged_journal_is_set_aside "\"targets\" is not an array" "no live target changed"
    echo changed >"$T/a/sub/f1"
    journal_left_at stage-end
    edit_journal "d['phase'] = 7"
    damaged_journal_is_set_aside "\"phase\" is not a string" "the targets may be in any state"
    echo changed >"$T/a/sub/f1"
    journal_left_at stage-end
    edit_journal "d['targets'][0]['type'] = 'nosuch'"
    damaged_journal_is_set_aside "target 0: type \"nosuch\" is not one this build knows" "stopped before the cut-over"
}

test_damaged_journal_does_not_stop_recovery_of_the_others() {
    setup_files
    journal_left_at stage-end
    mv "$J" "$T/first.json"
    journal_left_at cutover-begin
    echo '{' >"$T/first.json"
    mv "$T/first.json" "$T/state/journal/0-first.json"
    expect_rc 5 "$REVERT" --recover --store "$ST" --json
    python3 - "$T/out" <<'EOF' || fail "recovery report: $(cat "$T/out")"
import json, sys
r = json.load(open(sys.argv[1]))
outcomes = sorted(x["outcome"] for x in r["recovered"])
assert outcomes == ["completed", "damaged"], outcomes
assert r["error"]["exit_code"] == 5
EOF
    expect_err "0-first.json is damaged"
    [ "$(tree_sum "$T/a")" = "$POINT" ] || fail "the readable journal was not completed"
    [ -z "$(ls "$T/state/journal/"*.json 2>/dev/null)" ] || fail "a journal is still pending"
}

# A database engine's state in a journal is checked before recovery uses it (no server
# is needed: the check comes first, and nothing is connected to).
test_engine_state_in_journal_is_checked() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/state/journal"
    local engine state n=0
    for engine in postgres mysql; do
        for state in '{"live": "appdb"}' '{"live": "appdb", "mode": 3}' '{"live": 1, "staging": "s", "old": "o", "phase": "x"}'; do
            J=$T/state/journal/20261130T000000.000Z-0000000$((++n)).json
            cat >"$J" <<EOF
{"format": 1, "revert_id": "$(basename "$J" .json)", "snapshot": "p1", "phase": "cutover",
 "store": "$T/store", "targets": [{"component": "db", "type": "$engine", "switched": true, "to": null,
 "state": $state}]}
EOF
            expect_rc 5 "$REVERT" --recover --store "$T/store"
            expect_err "target 0 (db): its state is damaged"
            expect_err "switched: db"
            [ -f "$J.damaged" ] && [ ! -e "$J" ] || fail "the journal was not set aside"
        done
    done
    expect_rc 0 "$REVERT" --recover --store "$T/store"
}

# ---- engine info ------------------------------------------------------------------

# engine_manifest TYPE PYTHON: turns the files snapshot p1 into a TYPE component whose
# info PYTHON edits (as i), saved as catalog entry bad; a local config names the target.
engine_manifest() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    mkdir -p "$T/a"
    echo x >"$T/a/f"
    [ -f "$ST/catalog/p1.json" ] || expect_rc 0 "$SNAP" create p1 --store "$ST" --files "$T/a"
    python3 - "$ST/catalog/p1.json" "$ST/catalog/bad.json" "$1" "$2" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["name"] = "bad"
c = m["components"][0]
c["type"] = sys.argv[3]
i = c["info"]
i.update({"postgres": {"database_name": "appdb", "pg_dump_major": 15, "tables": []},
          "mysql": {"database": "appdb"},
          "images": {"images": [{"image": "nginx:1.25", "file": "x.yaml", "line": 1}]}}[sys.argv[3]])
exec(sys.argv[4])
json.dump(m, open(sys.argv[2], "w"))
EOF
    cat >"$T/snap.conf" <<EOF
[source a]
type = $1
dsn = host=127.0.0.1 port=1 dbname=appdb connect_timeout=1
path = $T/a
manifests = $T/a
EOF
}

info_damaged() {
    engine_manifest "$1" "$2"
    expect_rc 5 "$REVERT" bad --store "$ST" --config "$T/snap.conf" --dry-run
    expect_err "the info of component a"
    expect_err "$3"
    expect_err "nothing was changed"
}

test_postgres_info_damaged() {
    info_damaged postgres "del i['database_name']" '"database_name" is missing'
    info_damaged postgres "i['tables'] = {}" '"tables" is not an array'
    info_damaged postgres "i['tables'] = [{'schema': 's', 'name': 't', 'rows': 'many'}]" '"rows" is not an integer'
    info_damaged postgres "i['tables'] = [7]" '"tables"[0] is not an object'
    info_damaged postgres "i['roles'] = [1]" '"roles"[0] is not a string'
    info_damaged postgres "i['database'] = {'settings': 'x'}" '"settings" is not an array'
    info_damaged postgres "i['pg_dump_major'] = '15'" '"pg_dump_major" is not an integer'
}

test_mysql_info_damaged() {
    info_damaged mysql "del i['database']" '"database" is missing'
    info_damaged mysql "i['database'] = 5" '"database" is not a string'
    info_damaged mysql "i['non_transactional'] = [None]" '"non_transactional"[0] is not a string'
}

test_images_info_damaged() {
    info_damaged images "del i['images']" '"images" is missing'
    info_damaged images "i['images'] = [{'file': 'x'}]" '"image" is missing'
    info_damaged images "i['images'] = [{'image': 3}]" '"image" is not a string'
    info_damaged images "i['exclude'] = 'x'" '"exclude" is not an array'
}

# ---- the catalog entry is the snapshot --------------------------------------------

test_delete_of_entry_whose_manifest_names_another_is_refused() {
    setup_files
    mkdir -p "$T/b" && echo b >"$T/b/f"
    expect_rc 0 "$SNAP" create victim --store "$ST" --files "$T/b"
    cp "$ST/catalog/victim.json" "$ST/catalog/decoy.json"
    before=$(tree_sum "$ST")
    expect_rc 5 "$SNAP" delete decoy --store "$ST" --yes
    expect_err "catalog entry decoy holds a manifest named victim"
    [ "$(tree_sum "$ST")" = "$before" ] || fail "the store changed"
    expect_rc 0 "$SNAP" verify victim --store "$ST"
    # prune skips the entry and never reaches victim through it
    expect_rc 0 "$SNAP" prune --keep-last 5 --store "$ST" --yes
    expect_err "skipping catalog entry decoy"
    expect_rc 0 "$SNAP" verify victim --store "$ST"
    # and revert refuses it too
    expect_rc 5 "$REVERT" decoy --store "$ST" --dry-run
    expect_err "holds a manifest named victim"
}

test_delete_keeps_data_another_entry_names() {
    setup_files
    mkdir -p "$T/b" && echo b >"$T/b/f"
    expect_rc 0 "$SNAP" create victim --store "$ST" --files "$T/b"
    # an entry with its own name but the victim's id: deleting it must not take the data
    python3 - "$ST/catalog/victim.json" "$ST/catalog/decoy.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["name"] = "decoy"; json.dump(m, open(sys.argv[2], "w"))
EOF
    expect_rc 0 "$SNAP" delete decoy --store "$ST" --yes
    expect_err "also named by another snapshot; keeping it"
    expect_rc 0 "$SNAP" verify victim --store "$ST"
    python3 - "$ST/catalog/victim.json" "$ST/catalog/decoy.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["name"] = "decoy"; json.dump(m, open(sys.argv[2], "w"))
EOF
    expect_rc 0 "$SNAP" prune --keep-last 1 --store "$ST" --yes --label nosuch=1
    expect_rc 0 "$SNAP" verify victim --store "$ST"
}

test_manifest_id_that_is_a_path_is_refused() {
    setup_files
    python3 - "$ST/catalog/p1.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["id"] = "../catalog"; json.dump(m, open(sys.argv[1], "w"))
EOF
    before=$(tree_sum "$ST")
    expect_rc 5 "$SNAP" delete p1 --store "$ST" --yes
    expect_err "is not a snapshot id"
    [ "$(tree_sum "$ST")" = "$before" ] || fail "the store changed"
}

test_prune_keep_within_huge_is_a_usage_error() {
    setup_files
    expect_rc 2 "$SNAP" prune --keep-within 99999999999999d --store "$ST" --yes
    expect_err "--keep-within 99999999999999d: expected a duration"
    expect_rc 2 "$SNAP" prune --keep-within 999999999999999999999s --store "$ST" --yes
    expect_rc 2 "$SNAP" prune --keep-within ' -5d' --store "$ST" --yes
    expect_rc 2 "$SNAP" gc --min-age 9999999999999w --store "$ST" --yes
    expect_rc 2 "$SNAP" prune --keep-last 99999999999999999999999 --store "$ST" --yes
    expect_rc 0 "$SNAP" show p1 --store "$ST"
    # a thousand years is still a duration
    expect_rc 0 "$SNAP" prune --keep-within 52000w --store "$ST" --yes
    expect_rc 0 "$SNAP" show p1 --store "$ST"
}

# ---- encoding ---------------------------------------------------------------------

test_label_and_note_that_are_not_utf8_are_refused() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a" && echo x >"$T/a/f"
    expect_rc 2 "$SNAP" create l1 --store "$T/store" --files "$T/a" --label "k=$(printf 'caf\xe9')"
    expect_err "is not valid UTF-8"
    expect_rc 2 "$SNAP" create l2 --store "$T/store" --files "$T/a" --note "$(printf 'caf\xe9')"
    expect_err "the note is not valid UTF-8"
    expect_rc 3 "$SNAP" show l1 --store "$T/store"
    expect_rc 3 "$SNAP" show l2 --store "$T/store"
    # UTF-8 is kept as it is
    expect_rc 0 "$SNAP" create l3 --store "$T/store" --files "$T/a" --label "k=café" --note "naïve"
    expect_rc 0 "$SNAP" show l3 --store "$T/store"
    expect_out "k=café"
    expect_out "naïve"
}

test_json_error_with_bytes_that_are_not_utf8_is_valid_json() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a" && echo x >"$T/a/f"
    expect_rc 2 "$SNAP" create l1 --store "$T/store" --files "$T/a" --label "k=$(printf 'caf\xe9')" --json
    python3 - "$T/out" <<'EOF' || fail "the --json error is not valid JSON"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["error"]["exit_code"] == 2, d
assert "caf\\xe9" in d["error"]["message"], d
EOF
    expect_rc 0 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    expect_rc 2 "$REVERT" p1 --store "$T/store" --to "$T/$(printf 'b\xff')" --yes --json
    python3 -c 'import json,sys; d = json.load(open(sys.argv[1], encoding="utf-8")); assert "b\\xff" in d["error"]["message"], d' \
        "$T/out" || fail "the --to error is not valid JSON"
    [ ! -e "$T/$(printf 'b\xff')" ] || fail "--to was restored"
    expect_rc 2 "$REVERT" "$(printf 'x\xff')" --store "$T/store" --json
    [ -s "$T/out" ] || fail "no JSON on stdout"
    python3 -c 'import json,sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$T/out" ||
        fail "the revert --json error is not valid JSON"
}

# ---- control characters in human output -------------------------------------------

no_raw_escape() {
    ! grep -q "$ESC" "$T/out" "$T/err" || fail "a raw ESC reached the terminal: $(cat -v "$T/out" "$T/err" | head -5)"
}

test_escape_sequences_are_escaped_in_list_show_and_plan() {
    export SNAP_STATE_DIR=$T/state
    ST=$T/store
    D="$T/d$(printf '\033[2J\033]0;x\007')"
    mkdir -p "$D" && echo x >"$D/f"
    expect_rc 0 "$SNAP" create e1 --store "$ST" --files "$D" --label "k=$(printf 'v\033[31mred')" \
        --note "$(printf 'hi\033[1A\033[2K\r\xe2\x80\xaeevil')"
    no_raw_escape
    expect_rc 0 "$SNAP" list --store "$ST"
    no_raw_escape
    expect_out 'k=v\x1b[31mred'
    expect_rc 0 "$SNAP" show e1 --store "$ST"
    no_raw_escape
    expect_out 'hi\x1b[1A\x1b[2K\r\u{202e}evil'
    expect_out '\x1b[2J\x1b]0;x\x07'
    ! grep -q "$(printf '\r')" "$T/out" || fail "a raw CR reached the terminal"
    # the plan names the real target, escaped
    echo y >"$D/f"
    expect_rc 0 "$REVERT" e1 --store "$ST" --dry-run
    no_raw_escape
    expect_out '\x1b[2J\x1b]0;x\x07'
    # the prompt, on a terminal; answered no
    if command -v script >/dev/null; then
        printf 'n\n' | script -qec "$REVERT e1 --store $ST" /dev/null >"$T/tty" 2>&1 || true
        ! grep -q "$ESC" "$T/tty" || fail "a raw ESC reached the terminal in the prompt"
        grep -qF '\x1b[2J' "$T/tty" || { cat -v "$T/tty" >&2; fail "the prompt does not show the target"; }
        grep -qF 'revert these targets now?' "$T/tty" || fail "no prompt"
    fi
    [ "$(cat "$D/f")" = y ] || fail "the target changed"
    # and the JSON keeps the bytes as they are
    expect_rc 0 "$SNAP" show e1 --store "$ST" --json
    python3 - "$T/out" <<'EOF' || fail "the JSON lost the label"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["labels"]["k"] == "v\x1b[31mred", d["labels"]
EOF
}

test_error_messages_are_escaped() {
    export SNAP_STATE_DIR=$T/state
    expect_rc 2 "$SNAP" create "$(printf 'x\033[2Jy')" --store "$T/store" --files /etc/hostname
    no_raw_escape
    expect_err 'x\x1b[2Jy'
}

# ---- config lines and the current directory ---------------------------------------

test_long_config_line_is_refused_with_file_and_line() {
    export SNAP_STATE_DIR=$T/state
    long=$(printf "%0300d" 0)
    printf '[store]\nurl = %s/store\n[source a]\ntype = files\npath = %s/%s\n' "$T" "$T" "$long" >"$T/snap.conf"
    expect_rc 2 "$SNAP" list --config "$T/snap.conf"
    expect_err "config file $T/snap.conf:5: the line is longer than"
    # a tail that looks like a key is never read as one
    printf '[revert]\nnote = %0190d mode = transaction\n' 0 >"$T/tail.conf"
    expect_rc 2 "$SNAP" list --config "$T/tail.conf" --store "$T/store"
    expect_err ":2: the line is longer than"
    # lines that fit are read whole
    printf '[store]\nurl = %s/%080d\n' "$T" 0 >"$T/ok.conf"
    expect_rc 3 "$SNAP" list --config "$T/ok.conf"
    expect_err "/$(printf '%080d' 0): No such file"
}

test_relative_paths_without_a_current_directory_are_refused() {
    export SNAP_STATE_DIR=$T/state
    mkdir -p "$T/a" "$T/gone" && echo x >"$T/a/f"
    expect_rc 0 "$SNAP" create p1 --store "$T/store" --files "$T/a"
    cd "$T/gone" && rmdir "$T/gone"
    expect_rc 2 "$SNAP" create p2 --store "$T/store" --files a
    expect_err "cannot resolve the relative path a"
    expect_rc 2 "$SNAP" list --store store
    expect_err "cannot resolve the relative path store"
    printf '[source rel]\ntype = files\npaths = %s/a a\n' "$T" >"$T/rel.conf"
    expect_rc 2 "$SNAP" create p3 --store "$T/store" --config "$T/rel.conf"
    expect_err "[source rel]: cannot resolve the relative path a"
    expect_rc 2 "$REVERT" p1 --store "$T/store" --to restored --yes
    expect_err "current directory"
    cd "$T"
    [ ! -e /a ] && [ ! -e /store ] && [ ! -e /restored ] || fail "something was made under /"
    expect_rc 3 "$SNAP" show p2 --store "$T/store"
    expect_rc 3 "$SNAP" show p3 --store "$T/store"
}

# The library's in-memory store (for its unit tests) is not a store the tools accept.
test_in_memory_store_is_refused_by_the_tools() {
    mkdir -p "$T/app" && echo x >"$T/app/f"
    expect_rc 2 "$SNAP" create p1 --store mem://x --files "$T/app"
    expect_err "mem://x is an in-memory store"
    expect_rc 2 "$REVERT" p1 --store mem://x --yes
}

run_tests "$@"
