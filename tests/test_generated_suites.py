"""SLOW, and the heart of CI: bakes that run for real.

For a set of bakes covering every value of use_celery and include_benchmarks, the generated
project's own commands run exactly as its README gives them: `make test` (its venv, then its suite
against the real local Postgres and Redis), `make lint`, and `make dev` until /health/ready answers.
The environment passes through (TEST_REDIS_DB, POSTGRES_*, REDIS_URL for other servers).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from .conftest import clean_env, option_id

pytestmark = pytest.mark.slow

# The default bake, and every option flipped (python_version 3.11: the one this machine runs).
RUN_BAKES = [
    {},
    {"python_version": "3.11", "use_celery": "no", "include_benchmarks": "no"},
]
RUN_IDS = ["default", option_id(RUN_BAKES[1])]
SUITE_TIMEOUT = 40 * 60


def tail(path: Path, lines: int = 120) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def make(project: Path, target: str, env: dict[str, str] | None = None) -> None:
    log = project / f"make-{target}.log"
    with log.open("w") as output:
        result = subprocess.run(
            ["make", target],
            cwd=project,
            env=env or clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=SUITE_TIMEOUT,
        )
    assert result.returncode == 0, f"`make {target}` failed in {project} ({result.returncode}):\n{tail(log)}"


@pytest.fixture(scope="module", params=RUN_BAKES, ids=RUN_IDS)
def running_bake(request, bake_into, tmp_path_factory):
    """A bake of its own (it gets a venv and logs); the venv is removed afterwards, the logs stay."""
    project = bake_into(tmp_path_factory.mktemp("run"), **request.param)
    yield project, request.param
    shutil.rmtree(project / ".venv", ignore_errors=True)


def test_generated_suite_passes(running_bake):
    project, _ = running_bake
    make(project, "test")


def test_generated_lint_passes(running_bake):
    project, _ = running_bake
    make(project, "lint")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is inside `directory`: what `make dev` started there."""
    found = []
    for process in psutil.process_iter():
        try:
            cwd = Path(process.cwd())
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # another user's, or gone while we looked
        if cwd == directory or directory in cwd.parents:
            found.append(process.pid)
    return found


def drop_database(project: Path, env: dict[str, str]) -> None:
    """With the bake's own helper, in its venv, with the settings `make dev` read."""
    code = (
        f"from {project.name}.config import load_settings\n"
        "from tools.database import drop_database\n"
        "drop_database(load_settings())\n"
    )
    subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", code], cwd=project, env=env, timeout=60)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_make_dev_serves_ready(running_bake):
    """`make dev` (venv, database, migrations, upstream, worker, api natively) answers /health/ready 200."""
    project, _ = running_bake
    services = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]
    # Free ports instead of the compose ones (8000, 9000), which something else may hold.
    ports = {"api": free_port(), "upstream": free_port()}
    env = clean_env()
    env["API_PORT"], env["UPSTREAM_PORT"] = str(ports["api"]), str(ports["upstream"])
    # A database of its own (created by `make dev`, dropped here), and the tests' Redis db.
    env["POSTGRES_DB"] = f"dev_smoke_{uuid.uuid4().hex[:8]}"
    if "worker" in services:
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '15')}"
    log = project / "make-dev.log"
    with log.open("w") as output:
        dev = subprocess.Popen(
            ["make", "dev"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # As typed in a terminal: a shell that starts jobs in the background (CI may) hands
            # them SIGINT ignored, and then Ctrl-C below would never reach `make dev`.
            preexec_fn=default_sigint,
        )
    try:
        url = f"http://127.0.0.1:{ports['api']}/health/ready"
        deadline = time.monotonic() + 600  # includes the venv when this runs first
        status = None
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    status = response.status
                    break
            except urllib.error.HTTPError as error:
                status = error.code
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        assert status == 200, f"/health/ready answered {status}; `make dev` log:\n{tail(log)}"
        assert dev.poll() is None, f"`make dev` exited ({dev.returncode}):\n{tail(log)}"

        # Ctrl-C stops everything it started.
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (processes_in(project) or any(map(port_taken, ports.values()))):
            time.sleep(0.5)
        assert not processes_in(project), f"Ctrl-C left processes running:\n{tail(log)}"
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
        for pid in processes_in(project):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        drop_database(project, env)
