"""docs/copying.md, proven the way a newcomer lifts a pattern: into an app of their own, in a venv of
only the packages the recipe lists.

The existing app is tests/their_app/theirapp: its own settings (`config.py`, stdlib only), lifespan,
route (`GET /hello`), logging and the loop guard's probe. For every pattern a fresh folder gets a
copy of it, the section's files beside its own (a file that would overwrite one of the app's fails
the build, naming it), the section's `main.py` block appended to the app's `main.py`, and the loop
guard's section. Each pattern gets a fresh venv (uv, one cache) of the packages its section lists,
the app's own (fastapi, uvicorn) and the loop guard's, every version pinned by the bake's uv.lock:
a recipe whose requirements miss a package fails its positive test with that missing module; the
bake's venv, which has everything, serves only the upstream stub and the database set-up.

uvicorn serves each build against the real PostgreSQL (a database per pattern, with the section's
`sql schema`), Redis (TEST_REDIS_DB), the bake's upstream stub and, for the jobs, a real Celery
worker. The app's own route must still answer with its own settings, its start-up line must appear
in its own format, the pattern's routes must answer and the loop guard must pass on them. The
controls: every listed file, dropped in turn, breaks the build with a missing module that is that
file; every listed package, dropped in turn, breaks importing and starting the app (a package that
another one installs anyway must instead be imported by the build); the recipe's packages alone,
without the loop guard's, are enough; and the guard and the watchdog must both catch a route that
blocks the loop.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import clean_env

pytestmark = pytest.mark.slow

PACKAGE = "theirapp"
THEIR_APP = Path(__file__).parent / "their_app" / PACKAGE
# The existing app's own packages (the versions come from the bake's uv.lock, as every other's).
APP_REQUIREMENTS = ["fastapi", "uvicorn"]
START_SECONDS = 90  # wide: on a loaded 2-core machine a cold uvicorn import takes seconds
REDIS_DB = os.environ.get("TEST_REDIS_DB", "15")
SECTION = re.compile(r"^## (.+?)\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"^```(\w+) (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The recipe's settings: the names in its "Settings: ..." sentence (a later one may name others').
SETTINGS = re.compile(r"^Settings?: (.*?)\.(?:\s|$)", re.MULTILINE | re.DOTALL)
SETTING_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")
WORKER = re.compile(r"celery --app ([\w.]+) worker")  # the command a section gives for its worker
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9._,-]+\])?$")
# A route that blocks the loop, added to the watchdog's build: the watchdog must report its line,
# and the loop guard must fail on it.
BLOCKING_ROUTE = """

import time


@app.get("/blocking")
async def blocking() -> dict[str, str]:
    time.sleep(0.5)  # the line the watchdog must name
    return {"status": "blocked"}
"""


def normalize(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


@dataclass
class Recipe:
    title: str
    files: list[str]  # relative to the bake; the slug's folder stands for the user's package
    requirements: list[str]  # PyPI distributions, extras allowed, no versions
    schema: str = ""  # DDL run on the fresh database before the app starts
    blocks: dict[str, str] = field(default_factory=dict)  # target path -> code to append to it
    settings: list[str] = field(default_factory=list)  # the environment variables it names
    worker: str = ""  # the Celery app's module below the package, if the section runs a worker

    def distributions(self) -> dict[str, str]:
        """Each requirement line -> its distribution's normalized name."""
        return {line: normalize(line.partition("[")[0]) for line in self.requirements}


def recipes(copying: str, slug: str) -> dict[str, Recipe]:
    """Each `## ` section of docs/copying.md with a files block, keyed by its first file."""
    found = {}
    for title, body in SECTION.findall(copying):
        blocks = {target: code for _, target, code in BLOCK.findall(body)}
        if "files" not in blocks:
            continue
        files = blocks.pop("files").split()
        requirements = [
            line.strip()
            for line in blocks.pop("requirements", "").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        schema = blocks.pop("schema", "")
        settings = [name for text in SETTINGS.findall(body) for name in SETTING_NAME.findall(text)]
        worker = WORKER.search(body)
        worker_module = worker.group(1).removeprefix(f"{slug}.") if worker else ""
        found[files[0].removeprefix(f"{slug}/")] = Recipe(
            title, files, requirements, schema, blocks, settings, worker_module
        )
    return found


def to_user_path(listed: str, slug: str, package: str, tests: str) -> str:
    head, _, rest = listed.partition("/")
    return f"{package if head == slug else tests if head == 'tests' else head}/{rest}"


def module_of(listed: str, slug: str, package: str, tests: str) -> str:
    return to_user_path(listed, slug, package, tests).removesuffix(".py").replace("/", ".")


def build(bake: Path, parts: list["Recipe"], folder: Path, package: str, tests: str, drop: str = "") -> Path:
    """The user's project: a copy of the existing app, the listed files (but `drop`) beside its own
    (one that would overwrite the app's fails here), the blocks appended to their targets, and an
    empty __init__.py in each folder that has none and for which the recipe lists none."""
    slug = bake.name
    shutil.copytree(THEIR_APP, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    own = {path.relative_to(folder).as_posix() for path in (folder / package).rglob("*.py")}
    for recipe in parts:
        for listed in recipe.files:
            user_path = to_user_path(listed, slug, package, tests)
            if user_path in own:
                theirs = to_user_path(listed, slug, PACKAGE, "tests")
                pytest.fail(f"{recipe.title}: {listed} would overwrite the existing app's own {theirs}")
            if listed == drop:
                continue
            target = folder / user_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bake / listed, target)
        for path, code in recipe.blocks.items():
            target = folder / to_user_path(path if "/" in path else f"{slug}/{path}", slug, package, tests)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as out:
                out.write("\n\n" + code)
    listed = {folder / to_user_path(path, slug, package, tests) for recipe in parts for path in recipe.files}
    for directory in [folder / package, folder / tests, *(folder / package).rglob("*/")]:
        init = directory / "__init__.py"
        if directory.is_dir() and not init.exists() and init not in listed:  # one listed stays dropped
            init.write_text("")
    return folder


# `from .pkg import module` without the module's file raises ImportError, not ModuleNotFoundError:
# the missing module is then pkg.module.
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
        except ImportError as error:
            name = re.match(r"cannot import name '(\\w+)' from '([\\w.]+)'", str(error))
            missing.append(f"{name[2]}.{name[1]}" if name else f"not a missing module: {error}")
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
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the import trials crashed: {result.stderr[-3000:]}"
    return json.loads(result.stdout)


# Import the build's entry modules and run the app's lifespan (engines and clients import their
# drivers there), in one venv; then say which distributions are installed and which top-level
# modules the build imported.
START_TRIAL = """
import asyncio, importlib, importlib.metadata, json, sys
folder, package = sys.argv[1], sys.argv[2]
entries, distributions = json.loads(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, folder)
result = {"missing": None, "error": None}
try:
    for entry in entries:
        importlib.import_module(entry)
    if package + ".main" in entries:
        app = sys.modules[package + ".main"].app

        async def cycle():
            async with app.router.lifespan_context(app):
                pass

        asyncio.run(cycle())
except ModuleNotFoundError as error:
    result["missing"] = error.name
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
norm = lambda name: name.replace("_", "-").replace(".", "-").lower()
tops = {}
for top, names in importlib.metadata.packages_distributions().items():
    for name in names:
        tops.setdefault(norm(name), []).append(top)
result["installed"] = {name: name in tops for name in distributions}
result["tops"] = {name: sorted(tops.get(name, [])) for name in distributions}
result["all_tops"] = sorted({top for names in tops.values() for top in names})
result["imported"] = sorted({name.partition(".")[0] for name in sys.modules})
print(json.dumps(result))
"""


def start_trial(python: Path, folder: Path, entries: list[str], distributions: list[str], env: dict) -> dict:
    argv = [
        str(python),
        "-c",
        START_TRIAL,
        str(folder),
        PACKAGE,
        json.dumps(entries),
        json.dumps(distributions),
    ]
    result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the start trial crashed: {result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        output = server.output()
        errors = [line for line in output.splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception): ", line)]
        cause = errors[-1] if errors else "no error logged"
        pytest.fail(f"{' '.join(argv)} did not start: {cause}\n{output[-3000:]}")
    return server


class Venvs:
    """Venvs made by uv with one cache, each pinned by the bake's uv.lock; made once per set."""

    def __init__(self, bake: Path, root: Path, env: dict[str, str]) -> None:
        self.uv = bake / ".venv" / "bin" / "uv"
        self.base = bake / ".venv" / "bin" / "python"
        self.root = root
        self.env = env
        self.made: dict[tuple[str, ...], Path] = {}
        self.lock = threading.Lock()  # the package controls make their venvs two at a time
        self.constraints = root / "constraints.txt"
        export = [str(self.uv), "export", "--frozen", "--no-hashes", "--all-extras", "--no-emit-project"]
        result = subprocess.run(
            [*export, "-o", str(self.constraints)], cwd=bake, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"uv export of the bake's lock failed: {result.stderr[-2000:]}"
        pinned = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", self.constraints.read_text(), re.MULTILINE)
        self.locked = {normalize(name) for name in pinned}

    def python(self, requirements: list[str]) -> Path:
        key = tuple(sorted(set(requirements)))
        with self.lock:
            if key in self.made:
                return self.made[key]
            venv = self.root / f"venv{len(self.made)}"
            self.made[key] = python = venv / "bin" / "python"
        self.run("venv", "--quiet", "--python", str(self.base), str(venv))
        self.run("pip", "install", "--quiet", "--python", str(python), "-c", str(self.constraints), *key)
        return python

    def resolve(self, requirements: list[str]) -> set[str]:
        """The distributions a venv of these requirements would hold (uv's resolution, no venv made)."""
        argv = ["pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", str(self.base)]
        output = self.run(*argv, "-c", str(self.constraints), "-", stdin="\n".join(requirements))
        return {normalize(name) for name in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", output, re.M)}

    def run(self, *argv: str, stdin: str = "") -> str:
        result = subprocess.run(
            [str(self.uv), *argv], input=stdin, env=self.env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"uv {' '.join(argv)} failed: {result.stderr[-2000:]}"
        return result.stdout


@dataclass
class Stack:
    bake: Path
    env: dict[str, str]  # the settings every build runs with (but the database's)
    recipes: dict[str, Recipe]
    venvs: Venvs
    admin: str  # the database server's superuser, through the bake's psycopg2
    role: str

    def recipe(self, pattern: str) -> Recipe:
        if pattern not in self.recipes:
            pytest.fail(
                f"docs/copying.md has no section whose first file is {pattern} (it has {list(self.recipes)})"
            )
        return self.recipes[pattern]

    @contextmanager
    def database(self, schema: str) -> Iterator[dict[str, str]]:
        """A database of this run's role, the recipe's schema run on it as that role; dropped after."""
        name = f"{self.role}_{secrets.token_hex(3)}"
        bake_python(
            self.bake, self.admin + f"cur.execute('CREATE DATABASE {name} OWNER {self.role}')", self.env
        )
        try:
            settings = {"POSTGRES_DB": name}
            if schema:
                code = (
                    "import os, sys, psycopg2; c = psycopg2.connect(host='127.0.0.1', "
                    "dbname=os.environ['DB'], user=os.environ['POSTGRES_USER'], "
                    "password=os.environ['POSTGRES_PASSWORD']); "
                    "c.autocommit = True; c.cursor().execute(sys.stdin.read())"
                )
                run = subprocess.run(
                    [str(self.venvs.base), "-c", code],
                    input=schema,
                    env={**self.env, "DB": name},
                    capture_output=True,
                    text=True,
                )
                assert run.returncode == 0, (
                    f"the recipe's sql schema failed: {run.stderr.strip().splitlines()[-1:]}"
                )
            yield settings
        finally:
            bake_python(
                self.bake,
                self.admin + f"cur.execute('DROP DATABASE IF EXISTS {name} WITH (FORCE)')",
                self.env,
            )


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
    """One bake, one `make install` (for uv, the lock and the upstream stub); a role of this run;
    the bake's upstream stub."""
    bake = bake_into(tmp_path_factory.mktemp("copying-bake"))
    env = clean_env()
    install = subprocess.run(
        ["make", "install"], cwd=bake, env=env, capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    name, password = f"copying_{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = "import psycopg2; c = psycopg2.connect(host='127.0.0.1', dbname='postgres', user='postgres'); "
    admin += "c.autocommit = True; cur = c.cursor(); "
    bake_python(bake, admin + f"cur.execute(\"CREATE ROLE {name} LOGIN PASSWORD '{password}'\")", env)
    settings = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": name,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": name,  # each pattern's own database replaces it
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "JOB_QUEUE": name,
        "PROCESS_POOL_WORKERS": "2",
        "GREETING": f"hello-{secrets.token_hex(4)}",  # the existing app's own setting
    }
    upstream_port = free_port()
    settings["UPSTREAM_URL"] = f"http://127.0.0.1:{upstream_port}"
    env = {**env, **settings}
    flush_redis = f"import redis; redis.Redis.from_url({settings['REDIS_URL']!r}).flushdb()"
    bake_python(bake, flush_redis, env)  # this run's Redis database (TEST_REDIS_DB), empty
    argv = ["uvicorn", "upstream_stub:app", "--port", str(upstream_port)]
    upstream = start(
        bake / ".venv" / "bin" / "python", argv, bake, env, bake / "upstream.log", settings["UPSTREAM_URL"]
    )
    copying = (bake / "docs" / "copying.md").read_text()
    try:
        venvs = Venvs(bake, tmp_path_factory.mktemp("copying-venvs"), clean_env())
        yield Stack(bake, env, recipes(copying, bake.name), venvs, admin, name)
    finally:
        upstream.stop()
        bake_python(bake, flush_redis, env)  # jobs the guard submitted and no worker ran
        bake_python(bake, admin + f"cur.execute('DROP ROLE IF EXISTS {name}')", clean_env())


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
    assert status == 201, f"POST /{prefix}/items answered {status}: {item}"
    assert http("GET", f"{url}/{prefix}/items/{item['id']}") == (200, item), "the item read back differs"
    assert http("GET", f"{url}/{prefix}/db-wait?seconds=0.1")[0] == 200, f"/{prefix}/db-wait failed"
    status, reply = http("GET", f"{url}/{prefix}/upstream?delay=0.1")
    assert status == 200 and reply["upstream_status"] == 200, f"/{prefix}/upstream failed: {reply}"


def check_mixed(url: str) -> None:
    status, reply = http("GET", f"{url}/mixed/report?delay=0.1")
    assert status == 200, f"/mixed/report answered {status}: {reply}"


def check_cpu(url: str) -> None:
    status, reply = http("GET", f"{url}/cpu/compute?n=1000")
    assert status == 200 and reply["primes"] == 168, f"/cpu/compute answered {status}: {reply}"


def check_jobs(url: str) -> None:
    status, job = http("POST", f"{url}/cpu/jobs", {"n": 1000})
    assert status == 202, f"POST /cpu/jobs answered {status}: {job}"
    deadline = time.monotonic() + START_SECONDS  # the worker may still be starting
    while job["state"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http("GET", f"{url}/cpu/jobs/{job['id']}")[1]
    assert job["state"] == "succeeded" and job["result"]["primes"] == 168, f"the job did not succeed: {job}"


CHECKS = {
    "routers/async_io.py": lambda url: check_items(url, "async"),
    "routers/sync_io.py": lambda url: check_items(url, "sync"),
    "routers/mixed.py": check_mixed,
    "routers/cpu.py": check_cpu,
    "routers/jobs.py": check_jobs,
}
JOBS = "routers/jobs.py"
WATCHDOG = "observability/watchdog.py"
LOOP_GUARD = "tests/loop_guard.py"
PATTERNS = [*CHECKS, WATCHDOG]  # each built with the loop guard


def parts_of(stack: Stack, pattern: str) -> list[Recipe]:
    """What a user copies for one pattern: its section, and the loop guard's to prove it."""
    return [stack.recipe(pattern), stack.recipe(LOOP_GUARD)]


def requirements_of(stack: Stack, pattern: str) -> list[str]:
    """A pattern's venv: what its section and the loop guard's list, and the existing app's own."""
    return [*APP_REQUIREMENTS, *(line for recipe in parts_of(stack, pattern) for line in recipe.requirements)]


def worker_of(stack: Stack, pattern: str) -> str:
    """The Celery app's module below the package: the one the section's command names."""
    if pattern != JOBS:
        return ""
    worker = stack.recipe(pattern).worker
    assert worker, (
        f"{stack.recipe(pattern).title}: no `celery --app {stack.bake.name}.<module> worker` command"
    )
    return worker


def entry_points(worker: str, package: str, tests: str) -> list[str]:
    """The modules a run imports first: the app, the guard's test (and the Celery worker's app)."""
    entries = [f"{package}.main", f"{tests}.test_loop_guard"]
    return [f"{package}.{worker}", *entries] if worker else entries


def app_entry_points(worker: str) -> list[str]:
    """What serving the app imports: uvicorn, the app (and the Celery worker's app)."""
    return ["uvicorn", f"{PACKAGE}.main", *([f"{PACKAGE}.{worker}"] if worker else [])]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_listed_file_is_needed_and_enough(stack, pattern, tmp_path):
    """The pattern's build imports in its own venv with every listed file; with any one of them
    dropped, the module missing is that file. One interpreter for every trial: each trial's folder
    has packages of its own names."""
    slug = stack.bake.name
    python = stack.venvs.python(requirements_of(stack, pattern))
    trials, expected = [], []
    listed = [path for recipe in parts_of(stack, pattern) for path in recipe.files]
    for drop in ["", *listed]:
        package, tests = f"{PACKAGE}{len(trials)}", f"tests{len(trials)}"
        folder = build(stack.bake, parts_of(stack, pattern), tmp_path / package, package, tests, drop)
        trials.append((folder, entry_points(worker_of(stack, pattern), package, tests)))
        expected.append((drop, module_of(drop, slug, package, tests) if drop else ""))
    for (drop, module), missing in zip(expected, import_trials(python, trials, stack.env), strict=True):
        if not drop:
            assert missing == [], (
                f"{pattern}: the listed files and packages are not enough, missing: {missing}"
            )
            continue
        # A file alone in its folder takes the folder with it: then the package is what is missing.
        found = any(module == name or module.startswith(f"{name}.") for name in missing)
        assert found, f"{pattern}: {drop} is listed, yet the build works without it ({missing})"


@pytest.mark.parametrize("pattern", [*PATTERNS, LOOP_GUARD])
def test_every_listed_package_is_needed_and_enough(stack, pattern, tmp_path):
    """In a venv of the existing app's packages and the section's only (not the loop guard's), the
    app imports and starts; with any one listed package dropped, importing or starting it fails on
    that package's module. A package still installed without its line (another listed one depends
    on it) cannot fail that way: then the build must import it. The loop guard's section is
    proven by importing pytest (its runner) and its test."""
    recipe = stack.recipe(pattern)
    guard = pattern == LOOP_GUARD
    parts = [recipe] if guard else parts_of(stack, pattern)
    folder = build(stack.bake, parts, tmp_path / "app", PACKAGE, "tests")
    entries = ["pytest", "tests.test_loop_guard"] if guard else app_entry_points(worker_of(stack, pattern))
    distributions = recipe.distributions()
    env = {**stack.env, "PYTHONPATH": str(folder)}
    with stack.database(recipe.schema) as database:
        env.update(database)
        python = stack.venvs.python([*APP_REQUIREMENTS, *recipe.requirements])
        whole = start_trial(python, folder, entries, list(distributions.values()), env)
        problem = f"missing module {whole['missing']}" if whole["missing"] else whole["error"]
        assert not problem, (
            f"{recipe.title}: the app does not start on the section's packages alone: {problem}"
        )

        def without(line: str) -> dict | None:
            """The start trial in a venv without `line`; None if uv installs its distribution anyway."""
            rest = [*APP_REQUIREMENTS, *(other for other in recipe.requirements if other != line)]
            if distributions[line] in stack.venvs.resolve(rest):
                return None
            trial = start_trial(stack.venvs.python(rest), folder, entries, [distributions[line]], env)
            return None if trial["installed"][distributions[line]] else trial

        with ThreadPoolExecutor(max_workers=2) as pool:
            trials = dict(zip(distributions, pool.map(without, distributions), strict=True))
        for line, trial in trials.items():
            tops = whole["tops"][distributions[line]]
            if trial is None:
                imported = [top for top in tops if top in whole["imported"]]
                assert imported, (
                    f"{recipe.title}: {line} is installed anyway without its line (the existing app's own, "
                    "or a dependency of another), so dropping it cannot fail; and the build does not import "
                    f"its modules {tops}"
                )
                continue
            # The drop takes the distribution and what only it brought (celery takes kombu): the app
            # must fail on a module of one of them.
            lost = set(whole["all_tops"]) - set(trial["all_tops"])
            missing = (trial["missing"] or "").partition(".")[0]
            assert trial["missing"] or trial["error"], (
                f"{recipe.title}: {line} is listed, yet without it the app imports and starts"
            )
            assert missing in lost, (
                f"{recipe.title}: without {line} the app fails, but not on a module the drop took "
                f"({trial['missing'] or trial['error']}; the drop took {sorted(lost)})"
            )


def start_line(greeting: str) -> str:
    """The existing app's start-up line, in its own format (tests/their_app/theirapp/main.py)."""
    return f"THEIRAPP INFO {PACKAGE}.main: started with greeting {greeting}"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_lifts_into_an_existing_app(stack, pattern, tmp_path):
    parts = parts_of(stack, pattern)
    folder = build(stack.bake, parts, tmp_path / "app", PACKAGE, "tests")
    main = folder / PACKAGE / "main.py"
    if pattern == WATCHDOG:
        main.write_text(main.read_text() + BLOCKING_ROUTE)
    python = stack.venvs.python(requirements_of(stack, pattern))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    servers = []
    with stack.database(stack.recipe(pattern).schema) as database:
        env = {**stack.env, **database}
        try:
            argv = ["uvicorn", f"{PACKAGE}.main:app", "--port", str(port)]
            servers.append(start(python, argv, folder, env, tmp_path / "api.log", url))
            if pattern == JOBS:
                argv = [
                    "celery",
                    "--app",
                    f"{PACKAGE}.{worker_of(stack, pattern)}",
                    "worker",
                    "--loglevel",
                    "INFO",
                ]
                servers.append(start(python, argv, folder, env, tmp_path / "worker.log"))
            assert_app_still_its_own(url, servers[0], env["GREETING"])
            if pattern == WATCHDOG:
                assert http("GET", f"{url}/blocking")[0] == 200, "the blocking route did not answer"
                assert_stall_reported(servers[0], main)
                assert_logging_kept(servers[0])
                guard = run_loop_guard(python, env, folder, url)
                assert guard.returncode == 1 and "/blocking" in guard.stdout, (
                    f"the loop guard did not fail on /blocking: {guard.stdout[-3000:]}{guard.stderr[-2000:]}"
                )
                return
            CHECKS[pattern](url)
            assert_logging_kept(servers[0])
            guard = run_loop_guard(python, env, folder, url)
            assert guard.returncode == 0, (
                f"the loop guard failed: {guard.stdout[-3000:]}{guard.stderr[-2000:]}\n"
                f"{servers[0].output()[-2000:]}"
            )
        finally:
            for server in servers:
                server.stop()


def assert_app_still_its_own(url: str, server: Server, greeting: str) -> None:
    """The existing app's route answers from its own lifespan and settings; its start-up line is in its
    own format."""
    status, reply = http("GET", f"{url}/hello")
    assert (status, reply) == (200, {"greeting": greeting}), (
        f"the existing app's own GET /hello answers {status} {reply}, not its own greeting"
    )
    assert start_line(greeting) in server.output(), (
        f"the existing app's start-up line is missing or not in its own format: {server.output()[-2000:]}"
    )


def run_loop_guard(python: Path, env: dict[str, str], folder: Path, url: str) -> subprocess.CompletedProcess:
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_loop_guard.py"]
    return subprocess.run(
        argv, cwd=folder, env={**env, "API_URL": url}, capture_output=True, text=True, timeout=180
    )


def assert_stall_reported(server: Server, main: Path) -> None:
    """The watchdog's report is a line of the app's own format that names the blocking line (file and
    number) and the request being served."""
    number = next(n for n, line in enumerate(main.read_text().splitlines(), 1) if "time.sleep(0.5)" in line)
    where = f"/{PACKAGE}/main.py:{number} in blocking"
    report = re.compile(
        rf"^THEIRAPP WARNING \S+: event loop stalled: .*blocked at \S*{re.escape(where)}; "
        "serving GET /blocking",
        re.MULTILINE,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        output = server.output()
        if "event loop stalled" in output:
            assert report.search(output), (
                f"the stall report is not a line of the app's format naming {where} and GET /blocking: "
                f"{output[-3000:]}"
            )
            return
        time.sleep(0.2)
    pytest.fail(f"the watchdog reported no stall:\n{server.output()[-3000:]}")


def assert_logging_kept(server: Server) -> None:
    """After the pattern ran, the app's log is still in its own format: no recipe took logging over."""
    json_lines = [line for line in server.output().splitlines() if line.startswith("{")]
    assert not json_lines, f"the app's log has lines not in its own format (JSON): {json_lines[:2]}"


def settings_fields(source: str) -> set[str]:
    """The field names of the classes named *Settings in a module's source."""
    fields = set()
    for body in re.findall(r"^class \w*Settings\b.*?:\n((?:(?:    .*)?\n)*)", source, re.MULTILINE):
        fields |= set(re.findall(r"^    ([a-z_][a-z0-9_]*): ", body, re.MULTILINE))
    return fields


def settings_mismatch(bake: Path, recipe: Recipe) -> tuple[list[str], list[str]]:
    """The settings the recipe names that no Settings class of its files has, and those they have
    that it does not name (the "Settings:" sentence must list exactly what its files read)."""
    fields = set()
    for path in recipe.files:
        if path.endswith(".py"):
            fields |= settings_fields((bake / path).read_text())
    named = {name.lower() for name in recipe.settings}
    return sorted(name.upper() for name in named - fields), sorted(name.upper() for name in fields - named)


def test_recipes_cover_every_pattern(stack):
    assert set(stack.recipes) == {*PATTERNS, LOOP_GUARD}, (
        f"the sections are not one per pattern: {list(stack.recipes)}"
    )
    for recipe in stack.recipes.values():
        missing = [path for path in recipe.files if not (stack.bake / path).is_file()]
        assert not missing, f"{recipe.title} lists files the bake does not have: {missing}"
        if recipe.files[0] == LOOP_GUARD:
            assert "tests/test_loop_guard.py" in recipe.blocks, (
                f"{recipe.title}: no tests/test_loop_guard.py block"
            )
        else:
            assert "main.py" in recipe.blocks, f"{recipe.title}: no main.py block"
        assert recipe.requirements, f"{recipe.title}: no requirements block (or an empty one)"
        malformed = [line for line in recipe.requirements if not REQUIREMENT.match(line)]
        assert not malformed, (
            f"{recipe.title}: requirements must be bare names (the lock pins them): {malformed}"
        )
        unlocked = [line for line, name in recipe.distributions().items() if name not in stack.venvs.locked]
        assert not unlocked, f"{recipe.title}: requirements the bake's uv.lock does not pin: {unlocked}"
        unknown, unnamed = settings_mismatch(stack.bake, recipe)
        assert not unknown, f"{recipe.title} names settings no Settings class of its files has: {unknown}"
        assert not unnamed, (
            f"{recipe.title} does not name settings its files' Settings classes have: {unnamed}"
        )
