"""docs/copying.md, proven: each pattern lifted into a bare FastAPI app from only what its section lists.

For every pattern a fresh folder gets the section's files (under a package named `theirapp`) and its
blocks (`main.py`, and the loop guard's test), nothing else; uvicorn serves it on the bake's venv
against the real PostgreSQL (a database and role made here and dropped), Redis (TEST_REDIS_DB) and
the bake's upstream stub. The pattern's routes must answer, and the loop guard copied the same way
must pass on them. The controls: every listed file, dropped in turn, breaks the build with a missing
module that is that file; and the guard and the watchdog must both catch a route that blocks the loop.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import clean_env

pytestmark = pytest.mark.slow

PACKAGE = "theirapp"
START_SECONDS = 90  # wide: on a loaded 2-core machine a cold uvicorn import takes seconds
REDIS_DB = os.environ.get("TEST_REDIS_DB", "15")
SECTION = re.compile(r"^## (.+?)\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"^```(\w+) (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SETTINGS = re.compile(r"^Settings?: (.*?)\n\n", re.MULTILINE | re.DOTALL)
SETTING_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")
# A route that blocks the loop, added to the watchdog's build: the watchdog must report its line,
# and the loop guard must fail on it. The app has logging of its own, which the watchdog must keep.
THEIR_LOGGING = """import logging
import time

logging.basicConfig(format="THEIRS %(levelname)s %(message)s")
"""
BLOCKING_ROUTE = """

@app.get("/blocking")
async def blocking() -> dict[str, str]:
    logging.getLogger("theirs").warning("about to block")
    time.sleep(0.5)  # the line the watchdog must name
    return {"status": "blocked"}
"""


# The app a recipe's main.py block joins (the blocks add to an `app` that exists).
EXISTING_APP = "from fastapi import FastAPI\n\napp = FastAPI()\n"


@dataclass
class Recipe:
    title: str
    files: list[str]  # relative to the bake; the slug's folder stands for the user's package
    blocks: dict[str, str] = field(default_factory=dict)  # target path -> code to add to it
    settings: list[str] = field(default_factory=list)  # the environment variables it names


def recipes(copying: str, slug: str) -> dict[str, Recipe]:
    """Each `## ` section of docs/copying.md with a files block, keyed by its first file."""
    found = {}
    for title, body in SECTION.findall(copying):
        blocks = {target: code for _, target, code in BLOCK.findall(body)}
        if "files" not in blocks:
            continue
        files = blocks.pop("files").split()
        settings = [name for text in SETTINGS.findall(body) for name in SETTING_NAME.findall(text)]
        found[files[0].removeprefix(f"{slug}/")] = Recipe(title, files, blocks, settings)
    return found


def build(bake: Path, parts: list[Recipe], folder: Path, package: str, tests: str, drop: str = "") -> Path:
    """The user's project: the listed files (but `drop`), the blocks appended to their targets, and
    an empty __init__.py in each folder (the user's own packages)."""
    slug = bake.name
    main = folder / package / "main.py"
    main.parent.mkdir(parents=True, exist_ok=True)
    main.write_text(EXISTING_APP)
    for recipe in parts:
        for listed in recipe.files:
            if listed == drop:
                continue
            target = folder / to_user_path(listed, slug, package, tests)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bake / listed, target)
        for path, code in recipe.blocks.items():
            target = folder / to_user_path(path if "/" in path else f"{slug}/{path}", slug, package, tests)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as out:
                out.write(code + "\n")
    for directory in [folder / package, folder / tests, *(folder / package).rglob("*/")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("")
    return folder


def to_user_path(listed: str, slug: str, package: str, tests: str) -> str:
    head, _, rest = listed.partition("/")
    return f"{package if head == slug else tests if head == 'tests' else head}/{rest}"


def module_of(listed: str, slug: str, package: str, tests: str) -> str:
    return to_user_path(listed, slug, package, tests).removesuffix(".py").replace("/", ".")


IMPORT_TRIALS = """
import importlib, json, re, sys
results = []
for folder, entries in json.loads(sys.argv[1]):
    sys.path.insert(0, folder)
    missing = []
    for entry in entries:
        try:
            importlib.import_module(entry)
        except ModuleNotFoundError as error:
            missing.append(error.name)
        except ImportError as error:  # `from .package import module` of a module that is not there
            found = re.match(r"cannot import name '(\\w+)' from '([\\w.]+)'", str(error))
            missing.append(f"{found[2]}.{found[1]}" if found else f"not a missing module: {error}")
        except Exception as error:  # a side effect of importing a second copy (a metric registered twice)
            missing.append(f"not a missing module: {type(error).__name__}: {error}")
    results.append(missing)
print(json.dumps(results))
"""


def import_trials(python: Path, trials: list[tuple[Path, list[str]]], env: dict[str, str]) -> list[list[str]]:
    """Import each folder's entry modules in one interpreter (each folder has packages of its own
    names): per folder, the modules found missing."""
    argv = [
        str(python),
        "-c",
        IMPORT_TRIALS,
        json.dumps([(str(folder), entries) for folder, entries in trials]),
    ]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(python: Path, argv: list[str], cwd: Path, env: dict[str, str], log: Path, url: str = "") -> Server:
    server = Server(
        subprocess.Popen(
            [str(python), "-m", *argv], cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        ),
        url,
        log,
    )
    deadline = time.monotonic() + START_SECONDS
    while url and time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    if url:
        server.stop()
        pytest.fail(f"{' '.join(argv)} did not start:\n{server.output()[-3000:]}")
    return server


@dataclass
class Stack:
    bake: Path
    python: Path
    env: dict[str, str]  # the settings every build runs with
    recipes: dict[str, Recipe]


def bake_python(bake: Path, code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(bake / ".venv" / "bin" / "python"), "-c", code],
        cwd=bake,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def stack(bake_into, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One bake, one `make install`; a database and role of this run; the bake's upstream stub."""
    bake = bake_into(tmp_path_factory.mktemp("copying-bake"))
    env = clean_env()
    install = subprocess.run(
        ["make", "install"], cwd=bake, env=env, capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    name, password = f"copying_{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = "import psycopg2; c = psycopg2.connect(host='127.0.0.1', dbname='postgres', user='postgres'); "
    admin += "c.autocommit = True; cur = c.cursor(); "
    bake_python(bake, admin + f"cur.execute(\"CREATE ROLE {name} LOGIN PASSWORD '{password}'\"); "
                f"cur.execute('CREATE DATABASE {name} OWNER {name}')", env)  # fmt: skip
    settings = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": name,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": name,
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "JOB_QUEUE": name,
        "PROCESS_POOL_WORKERS": "2",
    }
    upstream_port = free_port()
    settings["UPSTREAM_URL"] = f"http://127.0.0.1:{upstream_port}"
    env = {**env, **settings}
    # The user's migration: the models' table, made by the bake's own models.
    slug = bake.name
    create_tables = (
        f"from sqlalchemy import create_engine; from {slug}.config import Settings; "
        f"from {slug}.models import Base; "
        "Base.metadata.create_all(create_engine(Settings().database_url('psycopg2')))"
    )
    bake_python(bake, create_tables, env)
    flush_redis = f"import redis; redis.Redis.from_url({settings['REDIS_URL']!r}).flushdb()"
    bake_python(bake, flush_redis, env)  # this run's Redis database (TEST_REDIS_DB), empty
    python = bake / ".venv" / "bin" / "python"
    argv = ["uvicorn", "upstream_stub:app", "--port", str(upstream_port)]
    upstream = start(python, argv, bake, env, bake / "upstream.log", settings["UPSTREAM_URL"])
    copying = (bake / "docs" / "copying.md").read_text()
    try:
        yield Stack(bake, python, env, recipes(copying, slug))
    finally:
        upstream.stop()
        bake_python(bake, flush_redis, env)  # jobs the guard submitted and no worker ran
        bake_python(bake, admin + f"cur.execute('DROP DATABASE IF EXISTS {name} WITH (FORCE)'); "
                    f"cur.execute('DROP ROLE IF EXISTS {name}')", clean_env())  # fmt: skip


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def check_items(url: str, prefix: str) -> None:
    status, item = http("POST", f"{url}/{prefix}/items", {"name": "copied"})
    assert status == 201, item
    assert http("GET", f"{url}/{prefix}/items/{item['id']}") == (200, item)
    assert http("GET", f"{url}/{prefix}/db-wait?seconds=0.1")[0] == 200
    status, reply = http("GET", f"{url}/{prefix}/upstream?delay=0.1")
    assert status == 200 and reply["upstream_status"] == 200, reply


def check_mixed(url: str) -> None:
    status, reply = http("GET", f"{url}/mixed/report?delay=0.1")
    assert status == 200, reply


def check_cpu(url: str) -> None:
    status, reply = http("GET", f"{url}/cpu/compute?n=1000")
    assert status == 200 and reply["primes"] == 168, reply


def check_jobs(url: str) -> None:
    status, job = http("POST", f"{url}/cpu/jobs", {"n": 1000})
    assert status == 202, job
    deadline = time.monotonic() + START_SECONDS  # the worker may still be starting
    while job["state"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http("GET", f"{url}/cpu/jobs/{job['id']}")[1]
    assert job["state"] == "succeeded" and job["result"]["primes"] == 168, job


CHECKS = {
    "routers/async_io.py": lambda url: check_items(url, "async"),
    "routers/sync_io.py": lambda url: check_items(url, "sync"),
    "routers/mixed.py": check_mixed,
    "routers/cpu.py": check_cpu,
    "routers/jobs.py": check_jobs,
}
WATCHDOG = "observability/watchdog.py"
LOOP_GUARD = "tests/loop_guard.py"
PATTERNS = [*CHECKS, WATCHDOG]  # each built with the loop guard


def run_loop_guard(stack: Stack, folder: Path, url: str) -> subprocess.CompletedProcess:
    argv = [str(stack.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_loop_guard.py"]
    env = {**stack.env, "API_URL": url}
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=180)


def parts_of(stack: Stack, pattern: str) -> list[Recipe]:
    """What a user copies for one pattern: its section, and the loop guard's to prove it."""
    return [stack.recipes[pattern], stack.recipes[LOOP_GUARD]]


def entry_points(pattern: str, package: str, tests: str) -> list[str]:
    """The modules a run imports first: the app, the guard's test (and the Celery worker's app)."""
    entries = [f"{package}.main", f"{tests}.test_loop_guard"]
    return [f"{package}.worker", *entries] if pattern == "routers/jobs.py" else entries


def test_every_listed_file_is_needed_and_enough(stack, tmp_path):
    """Each pattern's build imports with every listed file and nothing else; with any one of them
    dropped, the module missing is that file. One interpreter for every trial: each trial's folder
    has packages of its own names."""
    slug = stack.bake.name
    trials, expected = [], []
    for pattern in PATTERNS:
        listed = [path for recipe in parts_of(stack, pattern) for path in recipe.files]
        for drop in ["", *listed]:
            package, tests = f"{PACKAGE}{len(trials)}", f"tests{len(trials)}"
            folder = build(stack.bake, parts_of(stack, pattern), tmp_path / package, package, tests, drop)
            trials.append((folder, entry_points(pattern, package, tests)))
            expected.append((pattern, drop, module_of(drop, slug, package, tests) if drop else ""))
    for (pattern, drop, module), missing in zip(
        expected, import_trials(stack.python, trials, stack.env), strict=True
    ):
        if not drop:
            assert missing == [], f"{pattern}: the listed files are not enough: {missing}"
            continue
        # A file alone in its folder takes the folder with it: then the package is what is missing.
        found = any(module == name or module.startswith(f"{name}.") for name in missing)
        assert found, f"{pattern}: {drop} is listed, yet the build works without it ({missing})"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_copies_into_a_bare_app(stack, pattern, tmp_path):
    parts = parts_of(stack, pattern)
    folder = build(stack.bake, parts, tmp_path / "app", PACKAGE, "tests")
    if pattern == WATCHDOG:
        main = folder / PACKAGE / "main.py"
        main.write_text(THEIR_LOGGING + main.read_text() + BLOCKING_ROUTE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    servers = []
    try:
        argv = ["uvicorn", f"{PACKAGE}.main:app", "--port", str(port)]
        servers.append(start(stack.python, argv, folder, stack.env, tmp_path / "api.log", url))
        if pattern == "routers/jobs.py":
            argv = ["celery", "--app", f"{PACKAGE}.worker", "worker", "--loglevel", "INFO"]
            servers.append(start(stack.python, argv, folder, stack.env, tmp_path / "worker.log"))
        if pattern == WATCHDOG:
            assert http("GET", f"{url}/blocking")[0] == 200
            assert_stall_reported(servers[0])
            guard = run_loop_guard(stack, folder, url)
            assert guard.returncode == 1 and "/blocking" in guard.stdout, guard.stdout[-3000:]
            return
        CHECKS[pattern](url)
        guard = run_loop_guard(stack, folder, url)
        assert guard.returncode == 0, guard.stdout[-3000:] + "\n" + servers[0].output()[-2000:]
    finally:
        for server in servers:
            server.stop()


def assert_stall_reported(server: Server) -> None:
    """The report is a line of the app's own format that names the line and the request, and the app's
    lines (its own, uvicorn's access line) keep theirs: no JSON."""
    report = re.compile(
        r"^THEIRS WARNING event loop stalled: \d+ ms late .*, "
        rf"blocked at \S*/{PACKAGE}/main\.py:\d+ in blocking; serving GET /blocking ",
        re.MULTILINE,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        output = server.output()
        if report.search(output):
            assert "THEIRS WARNING about to block" in output, output[-3000:]
            assert '"GET /blocking HTTP/1.1" 200' in output, output[-3000:]
            assert not re.search(r"^\{", output, re.MULTILINE), output[-3000:]
            return
        time.sleep(0.2)
    pytest.fail(f"no stall reported in the app's format:\n{server.output()[-3000:]}")


def test_recipes_cover_every_pattern(stack):
    assert set(stack.recipes) == {*PATTERNS, LOOP_GUARD}
    for recipe in stack.recipes.values():
        assert "main.py" in recipe.blocks, f"{recipe.title}: no main.py block"
        declared = "".join((stack.bake / path).read_text() for path in recipe.files if path.endswith(".py"))
        unknown = [name for name in recipe.settings if not re.search(rf"^ +{name.lower()}: ", declared, re.M)]
        assert not unknown, f"{recipe.title} names settings its files do not declare: {unknown}"
        own_settings = recipe.files not in ([LOOP_GUARD], [f"{stack.bake.name}/{WATCHDOG}"])
        assert recipe.settings or not own_settings, f"{recipe.title} names no setting"
        missing = [path for path in recipe.files if not (stack.bake / path).is_file()]
        assert not missing, f"{recipe.title} lists files the bake does not have: {missing}"
