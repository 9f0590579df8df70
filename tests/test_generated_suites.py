"""SLOW, and the heart of CI: bakes that run for real.

For a set of bakes covering every value of use_celery and include_benchmarks, the generated
project's own commands run exactly as its README gives them: `make test` (its venv, then its suite
against the real local Postgres and Redis), `make lint`, and `make dev` until /health/ready answers
and a Celery job succeeds; the first bake asks for the benchmark and its suite runs the quick one.
One more default bake (no benchmark) runs with the configured servers pointed at closed ports, so
its suite and `make dev` take the embedded PostgreSQL and Redis (tools/embedded.py): what a machine
with only Python and make gets. Each suite's pytest header must
name the servers it used. The environment passes through (TEST_REDIS_DB, POSTGRES_*, REDIS_URL for
other servers).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from .conftest import clean_env, option_id

pytestmark = pytest.mark.slow


def newest_python() -> str:
    """The newest CPython on this machine: pyenv's builds, or `python3` when it has none."""
    versions = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    builds = [path for path in versions.glob("3.*") if re.fullmatch(r"3\.\d+\.\d+", path.name)]
    if not builds:
        return shutil.which("python3") or "python3"
    newest = max(builds, key=lambda path: [int(part) for part in path.name.split(".")])
    return str(newest / "bin" / "python3")


# The default bake with the benchmark asked for (include_benchmarks=yes: the only suite that runs the
# quick benchmark, about 2.5 minutes of CI's 45), every other option flipped (python_version 3.11, no
# Celery, no benchmark), both with the settings as given, and the default bake (no benchmark) again
# with no server answering where its settings point. Each venv's Python (`make`'s PYTHON): the first
# bake's the newest here (this machine has no 3.14, the image's), the others' `python3` (3.11 here,
# the oldest the project allows). test_template_repo checks that they cover yes and no of each option.
RUN_BAKES = [
    ({"include_benchmarks": "yes"}, "as given", newest_python()),
    ({"python_version": "3.11", "use_celery": "no", "include_benchmarks": "no"}, "as given", None),
    ({}, "embedded", None),
]
RUN_IDS = ["benchmarks-newest-python", option_id(RUN_BAKES[1][0]), "default-embedded"]
SUITE_TIMEOUT = 40 * 60


@dataclass
class Bake:
    project: Path
    env: dict[str, str]

    @property
    def has_celery(self) -> bool:
        return "worker" in yaml.safe_load((self.project / "docker-compose.yml").read_text())["services"]

    def embedded(self) -> set[str]:
        """The servers its settings lead to an embedded stand-in for: those that refuse connections
        (the bake's own tools/embedded.py decides the same way; this checks it from outside)."""
        postgres = (self.env.get("POSTGRES_HOST", "127.0.0.1"), int(self.env.get("POSTGRES_PORT", "5432")))
        refused = {"PostgreSQL"} if refuses(postgres) else set()
        if self.has_celery:
            redis = urllib.parse.urlsplit(self.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
            refused |= {"Redis"} if refuses((redis.hostname, redis.port or 6379)) else set()
        return refused


def refuses(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # an answer of some kind: the configured server is used
    return False


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
def running_bake(request, bake_into, tmp_path_factory) -> Iterator[Bake]:
    """A bake of its own (it gets a venv and logs); the venv is removed afterwards, the logs stay.

    The embedded bake lives outside pytest's temporary root: as root, `nobody` runs its PostgreSQL
    from its venv, and every new pytest run makes that root private again."""
    options, servers, python = request.param
    env = clean_env()
    if python:
        env["PYTHON"] = python
    with contextlib.ExitStack() as cleanup:
        if servers == "embedded":
            output = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="embedded-bake-")))
            # Ports that were free a moment ago: nothing answers there.
            env["POSTGRES_PORT"] = str(free_port())
            env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
        else:
            output = tmp_path_factory.mktemp("run")
        project = bake_into(output, **options)
        bake = Bake(project, env)
        if servers == "embedded":
            assert bake.embedded() == ({"PostgreSQL", "Redis"} if bake.has_celery else {"PostgreSQL"})
        yield bake
        shutil.rmtree(project / ".venv", ignore_errors=True)


def header_lines(log: Path) -> list[str]:
    """The server lines of the pytest header in a `make test` log."""
    return [line for line in log.read_text().splitlines() if line.startswith(("PostgreSQL: ", "Redis: "))]


def test_generated_suite_passes(running_bake):
    make(running_bake.project, "test", running_bake.env)
    # The suite says which servers it used, and they are the ones its settings lead to.
    expected = {"PostgreSQL"} | ({"Redis"} if running_bake.has_celery else set())
    said = header_lines(running_bake.project / "make-test.log")
    assert {line.split(":")[0] for line in said} == expected, said
    embedded = {line.split(":")[0] for line in said if ": embedded (" in line}
    assert embedded == running_bake.embedded(), said
    # pytest's header names the venv's Python: the one `make` was given.
    given = running_bake.env.get("PYTHON", "python3")
    version = subprocess.run([given, "--version"], capture_output=True, text=True, check=True).stdout.split()[
        1
    ]
    assert f"-- Python {version}," in (running_bake.project / "make-test.log").read_text()
    # A bake with the benchmark ran its quick benchmark as part of its suite.
    if (running_bake.project / "tests" / "test_bench.py").exists():
        assert "tests/test_bench.py ." in (running_bake.project / "make-test.log").read_text()


def test_generated_lint_passes(running_bake):
    make(running_bake.project, "lint", running_bake.env)


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
    """With the bake's own helper, in its venv, with the settings `make dev` read: the database and
    the run's two roles."""
    code = (
        f"from {project.name}.config import AdminSettings, load_settings\n"
        "from tools.database import drop_database\n"
        "drop_database(load_settings(AdminSettings))\n"
    )
    subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", code], cwd=project, env=env, timeout=60)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_make_dev(bake: Bake, ports: dict[str, int]) -> tuple[subprocess.Popen, dict[str, str]]:
    """`make dev` on free ports, with a database and roles of its own (made by it, dropped by the
    caller) and, on a configured Redis, the tests' Redis db."""
    env = dict(bake.env)
    env["API_PORT"], env["UPSTREAM_PORT"] = str(ports["api"]), str(ports["upstream"])
    run = uuid.uuid4().hex[:8]
    env["POSTGRES_DB"] = f"dev_smoke_{run}"
    env["POSTGRES_USER"], env["POSTGRES_OWNER_USER"] = f"dev_smoke_{run}_app", f"dev_smoke_{run}_owner"
    if bake.has_celery and "Redis" not in bake.embedded():
        base = env.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
        env["REDIS_URL"] = f"{base}/{os.environ.get('TEST_REDIS_DB', '15')}"
    with (bake.project / "make-dev.log").open("w") as output:
        dev = subprocess.Popen(
            ["make", "dev"],
            cwd=bake.project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # As typed in a terminal: a shell that starts jobs in the background (CI may) hands
            # them SIGINT ignored, and then Ctrl-C below would never reach `make dev`.
            preexec_fn=default_sigint,
        )
    return dev, env


def wait_ready(dev: subprocess.Popen, url: str, log: Path) -> None:
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
    # tools/dev.py's last line names the service that exited, below the servers' shutdown lines.
    assert status == 200, f"/health/ready answered {status}; `make dev` log:\n{tail(log)}"
    assert dev.poll() is None, f"`make dev` exited ({dev.returncode}):\n{tail(log)}"


def run_a_job(api: str, log: Path) -> None:
    """POST /cpu/jobs and poll it until the worker has run it."""
    request = urllib.request.Request(
        f"{api}/cpu/jobs", data=b'{"n": 10000}', headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        location = response.headers["Location"]
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(api + location, timeout=30) as response:
            job = json.loads(response.read())
        if job["state"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, f"job still {job['state']}:\n{tail(log)}"
        time.sleep(0.2)
    assert job["result"] == {"below": 10_000, "primes": 1229}, job


def test_make_dev_serves_ready(running_bake):
    """`make dev` (venv, database, migrations, upstream, worker, api natively) answers /health/ready
    200 and runs a Celery job, says which servers it uses, then stops everything on Ctrl-C."""
    project = running_bake.project
    # Free ports instead of the compose ones (8000, 9000), which something else may hold.
    ports = {"api": free_port(), "upstream": free_port()}
    log = project / "make-dev.log"
    dev, env = start_make_dev(running_bake, ports)
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        wait_ready(dev, f"{api}/health/ready", log)
        if running_bake.has_celery:
            run_a_job(api, log)
        said = [line for line in log.read_text().splitlines() if " does not answer: embedded " in line]
        assert {line.split(" ")[0] for line in said} == running_bake.embedded(), tail(log)

        # Ctrl-C stops everything it started (the embedded servers run with their data in .local/).
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
        if "PostgreSQL" not in running_bake.embedded():  # an embedded cluster goes with the bake
            drop_database(project, env)


def test_make_install_refuses_a_stale_lock(running_bake):
    """`make install` installs uv.lock exactly: with a dependency added to pyproject.toml and no
    `make lock`, it stops and says the lock needs updating, instead of installing something else."""
    project = running_bake.project
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text()
    try:
        pyproject.write_text(
            original.replace("dependencies = [\n", 'dependencies = [\n    "six>=1.17",\n', 1)
        )
        result = subprocess.run(
            ["make", "install"],
            cwd=project,
            env=running_bake.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode != 0 and "needs to be updated" in result.stderr, (
            result.stdout + result.stderr
        )
    finally:
        pyproject.write_text(original)
    make(project, "install", running_bake.env)  # the control: the lock matches again
