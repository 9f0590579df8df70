# Stands for redis:${REDIS_VERSION}, with Debian's redis-server (bookworm: 7.0). What our compose file
# relies on, kept as the official image has it: `redis-server` and `redis-cli` on PATH (REDISCLI_AUTH
# honoured), /data as the working directory and volume, the server run as the `redis` user.
FROM standin/base
RUN apt-get update && apt-get install -y redis-server && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
