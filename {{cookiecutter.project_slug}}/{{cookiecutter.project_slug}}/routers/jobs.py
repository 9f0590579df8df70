"""Long CPU jobs on Celery. Rule: the request only publishes the job and answers at once with its id
to poll; a worker process computes it. The routes are `def`: publishing and reading state use
Celery's and redis-py's blocking clients. This router opens the job queue for the app's lifetime.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from uuid import UUID

import kombu.exceptions
import redis
from fastapi import APIRouter, FastAPI, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Gauge
from pydantic import BaseModel, Field

from ..deps import AppSettings
from ..errors import ServiceUnavailable, above_limit
from ..resources.job_queue import COUNT_PRIMES, JobQueue, Jobs, current_trace_id
from ..schemas import BODY_ERRORS, PrimeCount

# Every web process reads the same Redis list: /metrics shows the most recent reading.
QUEUE_DEPTH = Gauge(
    "celery_queue_depth",
    "Jobs waiting for a worker (LLEN of the queue)",
    ["queue"],
    multiprocess_mode="livemostrecent",
)


def sample_queue_depth(queue: JobQueue) -> None:
    """Run by the metrics sampler's thread: a blocking Redis call, never on the loop."""
    QUEUE_DEPTH.labels(queue.queue_name).set(queue.depth())


@asynccontextmanager
async def job_queue(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (FastAPI merges a router's lifespan into the app's)."""
    queue = JobQueue(app.state.settings)
    app.state.job_queue = queue
    app.state.readiness_checks["redis"] = partial(run_in_threadpool, queue.ping)
    app.state.metric_samples["celery_queue"] = partial(sample_queue_depth, queue)
    try:
        yield
    finally:
        await run_in_threadpool(queue.close)  # joins and socket closes: off the loop


router = APIRouter(prefix="/cpu", tags=["CPU work: Celery jobs"], lifespan=job_queue)


class JobRequest(BaseModel):
    n: int = Field(ge=2, description="count primes below n (bounded by JOB_MAX_N)", examples=[300_000])


class Job(BaseModel):
    id: UUID
    state: str = Field(description="queued | started | succeeded | failed")
    result: PrimeCount | None = None
    error: str | None = None
    trace_id: str | None = Field(None, description="the trace of the request that submitted it (tracing on)")


CELERY_STATES = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "RETRY": "queued",
    "STARTED": "started",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**BODY_ERRORS, 503: {"description": "job queue unavailable"}},
)
def submit_job(body: JobRequest, jobs: Jobs, settings: AppSettings, response: Response) -> Job:
    if body.n > settings.job_max_n:
        raise above_limit(("body", "n"), body.n, settings.job_max_n)
    try:
        job_id = jobs.submit(COUNT_PRIMES, body.n)
    except (redis.RedisError, kombu.exceptions.OperationalError) as error:
        raise ServiceUnavailable("job queue unavailable") from error
    response.headers["Location"] = f"/cpu/jobs/{job_id}"
    return Job(id=job_id, state="queued", trace_id=current_trace_id())


@router.get(
    "/jobs/{job_id}",
    responses={404: {"description": "no job with this id"}, 503: {"description": "job store unavailable"}},
)
def read_job(job_id: UUID, jobs: Jobs) -> Job:
    try:
        found = jobs.state(str(job_id))
    except redis.RedisError as error:
        raise ServiceUnavailable("job store unavailable") from error
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found (never submitted, or expired)")
    celery_state, payload, trace_id = found
    job = Job(id=job_id, state=CELERY_STATES.get(celery_state, "queued"), trace_id=trace_id)
    if job.state == "succeeded":
        job.result = PrimeCount(**payload)
    elif job.state == "failed":
        job.error = f"{type(payload).__name__}: {payload}"
    return job
