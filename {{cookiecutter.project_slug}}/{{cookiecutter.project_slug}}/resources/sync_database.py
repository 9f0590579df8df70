"""The psycopg2 engine for `def` routes, which run in the threadpool: one per process, opened and
closed by the lifespan.

Rule: SYNC_DB_POOL_SIZE >= THREADPOOL_TOKENS, so a thread always finds a connection; routes open the
session inside the route (`with sessions() as db:`), so the connection is back before the response
is validated; a database that cannot be reached answers 503, never 500.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL, create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

log = logging.getLogger(__name__)


class SyncDatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(5432, gt=0, lt=65536)
    postgres_user: str = "{{ cookiecutter.project_slug }}_app"
    postgres_password: str = ""
    postgres_db: str = "{{ cookiecutter.project_slug }}"
    db_connect_timeout: float = Field(2.0, gt=0, description="seconds to open a connection")
    db_pool_timeout: float = Field(5.0, gt=0, description="seconds to wait for a pooled connection")
    sync_db_pool_size: int = Field(40, ge=1)
    threadpool_tokens: int = Field(40, ge=1, le=1000, description="`def` routes and dependencies at once")

    @model_validator(mode="after")
    def sync_pool_covers_threadpool(self):
        if self.sync_db_pool_size < self.threadpool_tokens:
            raise ValueError(
                f"SYNC_DB_POOL_SIZE ({self.sync_db_pool_size}) must be >= THREADPOOL_TOKENS "
                f"({self.threadpool_tokens}), or `def` routes wait on each other for connections"
            )
        return self


class CountedQueuePool(QueuePool):
    """SQLAlchemy's sync pool, counted for /metrics: `waiting` now, and each checkout's wait in `waits`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0
        self.waits: deque[float] = deque(maxlen=10_000)  # drained by the metrics sampler
        self._lock = threading.Lock()  # checkouts come from many threads

    def _do_get(self) -> ConnectionPoolEntry:
        started = time.perf_counter()
        with self._lock:
            self.waiting += 1
        try:
            return super()._do_get()
        finally:
            with self._lock:
                self.waiting -= 1
            self.waits.append(time.perf_counter() - started)


class SyncDatabase:
    name = "postgres_psycopg2"

    def __init__(self, settings: SyncDatabaseSettings) -> None:
        url = URL.create(
            "postgresql+psycopg2",
            username=settings.postgres_user,
            password=settings.postgres_password or None,
            host=settings.postgres_host,
            port=settings.postgres_port,
            database=settings.postgres_db,
        )
        self.engine = create_engine(
            url,
            poolclass=CountedQueuePool,
            pool_size=settings.sync_db_pool_size,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout,  # an exhausted pool is a 503, not a parked thread
            pool_pre_ping=True,
            # libpq takes whole seconds, and 0 means forever.
            connect_args={"connect_timeout": max(1, round(settings.db_connect_timeout))},
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.pool: CountedQueuePool = self.engine.pool

    def _ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def check(self) -> None:
        """Readiness: a round trip through the pool, on a worker thread."""
        await anyio.to_thread.run_sync(self._ping)


@asynccontextmanager
async def open_sync_database(
    app: FastAPI, settings: SyncDatabaseSettings | None = None
) -> AsyncIterator[SyncDatabase]:
    database = app.state.sync_database = SyncDatabase(settings or SyncDatabaseSettings())
    try:
        yield database
    finally:
        await anyio.to_thread.run_sync(database.engine.dispose)  # closes sockets: off the loop


async def sync_sessions(request: Request) -> sessionmaker[Session]:
    # `async def` and no I/O: a `def` dependency would take a threadpool token of its own.
    database: SyncDatabase = request.app.state.sync_database
    return database.sessions


SyncSessions = Annotated[sessionmaker[Session], Depends(sync_sessions)]

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
