"""Short CPU work. Rule: CPU-bound code goes to the process pool, awaited, its input bounded. Work
that takes minutes does not belong in a request: it is published to a job queue and polled.
"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from ..primes import count_primes
from ..resources.process_pool import ProcessPool

router = APIRouter(prefix="/cpu", tags=["CPU work: process pool"])


class PrimeCount(BaseModel):
    below: int
    primes: int = Field(description="how many primes are below `below`")


@router.get("/compute", responses={503: {"description": "a pool process died; retry"}})
async def compute(
    n: Annotated[int, Query(ge=2, description="count primes below n, at most CPU_MAX_N", examples=[300_000])],
    pool: ProcessPool,
) -> PrimeCount:
    if n > (limit := pool.settings.cpu_max_n):  # a bound read at run time, refused as `le=` would be
        message = f"Input should be less than or equal to {limit}"
        error = {"type": "less_than_equal", "loc": ("query", "n"), "msg": message, "input": n}
        raise RequestValidationError([{**error, "ctx": {"le": limit}}])
    return PrimeCount(below=n, primes=await pool.run(count_primes, n))
