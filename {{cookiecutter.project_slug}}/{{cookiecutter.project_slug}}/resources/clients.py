"""HTTP clients for the upstream service, one of each kind per process, made in the lifespan.

httpx.AsyncClient serves every `async def` route; requests.Session serves `def` code running in
the threadpool. Creating a client per request would pay a new connection (and TLS) every time.
"""

import aiohttp
import httpx
import requests
from httpx_aiohttp import AiohttpTransport
from requests.adapters import HTTPAdapter

from ..config import Settings
from ..schemas import UpstreamReply


class UpstreamTransport(AiohttpTransport):
    """httpx's API on aiohttp's connection pool, which costs the event loop far less per request.

    httpx's default transport (httpcore) spent 2.8 ms of loop CPU per request at 40 in flight and
    about 22 ms at 100, so `async def` + httpx served *fewer* waits than `def` + requests; on this
    transport the same client costs about 0.7 ms (`make bench` measures both). One fix on top:
    httpx-aiohttp 0.2 reports a refused connection as httpx.ConnectTimeout; it is a ConnectError,
    so the route answers 502 "upstream failed" at once instead of 504 "upstream timed out".
    It also counts the requests in flight (/metrics): neither library does, publicly.

    Traces: HTTPXClientInstrumentor().instrument() patches only httpx's own transport classes, so it
    would never see this one. tracing.py instruments the client instance instead
    (instrument_client wraps its transport's handle_async_request, whatever the transport's class).
    """

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self.in_flight = 0  # sent and not answered yet, waiting for a pool connection included

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


def make_upstream_transport(settings: Settings) -> UpstreamTransport:
    limits = httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
    )
    return UpstreamTransport(limits=limits)


def make_http_client(settings: Settings, transport: UpstreamTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        base_url=settings.upstream_url,
        timeout=httpx.Timeout(settings.upstream_timeout, connect=settings.upstream_connect_timeout),
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
        timeout=(settings.upstream_connect_timeout, settings.upstream_timeout),
    )
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())
