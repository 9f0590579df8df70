"""The compose services as a test starts them: on free ports, each writing a log file of its own
into the session's log folder, and ready when returned."""

from collections.abc import Callable
from pathlib import Path

from tools.native import Service, free_port


def ready_or_stopped(service: Service, wait: Callable[[], object]) -> Service:
    """The started service once `wait` says it is ready; stopped, not left running, when it never is."""
    try:
        wait()
    except BaseException:
        service.stop()
        raise
    return service


def start_api(env: dict[str, str], log_dir: Path, name: str = "api", app: str | None = None) -> Service:
    """The compose `api` command; `app` serves another app factory with it (the anti-patterns)."""
    log_path = log_dir / f"{name}.log"
    service = Service.from_compose("api", env, port=free_port(), log_path=log_path, app=app).start()
    return ready_or_stopped(service, lambda: service.wait_http("/health/live"))
{%- if cookiecutter.use_celery == "yes" %}


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Service:
    """The compose `worker` command: a real Celery worker, ready to take jobs."""
    service = Service.from_compose("worker", env, log_path=log_dir / f"{name}.log").start()
    return ready_or_stopped(service, lambda: service.wait_log("ready.", timeout=60))
{%- endif %}


def above_limit_detail(location: list[str], limit: int) -> list[dict]:
    """The 422 `detail` for a value one above a bound that is a setting (CPU_MAX_N, JOB_MAX_N): the
    same shape as FastAPI's own validation errors, as the API documents."""
    return [
        {
            "type": "less_than_equal",
            "loc": location,
            "msg": f"Input should be less than or equal to {limit}",
            "input": limit + 1,
            "ctx": {"le": limit},
        }
    ]
