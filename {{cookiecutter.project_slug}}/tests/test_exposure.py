"""Defaults that fail closed, on the real app: no browser origin may call it unless CORS_ORIGINS
names it, and DOCS_ENABLED=false removes the documentation routes. The default `api` is the control
for one, the configured one for the other."""

from collections.abc import Iterator

import httpx
import pytest

from .services import start_api
from tools.native import Service

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
DOCS_ROUTES = ["/docs", "/redoc", "/openapi.json"]


@pytest.fixture(scope="module")
def configured_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    env = {**service_env, "CORS_ORIGINS": ALLOWED, "DOCS_ENABLED": "false"}
    service = start_api(env, log_dir, name="api_cors_no_docs")
    yield service
    service.stop()


def preflight(api: Service, origin: str) -> httpx.Response:
    """What a browser asks before a cross-origin POST with a JSON body."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    return httpx.options(f"{api.url}/async/items", headers=headers)


def allowed_origin(response: httpx.Response) -> str | None:
    return response.headers.get("access-control-allow-origin")


def test_no_origin_may_call_by_default(api):
    assert allowed_origin(preflight(api, ALLOWED)) is None
    simple = httpx.get(f"{api.url}/health/live", headers={"Origin": ALLOWED})
    assert simple.status_code == 200 and allowed_origin(simple) is None


def test_a_configured_origin_may_call_and_no_other(configured_api):
    assert allowed_origin(preflight(configured_api, ALLOWED)) == ALLOWED
    assert allowed_origin(preflight(configured_api, OTHER)) is None


@pytest.mark.parametrize("route", DOCS_ROUTES)
def test_docs_are_served_by_default(api, route):
    assert httpx.get(api.url + route).status_code == 200


@pytest.mark.parametrize("route", DOCS_ROUTES)
def test_docs_can_be_turned_off(configured_api, route):
    assert httpx.get(configured_api.url + route).status_code == 404
