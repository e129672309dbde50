#!/usr/bin/env bash
# tests/services/postgres.sh start|stop|restart: a throwaway PostgreSQL cluster for the tests.
#
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` system
# user; otherwise to the caller. It listens on 127.0.0.1 at a free port and on a socket
# in its own directory. Local socket connections are trusted; TCP connections need a
# password (scram-sha-256), which the tests of wrong passwords and redaction use.
#
# `start` writes shell exports to $T_WORK/service-postgres.env:
#   PGHOST (the socket directory) PGPORT PGUSER PGDATABASE   libpq's own variables
#   T_PG_TCP_HOST                          127.0.0.1, for connections that need a password
#   T_PG_PWUSER T_PG_PWPASS                a role with a password (over TCP)
#   T_PG_BIN T_PG_DATA T_PG_RUN            binaries, data directory, how to run as owner
set -eu

T_WORK=${T_WORK:?T_WORK is not set}
base=$T_WORK/postgres
data=$base/data
sock=$base/sock
env_file=$T_WORK/service-postgres.env

pg_bin() {
    local d
    for d in "${PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    echo "postgres: no initdb found (install postgresql-15)" >&2
    return 1
}

BIN=$(pg_bin)

if [ "$(id -u)" = 0 ]; then
    owner=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    owner=$(id -un)
    as_owner() { "$@"; }
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    rm -rf "$base"
    mkdir -p "$data" "$sock"
    chown -R "$owner" "$base"
    chmod 700 "$data"
    chmod 755 "$base" "$sock"
    local port
    port=$(free_port)
    as_owner "$BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = 60
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
log_min_messages = warning
EOF
    cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF
    as_owner "$BIN/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 start >/dev/null
    local pw
    pw=pw-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
    PGHOST=$sock PGPORT=$port "$BIN/psql" -X -q -U postgres -d postgres -v ON_ERROR_STOP=1 <<EOF
ALTER ROLE postgres PASSWORD '$pw';
CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '$pw';
EOF
    cat >"$env_file" <<EOF
export PGHOST='$sock'
export PGPORT='$port'
export PGUSER='postgres'
export PGDATABASE='postgres'
unset PGPASSWORD PGSERVICE PGSSLMODE
export T_PG_TCP_HOST='127.0.0.1'
export T_PG_PWUSER='pwuser'
export T_PG_PWPASS='$pw'
export T_PG_BIN='$BIN'
export T_PG_DATA='$data'
export T_PG_OWNER='$owner'
EOF
    echo "postgres: started on port $port, socket $sock"
}

stop() {
    [ -d "$data" ] || return 0
    as_owner "$BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$base"
}

restart() {
    as_owner "$BIN/pg_ctl" -D "$data" -l "$base/server.log" -m fast -w -t 60 restart >/dev/null
}

case ${1:-} in
start) start ;;
stop) stop ;;
restart) restart ;;
*) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
