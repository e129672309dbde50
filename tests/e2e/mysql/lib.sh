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
