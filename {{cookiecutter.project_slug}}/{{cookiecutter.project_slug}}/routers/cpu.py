"""Short CPU work. Rule: CPU-bound code never runs on the event loop, and never in the threadpool
either (the GIL lets one thread compute at a time): it goes to the process pool, awaited, its input
bounded. Work that takes minutes does not belong in a request at all: it is published to a job
queue and polled (the Celery routes, in projects generated with use_celery=yes).
"""

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import AppSettings
from ..errors import above_limit
from ..primes import count_primes
from ..resources.process_pool import ProcessPool
from ..schemas import PrimeCount

router = APIRouter(prefix="/cpu", tags=["CPU work: process pool"])

MaxN = Query(ge=2, description="count primes below n (bounded by CPU_MAX_N)", examples=[300_000])


@router.get("/compute", responses={503: {"description": "a pool process died; retry"}})
async def compute(n: Annotated[int, MaxN], settings: AppSettings, pool: ProcessPool) -> PrimeCount:
    if n > settings.cpu_max_n:
        raise above_limit(("query", "n"), n, settings.cpu_max_n)
    primes = await pool.run(count_primes, n)
    return PrimeCount(below=n, primes=primes)
