"""SLOW: the image's install steps, read from the bake's Dockerfile and run on this machine.

No Docker engine is needed. A fresh directory stands for the image's `/`. The build stage's ENV,
WORKDIR, COPY and `RUN ... uv sync` lines run there as written (bind mounts copied in for the one
step, the cache mount a directory of its own), as the runtime stage's non-root USER (its uid when
the tests run as root, else this user). Then everything the runtime stage does not COPY --from the
build stage is deleted, the runtime stage's files are copied in, and compose's `migrate` and `api`
argv run with that environment's bin/ on PATH, against a database of their own, until /health/ready
answers 200. The upstream is left absent: readiness checks PostgreSQL (and Redis with Celery) only.
"""

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from . import dockerfile
from .conftest import clean_env, tool

pytestmark = pytest.mark.slow

# The image's PATH holds its Python in /usr/local/bin; natively the system's Python stands in.
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
UV_IMAGE = "ghcr.io/astral-sh/uv:"
# The one RUN not replayed: it creates the runtime user, whose uid the steps here run as instead.
CREATES_USER = "useradd "


def account_of(runtime: dockerfile.Stage) -> tuple[int, int] | None:
    """The runtime USER (uid, gid) when this runs as root; None: this user, already not root."""
    if os.geteuid() != 0:
        return None
    [user] = runtime.of("USER")
    uid, gid = user.arguments.split(":")
    return int(uid), int(gid)


def as_account(account: tuple[int, int] | None) -> dict:
    return {"user": account[0], "group": account[1], "extra_groups": []} if account else {}


def hand_over(root: Path, account: tuple[int, int] | None) -> None:
    """The whole tree to the account the steps run as (Docker's build runs as root; these do not)."""
    if account is None:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, *account, follow_symlinks=False)


class Image:
    """The filesystem of the image being built: `root` stands for `/`, `tools` for the build stage's
    /usr/local/bin (uv), which the runtime stage does not have."""

    def __init__(self, top: Path, context: Path, account: tuple[int, int] | None) -> None:
        self.root, self.tools, self.context, self.account = top / "root", top / "tools", context, account
        self.root.mkdir(parents=True)
        self.tools.mkdir()
        self.start_stage()

    def start_stage(self) -> None:
        system_path = BASE_PATH if self.account else f"{BASE_PATH}:{Path(sys.base_prefix) / 'bin'}"
        # The caller's environment stays (this machine's certificates, proxies, index), as a builder's
        # network settings would; PATH and HOME are the image's.
        self.env = {**clean_env(), "PATH": system_path, "HOME": str(self.path("/root"))}
        self.workdir = self.root

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/") if image_path.startswith("/") else self.workdir / image_path

    def set_env(self, instruction: dockerfile.Instruction) -> None:
        for key, value in instruction.env().items():
            if key == "PATH":
                parts = [
                    self.env["PATH"] if part == "$PATH" else str(self.path(part)) for part in value.split(":")
                ]
                value = ":".join(parts)
            elif value.startswith("/"):
                value = str(self.path(value))
            self.env[key] = value

    def copy(self, instruction: dockerfile.Instruction) -> None:
        *sources, destination = shlex.split(instruction.arguments)
        origin = instruction.flag("from")
        if origin and origin.startswith(UV_IMAGE):
            shutil.copy2(tool("uv"), self.tools / "uv")  # this machine's uv stands in for the image's
            self.env["PATH"] = f"{self.tools}:{self.env['PATH']}"
        elif origin:
            assert sources == [destination], f"COPY --from={origin}: one root here, so same paths only"
        else:
            for source in sources:
                self.copy_from_context(source, destination)

    def copy_from_context(self, source: str, destination: str) -> None:
        """Docker's rule: a folder's contents into the destination; a file into it when it ends in /."""
        origin, target = self.context / source, self.path(destination)
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target = target / origin.name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)

    def run(self, instruction: dockerfile.Instruction) -> None:
        if instruction.arguments.startswith(CREATES_USER):
            return
        assert "uv sync" in instruction.arguments, f"a RUN this test does not know: {instruction.arguments}"
        env = dict(self.env)
        mounted = []
        for mount in instruction.mounts():
            if mount["type"] == "bind":
                mounted.append(self.path(mount["target"]))
                shutil.copy2(self.context / mount["source"], mounted[-1])
            else:  # a cache: a folder that outlives the step, and never reaches the image
                assert mount["type"] == "cache" and mount["target"].endswith("/.cache/uv"), mount
                cache = self.context.parent / "uv-cache"
                cache.mkdir(exist_ok=True)
                hand_over(cache, self.account)
                env["UV_CACHE_DIR"] = str(cache)
        hand_over(self.root.parent, self.account)
        result = subprocess.run(
            instruction.arguments,
            shell=True,  # RUN's shell form: /bin/sh -c, as Docker runs it
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            **as_account(self.account),
        )
        assert result.returncode == 0, f"{instruction.arguments}:\n{result.stdout}{result.stderr}"
        for path in mounted:  # a bind mount is gone after its step
            path.unlink()

    def keep_only(self, kept: list[str]) -> None:
        """What leaves the build stage: only the paths the runtime stage copies from it."""
        holding = self.root.parent / "kept"
        for image_path in kept:
            (holding / image_path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            self.path(image_path).rename(holding / image_path.lstrip("/"))
        shutil.rmtree(self.root)
        holding.rename(self.root)

    def build(self, stage: dockerfile.Stage) -> None:
        self.start_stage()
        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                self.set_env(instruction)
            elif instruction.keyword == "WORKDIR":
                self.workdir = self.path(instruction.arguments)
                self.workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                self.copy(instruction)
            elif instruction.keyword == "RUN":
                self.run(instruction)
        hand_over(self.root, self.account)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings(database: str, metrics: Path) -> dict[str, str]:
    """What compose's env_file and `environment` give the containers; addresses on this machine."""
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    return {
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_ADMIN_USER": os.environ.get("POSTGRES_ADMIN_USER", "postgres"),
        "POSTGRES_ADMIN_PASSWORD": os.environ.get("POSTGRES_ADMIN_PASSWORD", ""),
        "POSTGRES_DB": database,
        # The run's own roles, made by compose's `provision` below and dropped with the database.
        "POSTGRES_OWNER_USER": f"{database}_owner",
        "POSTGRES_OWNER_PASSWORD": secrets.token_urlsafe(16),
        "POSTGRES_USER": f"{database}_app",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "UPSTREAM_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "REDIS_URL": f"{redis}/{os.environ.get('TEST_REDIS_DB', '15')}",
        "UVICORN_HOST": "127.0.0.1",
        "UVICORN_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@contextlib.contextmanager
def database(python: Path, env: dict[str, str]) -> Iterator[None]:
    """The test's own database and roles (compose's `provision` makes them), dropped at the end with
    the psycopg2 of the environment just built."""
    code = (
        "import os, sys, psycopg2\n"
        "c = psycopg2.connect(host=os.environ['POSTGRES_HOST'], port=os.environ['POSTGRES_PORT'],"
        " user=os.environ['POSTGRES_ADMIN_USER'], password=os.environ['POSTGRES_ADMIN_PASSWORD'],"
        " dbname='postgres')\n"
        "c.autocommit = True\n"
        "for statement in sys.argv[1:]: c.cursor().execute(statement)\n"
    )
    try:
        yield
    finally:
        drop = [
            f'DROP DATABASE IF EXISTS "{env["POSTGRES_DB"]}" WITH (FORCE)',
            f'DROP ROLE IF EXISTS "{env["POSTGRES_USER"]}", "{env["POSTGRES_OWNER_USER"]}"',
        ]
        subprocess.run([str(python), "-c", code, *drop], env=env, check=True, timeout=60)


def wait_ready(api: subprocess.Popen, url: str) -> int | None:
    """/health/ready's status once it answers; None if the api exits or stays silent for 90 s."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and api.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            time.sleep(0.5)
    return None


def uv_leftovers(root: Path) -> list[str]:
    """uv's files in an image tree: its binary, its package, its metadata."""
    return sorted(
        str(path.relative_to(root)) for path in root.rglob("uv*") if path.name.split("-")[0] == "uv"
    )


def test_uv_leftovers_are_found(tmp_path):
    """The check below, on a tree with uv installed beside uvicorn."""
    site = tmp_path / "opt" / "venv" / "lib" / "python3.12" / "site-packages"
    for path in (
        site / "uv" / "__init__.py",
        site / "uvicorn" / "__init__.py",
        tmp_path / "opt" / "venv" / "bin" / "uv",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (site / "uv-0.13.9.dist-info").mkdir()
    assert uv_leftovers(tmp_path) == [
        "opt/venv/bin/uv",
        f"{site.relative_to(tmp_path)}/uv",
        f"{site.relative_to(tmp_path)}/uv-0.13.9.dist-info",
    ]


@pytest.fixture(scope="module")
def baked_here(bake_into) -> Iterator[Path]:
    """The default bake, outside pytest's temporary root (which only root may enter), with a folder
    for uv's cache that outlives each build, as a Docker cache mount does."""
    with tempfile.TemporaryDirectory(prefix="image-steps-") as top:
        os.chmod(top, 0o755)
        yield bake_into(Path(top) / "bake")


def build(project: Path, dockerfile_text: str, top: Path) -> tuple[Image, dict]:
    """The image of this Dockerfile text, built in `top`; and the bake's compose services."""
    build_stage, runtime = dockerfile.stages(dockerfile_text)
    built = Image(top, project, account_of(runtime))
    built.build(build_stage)
    kept = [copy.arguments.split()[0] for copy in runtime.of("COPY") if copy.flag("from") == build_stage.name]
    built.keep_only(kept)
    built.build(runtime)
    return built, yaml.safe_load((project / "docker-compose.yml").read_text())["services"]


def serve(built: Image, services: dict) -> tuple[subprocess.CompletedProcess, int | None, str]:
    """compose's provision and migrate, then its api until /health/ready answers: (the one-shots'
    outcome, the api's status, the api log)."""
    env = {**built.env, **settings(f"image_steps_{uuid.uuid4().hex[:8]}", built.path("/tmp/metrics"))}
    built.path("/tmp/metrics").mkdir(parents=True)
    hand_over(built.root, built.account)
    log = built.root.parent / "api.log"
    # As in the container: the runtime WORKDIR, the image's environment, the runtime user.
    where = {"cwd": built.workdir, "env": env, **as_account(built.account)}
    status = None
    with database(built.path("/opt/venv/bin/python"), env):
        for one_shot in ("provision", "migrate"):
            migrate = subprocess.run(
                services[one_shot]["command"], capture_output=True, text=True, timeout=120, **where
            )
            if migrate.returncode != 0:
                break
        if migrate.returncode == 0:
            with log.open("w") as output:
                argv = services["api"]["command"]
                api = subprocess.Popen(
                    argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **where
                )
            try:
                status = wait_ready(api, f"http://127.0.0.1:{env['UVICORN_PORT']}/health/ready")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(api.pid, signal.SIGTERM)
                api.wait(timeout=30)
    return migrate, status, log.read_text()[-4000:] if log.exists() else ""


def test_image_steps_install_from_the_lock_and_serve(baked_here):
    text = (baked_here / "Dockerfile").read_text()
    with tempfile.TemporaryDirectory(dir=baked_here.parent) as top:
        built, services = build(baked_here, text, Path(top))
        assert not uv_leftovers(built.root), "uv reached the runtime image"
        assert not (built.root / "src").exists(), "the build stage's sources reached the runtime image"
        migrate, status, log = serve(built, services)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert status == 200, f"/health/ready answered {status}:\n{log}"


def test_editable_install_is_caught(baked_here):
    """The same steps without --no-editable: the venv points into /src, which the image leaves behind."""
    text = (baked_here / "Dockerfile").read_text()
    assert text.count(" --no-editable") == 1
    with tempfile.TemporaryDirectory(dir=baked_here.parent) as top:
        built, services = build(baked_here, text.replace(" --no-editable", ""), Path(top))
        migrate, status, _ = serve(built, services)
    assert migrate.returncode != 0 and "ModuleNotFoundError" in migrate.stderr, migrate.stderr
    assert status is None
