"""The api's entrypoint (compose, the image, k8s):
`python -m {{ cookiecutter.project_slug }}.operations.serve <uvicorn arguments>`.

Rule: before uvicorn forks its workers, settle how many there are (WEB_CONCURRENCY, or one per usable
CPU that fits) and refuse, with one line, pools that do not fit in PostgreSQL's connections
(budget.py); then run uvicorn's own command line in this process. docs/deployment.md has the why.
"""

import os
import sys
from pathlib import Path

import psycopg2
import uvicorn.main

from ..config import Settings, load_settings
from .budget import Budget, read_server_limits, workers_that_fit

CGROUP_CPU_QUOTA = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" in microseconds, or "max ..."


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (`docker --cpus`,
    Kubernetes limits). psutil reads neither quota, so the one file is read here."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_QUOTA.read_text().split()
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, int(quota) // int(period)))


def choose_workers(settings: Settings) -> tuple[int, str]:
    """How many workers to start, and the budget line to print."""
    requested = settings.web_concurrency
    try:
        limits = read_server_limits(settings)
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0]
        workers = requested or usable_cpus()
        return workers, f"connection budget not checked (PostgreSQL: {reason}); {workers} workers"
    workers = requested or max(1, min(usable_cpus(), workers_that_fit(settings, limits)))
    budget = Budget(settings, workers)
    if budget.fits(limits):
        return workers, budget.explain(limits)
    if settings.db_budget_overcommit:
        return workers, f"{budget.explain(limits)}; starting anyway (DB_BUDGET_OVERCOMMIT)"
    raise SystemExit(
        f"{budget.explain(limits)}: refusing to start; lower WEB_CONCURRENCY or the pools, raise "
        "max_connections, or set DB_BUDGET_OVERCOMMIT=true"
    )


def refuse_unchecked_workers(argv: list[str]) -> None:
    """uvicorn reads --workers from the command line and, like every flag, from UVICORN_WORKERS; either
    wins over WEB_CONCURRENCY, so the workers started would not be the ones the budget counted."""
    if "UVICORN_WORKERS" in os.environ or any(arg.split("=")[0] == "--workers" for arg in argv):
        raise SystemExit("serve: set WEB_CONCURRENCY for the api workers, not --workers or UVICORN_WORKERS")


def main() -> None:
    refuse_unchecked_workers(sys.argv[1:])
    settings = load_settings()
    workers, line = choose_workers(settings)
    print(f"serve: {line}", file=sys.stderr, flush=True)
    # uvicorn reads both from the environment (--workers from WEB_CONCURRENCY, every other flag from
    # UVICORN_<FLAG>); a flag given on the command line still wins.
    os.environ["WEB_CONCURRENCY"] = str(workers)
    os.environ["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"] = str(settings.graceful_timeout)
    uvicorn.main.main(args=sys.argv[1:], prog_name="uvicorn")


if __name__ == "__main__":
    main()
