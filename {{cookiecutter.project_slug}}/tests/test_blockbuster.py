"""The second net: blockbuster raises when a known blocking call runs on the event loop thread.

It runs the app in-process (ASGI transport), so it sees Python-level blocking calls: time.sleep,
socket I/O from requests. It cannot see a C driver such as psycopg2 blocking inside `async def`,
which is why tests/test_loop_guard.py measures a real server from outside as well.
"""

import asyncio

import httpx
import pytest
from blockbuster import BlockingError, blockbuster_ctx

from {{ cookiecutter.project_slug }}.main import create_app

from antipatterns.app import router as anti_router

ASYNC_ROUTES = [
    ("POST", "/async/items", {"json": {"name": "blockbuster"}}),
    ("GET", "/async/items", {"params": {"limit": 5}}),
    ("GET", "/async/db-wait", {"params": {"seconds": 0.1}}),
    ("GET", "/async/upstream", {"params": {"delay": 0.1}}),
    ("GET", "/mixed/report", {"params": {"delay": 0.1}}),
    ("GET", "/health/ready", {}),
]


async def call_in_process(settings, method: str, path: str, with_anti_routes: bool = False, **kwargs):
    app = create_app(settings)
    if with_anti_routes:
        app.include_router(anti_router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with blockbuster_ctx(scanned_modules=["{{ cookiecutter.project_slug }}", "antipatterns"]) as bb:
                # asyncpg looks for ~/.postgresql certificate files when it opens a connection: a
                # few stat calls once per pooled connection, accepted rather than hidden.
                for function in bb.functions.values():
                    function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
                return await client.request(method, path, **kwargs)


@pytest.mark.parametrize(("method", "path", "kwargs"), ASYNC_ROUTES, ids=[r[1] for r in ASYNC_ROUTES])
def test_async_routes_make_no_blocking_call_on_the_loop(database, upstream, method, path, kwargs):
    response = asyncio.run(call_in_process(database, method, path, **kwargs))
    assert response.status_code < 400, response.text


@pytest.mark.parametrize("path", ["/anti/sleep?seconds=0.1", "/anti/upstream?delay=0.1"])
def test_blockbuster_catches_python_level_blocking(database, upstream, path):
    """Negative control: time.sleep and requests inside `async def` raise."""
    with pytest.raises(BlockingError):
        asyncio.run(call_in_process(database, "GET", path, with_anti_routes=True))


def test_blockbuster_cannot_see_psycopg2(database, upstream):
    """The gap the real-server loop guard closes: psycopg2 blocks in C, below blockbuster's patches."""
    response = asyncio.run(
        call_in_process(database, "GET", "/anti/db-wait?seconds=0.1", with_anti_routes=True)
    )
    assert response.status_code == 200
