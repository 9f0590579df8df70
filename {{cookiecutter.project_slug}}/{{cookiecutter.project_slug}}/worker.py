"""The Celery worker process: `celery --app {{ cookiecutter.project_slug }}.worker worker` (the compose `worker` command).

Rule: importing it builds nothing (`celery --app` looks up `app`, and that lookup builds the Celery
app); each pool process opens its own Redis client, and its own tracing when OTEL_EXPORTER_OTLP_ENDPOINT
is set (observability/tracing.py, imported only then). The web process never imports this module: it
publishes by task name (resources/job_queue.py).
"""

import os
from functools import cache

import redis
from celery import Celery, Task, signals
from pydantic import ValidationError

from .primes import count_primes
from .resources.job_queue import COUNT_PRIMES, GaveUp, JobQueueSettings, job_key, make_celery, make_redis

TRACING_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@cache
def get_settings() -> JobQueueSettings:
    try:
        return JobQueueSettings()
    except ValidationError as error:  # one line naming each bad variable, not a traceback
        bad = "; ".join(f"{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"worker: invalid settings in the environment or .env: {bad}") from None


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
    Celery's instrumentation continues the trace context the message carries (job_queue.py sends it)."""
    if not any(os.environ.get(name) for name in TRACING_ENDPOINTS):
        return  # tracing off: the worker needs no tracing module
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    from .observability.tracing import shut_down, start_tracing

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
