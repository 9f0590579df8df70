"""Run docker-compose.yml's services natively, with the very argv compose runs.

`python -m tools.native up` is `make dev`; the tests use the same functions, so what they prove
about a service is proven about its compose command. Containers find each other by service name
(compose `environment`); natively the addresses come from .env or the caller, and each uvicorn
service gets its host and port through UVICORN_HOST / UVICORN_PORT, which uvicorn reads itself.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import yaml
from psycopg2 import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def service_argv(name: str) -> list[str]:
    return list(compose_services()[name]["command"])


def compose_port(name: str) -> int | None:
    port = compose_services()[name].get("environment", {}).get("UVICORN_PORT")
    return int(port) if port else None


def native_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment plus this interpreter's bin/ first on PATH, as /opt/venv/bin is in the image."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **overrides}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _admin_connection(settings):
    connection = psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.postgres_password or None,
        dbname="postgres",
        connect_timeout=5,
    )
    connection.autocommit = True
    return connection


def ensure_database(settings) -> bool:
    """Create POSTGRES_DB if it is missing; True when it was created."""
    connection = _admin_connection(settings)  # not `with connection`: that opens a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.postgres_db)))
            return True
    finally:
        connection.close()


def drop_database(settings) -> None:
    connection = _admin_connection(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(settings.postgres_db)
                )
            )
    finally:
        connection.close()


class Service:
    """One compose service as a native process group (so a kill reaches its children too)."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        port: int | None = None,
        log_dir: Path | None = None,
        app: str | None = None,
    ):
        """`app` swaps the ASGI app in a uvicorn service's argv (the anti-pattern app, in tests)."""
        self.name = name
        self.argv = service_argv(name)
        if app is not None:
            self.argv = [app if ":" in part and not part.startswith("-") else part for part in self.argv]
        self.port = port
        self.env = native_env(env)
        if port is not None:
            self.env.update(UVICORN_HOST="127.0.0.1", UVICORN_PORT=str(port))
        self.log_path = (log_dir or PROJECT_ROOT) / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Service":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer {path} in {timeout} s:\n{self.log_tail()}")

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {text!r} in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def run_once(name: str, env: dict[str, str]) -> None:
    """A one-shot service (migrate): runs to completion or raises with its output."""
    result = subprocess.run(
        service_argv(name), cwd=PROJECT_ROOT, env=native_env(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM / SIGHUP: stop the services as Ctrl-C does


def up() -> None:
    """`make dev`. API_PORT and UPSTREAM_PORT move the services off their compose ports."""
    sys.path.insert(0, str(PROJECT_ROOT))
    os.chdir(PROJECT_ROOT)
    from {{ cookiecutter.project_slug }}.config import load_settings

    settings = load_settings()
    try:
        if ensure_database(settings):
            print(f"created database {settings.postgres_db}")
    except psycopg2.OperationalError as error:
        where = f"{settings.postgres_host}:{settings.postgres_port}"
        sys.exit(f"PostgreSQL at {where} is not reachable ({str(error).strip()}); start it, or fix .env")
    ports = {
        "api": int(os.environ.get("API_PORT") or compose_port("api")),
        "upstream": int(os.environ.get("UPSTREAM_PORT") or compose_port("upstream")),
    }
    env = {"UPSTREAM_URL": f"http://127.0.0.1:{ports['upstream']}"} if os.environ.get("UPSTREAM_PORT") else {}
    run_once("migrate", env)
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    services = compose_services()
    running = []
    try:
        for name in ("upstream", "worker", "api"):
            if name in services:
                running.append(Service(name, env, port=ports.get(name), log_dir=None).start())
                print(f"started {name}: {' '.join(service_argv(name))}  (log: {name}.log)")
        api = running[-1]
        api.wait_http("/health/ready", timeout=60)
        print(f"ready: {api.url}/docs   (Ctrl-C stops everything)")
        while all(service.process.poll() is None for service in running):
            time.sleep(0.5)
        print("a service exited; stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(running):
            service.stop()


if __name__ == "__main__" and sys.argv[1:] == ["up"]:
    up()
