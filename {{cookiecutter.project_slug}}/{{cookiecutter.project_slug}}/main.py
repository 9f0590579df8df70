"""Application factory. The lifespan owns every long-lived resource and closes it on shutdown."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from . import cpu_pool
from .clients import make_http_client, make_requests_session
from .config import Settings, get_settings
from .db import async_sessions, make_async_engine, make_sync_engine, sync_sessions
from .errors import install_error_handlers
{%- if cookiecutter.use_celery == "yes" %}
from .jobs import make_celery, make_redis
{%- endif %}
from .routers import async_io, cpu, health, mixed, sync_io


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # The limiter belongs to this event loop, so it is sized here and not at import time.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_tokens

    async_engine = make_async_engine(settings)
    sync_engine = make_sync_engine(settings)
    app.state.async_engine = async_engine
    app.state.sync_engine = sync_engine
    app.state.async_sessions = async_sessions(async_engine)
    app.state.sync_sessions = sync_sessions(sync_engine)
    app.state.requests_session = make_requests_session(settings)
    app.state.cpu_pool = cpu_pool.CpuPool(settings.process_pool_workers)
{%- if cookiecutter.use_celery == "yes" %}
    app.state.redis = make_redis(settings)
    app.state.celery = make_celery(settings)
{%- endif %}
    async with make_http_client(settings) as http_client:
        app.state.http_client = http_client
        # What start-up built lives as long as the process: move it out of the garbage collector's
        # reach, or full collections over it pause the event loop for 100 ms and more under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await async_engine.dispose()
            # Closing sync resources can block (joins, socket I/O): keep it off the loop too.
            await anyio.to_thread.run_sync(close_sync_resources, app)


def close_sync_resources(app: FastAPI) -> None:
    app.state.cpu_pool.shutdown()
{%- if cookiecutter.use_celery == "yes" %}
    app.state.celery.close()
    app.state.redis.close()
{%- endif %}
    app.state.requests_session.close()
    app.state.sync_engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    install_error_handlers(app)
    for router in (health.router, async_io.router, sync_io.router, mixed.router, cpu.router):
        app.include_router(router)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()
