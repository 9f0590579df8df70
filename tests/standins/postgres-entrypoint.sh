#!/bin/bash
# The official entrypoint's contract, for our compose file: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB make the superuser and database with initdb on an empty PGDATA (scram-sha-256 over TCP),
# the server runs as `postgres` and is PID 1 (exec), and from 18 on a volume at the old
# /var/lib/postgresql/data is refused (docker-library/postgres#1259), as the 18+ image refuses it.
set -euo pipefail

if [ "$PG_MAJOR" -ge 18 ] && mountpoint -q /var/lib/postgresql/data; then
    cat >&2 <<MESSAGE
Error: in 18+, these Docker images are configured to store database data in a format which is
       compatible with "pg_ctlcluster" (specifically, using major-version-specific directory names).
       See also https://github.com/docker-library/postgres/pull/1259
       Counter to that, there appears to be PostgreSQL data in:
         /var/lib/postgresql/data (unused mount/volume)
MESSAGE
    exit 1
fi

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?the official image refuses to start without POSTGRES_PASSWORD}"
        user=${POSTGRES_USER:-postgres}
        pwfile=$(mktemp) && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile" && chown postgres "$pwfile"
        as_postgres initdb --username="$user" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
        rm -f "$pwfile"
        printf "listen_addresses = '*'\nunix_socket_directories = '/var/run/postgresql,/tmp'\n" \
            >>"$PGDATA/postgresql.conf"
        echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        database=${POSTGRES_DB:-$user}
        if [ "$database" != postgres ]; then
            # A private socket while initialising: nothing (the healthcheck included) sees it early.
            init_socket=$(mktemp -d) && chown postgres "$init_socket"
            as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k $init_socket" start >/dev/null
            as_postgres psql -h "$init_socket" -U "$user" -d postgres -v ON_ERROR_STOP=1 -q \
                -c "CREATE DATABASE \"$database\""
            as_postgres pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
        fi
        echo "standin: initialised $PGDATA for $user"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
