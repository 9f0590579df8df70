"""Run docker-compose.yml's services natively, with the very argv compose runs.

The process library behind `make dev` (tools/dev.py), the tests and the benchmark, so what they
prove about a service is proven about its compose command. Containers find each other by service
name (compose `environment`); natively the addresses come from .env or the caller, and each uvicorn
service gets its host and port through UVICORN_HOST / UVICORN_PORT, which uvicorn reads itself.
"""

import collections
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import yaml
from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
UVICORN_FACTORY_FLAG = "--factory"
# Where prometheus-client's processes share their metrics: compose mounts a fresh tmpfs there; natively
# each start of such a service gets a fresh empty folder of its own (metrics.py explains why).
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def compose_variables() -> dict[str, str]:
    """What compose substitutes for ${VAR} in the file: the environment first, then .env."""
    return {**dotenv_values(PROJECT_ROOT / ".env"), **os.environ}


def service_argv(name: str) -> list[str]:
    """The service's command with ${VAR} substituted as compose does (unset: empty, `$$`: `$`)."""
    variables = collections.defaultdict(str, compose_variables())
    return [string.Template(part).substitute(variables) for part in compose_services()[name]["command"]]


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


def database_env(purpose: str) -> dict[str, str]:
    """A database of its own, `<purpose>_<package>_<random>`, with an owner and an app role of its
    own (`<purpose>_<random>_owner`, `_app`) and fresh passwords: for the compose `provision`."""
    run = uuid.uuid4().hex[:8]
    return {
        "POSTGRES_DB": f"{purpose}_{{ cookiecutter.project_slug }}_{run}",
        "POSTGRES_OWNER_USER": f"{purpose}_{run}_owner",
        "POSTGRES_OWNER_PASSWORD": secrets.token_urlsafe(16),
        "POSTGRES_USER": f"{purpose}_{run}_app",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
    }


def isolated_env(purpose: str, upstream_port: int) -> dict[str, str]:
    """The settings of one run (a test session, a benchmark) that must not touch anyone else's data:
    a database with roles of its own (database_env), the upstream on `upstream_port`. With Celery,
    tools/embedded_redis.py adds a Redis database of the run's own (isolated_redis_env)."""
    return {**database_env(purpose), "UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}"}


def run_as_kwargs(account: tuple[int, int] | None) -> dict:
    """subprocess arguments that run a command as account (uid, gid), without the caller's
    supplementary groups; none when account is None."""
    if account is None:
        return {}
    return {"user": account[0], "group": account[1], "extra_groups": []}


def with_asgi_app(argv: list[str], app: str, factory: bool) -> list[str]:
    """A uvicorn argv serving another app: `module:factory` (uvicorn --factory), else `module:app`."""
    swapped = [app if ":" in part and not part.startswith("-") else part for part in argv]
    if factory:
        return swapped
    return [part for part in swapped if part != UVICORN_FACTORY_FLAG]


class Service:
    """One process group (so a kill reaches its children too), its output in a log file, or with
    log_path=None on this terminal, each line prefixed with the service's name."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int | None = None,
        log_path: Path | None = None,
        run_as: tuple[int, int] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = log_path
        self.run_as = run_as  # (uid, gid) to drop to, when started as root
        self.stop_signal = stop_signal
        self.process: subprocess.Popen | None = None
        self._recent: collections.deque[str] = collections.deque(maxlen=40)
        self.fresh_metrics_dir = METRICS_DIR_VARIABLE in env

    @classmethod
    def from_compose(
        cls,
        name: str,
        env: dict[str, str],
        *,
        port: int | None = None,
        log_path: Path | None = None,
        app: str | None = None,
        factory: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> "Service":
        """The compose service `name`; `env` overrides the environment. `app` swaps the ASGI app of a
        uvicorn service (the anti-pattern app, in tests), a factory unless factory=False."""
        argv = service_argv(name)
        if app is not None:
            argv = with_asgi_app(argv, app, factory)
        full_env = native_env(env)
        if METRICS_DIR_VARIABLE in compose_services()[name].get("environment", {}):
            full_env[METRICS_DIR_VARIABLE] = ""  # made in start()
        if port is not None:
            full_env.update(UVICORN_HOST="127.0.0.1", UVICORN_PORT=str(port))
        return cls(name, [*argv, *extra_args], full_env, port=port, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Service":
        if self.fresh_metrics_dir:
            self._remove_metrics_dir()
            self.env[METRICS_DIR_VARIABLE] = tempfile.mkdtemp(prefix=f"{self.name}-metrics-")
        output: IO[bytes] | int = self.log_path.open("ab") if self.log_path else subprocess.PIPE
        self.process = subprocess.Popen(
            self.argv,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as_kwargs(self.run_as),
        )
        if self.log_path:
            output.close()
        else:
            threading.Thread(target=self._echo, daemon=True, name=f"echo-{self.name}").start()
        return self

    def _echo(self) -> None:
        """As Procfile runners do: every line on this terminal, after the name of its service."""
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self._recent.append(line)
            print(f"{self.name:<9}| {line}", flush=True)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Poll `ready` until true; raise with the service's last lines if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            self._raise_if_exited()
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not {what} in {timeout} s:\n{self.log_tail()}")

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self._answers(path), f"answer {path}", timeout)

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        self.wait_until(lambda: text in self.output(), f"log {text!r}", timeout)

    def _raise_if_exited(self) -> None:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def output(self) -> str:
        """What the service printed: its whole log file, or its last lines on the terminal."""
        if self.log_path is None:
            return "\n".join(self._recent)
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self._remove_metrics_dir()

    def stop(self, timeout: float = 40.0) -> None:  # the api's GRACEFUL_TIMEOUT is 30 s
        if not self.process or self.process.poll() is not None:
            self._remove_metrics_dir()
            return
        os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._remove_metrics_dir()

    def _remove_metrics_dir(self) -> None:
        if self.fresh_metrics_dir and self.env.get(METRICS_DIR_VARIABLE):
            shutil.rmtree(self.env[METRICS_DIR_VARIABLE], ignore_errors=True)


def run_once(name: str, env: dict[str, str]) -> str:
    """A one-shot service (provision, migrate): runs to completion and returns what it printed, or
    raises with its output."""
    result = subprocess.run(
        service_argv(name), cwd=PROJECT_ROOT, env=native_env(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def shown(path: Path) -> str:
    """A path as short as it can be said: relative to the current folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
