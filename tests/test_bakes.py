"""Every supported option set, baked and checked in seconds: rendering, lint, compose, Dockerfile,
and that a disabled option leaves nothing behind.

The generated project's own suite runs in test_generated_suites.py (slow).
"""

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import DEFAULTS, OPTION_SETS, clean_env, option_id, tool

TEMPLATE_TOKENS = re.compile(r"\{\{|\{%|\{#")
SKIPPED_DIRS = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}

# Bakes beyond the 12 option sets: every other option with a non-default answer. The slugs sort
# before and after the project's other top-level packages (antipatterns, bench, tests, tools), so
# import sorting is proven for any slug, not just for `my_service`.
CUSTOM_BAKES = [
    {
        "project_name": "Aardvark API",
        "description": "Aardvark's ants, counted fast.",
        "author": "Ada O'Hara",
        "use_celery": "yes",
        "include_benchmarks": "no",
        "postgres_version": "16",
        "redis_version": "7.2-alpine",
    },
    {
        "project_name": "Zed's Service",
        "description": "Zed's service: a colon, an apostrophe & an ampersand.",
        "author": "Zoë Zed",
        "python_version": "3.13",
        "use_celery": "no",
        "include_benchmarks": "yes",
        "postgres_version": "15.8",
        "redis_version": "7",
    },
]
ALL_BAKES = OPTION_SETS + CUSTOM_BAKES
BAKE_IDS = [option_id(options) for options in OPTION_SETS] + ["custom-aardvark_api", "custom-zed_s_service"]


def answers(options: dict[str, str]) -> dict[str, str]:
    return {**DEFAULTS, **options}


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


def python_names(project: Path) -> set[str]:
    """Every module imported and every name, attribute, argument and function in the project's code."""
    names = set()
    for path in project.rglob("*.py"):
        if SKIPPED_DIRS.intersection(path.relative_to(project).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module or "")
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
    return names


@pytest.fixture(params=ALL_BAKES, ids=BAKE_IDS)
def bake(request, baked) -> tuple[Path, dict[str, str]]:
    return baked(**request.param), answers(request.param)


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
    empty = [str(path.relative_to(project)) for path in project.rglob("*") if path.is_dir() and not any(path.iterdir())]
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
    result = run(["docker-compose", "-f", str(project / "docker-compose.yml"), "config", "-q"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_and_images(bake):
    project, options = bake
    services = compose(project)["services"]
    expected = {"postgres", "migrate", "api", "upstream"}
    if options["use_celery"] == "yes":
        expected |= {"redis", "worker"}
    assert set(services) == expected
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


def test_ruff_targets_the_python_version(bake):
    project, options = bake
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + options["python_version"].replace(".", "")


def test_env_file_is_private_and_ignored(bake):
    project, _ = bake
    assert (project / ".env").stat().st_mode & 0o777 == 0o600
    for ignore_file in (".gitignore", ".dockerignore"):
        entries = (project / ignore_file).read_text().split()
        assert ".env" in entries, f".env is not in {ignore_file}: its secrets would leak"


def test_celery_present_or_gone(bake):
    project, options = bake
    slug = project.name
    pyproject_text = (project / "pyproject.toml").read_text()
    if options["use_celery"] == "yes":
        assert (project / slug / "jobs.py").is_file()
        assert re.search(r'"celery\[redis\]', pyproject_text)
        return
    assert not (project / slug / "jobs.py").exists()
    assert not (project / "tests" / "test_jobs.py").exists()
    # Config and deployment files: not even a mention (a filter, an env var, a service).
    for name in ("pyproject.toml", "docker-compose.yml", ".env", ".env.example", "Makefile", "Dockerfile"):
        text = (project / name).read_text().lower()
        for word in ("celery", "redis", "kombu", "worker"):
            assert word not in text, f"use_celery=no, yet {name} mentions {word!r}"
    # Code: no import, name or attribute (docstrings may still explain what Celery would add).
    leftovers = sorted(
        name
        for name in python_names(project)
        if any(word in name.lower() for word in ("celery", "redis", "kombu"))
    )
    assert not leftovers, f"use_celery=no, yet the code still uses {leftovers}"


def test_benchmarks_present_or_gone(bake):
    project, options = bake
    makefile = (project / "Makefile").read_text()
    if options["include_benchmarks"] == "yes":
        assert (project / "bench" / "__main__.py").is_file(), "`make bench` runs `python -m bench`"
        assert re.search(r"^bench:", makefile, re.MULTILINE)
        assert "matplotlib" in (project / "pyproject.toml").read_text()
        return
    assert not (project / "bench").exists()
    assert not (project / "tests" / "test_bench.py").exists()
    assert "bench" not in makefile, "include_benchmarks=no, yet the Makefile mentions bench"
    for path in files(project):
        text = path.read_text(errors="replace")
        assert "matplotlib" not in text, f"include_benchmarks=no, yet {path.relative_to(project)} mentions matplotlib"
        if path.name in {".gitignore", ".dockerignore", "pyproject.toml", "README.md"}:
            assert not re.search(r"\bbench\b|bench-results|make bench", text), (
                f"include_benchmarks=no, yet {path.relative_to(project)} mentions the benchmark"
            )
    leftovers = {name for name in python_names(project) if name == "bench" or name.startswith("bench.")}
    assert not leftovers, f"include_benchmarks=no, yet the code imports {leftovers}"
