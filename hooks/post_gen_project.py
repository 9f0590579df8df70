"""Remove what a disabled option leaves unused, lock the dependencies, write fresh secrets, print the
next steps.

A failure prints one line (what failed, what to do) and exits non-zero; cookiecutter then deletes
the half-made project, so nothing is left to clean up.
"""

import importlib.util
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

USE_CELERY = {{ cookiecutter.use_celery|tojson }} == "yes"
INCLUDE_BENCHMARKS = {{ cookiecutter.include_benchmarks|tojson }} == "yes"
SLUG = {{ cookiecutter.project_slug|tojson }}

CELERY_ONLY = [
    f"{SLUG}/resources/job_queue.py",
    f"{SLUG}/worker.py",
    f"{SLUG}/routers/jobs.py",
    "tests/test_jobs.py",
    "tools/embedded_redis.py",
    "tests/test_tracing_jobs.py",
    "deploy/k8s/worker.yaml",
    "docs/jobs.md",
]
# The load generator and what only it reads; the measured page, docs/benchmark.md, ships in every bake.
BENCHMARK_ONLY = ["bench", "tests/test_bench.py", "docs/benchmark.json"]

# The cluster's settings: kustomize's secretGenerator reads them from its own folder only.
CLUSTER_ENV = Path("deploy/k8s/secrets.env")
CLUSTER_ENV_HEADER = """\
# The cluster's settings (the `settings` Secret of deploy/k8s/kustomization.yaml): a copy of .env
# made at bake time, git-ignored. Put the cluster's values here; the addresses in kustomization.yaml
# override the ones below.
"""
# Resolving ~90 packages takes seconds; a stalled index should not hang the bake forever.
LOCK_TIMEOUT_SECONDS = 300
UV_MISSING = (
    "uv is needed to lock the dependencies and is not installed where cookiecutter runs: "
    "`pip install uv` into cookiecutter's environment (with pipx: `pipx inject cookiecutter uv`), "
    "or put uv on PATH (https://docs.astral.sh/uv/), then bake again"
)

# A value in .env.example that must never reach a real .env: each key holding it gets a fresh secret.
PLACEHOLDER_SECRET = "change-me"


def remove(paths: list[str]) -> None:
    for relative in paths:
        path = Path(relative)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_private(path: Path, text: str) -> None:
    """Created owner-only from the start: the secrets are never readable by others, even briefly."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def uv_command() -> list[str] | None:
    """uv from cookiecutter's own environment (the template's requirements-dev.txt has it), else PATH."""
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    on_path = shutil.which("uv")
    return [on_path] if on_path else None


def uv_reason(stderr: str) -> str:
    """uv's error line and its innermost cause or hint, as one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if not errors:
        return lines[-1] if lines else "no output"
    last = lines[-1].removeprefix("cause: ").removeprefix("hint: ")
    return errors[0] if last == errors[0] else f"{errors[0]}: {last}"


def lock() -> str | None:
    """uv.lock for this option set: the newest releases that satisfy pyproject.toml, for every
    Python it allows. None when done, else the one-line problem."""
    uv = uv_command()
    if uv is None:
        return UV_MISSING
    try:
        result = subprocess.run(
            [*uv, "lock", "--quiet"], capture_output=True, text=True, timeout=LOCK_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        reason = f"no answer from the package index in {LOCK_TIMEOUT_SECONDS} s"
    else:
        if result.returncode == 0:
            return None
        reason = uv_reason(result.stderr)
    return (
        f"`uv lock` failed ({reason}); the bake locks the dependencies from PyPI "
        "(or the index UV_DEFAULT_INDEX names), so bake again where that index is reachable"
    )


def write_env() -> None:
    """Every bake gets its own secrets; nothing shared ships in the template."""
    lines = []
    for line in Path(".env.example").read_text().splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.lstrip().startswith("#") and value.strip() == PLACEHOLDER_SECRET:
            line = f"{key}={secrets.token_urlsafe(24)}"
        lines.append(line)
    write_private(Path(".env"), "\n".join(lines) + "\n")


def main() -> int:
    if not USE_CELERY:
        remove(CELERY_ONLY)
    if not INCLUDE_BENCHMARKS:
        remove(BENCHMARK_ONLY)
    problem = lock()
    if problem:
        print(f"ERROR: {problem}.", file=sys.stderr)
        return 1
    write_env()
    write_private(CLUSTER_ENV, CLUSTER_ENV_HEADER + Path(".env").read_text())
    print(
        f"\nCreated {SLUG}. Next steps:\n"
        f"  cd {Path.cwd().name}\n"
        "  make dev      # the whole stack natively (embedded PostgreSQL/Redis if none answer)\n"
        "  make test     # the test suite against real Postgres and Redis\n"
        "  docker compose up --build   # the same services in containers\n"
        "  kubectl apply -k deploy/k8s # on Kubernetes (docs/deployment.md)\n"
        "uv.lock holds the locked dependencies (make install and the image install exactly those):\n"
        "commit it with the project; `make lock UPGRADE=1` moves them to the newest releases.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
