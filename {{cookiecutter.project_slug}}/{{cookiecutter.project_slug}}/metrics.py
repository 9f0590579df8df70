"""Prometheus metrics at GET /metrics: how late the loop is, how full each pool is, how routes answer.

Several uvicorn workers (UVICORN_WORKERS=2) are several processes, each with its own loop,
threadpool and pools. prometheus-client's multiprocess mode adds them up: with PROMETHEUS_MULTIPROC_DIR
set in the environment (read when prometheus_client is imported, so it comes from whoever starts the
server) every process writes its values to files in that folder and /metrics reads them all. The
folder must be empty when the server starts: compose mounts a fresh tmpfs there, tools/native.py
makes a fresh folder for each native start. Without the variable, the process serves its own values.

Where each figure comes from, and what it costs:
- requests per route (count, latency): RequestMetrics, a pure ASGI middleware, a few µs a request;
- loop lag and stalls: the watchdog (watchdog.py), one observation per beat, whatever the traffic;
- pools, threadpool, process pool{% if cookiecutter.use_celery == "yes" %}, Celery queue{% endif %}: a sampler thread reads their counters every
  SAMPLE_INTERVAL seconds, nothing on the request path. Gauges say how processes add up
  (multiprocess_mode): "livesum" sums the processes alive; each removes its files when it stops.
- /metrics reads files: it does so in a worker thread of its own limiter, not the threadpool's, so a
  scrape answers even while every threadpool token is taken (exactly when it matters).
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Annotated

import anyio
import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cpu_pool import CpuPool
from .pools import CountedQueuePool, FairAsyncPool
from .watchdog import LoopWatchdog

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
SAMPLE_INTERVAL = 1.0
REQUEST_ID_HEADER = b"x-request-id"  # CorrelationIdMiddleware's header, as ASGI spells it
UNMATCHED = "<unmatched>"  # the route label of a 404: one series, not one per path scanned

LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran the watchdog's callback",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_STALLS = Counter("event_loop_stalls", "Times the event loop was late by more than LOOP_STALL_THRESHOLD")
REQUESTS = Histogram(
    "http_request_duration_seconds",
    "Requests served, by route template and status, and how long each took",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def livesum(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, help_text, labels, multiprocess_mode="livesum")


THREADPOOL_TOKENS = livesum("threadpool_tokens", "Threadpool tokens (THREADPOOL_TOKENS per process)")
THREADPOOL_BORROWED = livesum("threadpool_tokens_borrowed", "Tokens held by def routes and run_in_threadpool")
THREADPOOL_WAITING = livesum("threadpool_tasks_waiting", "Tasks waiting for a threadpool token")
DB_POOL_SIZE = livesum("db_pool_size", "Connections the pool keeps", ("engine",))
DB_POOL_CHECKED_OUT = livesum("db_pool_checked_out", "Connections in use", ("engine",))
DB_POOL_OVERFLOW = livesum("db_pool_overflow", "Connections open beyond the pool size", ("engine",))
DB_POOL_WAITING = livesum("db_pool_waiting", "Checkouts waiting for a connection", ("engine",))
DB_POOL_WAIT = Histogram(
    "db_pool_wait_seconds",
    "How long each checkout waited for a connection (opening one included)",
    ["engine"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = livesum("http_client_requests_in_flight", "Upstream requests holding a connection")
PROCESS_POOL_RUNNING = livesum("process_pool_jobs_running", "CPU jobs computing in the process pool")
PROCESS_POOL_QUEUED = livesum("process_pool_jobs_queued", "CPU jobs waiting for a pool process")

Sample = Callable[[], None]


class RequestMetrics:
    """Pure ASGI middleware: one histogram observation per request, labelled with the route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (method, route, status) -> its histogram: REQUESTS.labels() costs more than the observation.
        self.series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, the client gets ServerErrorMiddleware's 500

        async def send_keeping_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_keeping_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")  # set by the router once it matched: the template, not the path
            key = (scope["method"], getattr(route, "path", UNMATCHED), status)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = REQUESTS.labels(key[0], key[1], str(status))
            series.observe(elapsed)


def request_on_stack(frame: FrameType) -> dict[str, str] | None:
    """The request a stalled stack is serving: RequestMetrics' frame is on that stack, with its scope.

    Read from the frame because the watchdog runs in another thread: the request id's context variable
    is visible only to the request's own task. CorrelationIdMiddleware also writes the id it accepted
    or made into the request's headers, which the scope holds."""
    if frame.f_code is not RequestMetrics.__call__.__code__:
        return None
    scope = frame.f_locals.get("scope") or {}
    headers = dict(scope.get("headers", ()))
    return {
        "method": scope.get("method"),
        "route": getattr(scope.get("route"), "path", scope.get("path")),
        "request_id": headers.get(REQUEST_ID_HEADER, b"").decode("latin-1") or None,
    }


def threadpool_sample(limiter: anyio.CapacityLimiter) -> Sample:
    def sample() -> None:
        statistics = limiter.statistics()
        THREADPOOL_TOKENS.set(statistics.total_tokens)
        THREADPOOL_BORROWED.set(statistics.borrowed_tokens)
        THREADPOOL_WAITING.set(statistics.tasks_waiting)

    return sample


def engine_sample(name: str, pool: FairAsyncPool | CountedQueuePool) -> Sample:
    waited = DB_POOL_WAIT.labels(name)

    def sample() -> None:
        DB_POOL_SIZE.labels(name).set(pool.size())
        DB_POOL_CHECKED_OUT.labels(name).set(pool.checkedout())
        DB_POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))  # counts up from -size
        DB_POOL_WAITING.labels(name).set(pool.counter.waiting)
        waits = pool.counter.waits
        for _ in range(len(waits)):  # the waits since the last sample, observed here, off the request path
            waited.observe(waits.popleft())

    return sample


def http_client_sample(client: httpx.AsyncClient) -> Sample:
    """Requests in flight = connections that the transport's aiohttp pool has handed out and not taken
    back. Neither library counts them publicly: this reads the connector's set of acquired ones."""

    def sample() -> None:
        session = getattr(client._transport, "client", None)  # made on the first request
        connector = getattr(session, "connector", None)
        HTTP_IN_FLIGHT.set(len(getattr(connector, "_acquired", ())))

    return sample


def process_pool_sample(pool: CpuPool) -> Sample:
    def sample() -> None:
        running, queued = pool.load()
        PROCESS_POOL_RUNNING.set(running)
        PROCESS_POOL_QUEUED.set(queued)

    return sample


class Sampler:
    """A thread that runs every sample each SAMPLE_INTERVAL. Reading a counter from this thread is
    safe: the samples only read plain numbers the loop writes. A failing sample (Redis down) is logged
    once, until it works again."""

    def __init__(self, samples: dict[str, Sample]) -> None:
        self.samples = samples  # the app's dict: a router's lifespan may add to it later
        self.failing: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            for name, sample in list(self.samples.items()):
                try:
                    sample()
                    self.failing.discard(name)
                except Exception:
                    if name not in self.failing:
                        log.warning("metrics sample %s failed", name, exc_info=True)
                    self.failing.add(name)
            if self.stopping.wait(SAMPLE_INTERVAL):
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@asynccontextmanager
async def observe(app: FastAPI) -> AsyncIterator[None]:
    """The lifespan's part: the watchdog and the sampler run while the app does."""
    watchdog = LoopWatchdog(
        asyncio.get_running_loop(),
        app.state.settings.loop_stall_threshold,
        on_lag=LOOP_LAG.observe,
        on_stall=LOOP_STALLS.inc,
        request_on_stack=request_on_stack,
    )
    sampler = Sampler(app.state.metric_samples)
    app.state.scrape_limiter = anyio.CapacityLimiter(1)  # one scrape at a time, beside the threadpool
    watchdog.start()
    sampler.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(watchdog.stop)  # joins a thread: off the loop
        await anyio.to_thread.run_sync(sampler.stop)
        if MULTIPROCESS_DIR:
            multiprocess.mark_process_dead(os.getpid())  # this process's live gauges leave the sums


def render() -> bytes:
    """Every process's values (multiprocess mode reads their files), or this process's. Blocking."""
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


async def get_scrape_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.scrape_limiter


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(limiter: Annotated[anyio.CapacityLimiter, Depends(get_scrape_limiter)]) -> Response:
    body = await anyio.to_thread.run_sync(render, limiter=limiter)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    app.add_middleware(RequestMetrics)
    app.include_router(router)
