"""DELIBERATELY WRONG. Do not copy. Blocking calls inside `async def`, kept outside the application
package so that the tests can prove their guards catch them (negative controls) and the benchmark
can measure the damage. Each route does the same work as a correct route in the real app.

Run it like the api: `uvicorn --factory antipatterns.app:create_app`.
"""

import time

from fastapi import APIRouter, FastAPI
from sqlalchemy import func, select, text

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.models import Item, WaitSeconds
from {{ cookiecutter.project_slug }}.primes import count_primes
from {{ cookiecutter.project_slug }}.resources.async_database import AsyncDB
from {{ cookiecutter.project_slug }}.resources.requests_session import RequestsSession
from {{ cookiecutter.project_slug }}.resources.sync_database import SyncSessions
from {{ cookiecutter.project_slug }}.routers.mixed import fetch_delay_blocking

router = APIRouter(prefix="/anti", tags=["anti-patterns: blocking inside async def"])


@router.get("/sleep")
async def sleep_in_async(seconds: WaitSeconds) -> dict[str, float]:
    time.sleep(seconds)  # WRONG: the loop stops; every other request waits
    return {"waited": seconds}


@router.get("/db-wait")
async def psycopg2_in_async(seconds: WaitSeconds, sessions: SyncSessions) -> dict[str, float]:
    with sessions() as db:
        db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})  # WRONG: C driver blocks the loop
    return {"waited": seconds}


@router.get("/upstream")
async def requests_in_async(delay: WaitSeconds, http: RequestsSession) -> dict:
    return fetch_delay_blocking(http, delay).model_dump()  # WRONG: requests blocks the loop


@router.get("/mixed")
async def naive_mixed(delay: WaitSeconds, db: AsyncDB, http: RequestsSession) -> dict:
    upstream = fetch_delay_blocking(http, delay)  # WRONG: should go through run_in_threadpool
    item_count = await db.scalar(select(func.count()).select_from(Item))
    return {"item_count": item_count, "upstream": upstream.model_dump()}


@router.get("/cpu")
async def cpu_in_async(n: int = 300_000) -> dict[str, int]:
    return {"below": n, "primes": count_primes(n)}  # WRONG: holds the loop for the whole computation


def create_app() -> FastAPI:
    """The real application, plus these routes."""
    app = main.create_app()
    app.include_router(router)
    return app
