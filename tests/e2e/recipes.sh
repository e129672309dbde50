#!/usr/bin/env bash
# The recipes of docs/recipes/: each YAML file parsed with a real parser (python3-yaml) and
# checked for the fields its system needs (tests/e2e/recipes.py check), and each recipe's
# commands run as its system would run them, against the test PostgreSQL: the snap before,
# a migration that fails, the revert, and a retry of each step.
# needs: postgres
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg/lib.sh"

R=$T_ROOT/docs/recipes
PY=$T_ROOT/tests/e2e/recipes.py

# A database with three rows, a config and store of the test's own, the tools on PATH under
# the names the recipes use (snap and revert in the image, dbsnap and dbrevert packaged).
r_setup() {
    DB=$(db_name "r$(basename "$T" | tr -dc 'a-z' | head -c 12)")
    q -d postgres -c "CREATE DATABASE \"$DB\""
    q -d "$DB" -c "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2), (3)"
    mkdir -p "$T/bin" "$T/work/scripts" "$T/state"
    chmod 700 "$T/state"
    ln -s "$SNAP" "$T/bin/snap"
    ln -s "$REVERT" "$T/bin/revert"
    ln -s "$SNAP" "$T/bin/dbsnap"
    ln -s "$REVERT" "$T/bin/dbrevert"
    printf '[store]\nurl = %s\n\n[source db]\ntype = postgres\ndsn = dbname=%s\n' "$T/store" "$DB" >"$T/snap.conf"
    export PATH=$T/bin:$PATH SNAP_CONFIG=$T/snap.conf SNAP_STATE_DIR=$T/state SNAP_STORE=$T/store
    export PGDATABASE=$DB RUNNER_TEMP=$T/runner CI_PROJECT_DIR=$T/work
    export SECRET_SNAP_KEY=0123456789abcdef0123456789abcdef SNAP_KEY=0123456789abcdef0123456789abcdef
    mkdir -p "$T/runner"
    export RECIPE_KEEP=SNAP_CONFIG,SNAP_STATE_DIR,SNAP_STORE,PGHOST,PGPORT,PGUSER,PGDATABASE,PGPASSWORD
    # The migration the CI recipes run: it changes the data, then fails (or not).
    cat >"$T/work/scripts/migrate.sh" <<EOF
#!/bin/sh
psql -X -q -d "$DB" -c "INSERT INTO t VALUES (99); ALTER TABLE t ADD COLUMN broken int"
[ -z "\${MIGRATION_OK:-}" ] || exit 0
echo "migration failed" >&2
exit 1
EOF
    chmod +x "$T/work/scripts/migrate.sh"
    cd "$T/work"
}

# The CI recipes name the database with --pg: a config of the store alone.
store_only_conf() { printf '[store]\nurl = %s\n' "$T/store" >"$T/snap.conf"; }

rows() { q -d "$DB" -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"; }
damage() { q -d "$DB" -c "DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (42)"; }
snapshots() { "$SNAP" list --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["snapshots"]))'; }

test_recipes_parse_and_carry_the_fields() {
    expect_rc 0 python3 "$PY" check "$R"
    # The checker can fail: a Job without backoffLimit is caught.
    mkdir "$T/bad" && cp "$R"/* "$T/bad/"
    sed -i '/backoffLimit/d' "$T/bad/helm-pre-upgrade.yaml"
    expect_rc 1 python3 "$PY" check "$T/bad"
    expect_err "helm-pre-upgrade.yaml: Job myapp-snap-pre-upgrade: no backoffLimit"
}

test_k8s_job_and_its_retry() {
    r_setup
    expect_rc 0 python3 "$PY" k8s "$R/k8s-job.yaml" snap-before-release
    expect_rc 0 "$SNAP" show pre-v42
    expect_out "stage=pre-release"
    # A retried pod keeps the snapshot and succeeds.
    expect_rc 0 python3 "$PY" k8s "$R/k8s-job.yaml" snap-before-release
    expect_out "exists with the same sources; nothing was captured"
    [ "$(snapshots)" = 1 ] || fail "the retry made another snapshot"
    damage
    expect_rc 0 "$REVERT" pre-v42 --yes
    [ "$(rows)" = "1,2,3" ] || fail "rows after the revert: $(rows)"
}

test_helm_pre_upgrade_hook() {
    r_setup
    expect_rc 0 python3 "$PY" k8s "$R/helm-pre-upgrade.yaml" myapp-snap-pre-upgrade
    expect_rc 0 "$SNAP" show pre-upgrade-r7
    expect_out "app=myapp"
    expect_rc 0 python3 "$PY" k8s "$R/helm-pre-upgrade.yaml" myapp-snap-pre-upgrade
    expect_out "exists with the same sources; nothing was captured"
    [ "$(snapshots)" = 1 ] || fail "the retry made another snapshot"
}

# PreSync snaps, the sync breaks the data, SyncFail reverts; SyncFail run again (a retry)
# leaves the data at the same point, not at the safety snapshot the first revert took.
test_argocd_presync_syncfail() {
    r_setup
    expect_rc 0 python3 "$PY" k8s "$R/argocd-hooks.yaml" snap-presync
    damage
    [ "$(rows)" = "1,3,42" ] || fail "the damage did not happen"
    expect_rc 0 python3 "$PY" k8s "$R/argocd-hooks.yaml" snap-syncfail-revert
    expect_out "the sync failed: reverting to presync-"
    [ "$(rows)" = "1,2,3" ] || fail "rows after SyncFail: $(rows)"
    damage
    expect_rc 0 python3 "$PY" k8s "$R/argocd-hooks.yaml" snap-syncfail-revert
    [ "$(rows)" = "1,2,3" ] || fail "rows after SyncFail ran again: $(rows)"
    # Without a presync snapshot the hook fails clearly.
    export APP_OVERRIDE=1
    sed 's/value: "myapp"/value: "other"/' "$R/argocd-hooks.yaml" >"$T/other.yaml"
    expect_rc 3 python3 "$PY" k8s "$T/other.yaml" snap-syncfail-revert
    expect_err "no presync snapshot of other to revert to"
}

# A failing migration is reverted; "re-run failed jobs" keeps the first snapshot and reverts
# to it again; a migration that succeeds is kept.
test_github_actions_job() {
    r_setup
    store_only_conf
    expect_rc 1 python3 "$PY" github "$R/github-actions.yml" c0ffee
    expect_out "step: revert when the migration failed"
    [ "$(rows)" = "1,2,3" ] || fail "rows after the failed run: $(rows)"
    q -d "$DB" -c "SELECT 1 FROM information_schema.columns WHERE table_name = 't' AND column_name = 'broken'" | grep -q 1 &&
        fail "the migration's column survived the revert"
    expect_rc 1 python3 "$PY" github "$R/github-actions.yml" c0ffee
    expect_out "exists with the same sources; nothing was captured"
    [ "$(rows)" = "1,2,3" ] || fail "rows after the re-run: $(rows)"
    MIGRATION_OK=1 expect_rc 0 python3 "$PY" github "$R/github-actions.yml" beef01
    ! grep -q "step: revert" "$T/out" || fail "the revert step ran after a success"
    [ "$(rows)" = "1,2,3,99" ] || fail "rows after the successful migration: $(rows)"
}

test_gitlab_ci_job() {
    r_setup
    store_only_conf
    expect_rc 1 python3 "$PY" gitlab "$R/gitlab-ci.yml" c0ffee
    expect_out "after_script (failed)"
    [ "$(rows)" = "1,2,3" ] || fail "rows after the failed job: $(rows)"
    expect_rc 0 "$SNAP" show pre-migrate-c0ffee
    expect_rc 1 python3 "$PY" gitlab "$R/gitlab-ci.yml" c0ffee
    expect_out "exists with the same sources; nothing was captured"
    [ "$(rows)" = "1,2,3" ] || fail "rows after the retried job: $(rows)"
    MIGRATION_OK=1 expect_rc 0 python3 "$PY" gitlab "$R/gitlab-ci.yml" beef01
    [ "$(rows)" = "1,2,3,99" ] || fail "rows after the successful migration: $(rows)"
}

test_systemd_nightly() {
    r_setup
    expect_rc 0 python3 "$PY" systemd "$R/snap-nightly.service"
    expect_rc 0 "$SNAP" show "nightly-$(date -u +%Y%m%d)"
    expect_out "schedule=nightly"
    expect_rc 0 python3 "$PY" systemd "$R/snap-nightly.service"
    expect_out "exists with the same sources; nothing was captured"
    [ "$(snapshots)" = 1 ] || fail "a second run the same day made another snapshot"
}

run_tests "$@"
