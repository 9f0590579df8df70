"""Per-request dependencies: what the lifespan opened, handed to routes as typed aliases.

Routes reach app state only through these aliases, never through `request.app.state`. Every
dependency here is `async def` and does no I/O: a `def` dependency would run in the threadpool
and take a token like a `def` route does.

`def` routes get a session *factory* (SyncSessions) and open the session inside the route with
`with sessions() as db:`. A session handed out by a yield-dependency would keep its psycopg2
connection until after the response is validated, and a `def` route's response is validated in
the threadpool: past THREADPOOL_TOKENS concurrent requests, threads wait for connections held by
requests that wait for threads, until DB_POOL_TIMEOUT turns it into 503s. This is the one place
that deadlock is explained; the sync routes point here.

The process pool's alias (ProcessPool) lives in cpu_pool.py and the job queue's (Jobs) in jobs.py,
beside what they hand out: a route that uses neither copies without them (docs/copying.md).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import httpx
import requests
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings

ReadinessCheck = Callable[[], Awaitable[object]]


async def get_async_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.async_sessions() as session:
        yield session


async def get_sync_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sync_sessions


async def get_settings_from_app(request: Request) -> Settings:
    return request.app.state.settings


async def get_http_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.http_client


async def get_requests_session(request: Request) -> requests.Session:
    return request.app.state.requests_session


async def get_readiness_checks(request: Request) -> dict[str, ReadinessCheck]:
    return request.app.state.readiness_checks


AsyncDB = Annotated[AsyncSession, Depends(get_async_session)]
SyncSessions = Annotated[sessionmaker[Session], Depends(get_sync_sessions)]
AppSettings = Annotated[Settings, Depends(get_settings_from_app)]
HttpClient = Annotated[httpx.AsyncClient, Depends(get_http_client)]
RequestsSession = Annotated[requests.Session, Depends(get_requests_session)]
# name -> a check that raises when that dependency is down; each resource registers its own.
ReadinessChecks = Annotated[dict[str, ReadinessCheck], Depends(get_readiness_checks)]
