"""Traces (tracing.py), proven with a real exporter: the api under uvicorn exports to a receiver of the
tests' own (tests/otlp_receiver.py), which decodes what arrives. Each request joins a trace the test
chose (a W3C traceparent header), so the test knows which spans are its own.

The control: with OTEL_EXPORTER_OTLP_ENDPOINT unset, no provider, no instrumentation and no ids in the
log lines. A collector that is down or hangs costs no request anything and is reported once.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from .otlp_receiver import ReceivedSpan, Receiver, descends_from, hanging_collector, new_trace, traced_env
from .services import start_api
from .test_observability import records, stall_reports
from tools.native import PROJECT_ROOT, Service, free_port

EXPORT_FAILED = "trace export to"  # ReportingExporter's warning, followed by the endpoint
# (method, path, server span name, child spans: (name or its first word, kind) each at least once)
DB_READ = [("connect", "CLIENT"), ("SELECT", "CLIENT")]
UPSTREAM = [("GET", "CLIENT")]
FAMILIES = [
    ("GET", "/async/items/1", "GET /async/items/{item_id}", DB_READ),
    ("GET", "/sync/items/1", "GET /sync/items/{item_id}", DB_READ),
    ("GET", "/async/upstream?delay=0", "GET /async/upstream", UPSTREAM),
    ("GET", "/sync/upstream?delay=0", "GET /sync/upstream", UPSTREAM),
    (
        "GET",
        "/mixed/report?delay=0",
        "GET /mixed/report",
        [("SELECT", "CLIENT"), ("run_in_threadpool fetch_delay_blocking", "INTERNAL"), *UPSTREAM],
    ),
    ("GET", "/cpu/compute?n=1000", "GET /cpu/compute", [("process pool count_primes", "INTERNAL")]),
]


@pytest.fixture(scope="module")
def an_item(api):
    httpx.post(f"{api.url}/async/items", json={"name": "traced"}).raise_for_status()


def traced_request(service: Service, method: str, path: str, **kwargs) -> tuple[str, httpx.Response]:
    trace_id, headers = new_trace()
    response = httpx.request(method, service.url + path, headers=headers, timeout=30, **kwargs)
    return trace_id, response


def server_span(receiver: Receiver, trace_id: str) -> ReceivedSpan | None:
    return next((s for s in receiver.trace(trace_id) if s.kind == "SERVER"), None)


def matches(span: ReceivedSpan, name: str, kind: str) -> bool:
    return span.kind == kind and (span.name == name or span.name.split()[0] == name)


@pytest.mark.parametrize(("method", "path", "name", "children"), FAMILIES, ids=[f[1] for f in FAMILIES])
def test_each_family_is_one_trace(traced_api, otlp_receiver, an_item, method, path, name, children):
    trace_id, response = traced_request(traced_api, method, path)
    assert response.status_code == 200, response.text

    def complete() -> bool:
        spans = otlp_receiver.trace(trace_id)
        return server_span(otlp_receiver, trace_id) is not None and all(
            any(matches(s, *child) for s in spans) for child in children
        )

    assert otlp_receiver.wait_for(complete), otlp_receiver.trace(trace_id)
    spans = otlp_receiver.trace(trace_id)
    root = server_span(otlp_receiver, trace_id)
    assert root.name == name
    assert root.service == "{{ cookiecutter.project_slug }}-api"
    others = [s for s in spans if s is not root]
    assert others and all(descends_from(s, root, spans) for s in others), spans


def test_the_upstream_span_names_the_upstream(traced_api, otlp_receiver, settings):
    trace_id, response = traced_request(traced_api, "GET", "/async/upstream?delay=0")
    response.raise_for_status()
    assert otlp_receiver.wait_for(lambda: any(s.kind == "CLIENT" for s in otlp_receiver.trace(trace_id)))
    client = next(s for s in otlp_receiver.trace(trace_id) if s.kind == "CLIENT")
    urls = [value for key, value in client.attributes.items() if key in ("url.full", "http.url")]
    assert urls == [f"{settings.upstream_url}/delay/0.0"], urls


def test_the_threadpool_span_holds_the_blocking_call(traced_api, otlp_receiver):
    trace_id, response = traced_request(traced_api, "GET", "/mixed/report?delay=0")
    response.raise_for_status()
    assert otlp_receiver.wait_for(lambda: any(s.name == "GET" for s in otlp_receiver.trace(trace_id)))
    spans = otlp_receiver.trace(trace_id)
    pool = next(s for s in spans if s.name == "run_in_threadpool fetch_delay_blocking")
    upstream = next(s for s in spans if s.name == "GET" and s.kind == "CLIENT")
    assert upstream.parent_id == pool.span_id


def test_log_lines_carry_the_ids(traced_api, otlp_receiver, an_item):
    request_id = str(uuid.uuid4())
    trace_id, headers = new_trace()
    response = httpx.get(f"{traced_api.url}/async/items/1", headers={**headers, "X-Request-ID": request_id})
    response.raise_for_status()
    assert otlp_receiver.wait_for(lambda: server_span(otlp_receiver, trace_id) is not None)

    def lines() -> list[dict]:
        return [r for r in records(traced_api) if r.get("request_id") == request_id]

    deadline = time.monotonic() + 10
    while not lines() and time.monotonic() < deadline:
        time.sleep(0.1)
    span_ids = {s.span_id for s in otlp_receiver.trace(trace_id)}
    assert lines()
    for line in lines():
        assert line.get("trace_id") == trace_id, line
        assert line.get("span_id") in span_ids, line


def test_untraced_log_lines_carry_no_ids(api, an_item):
    """Negative control: the same request to the untraced api logs no trace id."""
    request_id = str(uuid.uuid4())
    _, headers = new_trace()
    httpx.get(f"{api.url}/async/items/1", headers={**headers, "X-Request-ID": request_id}).raise_for_status()
    deadline = time.monotonic() + 10
    while not (lines := [r for r in records(api) if r.get("request_id") == request_id]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.1)
    assert all("trace_id" not in line and "span_id" not in line for line in lines), lines


@pytest.fixture(scope="module")
def traced_anti_api(database, upstream, service_env, log_dir, otlp_receiver) -> Iterator[Service]:
    env = {**service_env, **traced_env(otlp_receiver.endpoint)}
    service = start_api(env, log_dir, name="traced_anti_api", app="antipatterns.app:create_app")
    try:
        yield service
    finally:
        service.stop()


def test_the_stall_report_names_the_trace(traced_anti_api):
    trace_id, response = traced_request(traced_anti_api, "GET", "/anti/sleep?seconds=0.5")
    response.raise_for_status()
    deadline = time.monotonic() + 10
    while not (reports := stall_reports(traced_anti_api)):
        assert time.monotonic() < deadline, "no stall report"
        time.sleep(0.1)
    assert [report.get("trace_id") for report in reports] == [trace_id]


INSTALLED = """
import json, sys
import requests
from fastapi.testclient import TestClient
from opentelemetry import trace
from {{ cookiecutter.project_slug }}.main import create_app

app = create_app()
with TestClient(app):
    layer, layers = app.build_middleware_stack(), []
    while layer is not None and len(layers) < 30:
        layers.append(type(layer).__name__)
        layer = getattr(layer, "app", None)
    found = {
        "provider": type(trace.get_tracer_provider()).__name__,
        "server_span_middleware": "OpenTelemetryMiddleware" in layers,
        "requests_patched": hasattr(requests.Session.send, "__wrapped__"),
    }
json.dump(found, sys.stdout)
"""


def installed(env: dict[str, str]) -> dict:
    """What an app made and started with this environment installs (in a process of its own: a
    tracer provider is set once per process)."""
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_unset_installs_nothing(service_env):
    """The control: no tracer provider (the API's proxy stays), no middleware, no patched client."""
    env = {key: value for key, value in {**os.environ, **service_env}.items() if not key.startswith("OTEL_")}
    assert installed(env) == {
        "provider": "ProxyTracerProvider",
        "server_span_middleware": False,
        "requests_patched": False,
    }
    # The same check sees tracing installed once the variable is set (nothing listens there).
    traced = installed({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert traced == {
        "provider": "TracerProvider",
        "server_span_middleware": True,
        "requests_patched": True,
    }


@contextmanager
def dead_collector(kind: str) -> Iterator[str]:
    if kind == "closed port":
        yield f"http://127.0.0.1:{free_port()}"
    else:
        with hanging_collector() as endpoint:
            yield endpoint


EXPORT_TIMEOUT = 3  # seconds an export may take: no request may wait that long


@pytest.mark.parametrize("kind", ["closed port", "hanging"])
def test_a_dead_collector_costs_requests_nothing_and_is_reported_once(
    kind, database, upstream, service_env, log_dir, an_item
):
    with dead_collector(kind) as endpoint:
        env = {
            **service_env,
            **traced_env(endpoint),
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT),
            # Full at once: spans are dropped from the start.
            "OTEL_BSP_MAX_QUEUE_SIZE": "16",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8",
        }
        service = start_api(env, log_dir, name=f"dead_collector_{kind.replace(' ', '_')}")
        try:
            # Long enough for three export attempts to fail, each batch of spans dropped.
            until = time.monotonic() + 3 * EXPORT_TIMEOUT + 1
            slowest = 0.0
            while time.monotonic() < until:
                started = time.perf_counter()
                httpx.get(f"{service.url}/mixed/report?delay=0", timeout=30).raise_for_status()
                slowest = max(slowest, time.perf_counter() - started)
            lines = [r for r in records(service) if r.get("logger", "").startswith("opentelemetry")]
            warnings = [r for r in records(service) if r.get("event", "").startswith(EXPORT_FAILED)]
        finally:
            service.stop()
    assert slowest < EXPORT_TIMEOUT, f"a request waited {slowest:.2f} s: as long as an export"
    assert len(warnings) == 1, warnings
    assert lines == [], lines  # the SDK's own line per failed export or dropped span is not logged
