# Stands for edoburu/pgbouncer:v1.24.1-p1 (build.py: PGBOUNCER_IMAGE), the PgBouncer image compose
# files commonly name, with Debian trixie's pgbouncer 1.24.1 on a trixie root (its libc is newer than
# bookworm's). What a compose file relies on, kept as that image has it: configured by environment
# variables (pgbouncer-entrypoint.sh: DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME, AUTH_TYPE,
# POOL_MODE, ADMIN_USERS and the other knobs it lists), or by a pgbouncer.ini mounted at
# /etc/pgbouncer/pgbouncer.ini (then used as is, with /etc/pgbouncer/userlist.txt); listening on
# 5432; run as `postgres`; `psql` and `pg_isready` on PATH for a healthcheck; the pooler as PID 1
# (SIGTERM, SIGINT as pgbouncer takes them). Not kept: DATABASE_URL(S), Alpine, the exact build.
FROM standin/base-trixie
RUN apt-get update && apt-get install -y pgbouncer postgresql-client && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/pgbouncer/pgbouncer.ini && touch /etc/pgbouncer/userlist.txt \
    && { test -e /usr/bin/pgbouncer || ln -s ../sbin/pgbouncer /usr/bin/pgbouncer; } \
    && mkdir -p /var/log/pgbouncer /var/run/pgbouncer \
    && chown -R postgres:postgres /etc/pgbouncer /var/log/pgbouncer /var/run/pgbouncer
COPY pgbouncer-entrypoint.sh /entrypoint.sh
EXPOSE 5432
USER postgres
ENTRYPOINT ["/entrypoint.sh"]
CMD ["/usr/bin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
