"""Long CPU jobs on Celery. Rule: the request only publishes the job and answers at once with its id
to poll; a worker process computes it. The routes are `def`: publishing and reading state use
Celery's and redis-py's blocking clients.
"""

from uuid import UUID

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from ..resources.job_queue import BROKER_DOWN, COUNT_PRIMES, Jobs, QueueUnavailable, current_trace_id

router = APIRouter(prefix="/cpu", tags=["CPU work: Celery jobs"])


class JobRequest(BaseModel):
    n: int = Field(ge=2, description="count primes below n (at most JOB_MAX_N)", examples=[300_000])


class PrimeCount(BaseModel):
    below: int
    primes: int = Field(description="how many primes are below `below`")


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
    responses={503: {"description": "job queue unavailable"}},
)
def submit_job(body: JobRequest, jobs: Jobs, response: Response) -> Job:
    if body.n > (limit := jobs.settings.job_max_n):  # a bound read at run time, refused as `le=` would be
        message = f"Input should be less than or equal to {limit}"
        error = {"type": "less_than_equal", "loc": ("body", "n"), "msg": message, "input": body.n}
        raise RequestValidationError([{**error, "ctx": {"le": limit}}])
    try:
        job_id = jobs.submit(COUNT_PRIMES, body.n)
    except BROKER_DOWN as error:
        raise QueueUnavailable("job queue") from error
    response.headers["Location"] = f"/cpu/jobs/{job_id}"
    return Job(id=job_id, state="queued", trace_id=current_trace_id())


@router.get(
    "/jobs/{job_id}",
    responses={404: {"description": "no job with this id"}, 503: {"description": "job store unavailable"}},
)
def read_job(job_id: UUID, jobs: Jobs) -> Job:
    try:
        found = jobs.state(str(job_id))
    except BROKER_DOWN as error:
        raise QueueUnavailable("job store") from error
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found (never submitted, or expired)")
    celery_state, payload, trace_id = found
    job = Job(id=job_id, state=CELERY_STATES.get(celery_state, "queued"), trace_id=trace_id)
    if job.state == "succeeded":
        job.result = PrimeCount(**payload)
    elif job.state == "failed":
        job.error = f"{type(payload).__name__}: {payload}"
    return job
