"""Runs the rows against the stack, one at a time, and turns each run into figures.

For every row: the lag probe starts on the row's server, the load generator runs the row (bounded
by its request count and by its max_seconds), the probe stops; the server's CPU seconds, peak memory
and threads are read around the run. A server left with a backlog by a cut anti-pattern row is
restarted before it serves again.
"""

import importlib.metadata
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from {{ cookiecutter.project_slug }}.config import AdminSettings, Settings, load_settings
from {{ cookiecutter.project_slug }}.operations.provision import admin_connection
from {{ cookiecutter.project_slug }}.primes import count_primes

from . import figures, loadgen, openloop, profiler, scenarios, targets
from .probe import LagProbe
from .results import Measured, OpenLoop, Overhead, ProfileEntry, Report
from .sampler import PeakSampler, cpu_seconds_by_process, cpu_spent, machine_cpu_times, wait_until_quiet
from .scenarios import Config, Limits, Row
from .stack import Stack

PACKAGES = (
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "anyio", "pydantic", "sqlalchemy", "asyncpg",
    "psycopg2-binary", "httpx", "httpx-aiohttp", "aiohttp", "requests", "celery", "redis", "matplotlib",
)  # fmt: skip

Progress = Callable[[str, bool], None]
# Before each overhead round: the machine (both CPUs) busy under 10% over a quarter second, or 10 s.
QUIET_MACHINE = 0.10
QUIET_TIMEOUT = 10.0


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


SETTINGS_LIMITS = (
    "threadpool_tokens", "sync_db_pool_size", "async_db_pool_size",
    "http_max_connections", "process_pool_workers", "db_pool_timeout",
)  # fmt: skip


def started_settings(stack: Stack) -> Settings:
    """The settings the stack's services run with; a stack that is not started has none yet."""
    if stack.settings is None:
        raise RuntimeError("the stack is not started")
    return stack.settings


def read_limits(stack: Stack, cpu_job_seconds: float) -> Limits:
    """The limits the services run with: the same settings, read here."""
    settings = started_settings(stack)
    return Limits(
        **{name: getattr(settings, name) for name in SETTINGS_LIMITS},
        worker_concurrency=getattr(settings, "worker_concurrency", None) if stack.worker else None,
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        cpu_job_seconds=cpu_job_seconds,
    )


def api_has_route(stack: Stack, path: str) -> bool:
    """use_celery=no bakes no /cpu/jobs: ask the running app rather than assume."""
    spec = httpx.get(stack.services["api"].url + "/openapi.json", timeout=10).json()
    return path in spec.get("paths", {})


def seed_items(stack: Stack, count: int) -> list[int]:
    with httpx.Client(base_url=stack.services["api"].url, timeout=10) as client:
        return [
            client.post("/async/items", json={"name": f"bench item {n}"}).raise_for_status().json()["id"]
            for n in range(count)
        ]


def versions(stack: Stack) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    with closing(admin_connection(load_settings(AdminSettings))) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        found["postgresql server"] = cursor.fetchone()[0]
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
    def __init__(self, config: Config, stack: Stack, probe: LagProbe, progress: Progress) -> None:
        self.config = config
        self.stack = stack
        self.probe = probe
        self.progress = progress
        self.dirty: set[str] = set()  # servers that still owe a backlog of blocked requests

    def _server(self, row: Row) -> tuple[int, int | None, str | None]:
        """(port, pid, probe path) of a row's server, restarted first if it must be."""
        if row.server == "raw":
            raw = self.stack.raw
            return raw.port, raw.process.pid if raw.process else None, None
        if row.server == "upstream":
            upstream = self.stack.upstream
            return upstream.port or 0, upstream.process.pid if upstream.process else None, "/health"
        if row.server in self.dirty or row.server in row.restart_before:
            self.stack.restart(row.server, row.server_env)
            self.dirty.discard(row.server)
        elif row.server_env != self.stack.env_of(row.server):
            self.stack.restart(row.server, row.server_env)
        service = self.stack.services[row.server]
        return service.port or 0, service.process.pid if service.process else None, "/health/live"

    def _load(self, row: Row, port: int, requests: int, show: loadgen.Progress | None = None):
        load = loadgen.run_load(
            "127.0.0.1", port, row.operation, requests, row.concurrency, row.max_seconds, show, row.ramp
        )
        return loadgen.run(load)

    def run(self, row: Row, title: str) -> Measured:
        for server in row.restart_before:
            if server != row.server:
                self.stack.restart(server)
        port, pid, probe_path = self._server(row)
        time.sleep(0.3)  # let the previous row's connections and logs settle
        if row.warmup:
            self._load(row, port, row.warmup)

        def show(done: int, total: int, elapsed: float, final: bool) -> None:
            rate = done / elapsed if elapsed > 0 else 0.0
            self.progress(f"{title}  {done}/{total}  {rate:,.1f} req/s  {elapsed:.1f} s", final)

        if probe_path:
            self.probe.path = probe_path
            self.probe.start(port)
        cpu_before = cpu_seconds_by_process(pid) if pid else None
        busy_before, total_before = machine_cpu_times()
        with PeakSampler(pid) as peak:
            load = self._load(row, port, row.requests, show)
        cpu_after = cpu_seconds_by_process(pid) if pid else None
        busy_after, total_after = machine_cpu_times()
        lag = self.probe.stop().summary() if probe_path else None
        if load.cut and row.server in self.stack.services:
            self.dirty.add(row.server)
        server_cpu = cpu_spent(cpu_before, cpu_after)
        machine_busy = (busy_after - busy_before) / (total_after - total_before or 1)
        budget = self.stack.budgets.get(row.server)
        open_loop = self._open_loop(row, port, probe_path) if row.open_loop and probe_path else None
        return figures.measured(row, load, lag, server_cpu, machine_busy, peak, budget, open_loop)

    def _open_loop(self, row: Row, port: int, probe_path: str) -> OpenLoop:
        """The row's requests again, arriving open-loop at OPEN_LOOP_SHARE of its ceiling."""
        rate = row.open_loop_rate
        self.probe.path = probe_path
        self.probe.start(port)
        load = openloop.run_open_loop("127.0.0.1", port, row.operation, rate, row.requests, row.max_seconds)
        result = loadgen.run(load)
        return figures.open_loop(rate, result, self.probe.stop().summary())


def run_all(config: Config, stack: Stack, progress: Progress) -> Report:
    started = time.time()
    loadavg_before = os.getloadavg()
    found_versions = versions(stack)
    limits = read_limits(stack, calibrate_cpu_job(config.cpu_n))
    has_celery = stack.worker is not None and api_has_route(stack, "/cpu/jobs")
    rows = scenarios.build_rows(config, limits, has_celery, seed_items(stack, config.item_count))
    # Alternated rounds, as the overhead rows: the tracing rows compare CPU per request too.
    overhead = scenarios.overhead_rows(config, limits)
    overhead += scenarios.tracing_rows(config, limits, stack.otlp_endpoint)
    if config.only:
        # The load generator's own ceiling is always measured: every other row is checked against it.
        rows = [r for r in rows if r.key == "loadgen.raw" or r.key.startswith(tuple(config.only))]
        overhead = [r for r in overhead if r.key.startswith(tuple(config.only))]
    probe = LagProbe(interval=config.probe_interval)
    try:
        bench = Bench(config, stack, probe, progress)
        total = len(rows) + len(overhead) * config.overhead_rounds
        results = [bench.run(row, f"[{i:2d}/{total}] {row.route}") for i, row in enumerate(rows, 1)]
        results += run_overhead(bench, overhead, first=len(results) + 1, total=total)
    finally:
        probe.close()
    profiles = profile_trivial_route(config, stack, overhead)
    figures.compare_twins(results)
    report = Report(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=" ".join(["python -m bench", *sys.argv[1:]]),
        duration_s=round(time.time() - started, 1),
        machine={
            "platform": platform.platform(),
            "cpus": limits.cpus,
            "loadavg_before": [round(value, 2) for value in loadavg_before],
            "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        },
        versions=found_versions,
        config=config,
        limits=limits,
        server_command=" ".join(stack.services["api"].argv) + " (compose `api`; UVICORN_HOST/PORT)",
        has_celery=has_celery,
        loadgen_ceiling_rps=next(r.rps for r in results if r.key == "loadgen.raw"),
        overhead=Overhead(),
        rows=results,
        profile=profiles.top,
        metrics_profile_share=profiles.metrics_share,
        tracing_profile_shares=profiles.tracing_shares,
    )
    report.overhead = figures.overhead_summary(report)
    report.targets = targets.evaluate(report)
    return report


def profile_env(stack: Stack, name: str, extra: dict[str, str]) -> dict[str, str]:
    """The stack's settings for a profiled server: metrics in multiprocess mode, as the api runs them,
    in a fresh folder of its own."""
    metrics_dir = stack.log_dir / f"{name}-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    return {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **extra}


@dataclass
class Profiles:
    top: list[ProfileEntry] = field(default_factory=list)  # the app's own functions, by own time
    metrics_share: float | None = None  # of its time, prometheus-client's code
    tracing_shares: dict[str, float] = field(default_factory=dict)  # OpenTelemetry's: off and at 10%


def profile_trivial_route(config: Config, stack: Stack, overhead: list[Row]) -> Profiles:
    """Where the overhead rows' app spends its time: the same route on a profiled server of its own,
    and again with tracing at 10% sampling when the tracing rows ran (what their extra CPU is)."""
    if not overhead:
        return Profiles()
    top, stats_file = profile_with(config, stack, "profile", {})
    profiles = Profiles(top, profiler.package_share(stats_file, "prometheus_client"))
    if any(row.section == scenarios.TRACING for row in overhead):
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_endpoint, **scenarios.SAMPLING["10"]}
        _, traced_file = profile_with(config, stack, "profile-tracing", tracing)
        profiles.tracing_shares = {
            "off": profiler.package_share(stats_file, "opentelemetry"),
            "10": profiler.package_share(traced_file, "opentelemetry"),
        }
    return profiles


def profile_with(
    config: Config, stack: Stack, name: str, extra: dict[str, str]
) -> tuple[list[ProfileEntry], Path]:
    """The trivial route profiled with the stack's settings and `extra`: its top functions and the
    pstats file."""
    env = profile_env(stack, name, extra)
    log = stack.log_dir / f"{name}.log"
    requests, concurrency = config.overhead_requests, config.full_concurrency
    stats_file, completed = profiler.profiled_run(env, "/health/live", requests, concurrency, log)
    return profiler.top_functions(stats_file, completed), stats_file


def run_overhead(bench: Bench, rows: list[Row], first: int, total: int) -> list[Measured]:
    """Alternated rounds (ABC CBA ...) within each section, so that the machine's noise and any drift
    hit each side alike. The overhead rows are compared among themselves, before the tracing rows
    (whose exporter and sink would still be busy during the next row); each round waits for a quiet
    machine first."""
    results, index = [], first
    for section in dict.fromkeys(row.section for row in rows):
        group = [row for row in rows if row.section == section]
        bench.stack.restart("api")  # both sides fresh processes started alike: the api served every row above
        rounds: dict[str, list[Measured]] = {row.key: [] for row in group}
        for number in range(bench.config.overhead_rounds):
            for row in group if number % 2 == 0 else group[::-1]:
                wait_until_quiet(busy_below=QUIET_MACHINE, timeout=QUIET_TIMEOUT)
                rounds[row.key].append(bench.run(row, f"[{index:2d}/{total}] {row.label} {row.route}"))
                index += 1
        results += [figures.best_round(attempts) for attempts in rounds.values()]
    return results
