#!/usr/bin/env bash
# Secrets that must not leak and connections that must not hang: DSN passwords however
# they are written (a '?' or '/' in them, a %-encoded key, sslpassword), passwords on the
# command line, registry credentials and a token realm on another host, and servers that
# accept a connection and never answer.
# needs: postgres mariadb
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC1091
. "$T_WORK/service-postgres.env"
# shellcheck disable=SC1091
. "$T_WORK/service-mariadb.env"
export PGOPTIONS='--client-min-messages=warning'

# The role's password has a '?' and a '/', the two that cut DSNs short.
PG_PW='Zq?9/Xv-sekrit'
PG_PW_URI='Zq?9%2FXv-sekrit' # the '/' encoded as a URI needs, the '?' left as users write it
MY_PW='Mq?7/Rt-sekrit'
MY_PW_URI='Mq?7%2FRt-sekrit'

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }

pg_setup() {
    export SNAP_STATE_DIR=$T/state
    STORE=$T/store
    DB=t_sec_${FUNCNAME[1]#test_}_$$
    q -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'secuser')
        THEN CREATE ROLE secuser LOGIN SUPERUSER; END IF; END \$\$"
    q -d postgres -c "ALTER ROLE secuser PASSWORD '$PG_PW'"
    q -d postgres -c "CREATE DATABASE \"$DB\" OWNER secuser"
    q -d "$DB" -c "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 50) g"
    HP="$T_PG_TCP_HOST:$PGPORT"
}

my_setup() {
    export SNAP_STATE_DIR=$T/state
    STORE=$T/store
    DB=t_sec_${FUNCNAME[1]#test_}
    my -e "DROP DATABASE IF EXISTS \`$DB\`; CREATE DATABASE \`$DB\`;
        CREATE USER IF NOT EXISTS 'secuser'@'localhost' IDENTIFIED BY '$MY_PW';
        ALTER USER 'secuser'@'localhost' IDENTIFIED BY '$MY_PW';
        GRANT ALL ON *.* TO 'secuser'@'localhost'"
    my "$DB" -e "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)"
}

# no_secret WORD PATH...: no trace of WORD in any file below the paths
no_secret() {
    local w=$1
    shift
    ! grep -rqaF -- "$w" "$@" 2>/dev/null || { grep -raF -- "$w" "$@" | head -n 5 >&2; fail "the secret '$w' leaked"; }
}

# A silent server: accepts connections and never answers. Sets SILENT_PORT.
start_silent() {
    python3 - "$T/silent.port" <<'PY' &
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[1] + ".tmp", "w").write("%d\n" % s.getsockname()[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    held.append(s.accept()[0])
PY
    SILENT_PID=$!
    trap 'kill $SILENT_PID 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$T/silent.port" ] && break; sleep 0.1; done
    SILENT_PORT=$(cat "$T/silent.port")
}

# Each way of writing a PostgreSQL secret: the snapshot works, the secret is nowhere, the
# component is named after the database, and revert (password from PGPASSWORD) works.
pg_case() { # NAME DSN SECRET_FRAGMENT...
    local name=$1 dsn=$2 s
    shift 2
    expect_rc 0 "$SNAP" create "$name" --pg "$dsn" --store "$STORE" --json -v
    cp "$T/out" "$T/create-$name.json"
    cp "$T/err" "$T/create-$name.err"
    expect_rc 0 "$SNAP" show "$name" --store "$STORE"
    expect_out "$DB "
    expect_out "postgres"
    cp "$T/out" "$T/show-$name.txt"
    expect_rc 0 "$SNAP" show "$name" --store "$STORE" --json
    cp "$T/out" "$T/show-$name.json"
    [ "$(jq -r '.components[0].name' "$T/show-$name.json")" = "$DB" ] || fail "component name: $(jq -r '.components[0].name' "$T/show-$name.json")"
    for s in "$@"; do no_secret "$s" "$STORE" "$T/create-$name.json" "$T/create-$name.err" "$T/show-$name.txt" "$T/show-$name.json"; done
    grep -qF "a password given on the command line (--pg)" "$T/create-$name.err" || fail "no warning about the password"
}

test_pg_password_forms_never_leak() {
    pg_setup
    pg_case p1 "postgresql://secuser:$PG_PW_URI@$HP/$DB" sekrit 'Zq?9' 'Zq%3F9'
    grep -qF "postgresql://secuser@$HP/$DB" "$STORE/catalog/p1.json" || fail "the redacted URI is not in the manifest"
    pg_case p2 "postgresql://secuser@$HP/$DB?sslmode=disable&pass%77ord=Zq%3F9%2FXv-sekrit" sekrit 'Zq%3F9' 'pass%77ord'
    grep -qF "sslmode=disable" "$STORE/catalog/p2.json" || fail "the other options were dropped"
    pg_case p3 "host=$T_PG_TCP_HOST port=$PGPORT user=secuser dbname=$DB password='$PG_PW' sslpassword=SslKeySekrit77" \
        sekrit 'Zq?9' SslKeySekrit77 sslpassword
    # revert: the password from PGPASSWORD, the target named by the local configuration
    printf '[source %s]\ntype = postgres\ndsn = postgresql://secuser@%s/%s\n' "$DB" "$HP" "$DB" >"$T/local.conf"
    q -d "$DB" -c "DELETE FROM notes"
    PGPASSWORD=$PG_PW expect_rc 0 "$REVERT" p1 --store "$STORE" --config "$T/local.conf" --yes --json -v
    [ "$(q -d "$DB" -c 'SELECT count(*) FROM notes')" = 50 ] || fail "notes not restored"
    no_secret sekrit "$STORE" "$SNAP_STATE_DIR" "$T/out" "$T/err"
}

# A '/' or '@' in a URI's password makes libpq read part of it as the host, the port or the
# database: refused, with no piece of it in the message or anywhere else.
test_pg_unencoded_password_refused_without_fragment() {
    pg_setup
    expect_rc 2 "$SNAP" create p1 --pg "postgresql://secuser:$PG_PW@$HP/$DB" --store "$STORE" --json
    expect_err "invalid postgres dsn"
    no_secret "Xv-sekrit" "$T/out" "$T/err"
    no_secret "Zq?9" "$T/out" "$T/err"
    expect_rc 2 "$SNAP" create p2 --pg "postgresql://secuser:Zq@9Xv-sekrit@$HP/$DB" --store "$STORE" --json
    no_secret "9Xv-sekrit" "$T/out" "$T/err"
    [ ! -e "$STORE/catalog/p1.json" ] && [ ! -e "$STORE/catalog/p2.json" ] || fail "a snapshot was committed"
}

# The password is gone from /proc/PID/cmdline while snap runs (held at a fail point).
test_pg_password_scrubbed_from_cmdline() {
    pg_setup
    SNAP_FAILPOINT=snap-before-commit:wait=$T/go "$SNAP" create p1 --store "$STORE" \
        --pg "postgresql://secuser:$PG_PW_URI@$HP/$DB" >"$T/out" 2>"$T/err" &
    local pid=$! cmd=""
    held "$T/err"
    cmd=$(tr '\0' ' ' </proc/$pid/cmdline)
    ps -o args= -p "$pid" >"$T/ps"
    touch "$T/go"
    wait "$pid" || fail "snap failed: $(cat "$T/err")"
    case $cmd in *sekrit* | *Zq*) fail "the password is in /proc/PID/cmdline: $cmd" ;; esac
    case $cmd in *"postgresql://secuser@$HP/$DB"*) ;; *) fail "the redacted DSN is not in cmdline: $cmd" ;; esac
    no_secret sekrit "$T/ps"
    [ -e "$STORE/catalog/p1.json" ] || fail "the snapshot was not committed"
}

test_mysql_password_never_leaks() {
    my_setup
    local dsn="mysql://secuser:$MY_PW_URI@localhost/$DB?socket=$MY_SOCKET"
    expect_rc 0 "$SNAP" create m1 --mysql "$dsn" --store "$STORE" --json -v
    cp "$T/out" "$T/create.json"
    cp "$T/err" "$T/create.err"
    expect_rc 0 "$SNAP" show m1 --store "$STORE" --json
    [ "$(jq -r '.components[0].name' "$T/out")" = "$DB" ] || fail "component name: $(jq -r '.components[0].name' "$T/out")"
    no_secret sekrit "$STORE" "$T/out" "$T/create.json" "$T/create.err"
    no_secret 'Mq?7' "$STORE" "$T/out" "$T/create.json" "$T/create.err"
    grep -qF "mysql://secuser@localhost/$DB" "$STORE/catalog/m1.json" || fail "the redacted dsn is not in the manifest"
    grep -qF "a password given on the command line (--mysql)" "$T/create.err" || fail "no warning about the password"
    # the password from MYSQL_PWD at revert; journals and records stay clean
    printf '[source %s]\ntype = mysql\ndsn = mysql://secuser@localhost/%s?socket=%s\n' "$DB" "$DB" "$MY_SOCKET" >"$T/local.conf"
    my "$DB" -e "DELETE FROM t"
    MYSQL_PWD=$MY_PW expect_rc 0 "$REVERT" m1 --store "$STORE" --config "$T/local.conf" --yes --json -v
    [ "$(my -N "$DB" -e 'SELECT count(*) FROM t')" = 3 ] || fail "rows not restored"
    no_secret sekrit "$STORE" "$SNAP_STATE_DIR" "$T/out" "$T/err"
    # an unencoded '/' is a usage error that shows none of the password
    expect_rc 2 "$SNAP" create m2 --mysql "mysql://secuser:$MY_PW@localhost/$DB?socket=$MY_SOCKET" --store "$STORE"
    no_secret "Rt-sekrit" "$T/out" "$T/err"
}

test_mysql_password_scrubbed_from_cmdline() {
    my_setup
    SNAP_FAILPOINT=snap-before-commit:wait=$T/go "$SNAP" create m1 --store "$STORE" \
        --mysql "mysql://secuser:$MY_PW_URI@localhost/$DB?socket=$MY_SOCKET" >"$T/out" 2>"$T/err" &
    local pid=$! cmd=""
    held "$T/err"
    cmd=$(tr '\0' ' ' </proc/$pid/cmdline)
    touch "$T/go"
    wait "$pid" || fail "snap failed: $(cat "$T/err")"
    case $cmd in *sekrit* | *Mq*) fail "the password is in /proc/PID/cmdline: $cmd" ;; esac
    case $cmd in *"mysql://secuser@localhost/$DB"*) ;; *) fail "the redacted DSN is not in cmdline: $cmd" ;; esac
}

# A server that accepts and never answers: snap and revert give up after connect_timeout.
test_pg_silent_server_times_out() {
    pg_setup
    start_silent
    printf '[snap]\nconnect_timeout = 2s\n' >"$T/c.conf"
    local t0=$SECONDS
    expect_rc 6 "$SNAP" create p1 --pg "postgresql://secuser@127.0.0.1:$SILENT_PORT/$DB" --store "$STORE" --config "$T/c.conf"
    expect_err "no answer within the connect timeout"
    [ $((SECONDS - t0)) -le 8 ] || fail "snap took $((SECONDS - t0)) s"
    PGPASSWORD=$PG_PW expect_rc 0 "$SNAP" create p2 --pg "postgresql://secuser@$HP/$DB" --store "$STORE"
    printf '[snap]\nconnect_timeout = 2s\n[source %s]\ntype = postgres\ndsn = postgresql://secuser@127.0.0.1:%s/%s\n' \
        "$DB" "$SILENT_PORT" "$DB" >"$T/r.conf"
    t0=$SECONDS
    expect_rc 6 "$REVERT" p2 --store "$STORE" --config "$T/r.conf" --yes
    expect_err "no answer within the connect timeout"
    [ $((SECONDS - t0)) -le 8 ] || fail "revert took $((SECONDS - t0)) s"
    printf '[snap]\nconnect_timeout = soon\n' >"$T/bad.conf"
    expect_rc 2 "$SNAP" create p3 --pg "postgresql://secuser@$HP/$DB" --store "$STORE" --config "$T/bad.conf"
    expect_err "bad.conf:2: [snap]: connect_timeout = soon: expected a duration"
}

test_mysql_silent_server_times_out() {
    my_setup
    start_silent
    printf '[snap]\nconnect_timeout = 2s\n' >"$T/c.conf"
    local t0=$SECONDS
    expect_rc 6 "$SNAP" create m1 --mysql "mysql://secuser@127.0.0.1:$SILENT_PORT/$DB" --store "$STORE" --config "$T/c.conf"
    expect_err "127.0.0.1:$SILENT_PORT"
    [ $((SECONDS - t0)) -le 8 ] || fail "snap took $((SECONDS - t0)) s"
    MYSQL_PWD=$MY_PW expect_rc 0 "$SNAP" create m2 --mysql "mysql://secuser@localhost/$DB?socket=$MY_SOCKET" --store "$STORE"
    printf '[snap]\nconnect_timeout = 2s\n[source %s]\ntype = mysql\ndsn = mysql://secuser@127.0.0.1:%s/%s\n' \
        "$DB" "$SILENT_PORT" "$DB" >"$T/r.conf"
    t0=$SECONDS
    expect_rc 6 "$REVERT" m2 --store "$STORE" --config "$T/r.conf" --yes
    [ $((SECONDS - t0)) -le 8 ] || fail "revert took $((SECONDS - t0)) s"
}

# A registry whose token realm is on another host (127.0.0.2) gets no Basic credentials,
# unless token_hosts names that host.
test_token_realm_on_another_host_gets_no_credentials() {
    export DOCKER_CONFIG=$T/docker SNAP_STATE_DIR=$T/state
    mkdir -p "$T/docker" deploy
    python3 "$T_ROOT/tests/services/realm-registry.py" --port-file "$T/realm.port" --log "$T/realm.log" &
    REALM_PID=$!
    trap 'kill $REALM_PID 2>/dev/null || true' EXIT
    local rp tp
    for _ in $(seq 100); do [ -s "$T/realm.port" ] && break; sleep 0.1; done
    read -r rp tp <"$T/realm.port"
    printf 'services:\n  web:\n    image: 127.0.0.1:%s/app:v1\n' "$rp" >deploy/compose.yaml
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$rp" "$(printf 'reguser:RegSekrit99' | base64 -w0)" \
        >"$T/docker/config.json"
    printf '[source deploy]\ntype = images\nmanifests = %s/deploy\n' "$T" >"$T/c.conf"
    expect_rc 0 "$SNAP" create i1 --store "$T/store" --config "$T/c.conf"
    expect_err "sends for tokens to 127.0.0.2:$tp, another host"
    grep -q "token Authorization: none" "$T/realm.log" || fail "no token was asked for"
    ! grep -q "token Authorization: Basic" "$T/realm.log" || fail "the realm on another host got the credentials"
    # named in token_hosts, it may have them
    printf 'token_hosts = 127.0.0.2\n' >>"$T/c.conf"
    expect_rc 0 "$SNAP" create i2 --store "$T/store" --config "$T/c.conf"
    grep -q "token Authorization: Basic $(printf 'reguser:RegSekrit99' | base64 -w0)" "$T/realm.log" ||
        fail "token_hosts did not allow the realm"
    no_secret RegSekrit99 "$T/store" "$T/out" "$T/err"
}

run_tests "$@"
