#!/bin/bash
# The contract of edoburu/pgbouncer's entrypoint, for a compose file: without a pgbouncer.ini in
# /etc/pgbouncer it writes one from the environment (DB_HOST is required; DB_NAME defaults to `*`,
# every database; AUTH_TYPE to md5; ADMIN_USERS to postgres; the pooler listens on 0.0.0.0:5432),
# and DB_USER's password goes into the auth file (as is for AUTH_TYPE plain or scram-sha-256, else
# hashed as md5); a mounted pgbouncer.ini is used unchanged. Then exec: the pooler is PID 1.
set -euo pipefail

config_dir=/etc/pgbouncer
config=$config_dir/pgbouncer.ini
auth_file=${AUTH_FILE:-$config_dir/userlist.txt}
[ -e "$auth_file" ] || touch "$auth_file"

if [ -n "${DB_USER:-}" ] && [ -n "${DB_PASSWORD:-}" ] && ! grep -q "^\"$DB_USER\"" "$auth_file"; then
    case ${AUTH_TYPE:-md5} in
        plain | scram-sha-256) secret=$DB_PASSWORD ;;
        *) secret="md5$(printf '%s%s' "$DB_PASSWORD" "$DB_USER" | md5sum | cut -d ' ' -f 1)" ;;
    esac
    printf '"%s" "%s"\n' "$DB_USER" "$secret" >>"$auth_file"
    echo "standin: wrote the credentials of '$DB_USER' to $auth_file"
fi

# Settings written only when their variable is set: the variable is the setting's name in capitals.
optional=(AUTH_HBA_FILE AUTH_USER AUTH_QUERY AUTH_DBNAME POOL_MODE MAX_CLIENT_CONN DEFAULT_POOL_SIZE
    MIN_POOL_SIZE RESERVE_POOL_SIZE RESERVE_POOL_TIMEOUT MAX_DB_CONNECTIONS MAX_USER_CONNECTIONS
    SERVER_ROUND_ROBIN MAX_PREPARED_STATEMENTS APPLICATION_NAME_ADD_HOST LOG_CONNECTIONS
    LOG_DISCONNECTIONS LOG_POOLER_ERRORS LOG_STATS STATS_PERIOD VERBOSE STATS_USERS SERVER_RESET_QUERY
    SERVER_RESET_QUERY_ALWAYS SERVER_CHECK_DELAY SERVER_CHECK_QUERY SERVER_LIFETIME SERVER_IDLE_TIMEOUT
    SERVER_CONNECT_TIMEOUT SERVER_LOGIN_RETRY CLIENT_LOGIN_TIMEOUT QUERY_TIMEOUT QUERY_WAIT_TIMEOUT
    CLIENT_IDLE_TIMEOUT IDLE_TRANSACTION_TIMEOUT TCP_KEEPALIVE)

if [ ! -f "$config" ]; then
    : "${DB_HOST:?Setup pgbouncer config error! You must set DB_HOST env}"
    {
        echo "[databases]"
        echo "${DB_NAME:-*} = host=$DB_HOST port=${DB_PORT:-5432} auth_user=${DB_USER:-postgres}"
        echo "[pgbouncer]"
        echo "listen_addr = ${LISTEN_ADDR:-0.0.0.0}"
        echo "listen_port = ${LISTEN_PORT:-5432}"
        echo "unix_socket_dir = ${UNIX_SOCKET_DIR:-}"
        echo "user = postgres"
        echo "auth_file = $auth_file"
        echo "auth_type = ${AUTH_TYPE:-md5}"
        echo "admin_users = ${ADMIN_USERS:-postgres}"
        echo "ignore_startup_parameters = ${IGNORE_STARTUP_PARAMETERS:-extra_float_digits}"
        for name in "${optional[@]}"; do
            if [ -n "${!name:-}" ]; then
                echo "${name,,} = ${!name}"
            fi
        done
    } >"$config"
    echo "standin: wrote $config"
fi

exec "$@"
