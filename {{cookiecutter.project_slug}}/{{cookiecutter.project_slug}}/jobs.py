"""Celery on Redis for long CPU jobs: the web process only publishes and reads state.

Delivery rules, and why:
- acks_late + reject_on_worker_lost + prefetch 1: a job is acknowledged only after it finished, so a
  worker killed mid-job (even SIGKILL) leaves it on the queue for the next worker.
- visibility_timeout (JOB_VISIBILITY_TIMEOUT) above the longest job: Redis hands an unacknowledged
  job to another worker after that long, so a shorter value would run healthy jobs twice.
- every delivery is counted; a job that keeps killing its worker fails after JOB_MAX_DELIVERIES.
- publishing retries are bounded, so a request cannot hang on a dead broker: it gets a 503.
"""

import redis
from celery import Celery

from .config import Settings, get_settings
from .primes import count_primes

COUNT_PRIMES = "count_primes"


def make_celery(settings: Settings) -> Celery:
    app = Celery("{{ cookiecutter.project_slug }}", broker=settings.redis_url, backend=settings.redis_url)
    socket_options = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": settings.redis_timeout,
    }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        task_track_started=True,
        result_expires=settings.job_result_expires,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout, **socket_options},
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


def make_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
    )


def job_key(job_id: str) -> str:
    """Set when a job is accepted: Celery calls unknown ids PENDING, this tells them apart."""
    return f"jobs:{job_id}"


# The worker process (`celery -A {{ cookiecutter.project_slug }}.jobs worker`) runs this module's app;
# the web process builds its own with make_celery() in the lifespan and publishes by task name.
settings = get_settings()
celery_app = make_celery(settings)
worker_redis = make_redis(settings)


class GaveUp(Exception):
    """The job was delivered JOB_MAX_DELIVERIES times without finishing: it is failed, not retried."""


@celery_app.task(bind=True, name=COUNT_PRIMES)
def count_primes_job(self, below: int) -> dict[str, int]:
    deliveries_key = job_key(self.request.id) + ":deliveries"
    deliveries = worker_redis.incr(deliveries_key)
    worker_redis.expire(deliveries_key, settings.job_result_expires)
    if deliveries > settings.job_max_deliveries:
        raise GaveUp(f"gave up after {deliveries - 1} deliveries that did not finish")
    return {"below": below, "primes": count_primes(below)}
