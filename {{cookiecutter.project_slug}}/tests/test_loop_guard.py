"""Every route of the app keeps the event loop free under concurrent load; the anti-patterns do not.

The routes come from the running app's OpenAPI schema, so a route added later is guarded too.
A route the guard cannot exercise on its own is listed in EXEMPT with the reason.
"""

import httpx
import pytest

from .loop_guard import MAX_PROBE_LATENCY, guard, openapi_of, route_calls

{% if cookiecutter.use_celery == "yes" -%}
EXEMPT = {
    "GET /cpu/jobs/{job_id}": "needs the id of a submitted job: tests/test_jobs.py polls real ones",
}
{%- else -%}
EXEMPT: dict[str, str] = {}
{%- endif %}

ANTI_PATTERNS = ["/anti/sleep", "/anti/db-wait", "/anti/upstream", "/anti/mixed", "/anti/cpu"]


@pytest.fixture(scope="module")
def app_calls(api):
    # An item to read: ids start at 1, and the guard's example id is 1.
    httpx.post(f"{api.url}/async/items", json={"name": "guarded"}).raise_for_status()
    return route_calls(openapi_of(api.url), EXEMPT)


def test_guard_sees_every_router_family(app_calls):
    paths = {call.path for call in app_calls}
    for prefix in ("/async/", "/sync/", "/mixed/", "/cpu/", "/health/"):
        assert any(path.startswith(prefix) for path in paths), f"no route under {prefix}"
    assert not any(path.startswith("/anti/") for path in paths)


@pytest.mark.parametrize("server", ["api", "traced_api"])
def test_every_route_keeps_the_loop_free(request, server, app_calls):
    """With tracing off and on (traced_api exports every span: its work must stay off the loop too)."""
    api = request.getfixturevalue(server)
    failures = {}
    for call in app_calls:
        result = guard(api.url, call)
        if result.problems():
            failures[str(call)] = result.problems()
    assert not failures, failures


@pytest.mark.parametrize("path", ANTI_PATTERNS)
def test_guard_catches_the_anti_pattern(anti_api, path):
    """Negative control: the same guard must fail on a blocking call inside `async def`."""
    calls = [call for call in route_calls(openapi_of(anti_api.url), {}) if call.path == path]
    assert len(calls) == 1, f"{path} missing from the anti-pattern app"
    result = guard(anti_api.url, calls[0])
    assert result.worst_probe_latency > MAX_PROBE_LATENCY, (
        f"the guard did not see {path} block the loop: worst probe {result.worst_probe_latency:.3f} s"
    )
    assert result.problems()
