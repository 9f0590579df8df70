"""The one shared requests.Session for `def` code that calls the upstream (a `def` route, or a call
sent through run_in_threadpool): opened and closed by the lifespan.

Rule: it blocks its thread for the whole call, so it is used only from the threadpool, never on the
event loop; its pool holds one connection per worker thread; an upstream that fails answers 502
"upstream failed", one that times out 504 "upstream timed out".
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
import requests
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)


class RequestsSessionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    upstream_url: str = "http://127.0.0.1:9000"
    upstream_timeout: float = Field(15.0, gt=0, description="seconds before an upstream call gives 504")
    upstream_connect_timeout: float = Field(2.0, gt=0, description="seconds to connect (of UPSTREAM_TIMEOUT)")
    threadpool_tokens: int = Field(40, ge=1, le=1000, description="`def` routes and dependencies at once")


class UpstreamSession(requests.Session):
    """A requests.Session with the upstream's base URL and timeouts, as httpx.AsyncClient has them:
    `session.get("/delay/1")`."""

    def __init__(self, settings: RequestsSessionSettings) -> None:
        super().__init__()
        self.base_url = settings.upstream_url.rstrip("/")
        self.timeout = (settings.upstream_connect_timeout, settings.upstream_timeout)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.threadpool_tokens)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str, url: str, *args, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, self.base_url + url, *args, **kwargs)


@asynccontextmanager
async def open_requests_session(
    app: FastAPI, settings: RequestsSessionSettings | None = None
) -> AsyncIterator[UpstreamSession]:
    session = app.state.requests_session = UpstreamSession(settings or RequestsSessionSettings())
    try:
        yield session
    finally:
        await anyio.to_thread.run_sync(session.close)  # closes sockets: off the loop


async def requests_session(request: Request) -> UpstreamSession:
    return request.app.state.requests_session


RequestsSession = Annotated[UpstreamSession, Depends(requests_session)]


def answer(status: int, detail: str):
    async def handler(request: Request, error: Exception) -> JSONResponse:
        log.warning("%s %s -> %s: %r", request.method, request.url.path, status, error)
        return JSONResponse({"detail": detail}, status_code=status)

    return handler


def add_error_handlers(app: FastAPI) -> None:
    # Starlette picks the handler of the first class in the exception's MRO: a timeout (also a
    # RequestException) gets 504 whatever the order here.
    app.add_exception_handler(requests.Timeout, answer(504, "upstream timed out"))
    app.add_exception_handler(requests.RequestException, answer(502, "upstream failed"))
