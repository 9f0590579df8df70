"""The Celery worker process: `celery --app {{ cookiecutter.project_slug }}.worker worker` (the compose `worker` command).

The web process never imports this module: it publishes by task name (jobs.py). Importing it builds
nothing either: `celery --app` looks up the attribute `app` here, and that lookup builds the worker's
Celery app; each pool process opens its own Redis client when it runs its first job, and starts its
own tracing (tracing.py) when it starts, if OTEL_EXPORTER_OTLP_ENDPOINT is set.
"""

from functools import cache

import redis
from celery import Celery, Task, signals
from opentelemetry.instrumentation.celery import CeleryInstrumentor

from .config import get_settings
from .observability.tracing import shut_down, start_tracing
from .primes import count_primes
from .resources.job_queue import COUNT_PRIMES, GaveUp, job_key, make_celery, make_redis


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


@signals.worker_process_init.connect
def trace_pool_process(**_: object) -> None:
    """In each pool process, after the fork: the span processor's export thread would not survive it.
    Celery's instrumentation continues the trace context the message carries (jobs.py sends it)."""
    provider = start_tracing("{{ cookiecutter.project_slug }}-worker")
    if provider is None:
        return
    CeleryInstrumentor().instrument(tracer_provider=provider)

    def flush(**_: object) -> None:
        shut_down(provider)

    signals.worker_process_shutdown.connect(flush, weak=False)


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
