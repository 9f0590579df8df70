"""Application factory: `uvicorn --factory {{ cookiecutter.project_slug }}.main:create_app`.

Importing this module builds nothing and reads nothing: settings are read, and the app built, when
uvicorn calls create_app(). The lifespan opens each long-lived resource and, on the next line,
registers how to close it; the exit stack closes them in reverse order on shutdown.
"""

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .body_limit import limit_bodies
from .config import Settings, get_settings
from .errors import install_error_handlers
from .observability.access import ACCESS_LOGGER, AccessMiddleware
from .observability.logs import configure_logging
from .observability.metrics_endpoint import router as metrics_router
from .observability.monitor import observe
from .observability.sampling import engine_sample, http_client_sample, process_pool_sample, threadpool_sample
from .observability.tracing import shut_down, start_tracing, trace_app, traced_clients
from .resources.clients import make_http_client, make_requests_session, make_upstream_transport
from .resources.db import (
    async_sessions,
    make_async_engine,
    make_sync_engine,
    ping_async,
    ping_sync,
    sync_sessions,
)
from .resources.process_pool import CpuPool
from .routers import ROUTERS


def close_off_the_loop(resources: AsyncExitStack, close: Callable[[], object]) -> None:
    """Closing a sync resource can block (joins, socket I/O): on shutdown it runs in a worker thread."""
    resources.push_async_callback(anyio.to_thread.run_sync, close)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # The limiter belongs to this event loop, so it is sized here and not at import time.
    threadpool = anyio.to_thread.current_default_thread_limiter()
    threadpool.total_tokens = settings.threadpool_tokens
    async with AsyncExitStack() as resources:
        async_engine = make_async_engine(settings)
        resources.push_async_callback(async_engine.dispose)
        sync_engine = make_sync_engine(settings)
        close_off_the_loop(resources, sync_engine.dispose)
        app.state.async_sessions = async_sessions(async_engine)
        app.state.sync_sessions = sync_sessions(sync_engine)
        app.state.readiness_checks = {
            "postgres_asyncpg": partial(ping_async, async_engine),
            "postgres_psycopg2": partial(anyio.to_thread.run_sync, ping_sync, sync_engine),
        }

        upstream = make_upstream_transport(settings)
        app.state.http_client = await resources.enter_async_context(make_http_client(settings, upstream))
        app.state.requests_session = make_requests_session(settings)
        close_off_the_loop(resources, app.state.requests_session.close)
        app.state.cpu_pool = CpuPool(settings.process_pool_workers)
        close_off_the_loop(resources, app.state.cpu_pool.shutdown)
        if (provider := app.state.tracer_provider) is not None:  # OTEL_EXPORTER_OTLP_ENDPOINT set
            close_off_the_loop(resources, partial(shut_down, provider))
            engines = [async_engine.sync_engine, sync_engine]
            resources.enter_context(traced_clients(provider, engines, app.state.http_client))
        # What /metrics reports about each limit; a router's lifespan may add its own (routers/jobs.py).
        app.state.metric_samples = {
            "threadpool": threadpool_sample(threadpool),
            "asyncpg": engine_sample("asyncpg", async_engine.pool),
            "psycopg2": engine_sample("psycopg2", sync_engine.pool),
            "http_client": http_client_sample(upstream),
            "process_pool": process_pool_sample(app.state.cpu_pool),
        }

        # What start-up built lives as long as the process: move it out of the garbage collector's
        # reach, or full collections over it pause the event loop for 100 ms and more under load.
        gc.collect()
        gc.freeze()
        if settings.observability:  # last: the watchdog watches the loop from here on
            await resources.enter_async_context(observe(app))
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    access_log = configure_logging(settings.log_format, ACCESS_LOGGER)
    docs = settings.docs_enabled
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.tracer_provider = start_tracing("{{ cookiecutter.project_slug }}-api")  # None unless configured
    # MAX_BODY_BYTES: a declared length over it is refused unread, a body is counted while it is read
    # (max_body_size, on each router: given to the app, the 413 would lose its shape; body_limit.py).
    limit_bodies(app, settings.max_body_bytes)
    if settings.cors_origins:  # off unless configured: no browser origin may call by default
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"])
    install_error_handlers(app)
    for router in ROUTERS:  # routers/__init__.py lists them
        # A router's own lifespan (routers/jobs.py has one) runs inside the app's.
        app.include_router(router, max_body_size=settings.max_body_bytes)
    if settings.observability:
        app.include_router(metrics_router, max_body_size=settings.max_body_bytes)
    # Added last, so outermost: request id, access line and metrics for every request (access.py).
    app.add_middleware(AccessMiddleware, log=access_log, metrics=settings.observability)
    if app.state.tracer_provider is not None:
        trace_app(app, app.state.tracer_provider)
    return app
