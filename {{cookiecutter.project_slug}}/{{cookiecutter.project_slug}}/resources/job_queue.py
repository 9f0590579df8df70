"""Celery on Redis for long CPU jobs, the part both processes share: how the app is configured, how
a job is named and marked, and the web side's JobQueue. The worker's own code is in worker.py.

Delivery rules, and why:
- acks_late + reject_on_worker_lost + prefetch 1: a job is acknowledged only after it finished. If the
  process running it dies (SIGKILL, OOM), the worker puts it back at once; if the whole worker dies,
  Redis hands it to the next worker once visibility_timeout has passed since its delivery.
- visibility_timeout (JOB_VISIBILITY_TIMEOUT) above the longest job: Redis hands an unacknowledged
  job to another worker after that long, so a shorter value would run healthy jobs twice.
- the sweep that finds such jobs runs every few seconds: kombu's default scans Redis only every
  ~100 s (unacked_restore_interval x unacked_restore_throttle), whatever visibility_timeout says.
- every delivery is counted; a job that keeps killing its worker fails after JOB_MAX_DELIVERIES.
- publishing retries are bounded, so a request cannot hang on a dead broker: it gets a 503.
- the web process never waits on a result (it polls), so it does not subscribe to result channels.
- the submitting request's trace context travels in the message's headers (tracing.py): the worker's
  span joins the request's trace, and the job's marker keeps the trace id for GET /cpu/jobs/{id}.
"""

from typing import Annotated, Any
from uuid import uuid4

import redis
from celery import Celery
from celery.backends.redis import RedisBackend
from fastapi import Depends, Request
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from ..config import Settings

COUNT_PRIMES = "count_primes"
# OpenTelemetry's API only: a no-op until the app installs a tracer provider (tracing.py).
tracer = trace.get_tracer(__name__)


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


def make_celery(settings: Settings) -> Celery:
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


def make_redis(settings: Settings) -> redis.Redis:
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

    def __init__(self, settings: Settings) -> None:
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

    def ping(self) -> None:
        self.redis.ping()

    def depth(self) -> int:
        """Jobs published and not yet taken by a worker: the length of the Redis list they wait in."""
        return self.redis.llen(self.queue_name)

    def close(self) -> None:
        self.celery.close()
        self.redis.close()


async def get_job_queue(request: Request) -> JobQueue:
    return request.app.state.job_queue


# Beside JobQueue rather than in deps.py: a bake without Celery deletes this file and nothing else.
Jobs = Annotated[JobQueue, Depends(get_job_queue)]
