"""Remove what a disabled option leaves unused, write fresh secrets, print the next steps."""

import secrets
import shutil
from pathlib import Path

USE_CELERY = {{ cookiecutter.use_celery|tojson }} == "yes"
INCLUDE_BENCHMARKS = {{ cookiecutter.include_benchmarks|tojson }} == "yes"
SLUG = {{ cookiecutter.project_slug|tojson }}

CELERY_ONLY = [
    f"{SLUG}/jobs.py",
    f"{SLUG}/worker.py",
    f"{SLUG}/routers/jobs.py",
    "tests/test_jobs.py",
    "deploy/k8s/worker.yaml",
]
BENCHMARK_ONLY = ["bench", "tests/test_bench.py"]

# The cluster's settings: kustomize's secretGenerator reads them from its own folder only.
CLUSTER_ENV = Path("deploy/k8s/secrets.env")
CLUSTER_ENV_HEADER = """\
# The cluster's settings (the `settings` Secret of deploy/k8s/kustomization.yaml): a copy of .env
# made at bake time, git-ignored. Put the cluster's values here; the addresses in kustomization.yaml
# override the ones below.
"""

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


def write_env() -> None:
    """Every bake gets its own secrets; nothing shared ships in the template."""
    lines = []
    for line in Path(".env.example").read_text().splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.lstrip().startswith("#") and value.strip() == PLACEHOLDER_SECRET:
            line = f"{key}={secrets.token_urlsafe(24)}"
        lines.append(line)
    write_private(Path(".env"), "\n".join(lines) + "\n")


def main() -> None:
    if not USE_CELERY:
        remove(CELERY_ONLY)
    if not INCLUDE_BENCHMARKS:
        remove(BENCHMARK_ONLY)
    write_env()
    write_private(CLUSTER_ENV, CLUSTER_ENV_HEADER + Path(".env").read_text())
    print(
        f"\nCreated {SLUG}. Next steps:\n"
        f"  cd {Path.cwd().name}\n"
        "  make dev      # venv, migrations, and the whole stack natively (needs local Postgres + Redis)\n"
        "  make test     # the test suite against real Postgres and Redis\n"
        "  docker compose up --build   # the same services in containers\n"
        "  kubectl apply -k deploy/k8s # on Kubernetes (README: Deploy on Kubernetes)\n"
    )


if __name__ == "__main__":
    main()
