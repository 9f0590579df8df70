"""Several api workers (serve.py): the connection budget decides whether they may start, two workers
share the load, and SIGTERM lets the requests in flight finish within GRACEFUL_TIMEOUT.

Each test starts the compose `api` argv itself, on the suite's real database and upstream. Controls:
a budget that fits starts (the refusal is the budget's), and a GRACEFUL_TIMEOUT shorter than the
requests cuts them (the drain is the setting's, not luck).
"""

import asyncio
import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest
from httpx_aiohttp import AiohttpTransport

from {{ cookiecutter.project_slug }}.config import Settings
from {{ cookiecutter.project_slug }}.operations.budget import read_server_limits

from .services import start_api
from tools.native import Service, free_port

IN_FLIGHT = 40
ARRIVAL_GAP = 0.025  # seconds between two requests' arrivals: all 40 are in within a second
STARTUP_COMPLETE = b"Application startup complete."  # uvicorn logs it once per worker
SMALL_POOLS = {"THREADPOOL_TOKENS": "10", "SYNC_DB_POOL_SIZE": "10", "ASYNC_DB_POOL_SIZE": "10"}


def run_to_exit(env: dict[str, str], log_dir: Path, name: str) -> tuple[int, str]:
    """The compose `api` argv, expected to stop by itself: its exit code and what it printed."""
    service = Service.from_compose("api", env, port=free_port(), log_path=log_dir / f"{name}.log").start()
    try:
        return service.process.wait(timeout=60), service.output()
    finally:
        service.kill()


def oversized(settings: Settings) -> dict[str, str]:
    """Two workers whose pools each take about all that the server gives: twice too many."""
    pool = str(max(10, read_server_limits(settings).available // 2))
    return {**SMALL_POOLS, "WEB_CONCURRENCY": "2", "SYNC_DB_POOL_SIZE": pool, "ASYNC_DB_POOL_SIZE": pool}


def test_a_budget_that_does_not_fit_is_refused_with_one_line(database, service_env, log_dir):
    env = {**service_env, **oversized(database)}
    limits = read_server_limits(database)
    code, output = run_to_exit(env, log_dir, "api_over_budget")
    assert code == 1, output
    assert len(output.strip().splitlines()) == 1, output
    pool = env["SYNC_DB_POOL_SIZE"]
    for number in (
        "1 API_REPLICAS",
        "2 WEB_CONCURRENCY",
        f"{pool} SYNC_DB_POOL_SIZE",
        f"{pool} ASYNC_DB_POOL_SIZE",
        "1 migrate",
        f"max_connections {limits.max_connections}",
        "refusing to start",
    ):
        assert number in output, (number, output)


def test_the_same_workers_start_when_told_to_overcommit(database, service_env, log_dir):
    env = {**service_env, **oversized(database), "DB_BUDGET_OVERCOMMIT": "true"}
    api = start_api(env, log_dir, name="api_overcommit")
    try:
        assert "starting anyway (DB_BUDGET_OVERCOMMIT)" in api.output()
    finally:
        api.stop()


def test_a_budget_that_fits_starts(database, service_env, log_dir):
    api = start_api({**service_env, **SMALL_POOLS, "WEB_CONCURRENCY": "2"}, log_dir, name="api_in_budget")
    try:
        line = next(line for line in api.output().splitlines() if "connection budget" in line)
        assert "2 WEB_CONCURRENCY x (10 SYNC_DB_POOL_SIZE + 10 ASYNC_DB_POOL_SIZE)" in line
        assert " = 41 <= " in line, line
    finally:
        api.stop()


def on_port(process: psutil.Process, port: int, status: str) -> int:
    return sum(1 for c in process.net_connections("tcp") if c.laddr.port == port and c.status == status)


def workers_of(api: Service) -> list[psutil.Process]:
    """The children that serve the api's port (multiprocessing also starts a resource tracker)."""
    children = psutil.Process(api.process.pid).children()
    return [child for child in children if on_port(child, api.port, psutil.CONN_LISTEN)]


def connections_per_worker(api: Service) -> list[int]:
    """Established client connections each worker process holds on the api's port."""
    return [on_port(worker, api.port, psutil.CONN_ESTABLISHED) for worker in workers_of(api)]


async def requests_then_sigterm(api: Service, delay: float) -> tuple[list[int | str], list[int]]:
    """IN_FLIGHT upstream calls of `delay` seconds; once all are in a worker, SIGTERM to the main
    process (as `docker stop` sends it). Their statuses (or the error), and the connections each
    worker held when the signal went."""
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=IN_FLIGHT))
    async with httpx.AsyncClient(transport=transport, base_url=api.url, timeout=60) as client:
        calls = []
        for _ in range(IN_FLIGHT):
            calls.append(asyncio.ensure_future(client.get("/async/upstream", params={"delay": delay})))
            # One connection at a time, so each is a fresh race between the workers to accept it:
            # a burst would be taken whole by whichever worker wakes first (asyncio accepts in batches).
            await asyncio.sleep(ARRIVAL_GAP)
        for _ in range(100):
            held = connections_per_worker(api)
            if sum(held) >= IN_FLIGHT:
                break
            await asyncio.sleep(0.05)
        os.kill(api.process.pid, signal.SIGTERM)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    statuses = [o.status_code if isinstance(o, httpx.Response) else type(o).__name__ for o in outcomes]
    return statuses, held


def start_two_workers(env: dict[str, str], log_dir: Path, name: str, graceful: float) -> Service:
    overrides = {**SMALL_POOLS, "WEB_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": str(graceful)}
    log_path = log_dir / f"{name}.log"
    start = log_path.stat().st_size if log_path.exists() else 0  # a log is appended to: this start's lines

    def both_started() -> bool:
        return log_path.read_bytes()[start:].count(STARTUP_COMPLETE) == 2

    api = start_api({**env, **overrides}, log_dir, name=name)
    try:
        # /health/live answers once either worker serves; a slow second one (a loaded machine) would
        # leave the first to accept every connection, so wait for both lifespans.
        api.wait_until(both_started, "start both workers")
    except BaseException:
        api.kill()  # the caller's cleanup has not started yet
        raise
    if len(workers_of(api)) != 2:
        api.kill()
        pytest.fail(f"not two workers:\n{api.log_tail()}")
    return api


def test_two_workers_share_the_load_and_drain_on_sigterm(database, upstream, service_env, log_dir):
    api = start_two_workers(service_env, log_dir, "api_drain", graceful=30)
    try:
        statuses, held = asyncio.run(requests_then_sigterm(api, delay=4))
        assert sum(held) == IN_FLIGHT and min(held) > 0, f"connections per worker: {held}"
        assert statuses == [200] * IN_FLIGHT, statuses
        assert api.process.wait(timeout=30) == 0, api.log_tail()
    finally:
        api.kill()


def test_a_graceful_timeout_shorter_than_the_requests_cuts_them(database, upstream, service_env, log_dir):
    """Control: the same requests, with one second to finish in."""
    api = start_two_workers(service_env, log_dir, "api_short_grace", graceful=1)
    try:
        statuses, _ = asyncio.run(requests_then_sigterm(api, delay=4))
        assert 200 not in statuses, statuses
    finally:
        api.kill()


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_web_concurrency_is_one_line(database, service_env, log_dir, value):
    code, output = run_to_exit({**service_env, "WEB_CONCURRENCY": value}, log_dir, f"api_workers_{value}")
    assert code == 1 and "WEB_CONCURRENCY" in output and "Traceback" not in output, output


@pytest.mark.parametrize(
    ("variables", "arguments"),
    [({"UVICORN_WORKERS": "2"}, ()), ({}, ("--workers", "2")), ({}, ("--workers=2",))],
    ids=["UVICORN_WORKERS", "--workers", "--workers="],
)
def test_workers_set_behind_the_budget_are_refused_with_one_line(
    database, service_env, log_dir, variables, arguments
):
    """Control: test_a_budget_that_fits_starts, the same two workers asked for by WEB_CONCURRENCY."""
    env = {**service_env, **SMALL_POOLS, **variables}
    log_path = log_dir / f"api_unchecked_workers{len(arguments)}.log"
    service = Service.from_compose("api", env, port=free_port(), log_path=log_path, extra_args=arguments)
    service.start()
    try:
        code, output = service.process.wait(timeout=60), service.output()
    finally:
        service.kill()
    assert code == 1, output
    refusal = "serve: set WEB_CONCURRENCY for the api workers, not --workers or UVICORN_WORKERS"
    assert output.strip() == refusal, output
