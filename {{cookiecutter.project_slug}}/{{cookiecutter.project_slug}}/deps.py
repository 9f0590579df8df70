"""Per-request dependencies: one database session per request, shared clients from app.state.

A `def` dependency runs in the threadpool and takes a token like a `def` route does, so only the
psycopg2 session (whose close may do I/O) is `def`; lookups on app.state are `async def`.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import httpx
import requests
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .config import Settings


async def get_async_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.async_sessions() as session:
        yield session


def get_sync_session(request: Request) -> Iterator[Session]:
    with request.app.state.sync_sessions() as session:
        yield session


async def get_settings_from_app(request: Request) -> Settings:
    return request.app.state.settings


async def get_http_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.http_client


async def get_requests_session(request: Request) -> requests.Session:
    return request.app.state.requests_session


AsyncDB = Annotated[AsyncSession, Depends(get_async_session)]
SyncDB = Annotated[Session, Depends(get_sync_session)]
AppSettings = Annotated[Settings, Depends(get_settings_from_app)]
HttpClient = Annotated[httpx.AsyncClient, Depends(get_http_client)]
RequestsSession = Annotated[requests.Session, Depends(get_requests_session)]
