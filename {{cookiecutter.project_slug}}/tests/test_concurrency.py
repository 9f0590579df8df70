"""`async def` + httpx holds more waits at once than the threadpool has threads; `def` + requests cannot.

CALLS one-second upstream calls at once. On the shared httpx.AsyncClient each holds a socket, so
they all overlap: about one second in all. Through `def` + requests each holds a thread, so
THREADPOOL_TOKENS of them run at a time, in waves: the control. Wide margins: these tests are
about overlap, never about speed (docs/benchmark.md measures that).
"""

import asyncio
import math
import time

import httpx
from httpx_aiohttp import AiohttpTransport

CALLS = 100
WAIT = 1.0


async def call_at_once(base_url: str, path: str) -> tuple[float, list[int]]:
    # The test's own client must not be the limit: CALLS connections, on the cheap transport too.
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=CALLS))
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(*(client.get(path, params={"delay": WAIT}) for _ in range(CALLS)))
        return time.perf_counter() - started, [response.status_code for response in responses]


def test_async_upstream_holds_more_waits_than_the_threadpool(api, settings):
    assert settings.threadpool_tokens < CALLS <= settings.http_max_connections
    elapsed, statuses = asyncio.run(call_at_once(api.url, "/async/upstream"))
    assert statuses == [200] * CALLS
    assert elapsed < 2 * WAIT, f"{CALLS} waits of {WAIT} s took {elapsed:.1f} s: they did not all overlap"


def test_the_def_twin_waits_in_threadpool_sized_waves(api, settings):
    """Control: the same calls through `def` + requests are bound by THREADPOOL_TOKENS."""
    waves = math.ceil(CALLS / settings.threadpool_tokens)
    assert waves >= 2, "the threadpool is as large as the test: it would prove nothing"
    elapsed, statuses = asyncio.run(call_at_once(api.url, "/sync/upstream"))
    assert statuses == [200] * CALLS
    assert elapsed >= 0.9 * waves * WAIT, f"{CALLS} waits took only {elapsed:.1f} s: more than the tokens ran"
