"""Every supported option set, baked and checked in seconds: rendering, lint, compose, Dockerfile,
the lock, and that a disabled option leaves nothing behind.

The generated project's own suite runs in test_generated_suites.py (slow).
"""

import ast
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cookiecutter.environment import StrictEnvironment
from packaging import tags
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from . import dockerfile
from .conftest import DEFAULTS, MEASURE_YOURS, ROOT, clean_env, tool

TEMPLATE_TOKENS = re.compile(r"\{\{|\{%|\{#")
SKIPPED_DIRS = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def files(project: Path) -> list[Path]:
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(project).parts)
    )


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)


def compose(project: Path) -> dict:
    return yaml.safe_load((project / "docker-compose.yml").read_text())


def python_imports(project: Path) -> dict[str, list[str]]:
    """Every module the project's code imports (lazy imports in functions too) -> where."""
    imports: dict[str, list[str]] = {}
    for path in project.rglob("*.py"):
        relative = path.relative_to(project)
        if SKIPPED_DIRS.intersection(relative.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                imports.setdefault(module, []).append(f"{relative}:{node.lineno}")
    return imports


# Top-level modules whose distribution has another name, and the requirement that installs them.
MODULE_SOURCES = {
    "yaml": "pyyaml",
    "dotenv": "python-dotenv",
    "psycopg2": "psycopg2-binary",
    "uvloop": "uvicorn[standard]",  # the extra installs it; uvicorn runs on it
    "kombu": "celery",  # Celery's messaging layer: its exceptions are what publishing raises
    "anyio": "starlette",  # Starlette's concurrency layer: FastAPI's threadpool is its limiter
    # One namespace for the API, the SDK, the exporter and each instrumentation: the API is always there.
    "opentelemetry": "opentelemetry-api",
}
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


def requirement_name(requirement: str) -> tuple[str, set[str]]:
    """("celery", {"redis"}) for "celery[redis]>=5.7,<6"; names normalised as pip does."""
    name, extras = REQUIREMENT.match(requirement).groups()
    normalised = re.sub(r"[-_.]+", "-", name).lower()
    return normalised, {extra.strip() for extra in (extras or "[]")[1:-1].split(",") if extra.strip()}


def declared_requirements(project: Path) -> dict[str, set[str]]:
    """Every requirement of the bake's pyproject.toml (dependencies and every extra) -> its extras."""
    config = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    requirements = list(config["dependencies"])
    for extra in config.get("optional-dependencies", {}).values():
        requirements += extra
    declared: dict[str, set[str]] = {}
    for requirement in requirements:
        name, extras = requirement_name(requirement)
        declared.setdefault(name, set()).update(extras)
    return declared


def local_packages(project: Path) -> set[str]:
    return {path.parent.name for path in project.glob("*/__init__.py")}


def rendered_pre_gen_dependencies() -> set[str]:
    """The names the pre-gen hook refuses as a slug because they would shadow an imported module."""
    context = {"cookiecutter": {**DEFAULTS, "project_slug": "my_service"}}
    source = (ROOT / "hooks" / "pre_gen_project.py").read_text()
    rendered = StrictEnvironment(context=context).from_string(source).render(**context)
    for node in ast.parse(rendered).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["DEPENDENCIES"]:
            return ast.literal_eval(node.value)
    raise AssertionError("hooks/pre_gen_project.py has no DEPENDENCIES")


def imports_of(project: Path, *packages: str) -> list[str]:
    return sorted(
        f"{where}: import {module}"
        for module, places in python_imports(project).items()
        if module.split(".")[0] in packages
        for where in places
    )


def test_no_template_tokens_left(bake):
    project, _ = bake
    leftovers = []
    for path in [project, *project.rglob("*")]:
        if TEMPLATE_TOKENS.search(path.name):
            leftovers.append(f"{path.relative_to(project.parent)}: in the name")
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if TEMPLATE_TOKENS.search(line):
                    leftovers.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    assert not leftovers, "unrendered template syntax:\n" + "\n".join(leftovers)


def test_no_empty_folders(bake):
    project, _ = bake
    empty = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_dir() and not any(path.iterdir())
    ]
    assert not empty, f"empty folders: {empty}"


def test_package_named_by_slug(bake):
    project, options = bake
    slug = project.name
    assert slug.isidentifier() and slug == slug.lower()
    assert (project / slug / "__init__.py").is_file()
    assert (project / slug / "main.py").is_file()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == options["description"]
    assert pyproject["project"]["authors"] == [{"name": options["author"]}]
    assert any(options["project_name"] in path.read_text(errors="replace") for path in files(project))


def test_ruff_check_clean(bake):
    project, _ = bake
    result = run([tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean(bake):
    project, _ = bake
    result = run([tool("ruff"), "format", "--no-cache", "--check", "."], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_valid(bake):
    project, _ = bake
    assert (project / ".env").is_file(), "post_gen_project did not write .env"
    result = run([tool("docker-compose"), "-f", str(project / "docker-compose.yml"), "config", "-q"], project)
    assert result.returncode == 0, result.stdout + result.stderr


# The only services that may see each password, once compose has read .env (least privilege).
PASSWORD_HOLDERS = {
    "POSTGRES_ADMIN_PASSWORD": {"provision"},
    "POSTGRES_OWNER_PASSWORD": {"provision", "migrate"},
}


def test_compose_gives_each_password_only_to_its_services(bake):
    project, options = bake
    result = run([tool("docker-compose"), "-f", str(project / "docker-compose.yml"), "config"], project)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    env = dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines() if "=" in line)
    for variable, holders in PASSWORD_HOLDERS.items():
        seen = {name for name, service in services.items() if service.get("environment", {}).get(variable)}
        assert seen == holders, (variable, seen)
    # Control: the postgres image gets the admin password, as its superuser's.
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == env["POSTGRES_ADMIN_PASSWORD"]
    if options["use_celery"] == "yes":
        password = env["REDIS_PASSWORD"]
        assert services["redis"]["command"][-2:] == ["--requirepass", password]
        for name in ("api", "worker"):
            assert services[name]["environment"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0"


def test_compose_services_and_images(bake):
    project, options = bake
    services = compose(project)["services"]
    expected = {"postgres", "provision", "migrate", "api", "upstream", "prometheus", "jaeger"}
    if options["use_celery"] == "yes":
        expected |= {"redis", "worker"}
    assert set(services) == expected
    # Prometheus only on request (`--profile observability`), scraping the api.
    assert services["prometheus"]["profiles"] == ["observability"]
    # The trace backend beside it: Jaeger v2 takes OTLP/HTTP on 4318, its UI is on 16686.
    assert services["jaeger"]["profiles"] == ["observability"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert set(services["jaeger"]["ports"]) == {"127.0.0.1:16686:16686", "127.0.0.1:4318:4318"}
    assert "PROMETHEUS_MULTIPROC_DIR" in services["api"]["environment"]
    assert services["postgres"]["image"] == f"postgres:{options['postgres_version']}"
    if options["use_celery"] == "yes":
        assert services["redis"]["image"] == f"redis:{options['redis_version']}"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond 127.0.0.1"
        if "command" in service:
            assert isinstance(service["command"], list), f"{name}: command must be an argv list"
    for name in ("postgres", "api") + (("redis",) if options["use_celery"] == "yes" else ()):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_dockerfile_passes_hadolint(bake):
    project, options = bake
    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG PYTHON_VERSION={options['python_version']}\n" in dockerfile
    result = run([tool("hadolint"), "--no-color", "Dockerfile"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_targets_the_oldest_python_the_project_runs_on(bake):
    """Native venvs run on any Python requires-python allows, not only the image's: ruff must not
    take the image's newer version as its target (it would rewrite code the oldest cannot run)."""
    project, _ = bake
    assert ruff_target(project) == "3.11"
    assert ruff_target(project, "--target-version", "py314") == "3.14"  # the control: a target set is seen


def ruff_target(project: Path, *options: str) -> str:
    result = run([tool("ruff"), "check", "--show-settings", *options, "pyproject.toml"], project)
    assert result.returncode == 0, result.stderr
    [target] = re.findall(r"^linter\.unresolved_target_version = (\S+)$", result.stdout, re.MULTILINE)
    return target


def test_env_file_is_private_and_ignored(bake):
    project, _ = bake
    assert (project / ".env").stat().st_mode & 0o777 == 0o600
    for ignore_file in (".gitignore", ".dockerignore"):
        entries = (project / ignore_file).read_text().split()
        assert ".env" in entries, f".env is not in {ignore_file}: its secrets would leak"


def mentions(project: Path, names: list[str], pattern: str) -> list[str]:
    """file:line: text, for every line of these files matching the pattern (case-insensitive)."""
    found = []
    for name in names:
        path = project / name
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if re.search(pattern, line, re.IGNORECASE):
                    found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_celery_present_or_gone(bake):
    project, options = bake
    slug = project.name
    celery_only = [
        f"{slug}/resources/job_queue.py",
        f"{slug}/worker.py",
        f"{slug}/routers/jobs.py",
        "tests/test_jobs.py",
        "tools/embedded_redis.py",
        "docs/jobs.md",
    ]
    if options["use_celery"] == "yes":
        assert all((project / relative).is_file() for relative in celery_only)
        assert re.search(r'"celery\[redis\]', (project / "pyproject.toml").read_text())
        assert {"celery", "redis"} <= locked_packages(project)
        return
    leftovers = [f"{relative}: exists" for relative in celery_only if (project / relative).exists()]
    # Config and deployment files: not even a mention (a dependency, a filter, an env var, a service).
    config_files = [
        "pyproject.toml",
        "uv.lock",
        "docker-compose.yml",
        ".env",
        ".env.example",
        "Makefile",
        "Dockerfile",
        *(str(path.relative_to(project)) for path in (project / "deploy").rglob("*") if path.is_file()),
    ]
    leftovers += mentions(project, config_files, r"celery|redis|kombu|\bworker(\b|_)")
    # Code: no import, even a lazy one (prose may still explain what Celery would add).
    leftovers += imports_of(project, "celery", "redis", "kombu")
    assert not leftovers, "use_celery=no, yet Celery/Redis is left behind:\n" + "\n".join(leftovers)


# What include_benchmarks=yes adds, each under the label benchmark_parts gives it.
BENCHMARK_PARTS = [
    "bench/: exists",
    "tests/test_bench.py: exists",
    "docs/benchmark.json: exists",
    "make bench: a target",
    "pyproject.toml: matplotlib",
    "uv.lock: matplotlib",
]


def benchmark_parts(project: Path) -> list[str]:
    """What of the benchmark a bake carries besides its measured page (docs/benchmark.md): the load
    generator and its test, the page's JSON, `make bench`, matplotlib, their mentions in the config
    files, in the prose (MEASURE_YOURS, the one command to measure your machine, aside) and imports."""
    found = [
        f"{relative}: exists"
        for relative in ("bench/", "tests/test_bench.py", "docs/benchmark.json")
        if (project / relative).exists()
    ]
    if run(["make", "-n", "bench"], project).returncode == 0:
        found.append("make bench: a target")
    in_pyproject = mentions(project, ["pyproject.toml"], "matplotlib")
    found += [f"pyproject.toml: matplotlib ({line})" for line in in_pyproject]
    in_lock = mentions(project, ["uv.lock"], "matplotlib")
    if in_lock or "matplotlib" in locked_packages(project):
        found.append(f"uv.lock: matplotlib ({len(in_lock)} lines, first {in_lock[:1]})")
    found += mentions(project, ["Makefile"], r"bench")
    found += mentions(project, [".gitignore", ".dockerignore", "pyproject.toml"], r"\bbench\b|bench-results")
    # Prose: `make bench`, `bench/` or `python -m bench` only inside the one command.
    prose = [
        path
        for path in files(project)
        if path.suffix in {".md", ".py"}
        and path.relative_to(project).parts[0] != "bench"
        and path.relative_to(project) != Path("docs/benchmark.md")
    ]
    for path in prose:
        text = path.read_text().replace(MEASURE_YOURS, "")
        for number, line in enumerate(text.splitlines(), 1):
            if re.search(r"make bench\b|\bbench/|python -m bench\b", line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    everything = [str(path.relative_to(project)) for path in files(project)]
    found += [
        line
        for line in mentions(project, everything, r"matplotlib")
        if not line.startswith(("pyproject.toml:", "uv.lock:"))
    ]
    found += imports_of(project, "bench", "matplotlib")
    return found


def missing_parts(found: list[str]) -> list[str]:
    return [part for part in BENCHMARK_PARTS if not any(line.startswith(part) for line in found)]


def test_benchmarks_present_or_gone(bake):
    project, options = bake
    assert (project / "docs" / "benchmark.md").is_file(), "every bake ships the measured page"
    found = benchmark_parts(project)
    if options["include_benchmarks"] == "yes":
        assert (project / "bench" / "__main__.py").is_file(), "`make bench` runs `python -m bench`"
        assert not missing_parts(found), f"include_benchmarks=yes, yet no {missing_parts(found)}"
        return
    assert not found, "include_benchmarks=no, yet the benchmark is left behind:\n" + "\n".join(found)
    assert MEASURE_YOURS in (project / "README.md").read_text(), "the README says how to measure yours"


def test_default_bake_ships_the_page_but_not_the_benchmark(baked):
    """The default bake: the measured page, and nothing that only the load generator needs."""
    assert DEFAULTS["include_benchmarks"] == "no"
    default = baked()
    assert (default / "docs" / "benchmark.md").is_file()
    assert MEASURE_YOURS in (default / "docs" / "benchmark.md").read_text()
    assert benchmark_parts(default) == []
    # Negative control: the same check on the bake that asks for the benchmark finds every part.
    with_bench = baked(include_benchmarks="yes")
    assert (with_bench / "docs" / "benchmark.md").is_file()
    assert missing_parts(benchmark_parts(with_bench)) == []


def test_every_import_is_stdlib_declared_or_local(bake):
    """A module the code imports must come with the project: the standard library, a requirement in
    its pyproject.toml (MODULE_SOURCES where the names differ), or one of its own packages."""
    project, _ = bake
    declared = declared_requirements(project)
    local = local_packages(project)
    undeclared = []
    for module, places in python_imports(project).items():
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in local:
            continue
        name, extras = requirement_name(MODULE_SOURCES.get(top, top))
        if name not in declared or not extras <= declared[name]:
            undeclared.append(f"{places[0]}: import {module} (needs {MODULE_SOURCES.get(top, top)})")
    assert local >= {project.name, "tools", "antipatterns"}, local
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(sorted(undeclared))


def test_pre_gen_hook_refuses_every_imported_name(bake):
    """The hook's list of names a slug may not take is hand-kept: every module a bake imports (other
    than the standard library, which the hook checks on its own, and the package itself) is on it."""
    project, _ = bake
    refused = rendered_pre_gen_dependencies()
    imported = {module.split(".")[0] for module in python_imports(project)}
    missing = sorted(imported - set(sys.stdlib_module_names) - {project.name} - refused)
    assert not missing, f"add to DEPENDENCIES in hooks/pre_gen_project.py: {missing}"


def scale_blockers(service: dict) -> list[str]:
    """What stops `docker compose up --scale <service>=N`: a fixed container name, a fixed host port."""
    blockers = ["container_name"] if "container_name" in service else []
    fixed = [port for port in service.get("ports", []) if ":" in str(port)]
    return blockers + [f"host port {port}" for port in fixed]


def test_worker_scales_out(bake):
    project, options = bake
    services = compose(project)["services"]
    if options["use_celery"] == "yes":
        assert scale_blockers(services["worker"]) == []
    # Control: the api publishes a fixed host port, so it cannot be scaled this way.
    assert scale_blockers(services["api"]) == ["host port 127.0.0.1:${API_PUBLISHED_PORT:-8000}:8000"]


def lock_check(project: Path) -> subprocess.CompletedProcess:
    """`uv lock --check` offline: whether uv.lock is what pyproject.toml asks for, without an index."""
    return run([tool("uv"), "lock", "--check", "--offline"], project)


def locked_packages(project: Path) -> set[str]:
    return {package["name"] for package in tomllib.loads((project / "uv.lock").read_text())["package"]}


def test_lock_is_current(bake):
    project, _ = bake
    result = lock_check(project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_lock_is_caught(baked, tmp_path):
    """The check above on a lock that no longer matches: a dependency dropped from pyproject.toml."""
    project = shutil.copytree(baked(), tmp_path / "stale", ignore=shutil.ignore_patterns(".venv"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "requests>=2.34",\n', ""))
    result = lock_check(project)
    assert result.returncode != 0 and "needs to be updated" in result.stderr, result.stderr


def test_lock_covers_every_python_the_project_allows(bake):
    """One universal lock: for requires-python (>=3.11), so for the image's Python whichever is chosen."""
    project, options = bake
    lock = tomllib.loads((project / "uv.lock").read_text())
    requires_python = tomllib.loads((project / "pyproject.toml").read_text())["project"]["requires-python"]
    assert lock["requires-python"] == requires_python
    assert options["python_version"] in SpecifierSet(requires_python)
    # uv itself is locked too (dev extra): `make install` and `make lock` use that one.
    assert "uv" in locked_packages(project)


def ignored(project: Path, ignore_file: str, name: str) -> bool:
    """Whether a top-level name matches a pattern of .gitignore or .dockerignore (the plain forms used)."""
    patterns = [line.strip().rstrip("/") for line in (project / ignore_file).read_text().splitlines()]
    return any(
        fnmatch.fnmatch(name, pattern) for pattern in patterns if pattern and not pattern.startswith("#")
    )


def test_lock_is_committed_and_sent_to_docker(bake):
    project, _ = bake
    for ignore_file in (".gitignore", ".dockerignore"):
        assert not ignored(project, ignore_file, "uv.lock"), f"{ignore_file} hides uv.lock"
        assert ignored(project, ignore_file, ".venv"), f"{ignore_file} lets .venv through"
    assert not ignored(project, ".dockerignore", "pyproject.toml")


def api_argv_mismatches(dockerfile_text: str, api: dict) -> list[str]:
    """How the image's CMD and address differ from compose's `api` service; empty when they agree."""
    runtime = dockerfile.stages(dockerfile_text)[-1]
    [cmd] = runtime.of("CMD")
    mismatches = [] if cmd.argv() == api["command"] else [f"CMD {cmd.argv()} != compose {api['command']}"]
    image_env = {key: value for env in runtime.of("ENV") for key, value in env.env().items()}
    for variable in ("UVICORN_HOST", "UVICORN_PORT"):
        if image_env.get(variable) != api["environment"][variable]:
            mismatches.append(
                f"{variable}: image {image_env.get(variable)} != compose {api['environment'][variable]}"
            )
    return mismatches


def test_image_runs_the_compose_api_command(bake):
    """`docker run` of the image and compose's `api` run one argv on one address."""
    project, _ = bake
    mismatches = api_argv_mismatches(
        (project / "Dockerfile").read_text(), compose(project)["services"]["api"]
    )
    assert not mismatches, mismatches


def test_api_argv_mismatch_is_caught(baked):
    project = baked()
    text = (project / "Dockerfile").read_text()
    api = compose(project)["services"]["api"]
    assert not api_argv_mismatches(text, api)
    assert api_argv_mismatches(text.replace('"5"]', '"5", "--host", "0.0.0.0"]'), api)
    assert api_argv_mismatches(text.replace("UVICORN_PORT=8000", "UVICORN_PORT=8080"), api)


# Where each major keeps its data in the official image: 18 moved it (docker-library/postgres#1259),
# and refuses to start with a volume at the old place. The hook reads the major as the compose file does.
def postgres_data(tag: str) -> str:
    return "/var/lib/postgresql" if int(re.match(r"\d+", tag)[0]) >= 18 else "/var/lib/postgresql/data"


def test_postgres_volume_where_the_major_keeps_its_data(bake):
    project, options = bake
    volumes = compose(project)["services"]["postgres"]["volumes"]
    assert volumes == [f"postgres-data:{postgres_data(options['postgres_version'])}"]


@pytest.mark.parametrize("tag", ["18.1-alpine", "17"])
def test_postgres_major_read_from_any_tag_form(tag, baked):
    volumes = compose(baked(postgres_version=tag))["services"]["postgres"]["volumes"]
    assert volumes == [f"postgres-data:{postgres_data(tag)}"]


# The official python:X-slim images: Debian, glibc, x86_64 and aarch64. Their glibc (2.36 and later)
# takes any manylinux wheel up to manylinux_2_36.
IMAGE_ARCHES = ("x86_64", "aarch64")
IMAGE_MARKERS = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip
MANYLINUX_NEWEST = 36


def manylinux_platforms(arch: str) -> list[str]:
    legacy = {"manylinux2014": 17} | ({"manylinux2010": 12, "manylinux1": 5} if arch == "x86_64" else {})
    modern = [f"manylinux_2_{minor}_{arch}" for minor in range(MANYLINUX_NEWEST, 4, -1)]
    return modern + [f"{name}_{arch}" for name in legacy]


def image_tags(python: str, arch: str) -> set[tags.Tag]:
    """The wheel tags pip or uv installs on the image's CPython on this architecture."""
    version = tuple(int(part) for part in python.split("."))
    platforms = manylinux_platforms(arch)
    interpreter = f"cp{version[0]}{version[1]}"
    return set(tags.cpython_tags(version, [interpreter], platforms)) | set(
        tags.compatible_tags(version, interpreter, platforms)
    )


def image_requirements(project: Path) -> list[Requirement]:
    """What the Dockerfile's `uv sync --locked --no-dev` installs: the locked runtime dependencies."""
    argv = [tool("uv"), "export", "--frozen", "--offline", "--no-dev", "--no-emit-project", "--no-hashes",
            "--no-header", "--no-annotate"]  # fmt: skip
    result = run(argv, project)
    assert result.returncode == 0, result.stderr
    return [Requirement(line) for line in result.stdout.splitlines() if line.strip() and line[0] != "#"]


def wheel_names(package: dict) -> list[str]:
    return [wheel["url"].rsplit("/", 1)[1] for wheel in package.get("wheels", [])]


def wheel_gaps(project: Path, python: str) -> list[str]:
    """Each package the image would install with no wheel for its Python on an architecture: the slim
    image has no compiler, so `docker build` would fail there. Empty when every one has a wheel."""
    wheels = {
        (package["name"], package["version"]): wheel_names(package)
        for package in tomllib.loads((project / "uv.lock").read_text())["package"]
    }
    gaps = []
    for arch in IMAGE_ARCHES:
        supported = image_tags(python, arch)
        environment = {**IMAGE_MARKERS, "python_version": python, "python_full_version": f"{python}.0",
                       "platform_machine": arch}  # fmt: skip
        for requirement in image_requirements(project):
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            [version] = [spec.version for spec in requirement.specifier]
            files = wheels[(canonicalize_name(requirement.name), version)]
            if not any(supported & parse_wheel_filename(name)[3] for name in files):
                gaps.append(
                    f"{requirement.name} {version}: no wheel for cp{python.replace('.', '')} on {arch}"
                )
    return gaps


def test_every_image_package_has_a_wheel(bake):
    project, options = bake
    gaps = wheel_gaps(project, options["python_version"])
    assert not gaps, gaps


def test_missing_wheel_is_caught(baked, tmp_path):
    """The check above on a lock whose compiled package lost its wheels for the image's Python."""
    project = shutil.copytree(baked(), tmp_path / "no-wheel", ignore=shutil.ignore_patterns(".venv"))
    python = DEFAULTS["python_version"]
    assert not wheel_gaps(project, python)
    lock = project / "uv.lock"
    tag = f"-cp{python.replace('.', '')}-"
    kept = [
        line
        for line in lock.read_text().splitlines(keepends=True)
        if not ("pydantic_core" in line and tag in line)
    ]
    lock.write_text("".join(kept))
    gaps = wheel_gaps(project, python)
    assert gaps and all(gap.startswith("pydantic-core ") for gap in gaps), gaps
    assert {gap.rsplit(" ", 1)[1] for gap in gaps} == set(IMAGE_ARCHES)
