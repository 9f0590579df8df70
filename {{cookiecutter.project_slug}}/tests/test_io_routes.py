"""The three I/O router families do the same jobs, answer the same way, and fail the same way."""

import subprocess
import time

import httpx
import pytest

from .services import start_api
from tools.native import free_port, native_env, service_argv

FAMILIES = ["/async", "/sync"]


@pytest.mark.parametrize("family", FAMILIES)
def test_items_round_trip(api, family):
    created = httpx.post(f"{api.url}{family}/items", json={"name": "bolt", "description": "M6"})
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["name"] == "bolt" and item["description"] == "M6" and item["created_at"]

    assert httpx.get(f"{api.url}{family}/items/{item['id']}").json() == item
    # Both families read the same table: what one wrote, the other reads.
    other = "/sync" if family == "/async" else "/async"
    assert httpx.get(f"{api.url}{other}/items/{item['id']}").json() == item

    page = httpx.get(f"{api.url}{family}/items", params={"limit": 100}).json()
    assert item in page
    assert [row["id"] for row in page] == sorted(row["id"] for row in page)
    offset_page = httpx.get(f"{api.url}{family}/items", params={"limit": 1, "offset": 1}).json()
    assert offset_page == page[1:2]


@pytest.mark.parametrize("family", FAMILIES)
def test_waits_and_upstream(api, family):
    waited = httpx.get(f"{api.url}{family}/db-wait", params={"seconds": 0.2})
    assert waited.status_code == 200 and waited.json()["waited"] == 0.2
    reply = httpx.get(f"{api.url}{family}/upstream", params={"delay": 0.2})
    assert reply.status_code == 200, reply.text
    assert reply.json()["upstream_body"] == {"delayed": 0.2}


def test_mixed_report_combines_both_sources(api):
    count = len(httpx.get(f"{api.url}/async/items", params={"limit": 100}).json())
    report = httpx.get(f"{api.url}/mixed/report", params={"delay": 0.2})
    assert report.status_code == 200, report.text
    assert report.json()["item_count"] == count
    assert report.json()["upstream"]["upstream_body"] == {"delayed": 0.2}


BAD_REQUESTS = [
    ("GET", "/items/0", {}),
    ("GET", "/items/not-a-number", {}),
    ("GET", "/items/99999999999", {}),
    ("GET", "/items", {"params": {"limit": 0}}),
    ("GET", "/items", {"params": {"limit": 101}}),
    ("GET", "/items", {"params": {"offset": -1}}),
    ("GET", "/db-wait", {"params": {"seconds": 10.5}}),
    ("GET", "/db-wait", {"params": {"seconds": -1}}),
    ("GET", "/db-wait", {}),
    ("GET", "/upstream", {"params": {"delay": 11}}),
    ("POST", "/items", {"json": {"name": ""}}),
    ("POST", "/items", {"json": {"name": "x" * 201}}),
    ("POST", "/items", {"json": {}}),
    ("POST", "/items", {"content": b"not json", "headers": {"content-type": "application/json"}}),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("method", "path", "kwargs"), BAD_REQUESTS)
def test_bad_input_is_a_422_with_a_json_body(api, family, method, path, kwargs):
    response = httpx.request(method, f"{api.url}{family}{path}", **kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_item_is_404(api, family):
    response = httpx.get(f"{api.url}{family}/items/2147483647")
    assert response.status_code == 404
    assert response.json() == {"detail": "item not found"}


UPSTREAM_ROUTES = ["/async/upstream", "/sync/upstream", "/mixed/report"]


@pytest.fixture(scope="module")
def impatient_api(database, upstream, service_env, log_dir):
    """Gives up on the upstream after half a second."""
    service = start_api({**service_env, "UPSTREAM_TIMEOUT": "0.5"}, log_dir, name="api_impatient")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def api_without_upstream(database, service_env, log_dir):
    """Its upstream address refuses connections: nothing listens there."""
    service = start_api(
        {**service_env, "UPSTREAM_URL": f"http://127.0.0.1:{free_port()}"}, log_dir, name="api_no_up"
    )
    yield service
    service.stop()


@pytest.mark.parametrize("route", UPSTREAM_ROUTES)
def test_upstream_timeout_is_504_without_hanging(impatient_api, route):
    started = time.monotonic()
    response = httpx.get(f"{impatient_api.url}{route}", params={"delay": 5}, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json() == {"detail": "upstream timed out"}
    assert elapsed < 4, f"answered after {elapsed:.1f} s, but the upstream timeout is 0.5 s"


@pytest.mark.parametrize("route", UPSTREAM_ROUTES)
def test_upstream_refused_is_502(api_without_upstream, route):
    response = httpx.get(f"{api_without_upstream.url}{route}", params={"delay": 0}, timeout=30)
    assert response.status_code == 502, response.text
    assert response.json() == {"detail": "upstream failed"}


def test_mixed_report_is_503_when_the_database_is_down(service_env, upstream, log_dir):
    service = start_api({**service_env, "POSTGRES_PORT": str(free_port())}, log_dir, name="api_mixed_db_down")
    try:
        response = httpx.get(f"{service.url}/mixed/report", params={"delay": 0}, timeout=30)
    finally:
        service.stop()
    assert response.status_code == 503
    assert response.json() == {"detail": "database unavailable"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("POSTGRES_PORT", "not-a-port", "POSTGRES_PORT"),
        ("THREADPOOL_TOKENS", "0", "THREADPOOL_TOKENS"),
        ("SYNC_DB_POOL_SIZE", "5", "SYNC_DB_POOL_SIZE (5) must be >= THREADPOOL_TOKENS"),
    ],
)
def test_bad_settings_stop_the_api_with_a_readable_error(service_env, variable, value, message):
    result = subprocess.run(
        service_argv("api"),
        env=native_env({**service_env, variable: value, "UVICORN_PORT": str(free_port())}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
