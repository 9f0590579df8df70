"""Liveness and readiness. Rule: checks run concurrently, each bounded, so /ready answers in seconds.

/health/live never touches a dependency: it is also the probe that shows how late the event loop
answers. /health/ready runs the `check()` of every resource the lifespan opened (main.py lists them).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/health", tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


async def readiness_checks(request: Request) -> dict[str, Callable[[], Awaitable[None]]]:
    return request.app.state.readiness_checks


ReadinessChecks = Annotated[dict[str, Callable[[], Awaitable[None]]], Depends(readiness_checks)]


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a dependency is down; the body names it"}})
async def ready(checks: ReadinessChecks) -> JSONResponse:
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS) for check in checks.values()),
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
