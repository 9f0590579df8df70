"""Health endpoints against the real stack, and a readiness check that names what is down."""

import time

import httpx

from .services import start_api
from tools.native import free_port


def test_live_and_ready(api):
    assert httpx.get(f"{api.url}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{api.url}/health/ready")
    assert ready.status_code == 200, ready.text
    assert "postgres_asyncpg" in ready.json()["checks"]
    assert "postgres_psycopg2" in ready.json()["checks"]


def test_ready_names_the_database_that_is_down_quickly(service_env, upstream, log_dir):
    # A real refused connection: a port with no server behind it.
    dead_postgres = {**service_env, "POSTGRES_PORT": str(free_port())}
    service = start_api(dead_postgres, log_dir, name="api_db_down")
    try:
        started = time.monotonic()
        ready = httpx.get(f"{service.url}/health/ready", timeout=30)
        elapsed = time.monotonic() - started
        items = httpx.get(f"{service.url}/async/items/1", timeout=30)
        sync_items = httpx.get(f"{service.url}/sync/items/1", timeout=30)
    finally:
        service.stop()
    assert ready.status_code == 503
    assert set(ready.json()["failing"]) >= {"postgres_asyncpg", "postgres_psycopg2"}
    assert elapsed < 10, f"/health/ready took {elapsed:.1f} s with the database down"
    assert items.status_code == 503 and items.json() == {"detail": "database unavailable"}
    assert sync_items.status_code == 503 and sync_items.json() == {"detail": "database unavailable"}
