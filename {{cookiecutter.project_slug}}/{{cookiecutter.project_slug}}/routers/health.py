"""Liveness and readiness. Rule: checks run concurrently, each bounded, so /ready answers in seconds.

/health/live never touches a dependency: it is also the probe that shows how late the event loop answers.
"""

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db import PING

router = APIRouter(prefix="/health", tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def check_async_postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(PING)


def check_sync_postgres(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(PING)


@router.get("/ready", responses={503: {"description": "a dependency is down; the body names it"}})
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    checks = {
        "postgres_asyncpg": check_async_postgres(state.async_engine),
        "postgres_psycopg2": run_in_threadpool(check_sync_postgres, state.sync_engine),
{%- if cookiecutter.use_celery == "yes" %}
        "redis": run_in_threadpool(state.redis.ping),
{%- endif %}
    }
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS) for check in checks.values()),
        return_exceptions=True,
    )
    failing = {
        name: type(outcome).__name__
        for name, outcome in zip(checks, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    }
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ok", "checks": list(checks)})
