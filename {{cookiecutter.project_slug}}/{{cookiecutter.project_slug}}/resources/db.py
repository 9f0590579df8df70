"""The two engines: asyncpg for `async def` code, psycopg2 for `def` code. Never mix them up.

Both are created and disposed by the app's lifespan, so an engine never outlives (or crosses)
the event loop it was made on.

The async pool admits waiters in arrival order (pools.py). Chosen by measurement: ab, default bake
run natively, `GET /async/db-wait?seconds=0.5`, both pools 40, 2 or 3 rounds each on a shared 2-core box:

| async pool                             | 100 in flight, 600: slowest | 200 in flight, 1200: 503s, slowest |
|----------------------------------------|----------------------------:|-----------------------------------:|
| SQLAlchemy's stock pool                |                   3.7-5.1 s |                   29-67, 5.2-6.3 s |
| FIFO gate (asyncio.Semaphore) in front |                   1.9-2.2 s |                       0, 3.1-3.6 s |
| hand-off queue, fair by construction   |                   2.0-2.1 s |                       0, 3.1-3.4 s |
| (the `def` twin, psycopg2)             |                   2.2-2.3 s |                       0, 3.5-4.6 s |

Both fair ones serve alike; the gate is the standard library's fair semaphore and a dozen lines,
where the hand-off queue is SQLAlchemy's queue rewritten, with its races on timeout, to maintain.
"""

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from .pools import CountedQueuePool, FairAsyncPool


def make_async_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url("asyncpg"),
        poolclass=FairAsyncPool,  # waiters in arrival order (pools.py)
        pool_size=settings.async_db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args={"timeout": settings.db_connect_timeout},
    )
    event.listen(engine.sync_engine, "do_connect", connect_or_operational_error)
    return engine


def connect_or_operational_error(dialect, connection_record, cargs, cparams):
    """asyncpg raises a refused or unanswered connect as the builtin ConnectionRefusedError or
    TimeoutError, which SQLAlchemy passes on as they are; psycopg2's are OperationalErrors. Both
    drivers raise OperationalError here, so errors.py can tell a database outage by its type."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:  # TimeoutError and ConnectionError are OSErrors
        raise exc.OperationalError("connect", None, error) from error


def make_sync_engine(settings: Settings) -> Engine:
    # pool_size >= threadpool tokens (checked in Settings): every thread can hold a connection,
    # and pool_timeout turns an exhausted pool into a 503 instead of a thread parked forever.
    return create_engine(
        settings.database_url("psycopg2"),
        poolclass=CountedQueuePool,
        pool_size=settings.sync_db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args={"connect_timeout": settings.libpq_connect_timeout},
    )


def async_sessions(engine: AsyncEngine) -> async_sessionmaker:
    # expire_on_commit=False: reading an attribute after commit must not lazy-load on the loop.
    return async_sessionmaker(engine, expire_on_commit=False)


def sync_sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


PING = text("SELECT 1")


async def ping_async(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(PING)


def ping_sync(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(PING)
