#!/bin/sh
# As the official entrypoint: a command starting with redis-server runs as `redis` on a /data it owns;
# exec, so the server is PID 1 and gets compose's SIGTERM.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
