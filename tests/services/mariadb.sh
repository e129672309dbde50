#!/usr/bin/env bash
# tests/services/mariadb.sh start|stop|restart: a throwaway MariaDB server for the end-to-end tests.
#
# start: mariadb-install-db into $T_WORK/mariadb, a private socket and a free loopback port,
# then writes the shell exports the tests use to $T_WORK/service-mariadb.env:
#   MY_SOCKET MY_PORT MY_HOST MY_USER MY_DATADIR MY_PIDFILE MY_CNF
# The server runs as the invoking user (root runs it with --user=root). local_infile is on,
# binary logging is on (so the binlog position is recorded), the event scheduler is off.
set -eu
: "${T_WORK:?T_WORK must be set}"
base=$T_WORK/mariadb
data=$base/data
sock=$base/mysqld.sock
pidf=$base/mysqld.pid
envf=$T_WORK/service-mariadb.env

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

start() {
    rm -rf "$base"
    mkdir -p "$data" "$base/tmp"
    local user_opt=()
    [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    local port
    port=$(free_port)
    # TLS: a throwaway CA and a server certificate for 127.0.0.1 (and a second CA that
    # signed nothing, for the verification test)
    local tls=$base/tls
    mkdir -p "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=snap-test-ca \
            -keyout ca.key -out ca.pem
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca \
            -keyout other.key -out other-ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.pem
    ) >"$base/tls.log" 2>&1
    cat >"$base/my.cnf" <<CNF
[mysqld]
datadir=$data
socket=$sock
port=$port
bind-address=127.0.0.1
pid-file=$pidf
tmpdir=$base/tmp
log-error=$base/error.log
log-bin=$base/binlog
server-id=1
binlog-format=ROW
local-infile=1
skip-name-resolve
innodb-buffer-pool-size=128M
innodb-log-file-size=64M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
max-allowed-packet=64M
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
event-scheduler=OFF
ssl-ca=$tls/ca.pem
ssl-cert=$tls/server.pem
ssl-key=$tls/server.key
log-bin-trust-function-creators=1
CNF
    mariadb-install-db --defaults-file="$base/my.cnf" "${user_opt[@]}" \
        --auth-root-authentication-method=normal --skip-test-db >"$base/install.log" 2>&1 || {
        cat "$base/install.log"
        exit 1
    }
    run_server
    cat >"$envf" <<ENV
export MY_SOCKET='$sock'
export MY_PORT='$port'
export MY_HOST=127.0.0.1
export MY_USER=root
export MY_DATADIR='$data'
export MY_PIDFILE='$pidf'
export MY_CNF='$base/my.cnf'
export MY_TLS_CA='$tls/ca.pem'
export MY_TLS_OTHER_CA='$tls/other-ca.pem'
ENV
    echo "mariadb: running on $sock and 127.0.0.1:$port"
}

run_server() {
    local user_opt=()
    [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    (setsid mariadbd --defaults-file="$base/my.cnf" "${user_opt[@]}" \
        </dev/null >>"$base/server.out" 2>&1 &)
    for _ in $(seq 1 150); do
        if mariadb --no-defaults -S "$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$base/error.log"
    exit 1
}

# restart: kill -9 the server (a crash, as the tests need) and start it again on the same data
restart() {
    local pid
    pid=$(cat "$pidf")
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$sock" "$pidf"
    run_server
}

stop() {
    [ -f "$pidf" ] || return 0
    local pid
    pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -rf "$base"
}

case ${1:-} in
start) start ;;
restart) restart ;;
stop) stop ;;
*) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
