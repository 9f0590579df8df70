"""The one shared httpx.AsyncClient for `async def` routes that call the upstream: opened and closed by
the lifespan, never one per request (each would pay a new connection, and TLS, every time).

Rule: the client runs on aiohttp's connection pool (httpx-aiohttp), which costs the event loop far
less per request than httpx's default transport (docs/benchmark.md); an upstream that fails answers
502 "upstream failed", one that times out 504 "upstream timed out".
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import aiohttp
import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from httpx_aiohttp import AiohttpTransport
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class HttpClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    upstream_url: str = "http://127.0.0.1:9000"
    upstream_timeout: float = Field(15.0, gt=0, description="seconds before an upstream call gives 504")
    upstream_connect_timeout: float = Field(2.0, gt=0, description="seconds to connect (of UPSTREAM_TIMEOUT)")
    http_max_connections: int = Field(256, ge=1, description="upstream calls in flight at once")


class UpstreamTransport(AiohttpTransport):
    """httpx's API on aiohttp's pool. It counts the calls in flight (/metrics), and reports a refused
    connection as httpx.ConnectError (502 at once): httpx-aiohttp 0.2 reports it as ConnectTimeout."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self.in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as error:
            cause = error.__cause__
            refused = isinstance(cause, aiohttp.ClientConnectorError)
            if refused and not isinstance(cause.os_error, TimeoutError):
                raise httpx.ConnectError(str(error), request=request) from cause
            raise
        finally:
            self.in_flight -= 1


class UpstreamClient(httpx.AsyncClient):
    """httpx.AsyncClient on UpstreamTransport, with the upstream's base URL and timeouts."""

    def __init__(self, settings: HttpClientSettings) -> None:
        limit = settings.http_max_connections
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        self.upstream_transport = UpstreamTransport(limits)
        super().__init__(
            transport=self.upstream_transport,
            base_url=settings.upstream_url,
            timeout=httpx.Timeout(settings.upstream_timeout, connect=settings.upstream_connect_timeout),
        )


@asynccontextmanager
async def open_http_client(
    app: FastAPI, settings: HttpClientSettings | None = None
) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(settings or HttpClientSettings()) as client:
        app.state.http_client = client
        yield client


async def http_client(request: Request) -> UpstreamClient:
    return request.app.state.http_client


HttpClient = Annotated[UpstreamClient, Depends(http_client)]


def answer(status: int, detail: str):
    async def handler(request: Request, error: Exception) -> JSONResponse:
        log.warning("%s %s -> %s: %r", request.method, request.url.path, status, error)
        return JSONResponse({"detail": detail}, status_code=status)

    return handler


def add_error_handlers(app: FastAPI) -> None:
    # Starlette picks the handler of the first class in the exception's MRO: a timeout (also an
    # HTTPError) gets 504 whatever the order here.
    app.add_exception_handler(httpx.TimeoutException, answer(504, "upstream timed out"))
    app.add_exception_handler(httpx.HTTPError, answer(502, "upstream failed"))
