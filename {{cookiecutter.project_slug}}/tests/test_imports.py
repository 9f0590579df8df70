"""Importing a module does nothing but define things: settings are read, apps and clients built,
when a process starts them (uvicorn calls create_app; `celery --app` looks up the worker's `app`)."""

import json
import subprocess
import sys

from tools.native import PROJECT_ROOT, native_env

ENTRY_MODULES = [
    "{{ cookiecutter.project_slug }}.main",
{%- if cookiecutter.use_celery == "yes" %}
    "{{ cookiecutter.project_slug }}.worker",
{%- endif %}
    "antipatterns.app",
]
# A value no process can start with: any module that reads settings at import fails on it.
BROKEN_SETTINGS = {"POSTGRES_PORT": "not-a-port", "REDIS_TIMEOUT": "not-a-number"}


def run_python(code: str, settings: dict[str, str] = BROKEN_SETTINGS) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=native_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_reads_no_settings_and_builds_nothing():
    imports = "; ".join(f"import {module}" for module in ENTRY_MODULES)
    result = run_python(imports)
    assert result.returncode == 0, result.stderr
{%- if cookiecutter.use_celery == "yes" %}


def test_the_web_app_does_not_import_the_worker():
    result = run_python("import sys, {{ cookiecutter.project_slug }}.main; print(sorted(sys.modules))")
    assert result.returncode == 0, result.stderr
    assert "'{{ cookiecutter.project_slug }}.worker'" not in result.stdout


def test_the_worker_app_is_built_when_celery_asks_for_it():
    """Negative control: the lookup `celery --app` makes builds the app, and reads the settings."""
    result = run_python("import {{ cookiecutter.project_slug }}.worker as worker; worker.app")
    assert result.returncode != 0
    assert "REDIS_TIMEOUT" in result.stderr  # the worker reads the job queue's settings alone
{%- endif %}


def test_the_same_check_fails_when_the_app_is_built():
    """Negative control: building the app reads the settings, and the broken value stops it."""
    result = run_python("import {{ cookiecutter.project_slug }}.main as main; main.create_app()")
    assert result.returncode != 0
    assert "POSTGRES_PORT" in result.stderr


DROPPED_IN = PROJECT_ROOT / "{{ cookiecutter.project_slug }}" / "routers" / "dropped_in.py"
DROPPED_IN_CODE = """from fastapi import APIRouter

router = APIRouter()


@router.get("/dropped-in")
def dropped_in() -> None: ...


def helper() -> None: ...
"""
# The paths in the order the app matches them (the OpenAPI schema lists them in that order).
SERVED_PATHS = (
    "import json; from {{ cookiecutter.project_slug }}.main import create_app; "
    "print(json.dumps(list(create_app().openapi()['paths'])))"
)


def test_the_app_serves_the_listed_routers_health_first_and_nothing_dropped_beside_them():
    """A module in routers/ that routers/__init__.py does not list (a helper, or a router nobody
    listed) neither breaks start-up nor adds a route. Control: every listed router's routes are there."""
    DROPPED_IN.write_text(DROPPED_IN_CODE)
    try:
        result = run_python(SERVED_PATHS, settings={})
    finally:
        DROPPED_IN.unlink()
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)
    assert paths[:2] == ["/health/live", "/health/ready"], paths
    assert "/dropped-in" not in paths
    for listed in ("/async/items", "/sync/items", "/mixed/report", "/cpu/compute"):
        assert listed in paths, (listed, paths)
