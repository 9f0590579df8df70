"""More requests than pool connections: they are served in about their arrival order, on both engines.

The load is closed-loop, like ab: each client sends its next request as soon as the last one answered, so
connections come back and new requests arrive in waves, the moment a newcomer could take a connection ahead of
the requests already waiting (resources/async_database.py). Each request is stamped when sent and when
answered. A request is overtaken by a later one that was answered more than MARGIN before it: first come,
first served, only requests of about the same wave do that; a waiter that newcomers keep passing is overtaken
by many. The control, tests/unfair_app.py (the stock async pool), must fail the same check.

The sync route has no unfair twin to fail: with more threadpool tokens than psycopg2 connections (which
Settings refuse), the threads waiting in the pool's queue were still served near arrival order. Its clients
are fewer: a `def` route queues for a token twice (the endpoint, then the validation of its response, which
FastAPI also runs in the threadpool), each time behind every client waiting, so the figure grows with the
clients. Measured, the most later requests that overtook one request: with 8 clients per connection, fair
async pool 0, 0, 0 and stock async pool 26, 27, 49 (embedded PostgreSQL); the sync route 9, 3, 0 there but 24
once in CI. With 4 clients per connection, the sync route 0 to 12 and the stock pool only 10 to 12, too close
to any threshold: barging needs newcomers asking the moment a connection comes back.
"""

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from .services import start_api
from tools.native import Service

POOL = 4  # connections of each engine, and threadpool tokens
# Clients per route: the async one enough newcomers per returned connection for the stock pool to
# show barging; the sync one fewer (see above). Each sends its share of REQUESTS.
CLIENTS = {"/async/db-wait": 8 * POOL, "/sync/db-wait": 4 * POOL}
REQUESTS = 128
WAIT = 0.2  # seconds each request holds its connection (pg_sleep)
# Answered a whole wait earlier to count as overtaking: more than the machine's jitter, and more than
# the extra turn a `def` route may queue for a token to validate its response (resources/sync_database.py).
MARGIN = WAIT
MOST_OVERTAKEN = 4 * POOL  # first come, first served: the requests of a wave or two (and see above)
CONTROL_ROUNDS = 3
ROUTES = list(CLIENTS)
# Small pools, and a pool timeout long enough that a starved waiter shows as overtaken, not as a 503.
SMALL_POOLS = {
    "ASYNC_DB_POOL_SIZE": str(POOL),
    "SYNC_DB_POOL_SIZE": str(POOL),
    "THREADPOOL_TOKENS": str(POOL),
    "DB_POOL_TIMEOUT": "60",
}

Stamp = tuple[float, float, int]  # sent, answered (perf_counter seconds), status


@pytest.fixture(scope="module")
def fair_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    service = start_api({**service_env, **SMALL_POOLS}, log_dir, name="api_fairness")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def unfair_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    env = {**service_env, **SMALL_POOLS}
    service = start_api(env, log_dir, name="api_unfair", app="tests.unfair_app:create_app")
    try:
        yield service
    finally:
        service.stop()


async def closed_loop(url: str, clients: int) -> list[Stamp]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one_client() -> list[Stamp]:
            stamps = []
            for _ in range(REQUESTS // clients):
                sent = time.perf_counter()
                response = await client.get(url, params={"seconds": WAIT})
                stamps.append((sent, time.perf_counter(), response.status_code))
            return stamps

        per_client = await asyncio.gather(*(one_client() for _ in range(clients)))
    return [stamp for stamps in per_client for stamp in stamps]


def most_overtaken(stamps: list[Stamp]) -> int:
    """The most later arrivals that any one request saw answered MARGIN or more before itself."""
    return max(
        sum(1 for later, answered_later, _ in stamps if later > sent and answered_later < answered - MARGIN)
        for sent, answered, _ in stamps
    )


def overtaken_on(service: Service, route: str) -> int:
    stamps = asyncio.run(closed_loop(service.url + route, CLIENTS[route]))
    statuses = {status for _, _, status in stamps}
    assert statuses == {200}, f"{route}: statuses {statuses}"
    return most_overtaken(stamps)


@pytest.mark.parametrize("route", ROUTES)
def test_waiters_are_served_in_arrival_order(fair_api, route):
    overtaken = overtaken_on(fair_api, route)
    assert overtaken <= MOST_OVERTAKEN, f"{route}: a request was overtaken by {overtaken} later ones"


def test_control_the_stock_async_pool_fails_the_same_check(unfair_api):
    """Barging is a race (a newcomer must ask between a checkin and the oldest waiter's wake-up), so
    one round may happen to be served in order: the stock pool fails the check in CONTROL_ROUNDS at
    most. The fair pool is held to every single round above."""
    worst = []
    for _ in range(CONTROL_ROUNDS):
        worst.append(overtaken_on(unfair_api, "/async/db-wait"))
        if worst[-1] > MOST_OVERTAKEN:
            return
    pytest.fail(f"the stock pool's worst request in each round was overtaken only {worst} times")
