"""The source articles' sleep scenarios, served beside the anti-pattern routes for the benchmark.

The articles compare one wait per request written four ways. Three are correct and live here; the
fourth, `time.sleep` inside `async def`, is antipatterns' /anti/sleep, served by this same app:

    GET /articles/def-sleep?seconds=W         def + time.sleep            (threadpool: tokens / W)
    GET /anti/sleep?seconds=W                 async def + time.sleep      (one loop: 1 / W)
    GET /articles/async-sleep?seconds=W       async def + asyncio.sleep   (C / W)
    GET /articles/threadpool-sleep?seconds=W  async def + run_in_threadpool(time.sleep)

Beside them, the reason clients.py puts httpx on aiohttp's transport, measured in every run:

    GET /articles/httpcore-upstream?delay=W   async def + httpx on its default transport (httpcore)

It is the real application (same lifespan, same THREADPOOL_TOKENS) plus these routes, run with the
compose `api` command: `uvicorn bench.articles_app:app`.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.models import UpstreamReply, WaitSeconds

from antipatterns.app import router as antipattern_router


@asynccontextmanager
async def httpcore_client(app: FastAPI) -> AsyncIterator[None]:
    """The template's client settings, on httpx's default transport."""
    settings = app.state.settings
    limits = httpx.Limits(max_connections=settings.http_max_connections)
    async with httpx.AsyncClient(base_url=settings.upstream_url, limits=limits) as client:
        app.state.httpcore_client = client
        yield


router = APIRouter(prefix="/articles", tags=["the articles' sleep scenarios"], lifespan=httpcore_client)


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


@router.get("/httpcore-upstream")
async def httpcore_upstream(delay: WaitSeconds, request: Request) -> UpstreamReply:
    response = await request.app.state.httpcore_client.get(f"/delay/{delay}")
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())


app = create_app()
app.include_router(antipattern_router)
app.include_router(router)
