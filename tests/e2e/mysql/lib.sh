# tests/e2e/mysql/lib.sh: helpers of end-to-end scripts that use MariaDB (after tests/e2e/lib.sh).
# The server comes from tests/services/mariadb.sh: MY_SOCKET points at it.

my() { mariadb --no-defaults -S "$MY_SOCKET" -uroot "$@"; }

# my_dsn DB: the DSN of schema DB on the test server.
my_dsn() { echo "mysql://root@localhost/$1?socket=$MY_SOCKET"; }

# my_schemas_like PREFIX: the schemas whose name starts with PREFIX, one a line.
my_schemas_like() { my -N -e "SHOW DATABASES" | grep -F -- "$1" | grep -- "^$1" || true; }

# my_schema_exists DB
my_schema_exists() { [ -n "$(my -N -e "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$1'")" ]; }

# my_comment DB: the schema's comment (its revert marker), read without connecting to DB.
my_comment() { my -N -e "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$1'"; }

# Everything a round trip must reproduce: SHOW CREATE of every object and every table's
# checksum, with an ordered hash of the rows.
fingerprint() {
    local db=$1 t n
    for t in $(my -N -e "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='$db' AND TABLE_TYPE='BASE TABLE' ORDER BY 1"); do
        my "$db" -e "SHOW CREATE TABLE \`$t\`\G"
        my -N "$db" -e "CHECKSUM TABLE \`$t\`" | cut -f2
        my -N "$db" -e "SELECT * FROM \`$t\` ORDER BY 1" | sha256sum
    done
    for n in $(my -N -e "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA='$db' ORDER BY 1"); do
        my "$db" -e "SHOW CREATE VIEW \`$n\`\G"
    done
    for n in $(my -N -e "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='$db' ORDER BY 1"); do
        my "$db" -e "SHOW CREATE TRIGGER \`$n\`\G" | grep -v '^ *Created:'
    done
    my -N -e "SELECT TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='$db' ORDER BY 1"
    for n in $(my -N -e "SELECT CONCAT(ROUTINE_TYPE, ':', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='$db' ORDER BY 1"); do
        my "$db" -e "SHOW CREATE ${n%%:*} \`${n#*:}\`\G"
    done
    for n in $(my -N -e "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA='$db' ORDER BY 1"); do
        my "$db" -e "SHOW CREATE EVENT \`$n\`\G"
    done
}
