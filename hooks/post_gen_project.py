"""Remove what a disabled option leaves unused, write fresh secrets, print the next steps."""

import secrets
import shutil
from pathlib import Path

USE_CELERY = {{ cookiecutter.use_celery|tojson }} == "yes"
INCLUDE_BENCHMARKS = {{ cookiecutter.include_benchmarks|tojson }} == "yes"
SLUG = {{ cookiecutter.project_slug|tojson }}

CELERY_ONLY = [f"{SLUG}/jobs.py", f"{SLUG}/worker.py", f"{SLUG}/routers/jobs.py", "tests/test_jobs.py"]
BENCHMARK_ONLY = ["bench", "tests/test_bench.py"]

# A value in .env.example that must never reach a real .env: each key holding it gets a fresh secret.
PLACEHOLDER_SECRET = "change-me"


def remove(paths: list[str]) -> None:
    for relative in paths:
        path = Path(relative)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_env() -> None:
    """Every bake gets its own secrets; nothing shared ships in the template."""
    lines = []
    for line in Path(".env.example").read_text().splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.lstrip().startswith("#") and value.strip() == PLACEHOLDER_SECRET:
            line = f"{key}={secrets.token_urlsafe(24)}"
        lines.append(line)
    env = Path(".env")
    # Created owner-only from the start: the secrets are never readable by others, even briefly.
    env.touch(mode=0o600)
    env.chmod(0o600)
    env.write_text("\n".join(lines) + "\n")


def main() -> None:
    if not USE_CELERY:
        remove(CELERY_ONLY)
    if not INCLUDE_BENCHMARKS:
        remove(BENCHMARK_ONLY)
    write_env()
    print(
        f"\nCreated {SLUG}. Next steps:\n"
        f"  cd {Path.cwd().name}\n"
        "  make dev      # venv, migrations, and the whole stack natively (needs local Postgres + Redis)\n"
        "  make test     # the test suite against real Postgres and Redis\n"
        "  docker compose up --build   # the same services in containers\n"
    )


if __name__ == "__main__":
    main()
