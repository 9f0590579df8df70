"""SLOW: `docker compose up` of real bakes, as a user runs it, on a real Docker engine.

No registry is reachable from CI, so every image a bake names is a local stand-in built from Debian
packages (tests/standins/, each Dockerfile says which official behaviour it keeps); .ci/run starts
the daemon. The bake's own Dockerfile and compose file are used unchanged; only the host ports move
(*_PUBLISHED_PORT: this machine runs its own PostgreSQL and Redis) and JOB_VISIBILITY_TIMEOUT in its
.env is short, so a job whose worker was SIGKILLed comes back in seconds instead of an hour.

PostgreSQL 18 (its 18+ data layout) with the default python_version (3.14: the default bake's image)
gets the whole sequence: build and up, every router family and a Celery job, queued jobs surviving
`restart redis` and a SIGKILLed worker, the api
recovering after `restart postgres`, `stop api` draining requests in flight, `down` then `up` keeping
the data, `down -v` removing it. PostgreSQL 15 (the layout before 18) gets up, the families, and
`down`/`up` keeping the data. The PgBouncer stand-in (no bake names it yet) pools transactions in
front of the PostgreSQL 18 stand-in.

Cost, measured on a 2-core CI machine shared with other jobs (load average 7): with the stand-ins and
build cache of an earlier run 7.5 minutes (4.3 for the 18 sequence, 2.3 for 15, half a minute for
PgBouncer; vfs copies a whole image per container, so the stand-ins keep no apt cache). Cold add
about 10 minutes: three debootstraps (bookworm, sid, trixie: a minute each), apt, PyPI downloads and
the stand-in builds.
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .conftest import DEFAULTS
from .standins import build as standins

pytestmark = pytest.mark.slow

BAKES = {
    "postgres18": {"project_name": "Stack Eighteen", "python_version": DEFAULTS["python_version"],
                   "postgres_version": "18",
                   "redis_version": standins.DEBIAN_REDIS, "use_celery": "yes", "include_benchmarks": "no"},
    "postgres15": {"project_name": "Stack Fifteen", "python_version": standins.DEBIAN_PYTHON,
                   "postgres_version": "15", "use_celery": "no", "include_benchmarks": "no"},
}  # fmt: skip
PUBLISHED = {
    "api": "API_PUBLISHED_PORT",
    "postgres": "POSTGRES_PUBLISHED_PORT",
    "redis": "REDIS_PUBLISHED_PORT",
}
JOB_VISIBILITY_TIMEOUT = 10
READY_TIMEOUT = 240
BUILD_TIMEOUT = 20 * 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(
    method: str, url: str, body: dict | None = None, timeout: float = 30
) -> tuple[int, dict | list | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError):
        return 0, None  # nothing answered (yet)


@dataclass
class Stack:
    project: Path
    name: str  # compose's project name: containers and volumes are named after it
    ports: dict[str, int] = field(default_factory=dict)

    def compose(self, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        env = standins.docker_env() | {PUBLISHED[name]: str(port) for name, port in self.ports.items()}
        # vfs copies a whole image per container: creating five takes the daemon minutes on a busy disk.
        env["COMPOSE_HTTP_TIMEOUT"] = "600"
        result = subprocess.run(
            ["docker-compose", "--project-name", self.name, *argv],
            cwd=self.project, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"compose {' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
        return result

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['api']}{path}"

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if call("GET", self.url("/health/ready"), timeout=5)[0] == 200:
                return
            time.sleep(1)
        raise AssertionError(f"/health/ready never answered 200:\n{self.compose('ps').stdout}\n{self.logs()}")

    def container(self, service: str) -> dict:
        [container_id] = self.compose("ps", "--quiet", service).stdout.split()
        inspect = standins.docker("inspect", container_id)
        return json.loads(inspect.stdout)[0]

    def volumes(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.name}"
        return standins.docker("volume", "ls", "--quiet", "--filter", label).stdout.split()


def images_named(project: Path) -> list[str]:
    """Every image the bake's compose file and Dockerfile pull (Prometheus only with its profile)."""
    services = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]
    pulled = [
        service["image"]
        for service in services.values()
        if "build" not in service and not service.get("profiles")
    ]
    dockerfile = (project / "Dockerfile").read_text()
    [python] = [
        line.split("=", 1)[1] for line in dockerfile.splitlines() if line.startswith("ARG PYTHON_VERSION=")
    ]
    [uv] = [word.split("=", 1)[1] for word in dockerfile.split() if word.startswith("--from=ghcr.io/")]
    return [*pulled, f"python:{python}-slim", uv]


def docker_available() -> None:
    if shutil.which("dockerd", path=standins.docker_env()["PATH"]) is None and not os.environ.get("CI"):
        pytest.skip("no Docker engine here (apt-get install docker.io debootstrap): this test runs in CI")
    info = subprocess.run(
        ["docker", "info"], env=standins.docker_env(), capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, f"the Docker daemon does not answer (.ci/run starts it):\n{info.stderr}"


@contextlib.contextmanager
def running(key: str, bake_into, output: Path) -> Iterator[Stack]:
    """A bake built and up on its stand-ins; `down -v` and its image removed afterwards."""
    docker_available()
    project = bake_into(output, **BAKES[key])
    env_file = project / ".env"
    short = f"JOB_VISIBILITY_TIMEOUT={JOB_VISIBILITY_TIMEOUT}"
    env_file.write_text(env_file.read_text().replace("JOB_VISIBILITY_TIMEOUT=3600", short))
    standins.ensure(images_named(project))
    stack = Stack(project, f"template{key}", {"api": free_port(), "postgres": free_port()})
    if BAKES[key]["use_celery"] == "yes":
        stack.ports["redis"] = free_port()
    stack.compose("down", "--volumes", "--remove-orphans", check=False)  # what a killed run left
    try:
        stack.compose("build", timeout=BUILD_TIMEOUT)
        up = stack.compose("up", "--detach", check=False)
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{stack.logs()}"
        stack.wait_ready()
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", check=False)
        standins.docker("image", "rm", "--force", f"{project.name}:latest", check=False)


def data_layout(stack: Stack, pgdata: str, mount: str) -> None:
    """PostgreSQL keeps its cluster where the major's image does, on the compose volume."""
    found = stack.compose(
        "exec", "-T", "postgres", "sh", "-c", 'test -s "$PGDATA/PG_VERSION" && echo "$PGDATA"'
    )
    assert found.stdout.strip() == pgdata, found.stdout
    mounts = {each["Destination"]: each["Type"] for each in stack.container("postgres")["Mounts"]}
    assert mounts == {mount: "volume"}, mounts


def every_family_answers(stack: Stack) -> int:
    """One call per router family through the published port. -> the id of an item it stored."""
    status, item = call("POST", stack.url("/async/items"), {"name": "kept across down and up"})
    assert status == 201, (status, stack.logs())
    assert call("POST", stack.url("/sync/items"), {"name": "written by psycopg2"})[0] == 201
    paths = [f"/async/items/{item['id']}", f"/sync/items/{item['id']}", "/async/db-wait?seconds=0.1",
             "/sync/db-wait?seconds=0.1", "/async/upstream?delay=0", "/sync/upstream?delay=0",
             "/mixed/report?delay=0", "/cpu/compute?n=1000", "/health/live"]  # fmt: skip
    statuses = {path: call("GET", stack.url(path))[0] for path in paths}
    assert set(statuses.values()) == {200}, (statuses, stack.logs())
    return item["id"]


def submit(stack: Stack, n: int) -> str:
    status, job = call("POST", stack.url("/cpu/jobs"), {"n": n})
    assert status == 202, (status, stack.logs())
    return job["id"]


def wait_job(stack: Stack, job_id: str, until: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, job = call("GET", stack.url(f"/cpu/jobs/{job_id}"))
        if status == 200 and job["state"] in until:
            return job
        assert time.monotonic() < deadline, (status, job, stack.logs())
        time.sleep(0.3)


def jobs_survive_redis_restart_and_a_killed_worker(stack: Stack) -> str:
    """A job queued while no worker runs outlives `restart redis` (append-only file); a job whose
    worker is SIGKILLed mid-run is delivered again (acks_late) and succeeds. -> a finished job's id."""
    stack.compose("stop", "worker")
    queued = submit(stack, 10_000)
    stack.compose("restart", "redis")
    stack.wait_ready()
    stack.compose("start", "worker")
    assert wait_job(stack, queued, {"succeeded", "failed"})["result"] == {"below": 10_000, "primes": 1229}

    running = submit(stack, 1_000_000)  # seconds of pure-Python work: still running when killed
    wait_job(stack, running, {"started"})
    stack.compose("kill", "-s", "SIGKILL", "worker")
    assert stack.container("worker")["State"]["ExitCode"] == 137
    stack.compose("start", "worker")
    job = wait_job(stack, running, {"succeeded", "failed"}, timeout=JOB_VISIBILITY_TIMEOUT + 180)
    assert job["result"] == {"below": 1_000_000, "primes": 78498}, job
    return queued


def recovers_after_postgres_restart(stack: Stack, item_id: int) -> None:
    """Both drivers answer again after `restart postgres`; meanwhile a 503, never a 500."""
    stack.compose("restart", "postgres")
    for path in (f"/async/items/{item_id}", f"/sync/items/{item_id}"):
        seen, deadline = [], time.monotonic() + 120
        while not seen or seen[-1] != 200:
            assert time.monotonic() < deadline, (path, seen, stack.logs())
            seen.append(call("GET", stack.url(path), timeout=10)[0])
            time.sleep(0.5)
        assert 500 not in seen, (path, seen)


def stop_drains_requests_in_flight(stack: Stack) -> None:
    """`stop api` sends SIGTERM to PID 1: requests already running finish with a 200, then it exits
    0, well before compose's SIGKILL (stop_grace_period)."""
    paths = ["/async/db-wait?seconds=4"] * 3 + ["/sync/db-wait?seconds=4"] * 3
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda p=path: statuses.append(call("GET", stack.url(p))[0]))
        for path in paths
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # every request is inside pg_sleep now
    started = time.monotonic()
    stack.compose("stop", "api")
    stopped_after = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * len(paths), statuses
    assert stack.container("api")["State"]["ExitCode"] == 0, stack.logs()
    assert stopped_after < 30, f"stop took {stopped_after:.0f} s: SIGTERM did not reach the server"
    stack.compose("start", "api")
    stack.wait_ready()


def keeps_data_across_down_and_up(stack: Stack, item_id: int, job_id: str | None = None) -> None:
    stack.compose("down")
    assert stack.volumes(), "`down` removed the volumes"
    stack.compose("up", "--detach")
    stack.wait_ready()
    status, item = call("GET", stack.url(f"/async/items/{item_id}"))
    assert status == 200 and item["name"] == "kept across down and up", (status, item)
    if job_id:
        assert call("GET", stack.url(f"/cpu/jobs/{job_id}"))[1]["state"] == "succeeded"


def test_postgres18_stack_survives_restarts_and_keeps_data(bake_into, tmp_path):
    with running("postgres18", bake_into, tmp_path) as stack:
        data_layout(stack, "/var/lib/postgresql/18/docker", "/var/lib/postgresql")
        item_id = every_family_answers(stack)
        job_id = jobs_survive_redis_restart_and_a_killed_worker(stack)
        recovers_after_postgres_restart(stack, item_id)
        stop_drains_requests_in_flight(stack)
        keeps_data_across_down_and_up(stack, item_id, job_id)
        stack.compose("down", "--volumes")
        assert stack.volumes() == []


def test_postgres15_stack_serves_and_keeps_data(bake_into, tmp_path):
    with running("postgres15", bake_into, tmp_path) as stack:
        data_layout(stack, "/var/lib/postgresql/data", "/var/lib/postgresql/data")
        item_id = every_family_answers(stack)
        keeps_data_across_down_and_up(stack, item_id)


def test_postgres18_refuses_a_volume_at_the_old_path(tmp_path):
    """The control for the compose file's mount: the 18 stand-in, as the official image, will not
    start on a volume at /var/lib/postgresql/data (what our compose file mounted before 18)."""
    docker_available()
    standins.ensure(["postgres:18"])
    volume = f"template-old-mount-{tmp_path.name}"
    try:
        old_mount = f"{volume}:/var/lib/postgresql/data"
        result = standins.docker(
            "run", "--rm", "-e", "POSTGRES_PASSWORD=x", "-v", old_mount, "postgres:18", check=False
        )
    finally:
        standins.docker("volume", "rm", volume, check=False)
    assert result.returncode == 1 and "/var/lib/postgresql/data (unused mount/volume)" in result.stderr, (
        result
    )


def test_pgbouncer_standin_pools_transactions(tmp_path):
    """The PgBouncer stand-in (build.py: PGBOUNCER_IMAGE, trixie's 1.24.1), configured by environment
    variables as a compose file would configure it, in front of the PostgreSQL 18 stand-in on a network
    of their own: the admin console reports the version and transaction pooling, and a client's query
    runs through it while another client's session sits idle on the only server connection (in
    session mode it waits: the control). A wrong password is refused by PgBouncer (SCRAM)."""
    docker_available()
    standins.ensure(["postgres:18", standins.PGBOUNCER_IMAGE])
    name, password = f"template-pgbouncer-{secrets.token_hex(4)}", secrets.token_hex(12)
    postgres, pgbouncer = f"{name}-postgres", f"{name}-pgbouncer"

    def psql(sql: str, database: str = "app", secret: str = password) -> list[str]:
        """psql in the PgBouncer container (the image ships it), through the pooler's port."""
        argv = ["docker", "exec", "-i", "-e", f"PGPASSWORD={secret}", pgbouncer, "psql", "-h", "127.0.0.1",
                "-U", "app", "-d", database, "-XAt", "-v", "ON_ERROR_STOP=1"]  # fmt: skip
        return [*argv, "-c", sql] if sql else argv

    def query(sql: str, database: str = "app", secret: str = password) -> subprocess.CompletedProcess:
        return subprocess.run(
            psql(sql, database, secret), env=standins.docker_env(), capture_output=True, text=True, timeout=60
        )

    def wait_for(argv: list[str], what: str) -> None:
        deadline = time.monotonic() + 90
        while (found := standins.docker(*argv, check=False)).returncode != 0:
            assert time.monotonic() < deadline, f"{what} never answered:\n{found.stderr}\n{logs()}"
            time.sleep(0.5)

    def logs() -> str:
        return "\n".join(
            standins.docker("logs", each, check=False).stderr[-2000:] for each in (postgres, pgbouncer)
        )

    def idle_session_blocks_a_query() -> bool:
        """A session idles between two queries while another client queries: did that query run
        after the session's last one (it waited for the pool's one server connection)? The order is
        the server's clock, read by each query."""
        clock = "SELECT extract(epoch FROM clock_timestamp())"
        holder = subprocess.Popen(
            psql(""), env=standins.docker_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        holder.stdin.write(f"SELECT 1;\n\\! sleep 4\n{clock};\n")
        holder.stdin.close()
        time.sleep(2)  # the holder's first query has run: its session idles now
        other = query(clock)
        holder.wait(timeout=60)
        held = holder.stdout.read().split()
        assert holder.returncode == 0 and other.returncode == 0, (holder.stderr.read(), other, logs())
        return float(other.stdout) > float(held[-1])

    try:
        standins.docker("network", "create", name)
        standins.docker("run", "--detach", "--name", postgres, "--network", name, "--network-alias",
                        "postgres", "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_USER=app",
                        "postgres:18")  # fmt: skip
        wait_for(["exec", postgres, "pg_isready", "-h", "127.0.0.1", "-U", "app"], "PostgreSQL")
        settings = {"DB_HOST": "postgres", "DB_USER": "app", "DB_PASSWORD": password,
                    "ADMIN_USERS": "app", "AUTH_TYPE": "scram-sha-256", "POOL_MODE": "transaction",
                    "DEFAULT_POOL_SIZE": "1"}  # fmt: skip
        environment = [word for key, value in settings.items() for word in ("-e", f"{key}={value}")]
        standins.docker("run", "--detach", "--name", pgbouncer, "--network", name, *environment,
                        standins.PGBOUNCER_IMAGE)  # fmt: skip
        wait_for(psql("SHOW VERSION", "pgbouncer")[1:], "PgBouncer's admin console")

        version = query("SHOW VERSION", "pgbouncer")
        assert version.stdout.strip() == f"PgBouncer {standins.TRIXIE_PGBOUNCER}", (version, logs())
        config = {
            line.split("|")[0]: line.split("|")[1]
            for line in query("SHOW CONFIG", "pgbouncer").stdout.splitlines()
        }
        assert config["pool_mode"] == "transaction", config
        through = query("SELECT current_user || ' on ' || split_part(version(), ' ', 2)")
        assert through.stdout.startswith("app on 18."), (through, logs())
        assert not idle_session_blocks_a_query(), "transaction pooling: a query waited for an idle session"

        assert query("SET pool_mode = session", "pgbouncer").returncode == 0
        assert idle_session_blocks_a_query(), "the control: in session mode the query did not wait"

        refused = query("SELECT 1", secret="not-the-password")
        # PgBouncer's own refusal (the server's would say "password authentication failed").
        assert refused.returncode != 0 and "FATAL:  SASL authentication failed" in refused.stderr, refused
    finally:
        standins.docker("rm", "--force", "--volumes", pgbouncer, postgres, check=False)
        standins.docker("network", "rm", name, check=False)
