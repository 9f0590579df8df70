"""The Celery worker process: `celery --app {{ cookiecutter.project_slug }}.worker worker` (the compose `worker` command).

The web process never imports this module: it publishes by task name (jobs.py). Importing it builds
nothing either: `celery --app` looks up the attribute `app` here, and that lookup builds the worker's
Celery app; each pool process opens its own Redis client when it runs its first job.
"""

from functools import cache

import redis
from celery import Celery, Task

from .config import get_settings
from .jobs import COUNT_PRIMES, GaveUp, job_key, make_celery, make_redis
from .primes import count_primes


def count_primes_job(task: Task, below: int) -> dict[str, int]:
    settings = get_settings()
    deliveries_key = job_key(task.request.id) + ":deliveries"
    with job_store().pipeline() as pipe:
        # The marker is renewed too: a job stays readable for JOB_RESULT_EXPIRES after any delivery.
        pipe.incr(deliveries_key)
        pipe.expire(deliveries_key, settings.job_result_expires)
        pipe.expire(job_key(task.request.id), settings.job_result_expires)
        deliveries = pipe.execute()[0]
    if deliveries > settings.job_max_deliveries:
        raise GaveUp(f"gave up after {deliveries - 1} deliveries that did not finish")
    return {"below": below, "primes": count_primes(below)}


@cache
def job_store() -> redis.Redis:
    """One client per pool process, made in that process: a client made before the fork would be
    shared by every pool process."""
    return make_redis(get_settings())


@cache
def worker_app() -> Celery:
    app = make_celery(get_settings())
    app.task(bind=True, name=COUNT_PRIMES)(count_primes_job)
    return app


def __getattr__(name: str) -> Celery:
    """`celery --app` reads `app` (PEP 562: called for names the module does not define)."""
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
