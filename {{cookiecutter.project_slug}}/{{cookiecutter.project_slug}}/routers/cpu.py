"""CPU work. Rule: CPU-bound code never runs on the event loop, and never in the threadpool either
(the GIL lets one thread compute at a time). Short jobs: the process pool, awaited, input bounded.
{%- if cookiecutter.use_celery == "yes" %}
Long jobs: Celery, answered at once with a job id to poll.
The job routes are `def`: publishing and reading state use Celery's and redis-py's blocking clients.
{%- else %}
Long jobs (minutes) do not belong in a request: bake with use_celery=yes for a job queue.
{%- endif %}
"""

from typing import Annotated
{%- if cookiecutter.use_celery == "yes" %}
from uuid import UUID, uuid4
{%- endif %}

{% if cookiecutter.use_celery == "yes" -%}
import kombu.exceptions
import redis
{% endif -%}
from fastapi import APIRouter, HTTPException, Query, Request, {% if cookiecutter.use_celery == "yes" %}Response, {% endif %}status
from pydantic import BaseModel, Field

{% if cookiecutter.use_celery == "yes" -%}
from ..errors import ServiceUnavailable
from ..jobs import COUNT_PRIMES, job_key
{% endif -%}
from ..primes import count_primes

router = APIRouter(prefix="/cpu", tags=["CPU work: process pool{% if cookiecutter.use_celery == "yes" %} and Celery{% endif %}"])


class PrimeCount(BaseModel):
    below: int
    primes: int = Field(description="how many primes are below `below`")


MaxN = Query(ge=2, description="count primes below n (bounded by CPU_MAX_N)", examples=[300_000])


@router.get("/compute", responses={503: {"description": "a pool process died; retry"}})
async def compute(request: Request, n: Annotated[int, MaxN]) -> PrimeCount:
    settings = request.app.state.settings
    if n > settings.cpu_max_n:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"n must be <= {settings.cpu_max_n}")
    primes = await request.app.state.cpu_pool.run(count_primes, n)
    return PrimeCount(below=n, primes=primes)
{%- if cookiecutter.use_celery == "yes" %}


class JobRequest(BaseModel):
    n: int = Field(ge=2, description="count primes below n (bounded by JOB_MAX_N)", examples=[300_000])


class Job(BaseModel):
    id: UUID
    state: str = Field(description="queued | started | succeeded | failed")
    result: PrimeCount | None = None
    error: str | None = None


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
    "/jobs", status_code=status.HTTP_202_ACCEPTED, responses={503: {"description": "job queue unavailable"}}
)
def submit_job(body: JobRequest, request: Request, response: Response) -> Job:
    state = request.app.state
    if body.n > state.settings.job_max_n:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"n must be <= {state.settings.job_max_n}")
    job_id = str(uuid4())
    try:
        # The marker goes first: a job is known (never 404) from the moment a worker can see it. If the
        # publish fails, the client gets a 503 and never learns the id; the marker just expires.
        state.redis.set(job_key(job_id), body.n, ex=state.settings.job_result_expires)
        state.celery.send_task(COUNT_PRIMES, args=[body.n], task_id=job_id)
    except (redis.RedisError, kombu.exceptions.OperationalError) as error:
        raise ServiceUnavailable("job queue unavailable") from error
    response.headers["Location"] = f"/cpu/jobs/{job_id}"
    return Job(id=job_id, state="queued")


@router.get(
    "/jobs/{job_id}",
    responses={404: {"description": "no job with this id"}, 503: {"description": "job store unavailable"}},
)
def read_job(job_id: UUID, request: Request) -> Job:
    state = request.app.state
    try:
        known = state.redis.exists(job_key(str(job_id)))
        outcome = state.celery.AsyncResult(str(job_id))
        celery_state = outcome.state
        payload = outcome.result
    except redis.RedisError as error:
        raise ServiceUnavailable("job store unavailable") from error
    if not known and celery_state == "PENDING":  # Celery's word for "never heard of it"
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found (never submitted, or expired)")
    job = Job(id=job_id, state=CELERY_STATES.get(celery_state, "queued"))
    if job.state == "succeeded":
        job.result = PrimeCount(**payload)
    elif job.state == "failed":
        job.error = f"{type(payload).__name__}: {payload}"
    return job
{%- endif %}
