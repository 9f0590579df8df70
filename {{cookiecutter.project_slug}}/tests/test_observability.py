"""What production sees, proven against real servers: the stall report names the line that blocked,
/metrics moves with the load that saturates each limit (and adds up over worker processes), and every
log record of a request carries its X-Request-ID. Each check has its negative control.

The servers log JSON lines (LOG_FORMAT=json, the default); the tests read their log files.
"""

import asyncio
import inspect
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.project_slug }}.config import Settings
from {{ cookiecutter.project_slug }}.observability.access import AccessMiddleware
from {{ cookiecutter.project_slug }}.observability.watchdog import REPORTS_PER_MINUTE
from {{ cookiecutter.project_slug }}.resources import async_database, sync_database

from .loop_guard import guard, openapi_of, route_calls
from .renamed_app import renamed
from .services import start_api
from .test_loop_guard import EXEMPT
from antipatterns import app as antipatterns
from tools.native import METRICS_DIR_VARIABLE, PROJECT_ROOT, Service, free_port

STALL = "event loop stalled"
SMALL_LIMIT = 4  # threads and pool connections of the server the saturation tests fill
# PromQL's own words in observability/rules.yml, and the label names: what is not a metric.
PROMQL_WORDS = {"sum", "max", "by", "and", "rate", "increase", "histogram_quantile"}
LABELS = {"le", "engine", "route", "status", "queue"}
CORRECT_ROUTES = ["/async/upstream", "/async/db-wait", "/sync/db-wait", "/mixed/report", "/metrics"]


def records(service: Service) -> list[dict]:
    """The JSON records of a server's log (uvicorn's parent process, if any, writes plain lines)."""
    found = []
    for line in service.output().splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def stall_reports(service: Service) -> list[dict]:
    return [record for record in records(service) if record.get("event", "").startswith(STALL)]


def eventually(find: Callable[[], list], timeout: float = 10.0) -> list:
    """What `find` returns once it is not empty (log lines are written a moment after the answer)."""
    deadline = time.monotonic() + timeout
    while not (found := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def scrape(service: Service) -> list:
    response = httpx.get(f"{service.url}/metrics", timeout=10)
    response.raise_for_status()
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples called `name` that carry these labels."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def slow_beats(samples: list, above: str = "0.25") -> float:
    """Watchdog beats that found the loop later than `above` seconds."""
    count = value(samples, "event_loop_lag_seconds_count")
    return count - value(samples, "event_loop_lag_seconds_bucket", le=above)


def line_of(function: Callable, code: str) -> int:
    lines, first = inspect.getsourcelines(function)
    return first + next(number for number, line in enumerate(lines) if code in line)


@pytest.fixture(scope="module")
def stalling_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    """The anti-pattern app on a server of its own: the session's anti_api has stalled so often (the
    loop guard's negative controls) that its reports for the minute are used up."""
    service = start_api(service_env, log_dir, name="anti_api_stalls", app="antipatterns.app:create_app")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def small_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    """The app with SMALL_LIMIT threads and pool connections: saturated by a handful of requests."""
    limits = {
        name: str(SMALL_LIMIT) for name in ("THREADPOOL_TOKENS", "SYNC_DB_POOL_SIZE", "ASYNC_DB_POOL_SIZE")
    }
    service = start_api({**service_env, **limits}, log_dir, name="api_small")
    try:
        yield service
    finally:
        service.stop()


def blocking_request_is_reported(service: Service, settings: Settings) -> None:
    """GET /anti/sleep with a client's id, then the one report of its stall: its line, route and id."""
    request_id = f"stall-probe:{uuid.uuid4().hex[:12]}"  # a client's own id, not a UUID: it is kept
    response = httpx.get(
        f"{service.url}/anti/sleep",
        params={"seconds": 0.5},
        headers={"X-Request-ID": request_id},
        timeout=30,
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == request_id

    def ours() -> list[dict]:
        return [report for report in stall_reports(service) if report.get("request_id") == request_id]

    assert eventually(ours), f"no report names the request {request_id}: {stall_reports(service)}"
    time.sleep(0.5)  # a second report for the same stall would come now
    [report] = ours()
    assert report["level"] == "warning"
    assert report["threshold_ms"] == settings.loop_stall_threshold * 1000
    assert 400 <= report["late_ms"] < 5000, report["late_ms"]
    blocking_call = (
        f"antipatterns/app.py:{line_of(antipatterns.sleep_in_async, 'time.sleep(')} in sleep_in_async"
    )
    assert report["blocked_at"].endswith(blocking_call), report["blocked_at"]
    assert report["stack"][0] == report["blocked_at"], "the innermost frame comes first"
    assert (report["method"], report["route"]) == ("GET", "/anti/sleep")
    # The message alone says it all, for logs that drop the extra fields.
    message = report["event"]
    assert f"{round(report['late_ms'])} ms late" in message, message
    assert f"blocked at {report['blocked_at']};" in message, message
    assert f"serving GET /anti/sleep id={request_id}" in message, message


def test_a_blocking_route_is_reported_once_with_its_line(stalling_api, settings: Settings):
    blocking_request_is_reported(stalling_api, settings)


def test_the_report_does_not_read_the_middlewares_locals(database, upstream, service_env, log_dir, settings):
    """The same report from a server whose AccessMiddleware.__call__ is its own source with every
    local renamed (tests/renamed_app.py): the request is found through what the middleware publishes."""
    call = AccessMiddleware.__call__
    assert {"scope", "request_id"} <= set(call.__code__.co_varnames)
    assert not {"scope", "request_id"} & set(renamed(call).__code__.co_varnames)
    service = start_api(service_env, log_dir, name="anti_api_renamed", app="tests.renamed_app:create_app")
    try:
        blocking_request_is_reported(service, settings)
    finally:
        service.stop()


def test_a_storm_of_stalls_is_counted_in_full_and_logged_within_bounds(stalling_api):
    """After the report above, on the same server: the reports of this minute run out, the count does not."""
    before = value(scrape(stalling_api), "event_loop_stalls_total")
    for _ in range(REPORTS_PER_MINUTE + 2):
        httpx.get(f"{stalling_api.url}/anti/sleep", params={"seconds": 0.3}, timeout=30).raise_for_status()
        time.sleep(0.15)  # a free moment between two stalls: each is a stall of its own
    time.sleep(0.3)
    assert value(scrape(stalling_api), "event_loop_stalls_total") >= before + REPORTS_PER_MINUTE + 2
    assert len(stall_reports(stalling_api)) == REPORTS_PER_MINUTE


def test_correct_routes_under_the_loop_guard_report_no_stall(api):
    """Negative control: the guard's load on the correct routes leaves no report and no stall."""
    calls = [call for call in route_calls(openapi_of(api.url), EXEMPT) if call.path in CORRECT_ROUTES]
    assert {call.path for call in calls} == set(CORRECT_ROUTES)
    reports, before = len(stall_reports(api)), scrape(api)
    for call in calls:
        assert not guard(api.url, call).problems(), call
    after = scrape(api)
    assert len(stall_reports(api)) == reports, stall_reports(api)[reports:]
    assert value(after, "event_loop_stalls_total") == value(before, "event_loop_stalls_total")
    # ...while the watchdog was watching: its beats kept coming.
    assert value(after, "event_loop_lag_seconds_count") >= value(before, "event_loop_lag_seconds_count") + 10


def test_lag_histogram_and_stall_counter_rise_under_a_blocking_route(stalling_api):
    before = scrape(stalling_api)
    for _ in range(2):
        httpx.get(f"{stalling_api.url}/anti/sleep", params={"seconds": 0.5}, timeout=30).raise_for_status()
    time.sleep(0.3)
    after = scrape(stalling_api)
    assert value(after, "event_loop_stalls_total") >= value(before, "event_loop_stalls_total") + 2
    assert slow_beats(after) >= slow_beats(before) + 2


async def load_while_scraping(service: Service, path: str, requests: int) -> list[list]:
    """`requests` requests at once, and a scrape every 0.2 s until they are all answered."""
    limits = httpx.Limits(max_connections=requests + 1)
    async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as client:
        load = asyncio.gather(*(client.get(path) for _ in range(requests)))
        scrapes = []
        while not load.done():
            response = await client.get("/metrics")
            scrapes.append([s for f in text_string_to_metric_families(response.text) for s in f.samples])
            await asyncio.sleep(0.2)
        assert [response.status_code for response in await load] == [200] * requests
    return scrapes


def test_threadpool_saturation_shows_in_metrics(small_api):
    idle = scrape(small_api)
    assert value(idle, "threadpool_tokens") == SMALL_LIMIT  # one process: its own tokens only
    assert value(idle, "threadpool_tokens_borrowed") == 0  # negative control: nothing borrowed at rest
    scrapes = asyncio.run(load_while_scraping(small_api, "/sync/db-wait?seconds=2", 2 * SMALL_LIMIT))
    assert max(value(s, "threadpool_tokens_borrowed") for s in scrapes) == SMALL_LIMIT
    assert max(value(s, "threadpool_tasks_waiting") for s in scrapes) >= 1


def test_connection_pool_exhaustion_shows_in_metrics(small_api):
    idle = scrape(small_api)
    assert value(idle, "db_pool_size", engine="asyncpg") == SMALL_LIMIT
    assert value(idle, "db_pool_checked_out", engine="asyncpg") == 0  # negative control
    scrapes = asyncio.run(load_while_scraping(small_api, "/async/db-wait?seconds=2", 2 * SMALL_LIMIT))
    assert max(value(s, "db_pool_checked_out", engine="asyncpg") for s in scrapes) == SMALL_LIMIT
    assert max(value(s, "db_pool_waiting", engine="asyncpg") for s in scrapes) >= 1
    # Half the requests waited for the first half's 2 s queries; at rest nothing had waited 1 s.
    waited = eventually(lambda: waited_longer(scrape(small_api), "1.0") >= SMALL_LIMIT or [])
    assert waited_longer(idle, "1.0") == 0 and waited, "db_pool_wait_seconds saw no waits over 1 s"


def waited_longer(samples: list, seconds: str) -> float:
    """asyncpg checkouts that waited longer than `seconds` for a connection."""
    count = value(samples, "db_pool_wait_seconds_count", engine="asyncpg")
    return count - value(samples, "db_pool_wait_seconds_bucket", engine="asyncpg", le=seconds)


def test_upstream_requests_in_flight_show_in_metrics(small_api):
    in_flight = "http_client_requests_in_flight"
    assert value(scrape(small_api), in_flight) == 0  # negative control: nothing at rest
    scrapes = asyncio.run(load_while_scraping(small_api, "/async/upstream?delay=2", 2 * SMALL_LIMIT))
    assert max(value(s, in_flight) for s in scrapes) == 2 * SMALL_LIMIT
    at_rest = eventually(lambda: [0] if value(scrape(small_api), in_flight) == 0 else [])
    assert at_rest, "requests still counted in flight after every answer"


def test_two_worker_processes_add_up(database, upstream, service_env, log_dir, settings: Settings):
    two_workers = {"WEB_CONCURRENCY": "2", "DB_BUDGET_OVERCOMMIT": "true"}  # default pools: 2 x 80
    service = start_api({**service_env, **two_workers}, log_dir, name="api_two_workers")
    try:
        both_sampled = eventually(
            lambda: value(scrape(service), "threadpool_tokens") == 2 * settings.threadpool_tokens or []
        )
        assert both_sampled, f"threadpool_tokens is not twice {settings.threadpool_tokens}: one worker only?"
        before = value(scrape(service), "http_request_duration_seconds_count", route="/health/live")
        for _ in range(40):  # a new connection each: the kernel hands them to either worker
            httpx.get(f"{service.url}/health/live", timeout=10).raise_for_status()
        after = value(scrape(service), "http_request_duration_seconds_count", route="/health/live")
        writers = {
            re.sub(r"\D", "", path.stem) for path in Path(service.env[METRICS_DIR_VARIABLE]).glob("*.db")
        }
    finally:
        service.stop()
    assert after - before == 40
    assert len(writers) >= 2, f"metric files of one process only: {writers}"


# Both engines raise SQLAlchemy's errors and map them alike; the app answers with the handler registered
# last, so the warning may come from either module's logger.
DATABASE_LOGGERS = {async_database.log.name, sync_database.log.name}


def test_error_records_carry_the_request_id(database, upstream, service_env, log_dir):
    """A real failure (a database port with no server) logs a warning that names the request."""
    service = start_api({**service_env, "POSTGRES_PORT": str(free_port())}, log_dir, name="api_db_down_ids")
    request_id = f"db-down-{uuid.uuid4().hex[:12]}"
    try:
        response = httpx.get(f"{service.url}/async/items/1", headers={"X-Request-ID": request_id}, timeout=30)
        found = eventually(
            lambda: [
                r
                for r in records(service)
                if r.get("request_id") == request_id and r["logger"] in DATABASE_LOGGERS
            ]
        )
    finally:
        service.stop()
    assert response.status_code == 503 and response.headers["X-Request-ID"] == request_id
    assert [record["level"] for record in found] == ["warning"], found


def test_every_metric_the_prometheus_rules_use_is_served(api):
    rules = yaml.safe_load((PROJECT_ROOT / "observability" / "rules.yml").read_text())
    expressions = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    names = set(re.findall(r"(?<![\w:])([a-z_]+)(?![\w:])", expressions))  # recorded names have colons
    used = names - PROMQL_WORDS - LABELS
    time.sleep(1.5)  # every sample has run at least once
    served = {sample.name for sample in scrape(api)}
    assert used and used <= served, used - served
