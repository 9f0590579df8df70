"""Celery on Redis for long CPU jobs: how both processes configure Celery, and the web side's JobQueue,
opened and closed by the lifespan. The worker's own code is in worker.py.

Rule: a job is acknowledged only after it finished, so a worker that dies gives it back; a job that
keeps killing its worker fails after JOB_MAX_DELIVERIES; a publish never hangs on a dead broker, it
answers 503. docs/jobs.md explains each setting below.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import uuid4

import anyio.to_thread
import kombu.exceptions
import redis
from celery import Celery
from celery.backends.redis import RedisBackend
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

COUNT_PRIMES = "count_primes"
tracer = trace.get_tracer(__name__)  # OpenTelemetry's API: a no-op until the app installs a provider


class JobQueueSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = Field(2.0, gt=0, description="seconds for a Redis connect or command")
    job_max_n: int = Field(10_000_000, ge=10, description="largest n /cpu/jobs accepts")
    job_result_expires: int = Field(
        86_400, ge=60, description="seconds a job stays readable after its last change (submitted, run, done)"
    )
    job_visibility_timeout: int = Field(
        3_600, ge=1, description="seconds before an unacked job is redelivered; above the longest job"
    )
    job_max_deliveries: int = Field(3, ge=1, description="a job that kills its worker this often fails")
    job_queue: str = Field(
        "celery", min_length=1, description="the Redis list jobs wait in: one per deployment sharing a Redis"
    )
    worker_concurrency: int = Field(
        2, ge=1, le=64, description="Celery jobs computing at once per worker process: binds /cpu/jobs"
    )


def current_trace_id() -> str | None:
    """The trace this code runs in, if it is recorded (sampled), as a tracing backend's UI spells it."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.trace_flags.sampled else None


def context_headers() -> dict[str, str]:
    """The current trace context as message headers (W3C traceparent): empty when tracing is off."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


class GaveUp(Exception):
    """The job was delivered JOB_MAX_DELIVERIES times without finishing: it is failed, not retried."""


class PolledRedisBackend(RedisBackend):
    """Celery's Redis result backend, minus the pub/sub subscription it opens for every published task.

    That subscription only serves AsyncResult.get(), which blocks; this service polls instead. Left on,
    it is one more connection per publish, and with Redis down it turns a publish into a RuntimeError
    ("the Celery application must be restarted") after seconds of retries instead of a clean error.
    """

    def on_task_call(self, producer, task_id):
        return {}


def make_celery(settings: JobQueueSettings) -> Celery:
    """A Celery app configured for these rules; building it opens no connection."""
    app = Celery(
        "{{ cookiecutter.project_slug }}",
        broker=settings.redis_url,
        backend=f"{__name__}:{PolledRedisBackend.__name__}+{settings.redis_url}",
    )
    socket_options = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": settings.redis_timeout,
    }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        task_default_queue=settings.job_queue,
        task_track_started=True,
        result_expires=settings.job_result_expires,
        result_backend_thread_safe=True,  # one backend for every threadpool thread, not one each
        broker_transport_options={
            "visibility_timeout": settings.job_visibility_timeout,
            "unacked_restore_interval": restore_interval(settings.job_visibility_timeout),
            "unacked_restore_throttle": 1,
            **socket_options,
        },
        broker_connection_timeout=settings.redis_timeout,
        broker_connection_retry_on_startup=True,
        redis_socket_connect_timeout=settings.redis_timeout,
        redis_socket_timeout=settings.redis_timeout,
        result_backend_transport_options={"retry_policy": {"timeout": settings.redis_timeout}},
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


def restore_interval(visibility_timeout: int) -> int:
    """Seconds between sweeps for jobs whose worker died: a fraction of the timeout, at most 10."""
    return max(1, min(10, visibility_timeout // 4))


def make_redis(settings: JobQueueSettings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
    )


def job_key(job_id: str) -> str:
    """Set when a job is accepted, to the trace id that submitted it ("" untraced): Celery calls
    unknown ids PENDING, this tells them apart."""
    return f"jobs:{job_id}"


class JobQueue:
    """The web process's side: publish a job by task name, read its state. Blocking clients: call it
    from `def` routes or a worker thread."""

    name = "redis"

    def __init__(self, settings: JobQueueSettings) -> None:
        self.settings = settings
        self.result_expires = settings.job_result_expires
        self.queue_name = settings.job_queue
        self.redis = make_redis(settings)
        self.celery = make_celery(settings)

    def submit(self, task: str, *args: Any) -> str:
        job_id = str(uuid4())
        # By hand, not Celery's instrumentation: it ends its publish span only for tasks registered in
        # this process, and the web side publishes by name.
        with tracer.start_as_current_span(f"apply_async/{task}", kind=SpanKind.PRODUCER):
            # The marker goes first: a job is known (never 404) from the moment a worker can see it. If
            # the publish fails, the caller never learns the id; the marker just expires.
            self.redis.set(job_key(job_id), current_trace_id() or "", ex=self.result_expires)
            self.celery.send_task(task, args=list(args), task_id=job_id, headers=context_headers())
        return job_id

    def state(self, job_id: str) -> tuple[str, Any, str | None] | None:
        """(Celery state, result or exception, trace id), or None for an id never submitted or expired."""
        marker = self.redis.get(job_key(job_id))
        outcome = self.celery.AsyncResult(job_id)
        celery_state, payload = outcome.state, outcome.result
        if marker is None and celery_state == "PENDING":  # Celery's word for "never heard of it"
            return None
        return celery_state, payload, (marker or b"").decode() or None

    def depth(self) -> int:
        """Jobs published and not yet taken by a worker: the length of the Redis list they wait in."""
        return self.redis.llen(self.queue_name)

    def close(self) -> None:
        self.celery.close()
        self.redis.close()

    async def check(self) -> None:
        """Readiness: a Redis round trip, on a worker thread."""
        await anyio.to_thread.run_sync(self.redis.ping)


@asynccontextmanager
async def open_job_queue(app: FastAPI, settings: JobQueueSettings | None = None) -> AsyncIterator[JobQueue]:
    queue = app.state.job_queue = JobQueue(settings or JobQueueSettings())
    try:
        yield queue
    finally:
        await anyio.to_thread.run_sync(queue.close)  # joins and socket closes: off the loop


async def job_queue(request: Request) -> JobQueue:
    return request.app.state.job_queue


Jobs = Annotated[JobQueue, Depends(job_queue)]
BROKER_DOWN = (redis.RedisError, kombu.exceptions.OperationalError)


class QueueUnavailable(Exception):
    """Raise from a route with what was unavailable ("job queue", "job store"): it answers 503."""


async def queue_unavailable(request: Request, error: QueueUnavailable) -> JSONResponse:
    return JSONResponse({"detail": f"{error} unavailable"}, status_code=503)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QueueUnavailable, queue_unavailable)
