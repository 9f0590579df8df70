"""Liveness and readiness. Rule: checks run concurrently, each bounded, so /ready answers in seconds.

/health/live never touches a dependency: it is also the probe that shows how late the event loop
answers. /health/ready runs the check each resource registered when the lifespan opened it.
"""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import ReadinessChecks

router = APIRouter(prefix="/health", tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


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
