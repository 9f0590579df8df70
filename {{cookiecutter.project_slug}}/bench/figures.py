"""From one row's raw measurements to its figures: the ceiling its kind defines, and the comparisons."""

import statistics
from dataclasses import replace

from . import fifo, loadgen, scenarios
from .results import LagSummary, Measured, OpenLoop, Overhead, Report
from .sampler import Peak
from .scenarios import Row

# What a Measured row repeats of its Row, as it was asked.
DESCRIBED = (
    "key", "section", "label", "route", "server", "pattern", "kind", "note", "requests", "server_env",
)  # fmt: skip


def ceiling_of(
    row: Row, load: loadgen.LoadResult, server_cpu: float | None
) -> tuple[float | None, str | None]:
    """Little's law for wait and CPU rows; for full-speed rows, one core at the measured CPU cost, or
    for rows bound by processes and CPUs, as many cores as the smaller of the two (a process runs on
    one core at a time)."""
    ceiling = row.ceiling()
    if ceiling is not None:
        return ceiling
    if row.server == "raw" and load.client_cpu > 0 and load.completed:
        per_request = load.client_cpu / load.completed
        return 1 / per_request, f"load-generator CPU: {per_request * 1e6:.0f} µs/req"
    if server_cpu and load.completed:
        per_request = server_cpu / load.completed
        if not row.limits:
            return 1 / per_request, f"CPU: one server process, {per_request * 1000:.2f} ms/req"
        cores = min(row.limits.values())
        binding = " = ".join(f"{name} {value}" for name, value in row.limits.items() if value == cores)
        unit = "core" if cores == 1 else "cores"
        return cores / per_request, f"{binding}: {cores} {unit} at {per_request * 1000:.2f} ms CPU/req"
    return None, None


def fifo_prediction(row: Row, load: loadgen.LoadResult) -> list[int] | None:
    """DB rows: the 503s a first-come-first-served pool would give this row's load (fifo.py)."""
    connections = min((v for name, v in row.limits.items() if name != scenarios.CLIENTS), default=None)
    if row.pool_timeout is None or connections is None:
        return None
    predicted = fifo.predicted_range(row.concurrency, connections, load.rps, row.pool_timeout, row.requests)
    return list(predicted) if predicted else None


def open_loop(rate: float, load: loadgen.LoadResult, lag: LagSummary) -> OpenLoop:
    return OpenLoop(
        rate_rps=round(rate, 3),
        rps=round(load.rps, 3),
        completed=load.completed,
        errors=load.errors,
        most_in_flight=load.concurrency,
        p99_ms=_ms(load.percentile(99)),
        lag=lag,
    )


def measured(
    row: Row,
    load: loadgen.LoadResult,
    lag: LagSummary | None,
    server_cpu_by_process: dict[int, float] | None,
    machine_busy: float,
    peak: Peak,
    budget: str | None = None,
    open_loop: OpenLoop | None = None,
) -> Measured:
    server_cpu = sum(server_cpu_by_process.values()) if server_cpu_by_process is not None else None
    ceiling_rps, binding = ceiling_of(row, load, server_cpu)
    elapsed = load.elapsed
    by_process = sorted((server_cpu_by_process or {}).values(), reverse=True)
    return Measured(
        **{name: getattr(row, name) for name in DESCRIBED},
        concurrency=load.concurrency,
        wait_s=row.wait,
        completed=load.completed,
        errors=load.errors,
        errors_by_kind=load.errors_by_kind,
        cut_at_max_seconds=load.cut,
        censored=len(load.censored),
        elapsed_s=round(elapsed, 4),
        rps=round(load.rps, 3),
        p50_ms=_ms(load.percentile(50)),
        p99_ms=_ms(load.percentile(99)),
        latency_is_lower_bound=bool(load.censored),
        ceiling_rps=round(ceiling_rps, 3) if ceiling_rps else None,
        binding=binding,
        limits=row.limits,
        ratio=round(load.rps / ceiling_rps, 4) if ceiling_rps else None,
        lag=lag,
        client_cpu_s=round(load.client_cpu, 3),
        client_cpu_share=_share(load.client_cpu, elapsed),
        server_cpu_s=_round(server_cpu, 3),
        server_cpu_share=_share(server_cpu, elapsed),
        server_process_cpu_shares=[_share(seconds, elapsed) or 0.0 for seconds in by_process],
        machine_cpu_busy=round(machine_busy, 3),
        server_rss_mb=peak.rss_mb,
        server_threads=peak.threads,
        server_processes=peak.processes,
        server_budget=budget,
        slowest_ms=_ms(load.percentile(100)),
        fifo_503=fifo_prediction(row, load),
        open_loop=open_loop,
        twins=list(row.twins),
    )


def compare_twins(rows: list[Measured]) -> None:
    """How much slower each anti-pattern is than each correct way to do the same work."""
    by_key = {row.key: row for row in rows}
    for row in rows:
        twins = {twin: by_key[twin].rps for twin in row.twins if twin in by_key}
        row.slower_than_each_twin = {
            twin: round(value / row.rps, 2) if row.rps else None for twin, value in twins.items()
        }
        row.slower_than_twins = round(max(twins.values()) / row.rps, 2) if twins and row.rps else None


def best_round(attempts: list[Measured]) -> Measured:
    """The best round's figures, plus the server's CPU per request in its median round: a round that
    a neighbour disturbed (a busy sibling core slows every instruction) moves neither figure."""
    best = max(attempts, key=lambda attempt: attempt.rps)
    per_round = [
        attempt.server_cpu_s / attempt.completed * 1e6
        for attempt in attempts
        if attempt.server_cpu_s and attempt.completed
    ]
    complete = len(per_round) == len(attempts)
    return replace(
        best,
        rounds_rps=[attempt.rps for attempt in attempts],
        rounds_cpu_us_per_request=[_round(value, 1) for value in per_round],
        server_cpu_us_per_request=_round(statistics.median(per_round), 1) if complete and per_round else None,
    )


def overhead_summary(report: Report) -> Overhead:
    """Two ratios. Throughput (best rounds) is what a client sees, but on a shared machine it moves
    with whatever else runs; CPU per request is what each app costs, whoever else runs: the target
    is judged on it (it is the ratio of their CPU-bound ceilings)."""
    bare, routed, app, plain = (report.row(f"overhead.{name}") for name in ("bare", "routed", "app", "plain"))
    if not bare or not app:
        return Overhead()
    bare_cpu, app_cpu = bare.server_cpu_us_per_request, app.server_cpu_us_per_request
    routed_cpu = routed.server_cpu_us_per_request if routed else None
    plain_cpu = plain.server_cpu_us_per_request if plain else None
    cost = _ratio(app_cpu, plain_cpu)
    return Overhead(
        ratio=_ratio(bare_cpu, app_cpu),
        throughput_ratio=_ratio(app.rps, bare.rps),
        bare_rps=bare.rps,
        app_rps=app.rps,
        routed_rps=routed.rps if routed else None,
        bare_cpu_us_per_request=bare_cpu,
        app_cpu_us_per_request=app_cpu,
        routed_cpu_us_per_request=routed_cpu,
        routed_ratio=_ratio(bare_cpu, routed_cpu),
        plain_rps=plain.rps if plain else None,
        plain_cpu_us_per_request=plain_cpu,
        observability_cost=round(cost - 1, 4) if cost else None,
    )


def tracing_cost(report: Report, key: str, level: str) -> float | None:
    """Extra server CPU per request of a tracing row (tracing.live, tracing.mixed) at a sampling level
    over the same row with tracing off: 0.1 = 10% more."""
    on, off = report.row(f"{key}.{level}"), report.row(f"{key}.off")
    ratio = _ratio(on.server_cpu_us_per_request, off.server_cpu_us_per_request) if on and off else None
    return round(ratio - 1, 4) if ratio else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 4) if top and bottom else None


def _share(seconds: float | None, elapsed: float) -> float | None:
    return round(seconds / elapsed, 3) if seconds is not None and elapsed else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
