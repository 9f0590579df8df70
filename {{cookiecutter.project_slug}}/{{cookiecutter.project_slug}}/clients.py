"""HTTP clients for the upstream service, one of each kind per process, made in the lifespan.

httpx.AsyncClient serves every `async def` route; requests.Session serves `def` code running in
the threadpool. Creating a client per request would pay a new connection (and TLS) every time.
"""

import asyncio
from typing import Any

import httpx
import requests
from requests.adapters import HTTPAdapter

from .config import Settings
from .schemas import UpstreamReply


class BoundedAsyncClient(httpx.AsyncClient):
    """An httpx.AsyncClient that lets at most `max_in_flight` requests into its connection pool.

    httpcore's pool does work for every waiting request each time a connection frees up; with 100
    requests queued on the pool that cost 17-24 ms of CPU per request on the event loop (measured
    by the benchmark). Requests beyond the limit wait on a semaphore instead, which costs nothing.
    """

    def __init__(self, *, max_in_flight: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        async with self._in_flight:
            return await super().send(request, **kwargs)


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    return BoundedAsyncClient(
        max_in_flight=settings.http_max_connections,
        base_url=settings.upstream_url,
        timeout=httpx.Timeout(settings.upstream_timeout, connect=settings.db_connect_timeout),
        limits=httpx.Limits(
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_connections,
        ),
    )


def make_requests_session(settings: Settings) -> requests.Session:
    # One pooled connection per worker thread: a smaller pool makes `def` routes queue on it.
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.threadpool_tokens)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


async def fetch_delay(http: httpx.AsyncClient, delay: float) -> UpstreamReply:
    response = await http.get(f"/delay/{delay}")
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())


def fetch_delay_blocking(http: requests.Session, settings: Settings, delay: float) -> UpstreamReply:
    """Blocks its thread for the whole call: only from `def` code or through run_in_threadpool."""
    response = http.get(
        f"{settings.upstream_url}/delay/{delay}",
        timeout=(settings.db_connect_timeout, settings.upstream_timeout),
    )
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())
