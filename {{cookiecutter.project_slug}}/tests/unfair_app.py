"""The negative control of tests/test_fairness.py: the real async database route on SQLAlchemy's stock
AsyncAdaptedQueuePool, without the app's FIFO gate (resources/async_database.py), so a newcomer can take a
returned connection ahead of the requests already waiting. The check that waiters are served in arrival
order must fail here. Served like the real app, by the compose `api` command.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from {{ cookiecutter.project_slug }}.config import Settings, get_settings
from {{ cookiecutter.project_slug }}.errors import install_error_handlers
from {{ cookiecutter.project_slug }}.resources import async_database
from {{ cookiecutter.project_slug }}.routers import async_io, health


class StockPoolDatabase:
    """AsyncDatabase's shape (engine, sessions) on SQLAlchemy's stock pool."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_async_engine(
            settings.database_url("asyncpg"),
            pool_size=settings.async_db_pool_size,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    database = app.state.async_database = StockPoolDatabase(app.state.settings)
    try:
        yield
    finally:
        await database.engine.dispose()


def create_app() -> FastAPI:
    app = FastAPI(title="an unfair async pool, on purpose", lifespan=lifespan)
    app.state.settings = get_settings()
    install_error_handlers(app)
    async_database.add_error_handlers(app)
    app.include_router(health.router)
    app.include_router(async_io.router)
    return app
