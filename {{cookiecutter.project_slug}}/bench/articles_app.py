"""The source articles' sleep scenarios, served beside the anti-pattern routes for the benchmark.

The articles compare one wait per request written four ways. Three are correct and live here; the
fourth, `time.sleep` inside `async def`, is antipatterns' /anti/sleep, served by this same app:

    GET /articles/def-sleep?seconds=W         def + time.sleep            (threadpool: tokens / W)
    GET /anti/sleep?seconds=W                 async def + time.sleep      (one loop: 1 / W)
    GET /articles/async-sleep?seconds=W       async def + asyncio.sleep   (C / W)
    GET /articles/threadpool-sleep?seconds=W  async def + run_in_threadpool(time.sleep)

It is the real application (same lifespan, same THREADPOOL_TOKENS) plus these routes, run with the
compose `api` command: `uvicorn bench.articles_app:app`.
"""

import asyncio
import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.schemas import WaitSeconds

from antipatterns.app import router as antipattern_router

router = APIRouter(prefix="/articles", tags=["the articles' sleep scenarios"])


@router.get("/def-sleep")
def def_sleep(seconds: WaitSeconds) -> dict[str, float]:
    time.sleep(seconds)  # blocks a threadpool thread, not the loop
    return {"waited": seconds}


@router.get("/async-sleep")
async def async_sleep(seconds: WaitSeconds) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"waited": seconds}


@router.get("/threadpool-sleep")
async def threadpool_sleep(seconds: WaitSeconds) -> dict[str, float]:
    await run_in_threadpool(time.sleep, seconds)
    return {"waited": seconds}


app = create_app()
app.include_router(antipattern_router)
app.include_router(router)
