# Stands for postgres:${PG_MAJOR} before 18, with Debian's postgresql-${PG_MAJOR} (bookworm: 15). The
# layout our compose file relies on, as the official image has it: PGDATA /var/lib/postgresql/data,
# the volume there, the major's binaries first on PATH (pg_isready, psql), the entrypoint's
# POSTGRES_* variables (postgres-entrypoint.sh), SIGINT as the stop signal (a fast shutdown).
FROM standin/base
ARG PG_MAJOR
# No cluster at install time: the entrypoint makes one in PGDATA, as the official image does.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/standin.conf \
    && apt-get update && apt-get install -y postgresql-${PG_MAJOR} && rm -rf /var/lib/apt/lists/*
ENV PG_MAJOR=${PG_MAJOR} PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
