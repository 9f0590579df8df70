"""`python -m bench --quick` runs end to end against the real stack, and its figures hang together.

Never how fast this machine is: that every row was measured, that each ratio is its req/s over its
ceiling and each ceiling the smallest limit over the wait, that the anti-patterns collapse against
their correct twins, and that the table, the JSON and the chart are written.

The bench starts its own services, database and Redis database (BENCH_REDIS_DB, here the suite's
TEST_REDIS_DB): this file sorts first, so it runs before the session's Celery fixtures exist.
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fifo
from bench.loadgen import Connection, HTTPError
from bench.scenarios import OPEN_LOOP_SHARE
from tools.native import PROJECT_ROOT, compose_services

# The quick bench runs once, in the first test's setup: it may take longer than pytest's 300 s.
pytestmark = pytest.mark.timeout(780)
WIDE_MARGIN = 5  # quick mode: C = 20 connections, so a blocked loop is ~20x slower than its twin
STATIC_ROWS = {
    "loadgen.raw", "loadgen.upstream",
    "articles.def", "articles.async", "articles.threadpool", "articles.blocking",
    "io.upstream.httpcore", "io.db.anti", "io.mixed", "io.mixed.anti", "io.items.async", "io.items.sync",
    "cpu.inline", "cpu.pool", "overhead.bare", "overhead.routed", "overhead.plain", "overhead.app",
    "workers.items.1", "workers.items.2",
    "tracing.live.off", "tracing.live.10", "tracing.live.100",
    "tracing.mixed.off", "tracing.mixed.10", "tracing.mixed.100",
}  # fmt: skip
SWEEP = ["upstream.async", "upstream.sync", "upstream.threads", "upstream.anti", "db.async", "db.sync"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "BENCH_REDIS_DB": os.environ.get("TEST_REDIS_DB", "15")}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output-dir", str(output)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=720,  # 6 min seen on a shared 2-core machine at load average 10, + the tracing rows
    )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    report = json.loads((output / "bench.json").read_text())
    return {"output": output, "stdout": run.stdout, "stderr": run.stderr, "report": report}


@pytest.fixture(scope="module")
def rows(quick: dict) -> dict[str, dict]:
    return {row["key"]: row for row in quick["report"]["rows"]}


def expected_keys(report: dict) -> set[str]:
    sweep = {f"{name}@{level}" for level in report["config"]["sweep"] for name in SWEEP}
    return STATIC_ROWS | sweep | ({"cpu.celery"} if "worker" in compose_services() else set())


def test_every_row_is_measured(quick: dict, rows: dict[str, dict]) -> None:
    assert quick["report"]["has_celery"] is ("worker" in compose_services())
    assert set(rows) == expected_keys(quick["report"])
    for row in rows.values():
        assert not row["cut_at_max_seconds"], row["key"]
        assert row["completed"] + row["errors"] == row["requests"], row["key"]
        assert row["rps"] > 0 and row["p50_ms"] <= row["p99_ms"], row["key"]
        if row["pattern"] != "anti-pattern":
            # (A blocked loop may push an anti-pattern's pool waits past DB_POOL_TIMEOUT: a 503.)
            assert row["errors"] == 0, (row["key"], row["errors_by_kind"])


def quick_levels(rows: dict[str, dict]) -> list[int]:
    return sorted(row["concurrency"] for key, row in rows.items() if key.startswith("upstream.async@"))


def test_ratio_is_measured_over_ceiling(rows: dict[str, dict]) -> None:
    for row in rows.values():
        assert row["ceiling_rps"] and row["binding"], row["key"]
        assert row["ratio"] == pytest.approx(row["rps"] / row["ceiling_rps"], rel=1e-3), row["key"]
        if row["kind"] in ("wait", "cpu"):
            # Little's law (config.py): the smallest limit on requests in service, over their wait.
            slots = min(row["limits"].values())
            assert row["ceiling_rps"] == pytest.approx(slots / row["wait_s"], rel=1e-3), row["key"]
            binding = [name for name, value in row["limits"].items() if value == slots]
            assert all(name in row["binding"] for name in binding), row["key"]
        elif row["limits"]:
            # Processes and CPUs: as many cores as the smaller, at the server's CPU per request.
            cores = min(row["limits"].values())
            per_request = row["server_cpu_s"] / row["completed"]
            assert row["ceiling_rps"] == pytest.approx(cores / per_request, rel=1e-2), row["key"]
    anti = [key for key, row in rows.items() if row["pattern"] == "anti-pattern"]
    assert len(anti) == 4 + len(quick_levels(rows))  # articles, db, mixed, cpu; upstream at each level
    for key in anti:
        assert "one event loop" in rows[key]["binding"], key


def test_anti_patterns_collapse_against_their_twins(rows: dict[str, dict]) -> None:
    for row in rows.values():
        if row["pattern"] == "anti-pattern" and row["kind"] == "wait":
            twins = [rows[twin]["rps"] for twin in row["twins"]]
            assert twins and max(twins) >= WIDE_MARGIN * row["rps"], (row["key"], row["rps"], twins)
            assert row["slower_than_twins"] == pytest.approx(max(twins) / row["rps"], rel=1e-2)


def test_a_blocked_loop_shows_in_the_lag_probe(rows: dict[str, dict]) -> None:
    wait_ms = rows["articles.blocking"]["wait_s"] * 1000
    level = quick_levels(rows)[0]
    for key in ("articles.blocking", "io.db.anti", f"upstream.anti@{level}"):
        assert rows[key]["lag"]["max_ms"] >= wait_ms / 2, (key, rows[key]["lag"])
    for row in rows.values():
        if row["server"] != "raw":
            assert row["lag"]["probes"] >= 1 and row["lag"]["errors"] == 0, row["key"]


def test_sweep_names_what_binds_each_keyword_and_what_threads_cost(rows: dict[str, dict]) -> None:
    """Past the threadpool's size, `def` is bound by its tokens and `async def` by its clients; the
    row with the tokens raised really ran that many threads (the `def` row at the same level is its
    control), and every sweep row reports the server's memory and threads."""
    top = quick_levels(rows)[-1]
    sync, threads = rows[f"upstream.sync@{top}"], rows[f"upstream.threads@{top}"]
    assert sync["limits"]["THREADPOOL_TOKENS"] < top and "THREADPOOL_TOKENS" in sync["binding"]
    assert "THREADPOOL_TOKENS" not in rows[f"upstream.async@{top}"]["binding"]
    assert threads["limits"]["THREADPOOL_TOKENS"] == top
    extra_threads = top - sync["limits"]["THREADPOOL_TOKENS"]
    assert threads["server_threads"] >= sync["server_threads"] + extra_threads // 2
    for key, row in rows.items():
        if "@" in key:
            assert row["server_rss_mb"] > 10 and row["server_threads"] >= 1, key


def test_worker_rows_ran_that_many_processes_within_their_budget(quick: dict, rows: dict[str, dict]) -> None:
    """Each worker-process row's server printed the budget of its own WEB_CONCURRENCY and pools, and
    really ran that many processes: the 1-worker row (one process) is the 2-worker row's control."""
    one, two = rows["workers.items.1"], rows["workers.items.2"]
    for row in (one, two):
        env = row["server_env"]
        workers = int(env["WEB_CONCURRENCY"])
        assert row["limits"]["WEB_CONCURRENCY"] == workers and row["concurrency"] == two["concurrency"]
        needed = workers * (int(env["SYNC_DB_POOL_SIZE"]) + int(env["ASYNC_DB_POOL_SIZE"])) + 1  # + migrate
        assert f"x {workers} WEB_CONCURRENCY x" in row["server_budget"], row["server_budget"]
        assert f"migrate = {needed} <=" in row["server_budget"], row["server_budget"]
        cores = min(row["limits"].values())  # the smaller of the workers and the CPUs binds
        binding = [f"{name} {value}" for name, value in row["limits"].items() if value == cores]
        assert all(name in row["binding"] for name in binding), row["binding"]
    # Beside each server's resource tracker (multiprocessing's): uvicorn's supervisor and 2 workers.
    assert two["server_processes"] >= one["server_processes"] + 2, (one["server_processes"], two)
    # The other servers run one worker whatever this machine's CPUs (their ceilings are one core's).
    assert "x 1 WEB_CONCURRENCY x" in rows["io.items.async"]["server_budget"]
    assert "workers.items.2" in [name for target in quick["report"]["targets"] for name in target["checked"]]
    assert "Worker processes:" in (quick["output"] / "bench.md").read_text()


def test_correct_wait_rows_at_the_load_also_run_open_loop(quick: dict, rows: dict[str, dict]) -> None:
    load = quick["report"]["config"]["concurrency"]
    open_loop = {key for key, row in rows.items() if row["open_loop"]}
    expected = {
        key
        for key, row in rows.items()
        if row["kind"] == "wait" and row["pattern"] == "correct" and row["concurrency"] == load
    }
    assert open_loop == expected and open_loop, f"open loop on {open_loop}, not {expected}"
    for key in open_loop:
        run = rows[key]["open_loop"]
        assert run["rate_rps"] == pytest.approx(OPEN_LOOP_SHARE * rows[key]["ceiling_rps"], rel=1e-3), key
        assert run["completed"] + run["errors"] == rows[key]["requests"] and run["lag"]["probes"], key


def test_db_rows_say_how_many_503s_fifo_predicts(rows: dict[str, dict]) -> None:
    for key in (key for key in rows if key.startswith("db.")):
        low, high = rows[key]["fifo_503"]
        assert 0 <= low <= high <= rows[key]["requests"], key
    assert rows["articles.async"]["fifo_503"] is None  # no pool, no prediction


def test_fifo_predicts_503s_only_past_the_pool_timeout() -> None:
    # 400 in flight on 40 connections: the last of each wave waits 9 holds; past 5 s it is refused.
    assert fifo.timeouts(clients=400, connections=40, hold=0.55, timeout=5.0, requests=3200) == 0
    assert fifo.timeouts(clients=400, connections=40, hold=0.56, timeout=5.0, requests=3200) >= 320
    assert fifo.timeouts(clients=40, connections=40, hold=10.0, timeout=0.1, requests=400) == 0


async def serve_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request (or none, for /drop) and closes: a keep-alive timeout, or a server dying."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"GET /drop "):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
    writer.close()


async def two_requests_on_one_connection(second_path: str) -> list[int]:
    server = await asyncio.start_server(serve_once_then_close, "127.0.0.1", 0)
    connection = Connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        statuses = [(await connection.request("GET", "/"))[0]]
        await asyncio.sleep(0.2)  # the server's close reaches the idle connection
        statuses.append((await connection.request("GET", second_path))[0])
        return statuses
    finally:
        connection.close()
        server.close()


def test_the_load_generator_reopens_a_connection_the_server_closed_while_idle() -> None:
    # The open loop's spare connections outlast uvicorn's 5 s keep-alive: not the next request's error.
    assert asyncio.run(two_requests_on_one_connection("/")) == [200, 200]
    # The control: a server that closes without answering a request it was sent is still a failure.
    with pytest.raises(HTTPError, match="no complete response header"):
        asyncio.run(two_requests_on_one_connection("/drop"))


def test_overhead_and_load_generator_figures(quick: dict, rows: dict[str, dict]) -> None:
    report = quick["report"]
    overhead = report["overhead"]
    assert overhead["ratio"] == pytest.approx(
        overhead["bare_cpu_us_per_request"] / overhead["app_cpu_us_per_request"], rel=1e-3
    )
    assert overhead["throughput_ratio"] == pytest.approx(overhead["app_rps"] / overhead["bare_rps"], rel=1e-3)
    # The cost of the watchdog and metrics: the app against itself with OBSERVABILITY=false.
    assert overhead["observability_cost"] == pytest.approx(
        overhead["app_cpu_us_per_request"] / overhead["plain_cpu_us_per_request"] - 1, abs=1e-3
    )
    # Each round's figure is kept, and the page gives their spread: the machine's noise, in the open.
    app_rounds = rows["overhead.app"]["rounds_cpu_us_per_request"]
    assert len(app_rounds) == report["config"]["overhead_rounds"]
    assert min(app_rounds) <= overhead["app_cpu_us_per_request"] <= max(app_rounds)
    spread = f"generated app {min(app_rounds):g}-{max(app_rounds):g}."
    assert spread in (quick["output"] / "bench.md").read_text()
    assert report["loadgen_ceiling_rps"] == rows["loadgen.raw"]["rps"]
    assert report["limits"]["threadpool_tokens"] > 0 and report["limits"]["cpus"] >= 1
    assert report["config"]["quick"] is True and report["versions"]["fastapi"]
    assert [target["target"] for target in report["targets"]] and all(
        isinstance(target["met"], bool) for target in report["targets"]
    )


def test_tracing_rows_ran_with_their_sampling(rows: dict[str, dict]) -> None:
    for key in ("live", "mixed"):
        off, ten, full = (rows[f"tracing.{key}.{level}"] for level in ("off", "10", "100"))
        assert off["server_env"] == {}
        assert ten["server_env"]["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
        assert full["server_env"]["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
        assert full["server_env"]["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://127.0.0.1:")
        assert all(row["server_cpu_us_per_request"] for row in (off, ten, full))


def test_outputs_are_written(quick: dict) -> None:
    output: Path = quick["output"]
    table = (output / "bench.md").read_text()
    assert "| # | section | pattern | route | req/s |" in table
    assert table.strip() in quick["stdout"]
    assert (output / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[ 1/" in quick["stderr"]  # the progress line


def test_the_trivial_route_is_profiled(quick: dict) -> None:
    profile = quick["report"]["profile"]
    assert profile and all(entry["calls_per_request"] > 0 for entry in profile)
    shares = [entry["own_share"] for entry in profile]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1
    assert "spends its time: cProfile" in quick["stdout"]
    assert 0 < quick["report"]["metrics_profile_share"] < 0.5


def test_the_traced_route_is_profiled(quick: dict) -> None:
    """At 10% sampling the profile finds OpenTelemetry's code on the request path; the control, the
    same route with tracing off (nothing installed: only FastAPI asking whether a provider is set),
    finds a small fraction of it."""
    shares = quick["report"]["tracing_profile_shares"]
    assert 0 < shares["10"] < 1 and shares["off"] < shares["10"] / 4, shares
    assert "OpenTelemetry's own code is" in quick["stdout"]
