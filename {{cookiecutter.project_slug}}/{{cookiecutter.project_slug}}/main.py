"""Application factory: `uvicorn --factory {{ cookiecutter.project_slug }}.main:create_app`.

Importing this module builds nothing and reads nothing: settings are read, and the app built, when
uvicorn calls create_app(). The lifespan opens every resource in the order listed, each one closing
itself (in reverse order) on shutdown; routes reach them through the typed aliases of their modules.
"""

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .body_limit import limit_bodies
from .config import Settings, get_settings
from .errors import document_body_errors, install_error_handlers
from .observability.access import ACCESS_LOGGER, AccessMiddleware
from .observability.logs import configure_logging
from .observability.metrics_endpoint import router as metrics_router
from .observability.monitor import observe
from .observability.sampling import (
    engine_sample,
    http_client_sample,
{%- if cookiecutter.use_celery == "yes" %}
    job_queue_sample,
{%- endif %}
    process_pool_sample,
    threadpool_sample,
)
from .observability.tracing import shut_down, start_tracing, trace_app, traced_clients
from .resources import async_database, http_client, {% if cookiecutter.use_celery == "yes" %}job_queue, {% endif %}process_pool, requests_session, sync_database
from .routers import ROUTERS


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # The limiter belongs to this event loop, so it is sized here and not at import time.
    threadpool = anyio.to_thread.current_default_thread_limiter()
    threadpool.total_tokens = settings.threadpool_tokens
    async with AsyncExitStack() as stack:
        if (provider := app.state.tracer_provider) is not None:  # OTEL_EXPORTER_OTLP_ENDPOINT set
            stack.push_async_callback(anyio.to_thread.run_sync, shut_down, provider)  # flushed last
        asyncpg = await stack.enter_async_context(async_database.open_async_database(app, settings))
        psycopg2 = await stack.enter_async_context(sync_database.open_sync_database(app, settings))
        http = await stack.enter_async_context(http_client.open_http_client(app, settings))
        await stack.enter_async_context(requests_session.open_requests_session(app, settings))
        cpu = await stack.enter_async_context(process_pool.open_process_pool(app, settings))
{%- if cookiecutter.use_celery == "yes" %}
        jobs = await stack.enter_async_context(job_queue.open_job_queue(app, settings))
{%- endif %}
        checked = [asyncpg, psycopg2{% if cookiecutter.use_celery == "yes" %}, jobs{% endif %}]
        app.state.readiness_checks = {resource.name: resource.check for resource in checked}
        if provider is not None:
            stack.enter_context(traced_clients(provider, [asyncpg.engine.sync_engine, psycopg2.engine], http))

        # What start-up built lives as long as the process: move it out of the garbage collector's
        # reach, or full collections over it pause the event loop for 100 ms and more under load.
        gc.collect()
        gc.freeze()
        if settings.observability:  # last, so it stops first: the watchdog watches the loop from here on
            samples = {
                "threadpool": threadpool_sample(threadpool),
                "asyncpg": engine_sample("asyncpg", asyncpg),
                "psycopg2": engine_sample("psycopg2", psycopg2),
                "http_client": http_client_sample(http),
                "process_pool": process_pool_sample(cpu),
{%- if cookiecutter.use_celery == "yes" %}
                "celery_queue": job_queue_sample(jobs),
{%- endif %}
            }
            await stack.enter_async_context(observe(settings.loop_stall_threshold, samples))
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
    for resource in (async_database, sync_database, http_client, requests_session, process_pool{% if cookiecutter.use_celery == "yes" %}, job_queue{% endif %}):
        resource.add_error_handlers(app)  # each maps its own failures: 503, 502, 504
    for router in ROUTERS:  # routers/__init__.py lists them
        document_body_errors(router)  # what FastAPI answers before the route runs: 400, 413
        app.include_router(router, max_body_size=settings.max_body_bytes)
    if settings.observability:
        app.include_router(metrics_router, max_body_size=settings.max_body_bytes)
    # Added last, so outermost: request id, access line and metrics for every request (access.py).
    app.add_middleware(AccessMiddleware, log=access_log, metrics=settings.observability)
    if app.state.tracer_provider is not None:
        trace_app(app, app.state.tracer_provider)
    return app
