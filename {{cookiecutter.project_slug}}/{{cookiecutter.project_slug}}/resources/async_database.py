"""The asyncpg engine for `async def` routes: one per process, opened and closed by the lifespan.

Rule: the engine never outlives or crosses the event loop it was made on, waiters get connections in
arrival order (FairAsyncPool), and a database that cannot be reached answers 503, never 500.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL, event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_

log = logging.getLogger(__name__)


class AsyncDatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(5432, gt=0, lt=65536)
    postgres_user: str = "{{ cookiecutter.project_slug }}_app"
    postgres_password: str = ""
    postgres_db: str = "{{ cookiecutter.project_slug }}"
    db_connect_timeout: float = Field(2.0, gt=0, description="seconds to open a connection")
    db_pool_timeout: float = Field(5.0, gt=0, description="seconds to wait for a pooled connection")
    async_db_pool_size: int = Field(40, ge=1)


class FairAsyncPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async pool behind a FIFO gate of its size (asyncio.Semaphore hands a freed slot to
    its oldest waiter). Counts for /metrics: `waiting` now, and each checkout's wait in `waits`."""

    def __init__(self, *args, max_overflow: int = 10, **kwargs) -> None:  # 10: SQLAlchemy's default
        if max_overflow != 0:
            raise ValueError("FairAsyncPool admits pool_size checkouts: max_overflow must be 0")
        super().__init__(*args, max_overflow=max_overflow, **kwargs)
        self.waiting = 0
        self.waits: deque[float] = deque(maxlen=10_000)  # drained by the metrics sampler
        self._admission = asyncio.Semaphore(self.size())

    async def _admit(self) -> None:
        try:
            async with asyncio.timeout(self.timeout()):
                await self._admission.acquire()
        except TimeoutError:
            raise sqlalchemy.exc.TimeoutError(f"no connection within {self.timeout():g} s") from None

    def _do_get(self) -> ConnectionPoolEntry:
        started, self.waiting = time.perf_counter(), self.waiting + 1
        try:
            await_(self._admit())  # on the loop: SQLAlchemy calls the pool inside a greenlet
            try:
                return super()._do_get()  # admitted: a pooled connection, or room to open one
            except BaseException:  # opening one failed or was cancelled: the slot goes back
                self._admission.release()
                raise
        finally:
            self.waiting -= 1
            self.waits.append(time.perf_counter() - started)

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)  # SQLAlchemy returns each checked-out entry exactly once
        self._admission.release()


def connect_or_operational_error(dialect, connection_record, cargs, cparams):
    """asyncpg raises a refused connect as ConnectionRefusedError or TimeoutError: as OperationalError,
    the database's outage is told by its type."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        raise sqlalchemy.exc.OperationalError("connect", None, error) from error


class AsyncDatabase:
    name = "postgres_asyncpg"

    def __init__(self, settings: AsyncDatabaseSettings) -> None:
        url = URL.create(
            "postgresql+asyncpg",
            username=settings.postgres_user,
            password=settings.postgres_password or None,
            host=settings.postgres_host,
            port=settings.postgres_port,
            database=settings.postgres_db,
        )
        self.engine = create_async_engine(
            url,
            poolclass=FairAsyncPool,
            pool_size=settings.async_db_pool_size,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout,
            pool_pre_ping=True,
            connect_args={"timeout": settings.db_connect_timeout},
        )
        event.listen(self.engine.sync_engine, "do_connect", connect_or_operational_error)
        # expire_on_commit=False: reading an attribute after commit must not lazy-load on the loop.
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.pool: FairAsyncPool = self.engine.pool

    async def check(self) -> None:
        """Readiness: a round trip through the pool."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


@asynccontextmanager
async def open_async_database(
    app: FastAPI, settings: AsyncDatabaseSettings | None = None
) -> AsyncIterator[AsyncDatabase]:
    database = app.state.async_database = AsyncDatabase(settings or AsyncDatabaseSettings())
    try:
        yield database
    finally:
        await database.engine.dispose()


async def async_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: AsyncDatabase = request.app.state.async_database
    async with database.sessions() as session:
        yield session


AsyncDB = Annotated[AsyncSession, Depends(async_session)]

# SQLSTATE classes 08 (connection), 53 (too many clients) and 57 (shutting down): the database is
# unavailable; any other database error is a bug.
UNAVAILABLE_SQLSTATE_CLASSES = {"08", "53", "57"}
OUTAGES = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


async def database_error(request: Request, error: sqlalchemy.exc.SQLAlchemyError) -> JSONResponse:
    if isinstance(error, sqlalchemy.exc.DBAPIError) and not isinstance(error, OUTAGES):
        sqlstate = str(getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlstate", None) or "")
        if not error.connection_invalidated and sqlstate[:2] not in UNAVAILABLE_SQLSTATE_CLASSES:
            log.exception("%s %s -> 500", request.method, request.url.path, exc_info=error)
            return JSONResponse({"detail": "internal server error"}, status_code=500)
    log.warning("%s %s -> 503: %r", request.method, request.url.path, error)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def add_error_handlers(app: FastAPI) -> None:
    """An outage (refused, lost, pool exhausted for DB_POOL_TIMEOUT) answers 503 "database unavailable"."""
    for error in (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError):  # DBAPIError: OUTAGES too
        app.add_exception_handler(error, database_error)
