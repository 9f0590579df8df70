"""The real stack for one benchmark run, started natively with docker-compose.yml's own commands.

Like the test suite (tests/conftest.py), it makes a database of its own (created, migrated by the
compose `migrate` command, dropped at the end) and a Redis database of its own, and runs each
service with tools.native on a free loopback port:

    upstream  the compose `upstream` command (the slow third-party stand-in)
    api       the compose `api` command: the generated application, one worker process unless a row
              sets WEB_CONCURRENCY (the worker-process rows)
    threads   the same, restarted with THREADPOOL_TOKENS raised for a row (the threads-compete rows)
    anti      the same command serving bench.articles_app (anti-patterns + the articles' routes)
    bare      the same command serving bench.bare_app (bare FastAPI, for the overhead ratio)
    routed    the same, with the route in an included APIRouter (bench.bare_app:routed_app)
    plain     the compose `api` command with OBSERVABILITY=false: no watchdog, no metrics (started
              by its overhead row, which sets that; the cost of observability is api vs plain)
    worker    the compose `worker` command, when the project has Celery
    raw       bench.rawserver, to measure the load generator's own ceiling
    otlp_sink bench.otlp_sink, the collector the tracing rows export to (it discards every span)
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from {{ cookiecutter.project_slug }}.config import AdminSettings, Settings, load_settings

from tools.database import drop_database
from tools.embedded import use_local_servers
{%- if cookiecutter.use_celery == "yes" %}
from tools.embedded_redis import isolated_redis_env
{%- endif %}
from tools.native import (
    PROJECT_ROOT,
    Service,
    compose_services,
    free_port,
    isolated_env,
    native_env,
    run_once,
)

SERVE_LINE = "serve: "  # what serve.py prints before uvicorn starts
# The ASGI app each api-command service serves instead of the compose one (app instances, not factories).
APPS = {
    "api": None,
    "threads": None,
    "anti": "bench.articles_app:app",
    "bare": "bench.bare_app:app",
    "routed": "bench.bare_app:routed_app",
    "plain": None,
}


def redis_db_number() -> str:
    """BENCH_REDIS_DB, else TEST_REDIS_DB (so a test run keeps to its own db), else 14."""
    return os.environ.get("BENCH_REDIS_DB") or os.environ.get("TEST_REDIS_DB") or "14"


class RawServer:
    """bench.rawserver (or another bench module serving `PORT`) in a process group of its own (not
    a compose service)."""

    def __init__(self, log_dir: Path, module: str = "bench.rawserver") -> None:
        self.port = free_port()
        self.module = module
        self.log_path = log_dir / f"{module.removeprefix('bench.')}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RawServer":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, str(self.port)],
                cwd=PROJECT_ROOT,
                env=native_env({}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log_path.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.module} is not listening on {self.port} after {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class Stack:
    """`with Stack(log_dir) as stack:` everything is up and ready; on exit everything is removed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):
            old.unlink()
        self.has_worker = "worker" in compose_services()
        upstream_port = free_port()
        use_local_servers(log_dir)  # the configured servers, or embedded ones for this run
        # The tests' isolation: a database of its own (and a Redis database, emptied before and after).
        self.env = isolated_env("bench", upstream_port)
{%- if cookiecutter.use_celery == "yes" %}
        self.env.update(isolated_redis_env(redis_db_number()))
{%- endif %}
        # One worker process per server, whatever the CPUs and max_connections: the full-speed rows'
        # ceilings are one process's; the rows about worker processes set their own WEB_CONCURRENCY.
        self.env["WEB_CONCURRENCY"] = "1"
        self.upstream = Service.from_compose(
            "upstream", self.env, port=upstream_port, log_path=log_dir / "upstream.log"
        )
        self.services: dict[str, Service] = {}
        self.overrides: dict[str, dict[str, str]] = {}  # per server: settings beyond self.env
        self.budgets: dict[str, str | None] = {}  # per server: the connection budget it printed
        self.worker: Service | None = None
        self.raw = RawServer(log_dir)
        self.otlp_sink = RawServer(log_dir, "bench.otlp_sink")
        self.settings: Settings | None = None
        self._database_made = False

    def __enter__(self) -> "Stack":
        try:
            self._up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _up(self) -> None:
        # This process reads the same settings as the services (for the report and the database).
        os.environ.update(self.env)
        self.settings = load_settings()
        self._flush_redis()
        self.upstream.start()
        self.raw.start()
        self.otlp_sink.start()
        if self.has_worker:
            log_path = self.log_dir / "worker.log"
            self.worker = Service.from_compose("worker", self.env, log_path=log_path).start()
        for name in ("bare", "routed"):
            self.services[name] = self._api_service(name).start()
        self._database_made = True  # before: a half-made database and its roles are dropped too
        run_once("provision", self.env)
        run_once("migrate", self.env)
        for name in ("api", "threads", "anti"):
            self.services[name] = self._api_service(name).start()
        self.upstream.wait_http("/health")
        for name, service in self.services.items():
            service.wait_http("/health/live", timeout=60)
            self._read_budget(name)
        self.services["api"].wait_http("/health/ready", timeout=30)
        if self.worker is not None:
            self.worker.wait_log("ready.", timeout=60)
        self.raw.wait()
        self.otlp_sink.wait()

    def _api_service(self, name: str) -> Service:
        log_path = self.log_dir / f"{name}.log"
        env = {**self.env, **self.overrides.get(name, {})}
        return Service.from_compose(
            "api", env, port=free_port(), log_path=log_path, app=APPS[name], factory=False
        )

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_sink.port}"

    def env_of(self, name: str) -> dict[str, str]:
        return self.overrides.get(name, {})

    def restart(self, name: str, overrides: dict[str, str] | None = None) -> Service:
        """A fresh process, with these settings beyond the run's (None: the ones it had).

        Also after a cut anti-pattern row: the old process still owes minutes of blocking."""
        if overrides is not None:
            self.overrides[name] = overrides
        if name in self.services:  # (a server only some rows use is started by the first of them)
            self.services[name].kill()
        service = self._api_service(name)
        # Its log is appended to: this start's lines begin here (earlier ones may be megabytes).
        start = service.log_path.stat().st_size if service.log_path and service.log_path.exists() else 0
        service.start().wait_http("/health/live", timeout=60)
        self.services[name] = service
        self._read_budget(name, start)
        return service

    def _read_budget(self, name: str, start: int = 0) -> None:
        """The `serve: connection budget: ...` line the server printed from `start` in its log: the
        workers it chose and the connections they may hold, in its own words."""
        log_path = self.services[name].log_path
        if log_path is None:  # (every bench server logs to a file)
            raise RuntimeError(f"{name} has no log file")
        with log_path.open("rb") as log:
            log.seek(start)
            lines = log.read().decode(errors="replace").splitlines()
        line = next((line for line in lines if line.startswith(SERVE_LINE)), None)
        self.budgets[name] = line.removeprefix(SERVE_LINE) if line else None

    def __exit__(self, *exc_info: object) -> None:
        for service in self.services.values():
            service.kill()  # nothing to drain: a clean shutdown could wait on a blocked backlog
        if self.worker is not None:
            self.worker.stop()
        self.upstream.stop()
        self.raw.stop()
        self.otlp_sink.stop()
        if self._database_made and self.settings is not None:
            drop_database(load_settings(AdminSettings))
        self._flush_redis()

    def _flush_redis(self) -> None:
{%- if cookiecutter.use_celery == "yes" %}
        if not self.has_worker or self.settings is None:
            return
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2)
        try:
            client.flushdb()
        finally:
            client.close()
{%- else %}
        """Nothing to empty: this project has no Celery."""
{%- endif %}
