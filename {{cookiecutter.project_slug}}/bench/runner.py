"""Runs the rows against the stack, one at a time, and turns each run into figures.

For every row: the lag probe starts on the row's server, the load generator runs the row (bounded
by its request count and by max_seconds), the probe stops; CPU seconds of the server process and
of this process are read around the run. A server left with a backlog by a cut anti-pattern row
is restarted before it serves again.
"""

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable

import httpx
import psycopg2

from {{ cookiecutter.project_slug }}.primes import count_primes

from . import loadgen, scenarios
from .probe import LagProbe, LagResult
from .scenarios import Config, Limits, Row
from .stack import Stack
from tools.native import Service

PACKAGES = (
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "anyio", "pydantic", "sqlalchemy", "asyncpg",
    "psycopg2-binary", "httpx", "requests", "celery", "redis", "matplotlib",
)  # fmt: skip
LAG_TARGET_MS = 10.0
CEILING_TARGET = 0.9
COLLAPSE_TARGET = 10.0
OVERHEAD_TARGET = 0.9
# A row measured above this share of the client's own ceiling, or with the client's CPU this busy,
# may have measured the load generator rather than the server.
CLIENT_SHARE_LIMIT = 0.5
CLIENT_CPU_LIMIT = 0.8


def calibrate_cpu_job(n: int) -> float:
    """CPU seconds of one job, measured here: the job time the CPU ceilings assume.

    CPU time rather than wall time, and the least of a few runs, so that whatever else the machine
    is doing meanwhile does not lengthen the job and lower the ceiling."""
    count_primes(n)
    timings = []
    for _ in range(5):
        started = time.process_time()
        count_primes(n)
        timings.append(time.process_time() - started)
    return min(timings)


def read_limits(stack: Stack, cpu_job_seconds: float) -> Limits:
    settings = stack.settings
    assert settings is not None
    return Limits(
        threadpool_tokens=settings.threadpool_tokens,
        sync_db_pool_size=settings.sync_db_pool_size,
        async_db_pool_size=settings.async_db_pool_size,
        http_max_connections=settings.http_max_connections,
        process_pool_workers=settings.process_pool_workers,
        worker_concurrency=getattr(settings, "worker_concurrency", None) if stack.worker else None,
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        cpu_job_seconds=cpu_job_seconds,
    )


def api_has_route(stack: Stack, path: str) -> bool:
    """use_celery=no bakes no /cpu/jobs: ask the running app rather than assume."""
    spec = httpx.get(stack.services["api"].url + "/openapi.json", timeout=10).json()
    return path in spec.get("paths", {})


def seed_items(stack: Stack, count: int) -> list[int]:
    ids = []
    with httpx.Client(base_url=stack.services["api"].url, timeout=10) as client:
        for number in range(count):
            response = client.post("/async/items", json={"name": f"bench item {number}"})
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


def versions(stack: Stack) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    settings = stack.settings
    assert settings is not None
    connection = psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.postgres_password or None,
        dbname=settings.postgres_db,
        connect_timeout=5,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            found["postgresql server"] = cursor.fetchone()[0]
    finally:
        connection.close()
{%- if cookiecutter.use_celery == "yes" %}
    if stack.worker is not None:
        import redis

        client = redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=5)
        try:
            found["redis server"] = client.info("server")["redis_version"]
        finally:
            client.close()
{%- endif %}
    return found


class Bench:
    def __init__(
        self, config: Config, stack: Stack, probe: LagProbe, progress: Callable[[str, bool], None]
    ) -> None:
        self.config = config
        self.stack = stack
        self.probe = probe
        self.progress = progress
        self.dirty: set[str] = set()  # servers that still owe a backlog of blocked requests

    def _server(self, name: str) -> tuple[int, int | None, str | None]:
        """(port, pid, probe path) of a row's server; the raw server has nothing to probe."""
        if name == "raw":
            raw = self.stack.raw
            return raw.port, raw.process.pid if raw.process else None, None
        if name == "upstream":
            return self.stack.upstream.port or 0, _pid(self.stack.upstream), "/health"
        if name in self.dirty:
            self.stack.restart(name)
            self.dirty.discard(name)
        service = self.stack.services[name]
        return service.port or 0, _pid(service), "/health/live"

    def run(self, row: Row, title: str) -> dict:
        port, pid, probe_path = self._server(row.server)
        time.sleep(0.3)  # let the previous row's connections and logs settle
        if row.warmup:
            loadgen.run(
                loadgen.run_load(
                    "127.0.0.1", port, row.operation, row.warmup, row.concurrency, self.config.max_seconds
                )
            )
        if probe_path:
            self.probe.path = probe_path
            self.probe.start(port)
        server_cpu_before = loadgen.process_cpu_seconds(pid) if pid else None
        machine_before = loadgen.machine_cpu_times()

        def show(done: int, total: int, elapsed: float, final: bool) -> None:
            rate = done / elapsed if elapsed > 0 else 0.0
            self.progress(f"{title}  {done}/{total}  {rate:,.1f} req/s  {elapsed:.1f} s", final)

        load = loadgen.run(
            loadgen.run_load("127.0.0.1", port, row.operation, row.requests, row.concurrency,
                             self.config.max_seconds, show)
        )  # fmt: skip
        server_cpu_after = loadgen.process_cpu_seconds(pid) if pid else None
        machine_after = loadgen.machine_cpu_times()
        lag = self.probe.stop() if probe_path else None
        if load.cut and row.server in self.stack.services:
            self.dirty.add(row.server)
        server_cpu = (
            server_cpu_after - server_cpu_before
            if server_cpu_before is not None and server_cpu_after is not None
            else None
        )
        machine_busy = None
        if machine_before and machine_after and machine_after[1] > machine_before[1]:
            machine_busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
        return {**figures(row, load, lag, server_cpu), "machine_cpu_busy": _round(machine_busy, 3)}


def _pid(service: Service) -> int | None:
    return service.process.pid if service.process else None


def figures(row: Row, load: loadgen.LoadResult, lag: LagResult | None, server_cpu: float | None) -> dict:
    """Every figure of one row, JSON-ready; the ceiling as the row's kind defines it."""
    elapsed = load.elapsed
    ceiling = row.ceiling()
    binding = None
    ceiling_rps = None
    if ceiling is not None:
        ceiling_rps, binding = ceiling
    elif row.server == "raw" and load.client_cpu > 0 and load.completed:
        per_request = load.client_cpu / load.completed
        ceiling_rps, binding = 1 / per_request, f"load-generator CPU: {per_request * 1e6:.0f} µs/req"
    elif server_cpu and load.completed:
        per_request = server_cpu / load.completed
        ceiling_rps, binding = 1 / per_request, f"CPU: one server process, {per_request * 1000:.2f} ms/req"
    p50, p99 = load.percentile(50), load.percentile(99)
    return {
        "key": row.key,
        "section": row.section,
        "label": row.label,
        "route": row.route,
        "server": row.server,
        "pattern": row.pattern,
        "kind": row.kind,
        "note": row.note,
        "requests": row.requests,
        "concurrency": load.concurrency,
        "wait_s": row.wait,
        "completed": load.completed,
        "errors": load.errors,
        "errors_by_kind": load.errors_by_kind,
        "cut_at_max_seconds": load.cut,
        "censored": len(load.censored),
        "elapsed_s": round(elapsed, 4),
        "rps": round(load.rps, 3),
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "latency_is_lower_bound": bool(load.censored),
        "ceiling_rps": round(ceiling_rps, 3) if ceiling_rps else None,
        "binding": binding,
        "limits": row.limits,
        "ratio": round(load.rps / ceiling_rps, 4) if ceiling_rps else None,
        "lag": lag.summary() if lag else None,
        "client_cpu_s": round(load.client_cpu, 3),
        "client_cpu_share": round(load.client_cpu / elapsed, 3) if elapsed else None,
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cpu_share": round(server_cpu / elapsed, 3) if server_cpu is not None and elapsed else None,
        "twins": list(row.twins),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def run_all(config: Config, stack: Stack, progress: Callable[[str, bool], None]) -> dict:
    started = time.time()
    loadavg_before = os.getloadavg()
    found_versions = versions(stack)
    cpu_job_seconds = calibrate_cpu_job(config.cpu_n)
    limits = read_limits(stack, cpu_job_seconds)
    has_celery = stack.worker is not None and api_has_route(stack, "/cpu/jobs")
    item_ids = seed_items(stack, config.item_count)
    rows = scenarios.build_rows(config, limits, has_celery, item_ids)
    overhead = scenarios.overhead_rows(config)
    if config.only:
        # The load generator's own ceiling is always measured: every other row is checked against it.
        rows = [r for r in rows if r.key == "loadgen.raw" or r.key.startswith(tuple(config.only))]
        overhead = [r for r in overhead if r.key.startswith(tuple(config.only))]
    total = len(rows) + len(overhead) * config.overhead_rounds
    probe = LagProbe(interval=config.probe_interval)
    results: list[dict] = []
    rounds: dict[str, list[dict]] = {row.key: [] for row in overhead}
    try:
        bench = Bench(config, stack, probe, progress)
        for index, row in enumerate(rows, 1):
            for server in row.restart_before:
                stack.restart(server)
            results.append(bench.run(row, f"[{index:2d}/{total}] {row.route}"))
        if overhead:
            # Both sides fresh processes started alike: the api has served every row above.
            stack.restart("api")
        index = len(rows)
        for number in range(config.overhead_rounds):
            # Alternated (ABBA...), so that the machine's noise and any drift hit both sides alike.
            for row in overhead if number % 2 == 0 else overhead[::-1]:
                index += 1
                rounds[row.key].append(bench.run(row, f"[{index:2d}/{total}] {row.label} {row.route}"))
    finally:
        probe.close()
    for attempts in rounds.values():
        results.append(overhead_result(attempts))
    by_key = {result["key"]: result for result in results}
    for result in results:
        # How much slower than each correct way to do the same work; the target uses the best of them.
        twins = {twin: by_key[twin]["rps"] for twin in result["twins"] if twin in by_key}
        rps = result["rps"]
        result["slower_than_each_twin"] = {
            twin: round(value / rps, 2) if rps else None for twin, value in twins.items()
        }
        result["slower_than_twins"] = round(max(twins.values()) / rps, 2) if twins and rps else None
    bare, routed, app = (by_key.get(f"overhead.{name}") for name in ("bare", "routed", "app"))
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": limits.cpus,
            "loadavg_before": [round(value, 2) for value in loadavg_before],
            "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        },
        "versions": found_versions,
        "config": vars(config),
        "limits": vars(limits),
        "server_command": " ".join(stack.services["api"].argv) + " (compose `api`; UVICORN_HOST/PORT)",
        "has_celery": has_celery,
        "loadgen_ceiling_rps": by_key["loadgen.raw"]["rps"],
        "overhead": overhead_summary(bare, routed, app),
        "rows": results,
    }
    report["targets"] = evaluate(report)
    return report


def overhead_result(attempts: list[dict]) -> dict:
    """The best round's figures, plus the server's CPU per request over all rounds."""
    best = max(attempts, key=lambda attempt: attempt["rps"])
    cpu = [attempt["server_cpu_s"] for attempt in attempts]
    done = sum(attempt["completed"] for attempt in attempts)
    per_request = sum(cpu) / done if None not in cpu and done and sum(cpu) else None
    return {
        **best,
        "rounds_rps": [attempt["rps"] for attempt in attempts],
        "rounds_server_cpu_share": [attempt["server_cpu_share"] for attempt in attempts],
        "server_cpu_us_per_request": _round(per_request * 1e6 if per_request else None, 1),
    }


def overhead_summary(bare: dict | None, routed: dict | None, app: dict | None) -> dict:
    """Two ratios. Throughput (best rounds) is what a client sees, but on a shared machine it moves
    with whatever else runs; CPU per request is what each app costs, whoever else runs: the target
    is judged on it (it is the ratio of their CPU-bound ceilings)."""
    if not bare or not app:
        return {"ratio": None, "throughput_ratio": None}
    cpu_bare, cpu_app = bare["server_cpu_us_per_request"], app["server_cpu_us_per_request"]
    summary = {
        "bare_rps": bare["rps"],
        "app_rps": app["rps"],
        "throughput_ratio": round(app["rps"] / bare["rps"], 4) if bare["rps"] else None,
        "bare_cpu_us_per_request": cpu_bare,
        "app_cpu_us_per_request": cpu_app,
        "ratio": round(cpu_bare / cpu_app, 4) if cpu_bare and cpu_app else None,
    }
    if routed:
        # The same ratio for bare FastAPI whose route sits in an included APIRouter, like the template's.
        cpu_routed = routed["server_cpu_us_per_request"]
        summary["routed_rps"] = routed["rps"]
        summary["routed_cpu_us_per_request"] = cpu_routed
        summary["routed_ratio"] = round(cpu_bare / cpu_routed, 4) if cpu_bare and cpu_routed else None
    return summary


def evaluate(report: dict) -> list[dict]:
    """The issue's targets, each met or missed, with the rows that decide it."""
    rows = report["rows"]
    correct = [r for r in rows if r["pattern"] == scenarios.CORRECT]
    targets = []

    def target(name: str, checked: list[dict], missed: Callable[[dict], str | None]) -> None:
        misses = [miss for miss in map(missed, checked) if miss]
        targets.append(
            {
                "target": name,
                "met": bool(checked) and not misses,
                "misses": misses,
                "checked": [r["key"] for r in checked],
            }
        )

    def below_ceiling(r: dict) -> str | None:
        if r["ratio"] is not None and r["ratio"] >= CEILING_TARGET:
            return None
        # What the row itself shows about why: failed requests, or a server busy computing.
        clues = [f"{r['errors']} errors {r['errors_by_kind']}"] if r["errors"] else []
        if r["server_cpu_s"] and r["completed"]:
            clues.append(
                f"server CPU {r['server_cpu_share']:.0%} of a core, "
                f"{r['server_cpu_s'] / r['completed'] * 1000:.1f} ms per request"
            )
        return f"{r['route']} at {r['ratio'] or 0:.0%} of {r['ceiling_rps']:g} req/s ({'; '.join(clues)})"

    def not_collapsed(r: dict) -> str | None:
        if (r["slower_than_twins"] or 0) >= COLLAPSE_TARGET or (r["rps"] == 0 and not r["errors"]):
            return None  # (none finished within max_seconds: collapsed beyond measure)
        if r["slower_than_twins"] is None:
            return f"{r['route']}: no request succeeded ({r['errors_by_kind']})"
        return f"{r['route']} only {r['slower_than_twins']}x slower"

    def lagging(r: dict) -> str | None:
        p99 = r["lag"]["p99_ms"]
        return (
            None if p99 is not None and p99 < LAG_TARGET_MS else f"{r['route']} ({r['label']}) p99 {p99} ms"
        )

    def overhead(r: dict) -> str | None:
        ratio = report["overhead"]["ratio"]
        return (
            None
            if ratio is not None and ratio >= OVERHEAD_TARGET
            else f"generated app at {ratio:.0%} of bare"
        )

    def client_bound(r: dict) -> str | None:
        share = r["client_cpu_share"] or 0
        if r["rps"] <= CLIENT_SHARE_LIMIT * report["loadgen_ceiling_rps"] and share <= CLIENT_CPU_LIMIT:
            return None
        return f"{r['route']}: {r['rps']:g} req/s with the client's CPU {share:.0%} busy"

    target(
        f"true-async and def routes reach >= {CEILING_TARGET:.0%} of their ceiling",
        [r for r in correct if r["kind"] == "wait"],
        below_ceiling,
    )
    target(
        f"anti-patterns are >= {COLLAPSE_TARGET:g}x slower than their best correct twin",
        [r for r in rows if r["pattern"] == scenarios.ANTI and r["kind"] == "wait"],
        not_collapsed,
    )
    # Full-speed rows are left out: their loop is saturated on purpose, so a probe queues behind the
    # requests in flight (about concurrency x CPU per request) without anything blocking it.
    target(
        f"loop lag p99 < {LAG_TARGET_MS:g} ms on correct routes under load",
        [r for r in correct if r["lag"] and r["kind"] in ("wait", "cpu")],
        lagging,
    )
    target(
        f"the template's trivial route is within {1 - OVERHEAD_TARGET:.0%} of bare FastAPI",
        [r for r in rows if r["key"] == "overhead.app"],
        overhead,
    )
    target(
        "the load generator is not the bottleneck", [r for r in rows if r["server"] != "raw"], client_bound
    )
    return targets
