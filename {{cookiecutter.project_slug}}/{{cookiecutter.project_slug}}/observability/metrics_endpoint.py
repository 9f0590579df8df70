"""GET /metrics: every process's values in Prometheus' text format (metrics.py says what they are).

Reading the multiprocess files is blocking work: it runs in a worker thread of the router's own
one-token limiter, not the threadpool's, so a scrape answers even while every threadpool token is
taken (exactly when it matters), and two scrapes never read at once.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from .metrics import MULTIPROCESS_DIR


def render() -> bytes:
    """Every process's values (multiprocess mode reads their files), or this process's. Blocking."""
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


@asynccontextmanager
async def scrape_limiter(app: FastAPI) -> AsyncIterator[None]:
    app.state.scrape_limiter = anyio.CapacityLimiter(1)  # made on the loop it serves
    yield


async def get_scrape_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.scrape_limiter


router = APIRouter(tags=["metrics"], lifespan=scrape_limiter)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(limiter: Annotated[anyio.CapacityLimiter, Depends(get_scrape_limiter)]) -> Response:
    body = await anyio.to_thread.run_sync(render, limiter=limiter)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
