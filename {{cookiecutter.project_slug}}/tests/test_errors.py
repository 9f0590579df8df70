"""An answer names what failed: a wait on no dependency that runs out is 504 "timed out", not a
database outage (since Python 3.11 asyncio's TimeoutError is the builtin one, which asyncpg also
raises for a connect that gets no answer). The control, in the same process: a database that
accepts connections and never answers is still "database unavailable", for both drivers."""

import socket
from collections.abc import Iterator

import httpx
import pytest

from .services import start_api


@pytest.fixture
def silent_postgres() -> Iterator[int]:
    """A port that accepts connections and never speaks, as a paused (SIGSTOPped) PostgreSQL: the
    kernel completes the handshake and nobody answers, so both drivers time out connecting."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield listener.getsockname()[1]


def test_a_timeout_that_is_not_the_database_is_not_a_database_outage(
    service_env, upstream, log_dir, silent_postgres
):
    env = {**service_env, "POSTGRES_PORT": str(silent_postgres), "DB_CONNECT_TIMEOUT": "1"}
    service = start_api(env, log_dir, name="api_silent_db", app="tests.timeout_app:create_app")
    try:
        waited = httpx.get(f"{service.url}/test/wait-on-sleep", timeout=30)
        outages = [httpx.get(f"{service.url}{family}/items/1", timeout=30) for family in ("/async", "/sync")]
    finally:
        service.stop()
    assert waited.status_code == 504 and waited.json() == {"detail": "timed out"}, waited.text
    for response in outages:
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "database unavailable"}
