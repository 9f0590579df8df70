"""The benchmark's outputs: a Markdown table, the JSON with every figure, and a PNG chart."""

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from . import scenarios
from .figures import tracing_cost
from .results import Measured, Overhead, Report
from .scenarios import Config

# The source articles' figures (shared/seeds): ab, N requests, C concurrent, `wait` seconds per request.
ARTICLE_FIGURES = [
    {
        "article": "Stop using async in FastAPI (ab -n 300 -c 100, one 0.5 s sleep)",
        "wait_s": 0.5,
        "rps": {"articles.def": 60.0, "articles.blocking": 1.98},
    },
    {
        "article": "async benchmark article (ab -n 200 -c 100, two 3 s sleeps = 6 s)",
        "wait_s": 6.0,
        "rps": {
            "articles.def": 5.53,
            "articles.blocking": 0.17,
            "articles.async": 11.06,
            "articles.threadpool": 8.29,
        },
    },
]


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    if value >= 10:
        return f"{value:.1f}{unit}"
    return f"{value:.2f}{unit}"


def markdown(report: Report) -> str:
    lines = [*preamble(report), ""]
    main = [row for row in report.rows if row.section != scenarios.SWEEP]
    sweep = [row for row in report.rows if row.section == scenarios.SWEEP]
    lines += table(main, MAIN_COLUMNS)
    if sweep:
        order = [spec.key for spec in scenarios.SWEEP_ROWS]
        sweep.sort(key=lambda row: (order.index(row.key.split("@")[0]), row.concurrency))
        lines += ["", *sweep_intro(report), "", *table(sweep, SWEEP_COLUMNS)]
    lines += ["", LEGEND.format(probe_ms=report.config.probe_interval * 1000), ""]
    lines += [*workers_lines(report), *overhead_lines(report.overhead, report.config, report.rows), ""]
    if report.profile:  # a run without the overhead rows has none
        lines += [*profile_lines(report), ""]
    lines += [*tracing_lines(report), ""]
    lines += [*articles_comparison(report), ""]
    quick = " (quick mode: indicative only; they are for the default settings)" if report.config.quick else ""
    lines += [f"Targets{quick}", ""]
    for target in report.targets:
        detail = f": {'; '.join(target.misses)}" if target.misses else ""
        lines.append(f"- {'met' if target.met else 'MISSED'}: {target.target}{detail}")
    return "\n".join(lines) + "\n"


def preamble(report: Report) -> list[str]:
    config, limits = report.config, report.limits
    return [
        f"Command: `{report.command}` ({'quick' if config.quick else 'default'} settings), "
        f"{report.generated_at}, {report.machine['cpus']} CPUs, load average before "
        f"{report.machine['loadavg_before'][0]}, measured in {report.duration_s} s.",
        "",
        f"Wait rows: W = {config.wait:g} s per request; at the articles' load {config.requests} requests, "
        f"{config.concurrency} concurrent; the sweep sends {config.waves} waves at each of "
        f"{', '.join(map(str, config.sweep))} concurrent; blocking rows are cut at "
        f"{config.anti_seconds:g} s. "
        f"Full-speed rows: {config.full_requests} requests, {config.full_concurrency} concurrent. "
        f"CPU rows: {config.cpu_requests} jobs of count_primes({config.cpu_n}) = "
        f"{limits.cpu_job_seconds * 1000:.0f} ms, {config.cpu_concurrency} concurrent.",
        f"Limits: THREADPOOL_TOKENS {limits.threadpool_tokens}, "
        f"SYNC_DB_POOL_SIZE {limits.sync_db_pool_size}, ASYNC_DB_POOL_SIZE {limits.async_db_pool_size}, "
        f"HTTP_MAX_CONNECTIONS {limits.http_max_connections}, "
        f"PROCESS_POOL_WORKERS {limits.process_pool_workers}, "
        f"WORKER_CONCURRENCY {limits.worker_concurrency or '— (no Celery)'}.",
        f"Load generator's own ceiling: {_num(report.loadgen_ceiling_rps)} req/s "
        f"({report.rows[0].concurrency} connections, against bench.rawserver).",
    ]


def sweep_intro(report: Report) -> list[str]:
    return [
        f"Concurrency sweep: the same {report.config.wait:g} s waits with more requests in flight. "
        "An `async def` request "
        "waiting on the upstream holds a socket; a `def` request holds a thread, so the threadpool "
        "binds it, or it pays for as many threads as requests. With a database, the connection pool "
        "binds both keywords alike. Server memory and threads are the highest seen during the row.",
    ]


def table(rows: list[Measured], columns: list[tuple[str, str, Callable[[Measured], str]]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for title, _, _ in columns) + " |",
        "|" + "|".join(align for _, align, _ in columns) + "|",
    ]
    for number, row in enumerate(rows, 1):
        cells = [str(number) if title == "#" else cell(row) for title, _, cell in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rps(row: Measured) -> str:
    text = _num(row.rps)
    if row.cut_at_max_seconds:
        text += f" (cut at {row.elapsed_s:.0f} s: {row.completed} done)"
    if row.rounds_rps:
        text += f" (best of {len(row.rounds_rps)})"
    return text


def _errors(row: Measured) -> str:
    kinds = ", ".join(f"{kind}: {count}" for kind, count in row.errors_by_kind.items())
    text = f"{row.errors} ({kinds})" if row.errors else "0"
    if row.fifo_503:
        low, high = row.fifo_503
        text += f"; FIFO predicts {low}" + (f"-{high}" if high != low else "")
    return text


def _open_loop(row: Measured) -> str:
    run = row.open_loop
    if run is None:
        return "—"
    lag = _num(run.lag.p99_ms) if run.lag else "—"
    errors = f", {run.errors} errors" if run.errors else ""
    return f"{lag} at {_num(run.rate_rps)} req/s{errors}"


def _bound(row: Measured, value: float | None) -> str:
    return ("≥ " if row.latency_is_lower_bound else "") + _num(value)


def _lag(row: Measured) -> str:
    return f"{_num(row.lag.p99_ms)} / {_num(row.lag.max_ms)}" if row.lag else "—"


COMMON_COLUMNS = [
    ("req/s", "---:", _rps),
    (
        "ceiling req/s: what binds",
        "---",
        lambda r: f"{_num(r.ceiling_rps)}: {r.binding}" if r.binding else "—",
    ),
    ("measured / ceiling", "---:", lambda r: f"{r.ratio:.0%}" if r.ratio is not None else "—"),
    ("p50 ms", "---:", lambda r: _bound(r, r.p50_ms)),
    ("p99 ms", "---:", lambda r: _bound(r, r.p99_ms)),
    ("slowest ms", "---:", lambda r: _bound(r, r.slowest_ms)),
    ("errors", "---:", _errors),
    ("loop lag p99 / max ms", "---:", _lag),
    (f"open loop at {scenarios.OPEN_LOOP_SHARE:.0%}: lag p99 ms", "---:", _open_loop),
]
MAIN_COLUMNS = [
    ("#", "---", str),
    ("section", "---", lambda r: r.section),
    ("pattern", "---", lambda r: r.label + (" ✗" if r.pattern == scenarios.ANTI else "")),
    ("route", "---", lambda r: f"`{r.route}`"),
    *COMMON_COLUMNS,
]
SWEEP_COLUMNS = [
    ("#", "---", str),
    ("pattern", "---", lambda r: r.label + (" ✗" if r.pattern == scenarios.ANTI else "")),
    ("route", "---", lambda r: f"`{r.route}`"),
    ("concurrent", "---:", lambda r: str(r.concurrency)),
    *COMMON_COLUMNS,
    ("server RSS MB", "---:", lambda r: _num(r.server_rss_mb)),
    ("server threads", "---:", lambda r: str(r.server_threads or "—")),
]
LEGEND = (
    "✗ = anti-pattern (blocking call inside `async def`, antipatterns/app.py). "
    "Ceilings: Little's law, min(slots) / W; full-speed rows: one core at the CPU cost per request "
    "measured in the server process (so measured / ceiling = how busy that core was); worker-process "
    "rows: as many cores as the smaller of WEB_CONCURRENCY and the CPUs, at the CPU of all its processes. "
    "Loop lag = latency of `GET /health/live` sent every {probe_ms:g} ms from another process during the "
    "row. "
    "Open loop: the correct wait rows at the articles' load are run again with their requests arriving "
    "at Poisson times at 80% of the ceiling, as independent clients arrive, rather than in closed-loop "
    "waves. "
    "FIFO predicts: the 503s a first-come-first-served pool gives the same load, with each connection "
    "held connections / req/s seconds (bench/fifo.py; a range, for holds 2% shorter and longer). "
    "≥: the row was cut, unfinished requests count with their age then. "
    "Every process here (servers, workers, PostgreSQL, the load generator) shares the machine's CPUs: "
    "`machine_cpu_busy` in the JSON says how busy they were during each row."
)


def workers_lines(report: Report) -> list[str]:
    """What a second api worker process adds, and the connections each count may hold: the figure a
    WEB_CONCURRENCY choice needs (serve.py, budget.py)."""
    rows = [row for row in report.rows if row.section == scenarios.WORKER_PROCESSES]
    if not rows:
        return []
    pools = ", ".join(f"{name} {value}" for name, value in scenarios.WORKER_POOLS.items())
    each = "; ".join(
        f"{row.limits[scenarios.WORKERS]} worker{'s' if row.limits[scenarios.WORKERS] > 1 else ''}: "
        f"{_num(row.rps)} req/s, server CPU {_num(row.server_cpu_share)} cores "
        f"({', '.join(map(_num, row.server_process_cpu_shares))} per process), "
        f"{row.server_budget or 'no connection budget printed'}"
        for row in rows
    )
    scaling = f" {rows[-1].rps / rows[0].rps:.2f}x on {report.limits.cpus} CPUs." if rows[0].rps else ""
    return [
        f"Worker processes: `{rows[0].route}` at full speed, {rows[0].concurrency} concurrent, "
        f"WEB_CONCURRENCY set and per worker {pools}. {each}.{scaling}",
        "",
    ]


def tracing_lines(report: Report) -> list[str]:
    """Server CPU per request of each tracing row, off and at each sampling level, and the cost."""
    parts = []
    for spec in scenarios.TRACING_ROWS:
        measured = {level: report.row(f"{spec.key}.{level}") for level in scenarios.SAMPLING}
        if not all(measured.values()):
            continue
        costs = [
            f"{level}% {measured[level].server_cpu_us_per_request:g} µs "
            f"({tracing_cost(report, spec.key, level) or 0:+.1%})"
            for level in scenarios.SAMPLING
            if level != "off"
        ]
        off = measured["off"]
        parts.append(f"`{off.route}`: off {off.server_cpu_us_per_request:g} µs, {', '.join(costs)}")
    if not parts:
        return ["Tracing cost: not measured in this run."]
    line = (
        "Tracing cost (tracing.py, exporting over OTLP/HTTP to bench.otlp_sink on loopback), server CPU per "
        "request (median round) in alternated rounds: " + "; ".join(parts) + ". Off, nothing is installed."
    )
    if shares := report.tracing_profile_shares:
        line += f" {tracing_profile_sentence(shares)}"
    return [line]


def tracing_profile_sentence(shares: dict[str, float]) -> str:
    return (
        f"Under the profiler, OpenTelemetry's own code is {shares['10']:.0%} of the event loop's time on "
        f"`GET /health/live` at 10% sampling ({shares['off']:.0%} off: FastAPI's own telemetry asking "
        "whether a provider is set). Its ASGI middleware runs for every request, sampled or not "
        "(attributes for the sampler, the span's name, a span), which costs about the same on any route "
        "(OpenTelemetry's published figure: about +120 µs a request)."
    )


def round_spread(rows: list[Measured]) -> str:
    """Each overhead row's cheapest and dearest round: how far the machine moved its figure."""
    spans = [
        f"{row.label} {min(rounds):g}-{max(rounds):g}"
        for row in rows
        if row.section == scenarios.OVERHEAD and (rounds := row.rounds_cpu_us_per_request)
    ]
    if not spans:
        return ""
    return (
        f" Rounds ranged, in µs per request: {'; '.join(spans)}. A difference inside those spreads is "
        "this machine's neighbours, not the code (each round's figure is in the JSON)."
    )


def overhead_lines(overhead: Overhead, config: Config, rows: list[Measured]) -> list[str]:
    if overhead.ratio is None:
        return ["Framework overhead: not measured in this run."]
    routed = (
        f" Bare FastAPI with the route in an included APIRouter, as the template's routers are: "
        f"{overhead.routed_cpu_us_per_request:g} µs, {overhead.routed_ratio:.0%} of bare."
        if overhead.routed_ratio
        else ""
    )
    watching = (
        f" The same app with OBSERVABILITY=false (no loop watchdog, no metrics): "
        f"{overhead.plain_cpu_us_per_request:g} µs; watching the loop and serving metrics costs "
        f"{overhead.observability_cost:+.1%} server CPU per request."
        if overhead.observability_cost is not None
        else ""
    )
    return [
        f"Framework overhead on `GET /health/live`, same uvicorn command, {config.overhead_rounds} "
        f"alternated rounds of {config.overhead_requests} requests, each after the machine was quiet: "
        f"the generated app costs {overhead.app_cpu_us_per_request:g} µs of server CPU per request "
        f"(its median round), bare FastAPI "
        f"{overhead.bare_cpu_us_per_request:g} µs: the app's ceiling is {overhead.ratio:.0%} of bare "
        f"FastAPI's. Best rounds: {_num(overhead.app_rps)} vs {_num(overhead.bare_rps)} req/s "
        f"({overhead.throughput_ratio:.0%}; on a shared machine this one moves with the neighbours)."
        + routed
        + watching
        + round_spread(rows)
    ]


def profile_lines(report: Report) -> list[str]:
    lines = [
        f"Where the generated app's `GET /health/live` spends its time: cProfile on the event loop's "
        f"thread, {report.config.overhead_requests} requests, {report.config.full_concurrency} concurrent "
        "(bench/profiler.py; the profiler's own cost per call inflates every figure, small functions "
        "called often the most: the ranking is the finding, the overhead rows the cost).",
        "",
        "| function (own time) | calls per request | µs per request | share |",
        "|---|---:|---:|---:|",
    ]
    for entry in report.profile:
        figures = f"{entry.calls_per_request:g} | {entry.own_us_per_request:g} | {entry.own_share:.1%}"
        lines.append(f"| `{entry.function}` | {figures} |")
    if report.metrics_profile_share is not None:
        lines += [
            "",
            f"Of all its own time, prometheus-client's code (the request's metric, in multiprocess mode "
            f"as compose runs it: a value written to a shared file) is {report.metrics_profile_share:.1%}.",
        ]
    return lines


def articles_comparison(report: Report) -> list[str]:
    """Different waits, same shape: req/s x wait = requests served at once, comparable across W."""
    lines = [
        "Against the articles (req/s x seconds of wait per request = requests in service at once):",
        "",
        "| source | def + sleep | async def + time.sleep | async def + asyncio.sleep | run_in_threadpool |",
        "|---|---:|---:|---:|---:|",
    ]
    keys = ["articles.def", "articles.blocking", "articles.async", "articles.threadpool"]
    for figures in ARTICLE_FIGURES:
        cells = [_served(figures["rps"].get(key), figures["wait_s"]) for key in keys]
        lines.append(f"| {figures['article']} | " + " | ".join(cells) + " |")
    measured = [report.row(key) for key in keys]
    cells = [_served(row.rps if row else None, report.config.wait) for row in measured]
    lines.append("| this run | " + " | ".join(cells) + " |")
    return lines


def _served(rps: float | None, wait: float) -> str:
    return "—" if rps is None else f"{rps:.3g} req/s x {wait:g} s = {rps * wait:.1f}"


def chart(report: Report, path: Path) -> bool:
    """req/s per row beside its ceiling, log scale; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = report.rows
    colours = {scenarios.CORRECT: "#2b8a3e", scenarios.ANTI: "#c92a2a", scenarios.REFERENCE: "#868e96"}
    labels = [
        f"{row.label}  {row.route}" + (f"  C={row.concurrency}" if "@" in row.key else "") for row in rows
    ]
    positions = list(range(len(rows)))[::-1]
    figure, axes = plt.subplots(figsize=(13, 0.42 * len(rows) + 1.8))
    axes.barh(positions, [row.ceiling_rps or 0 for row in rows], height=0.8, color="none",
              edgecolor="#343a40", linestyle="--")  # fmt: skip
    rates = [max(row.rps, 1e-3) for row in rows]
    axes.barh(positions, rates, height=0.55, color=[colours[row.pattern] for row in rows])
    for position, rate, row in zip(positions, rates, rows, strict=True):
        ratio = f"  {row.ratio:.0%} of ceiling" if row.ratio is not None else ""
        axes.text(rate, position, f" {_num(row.rps)}{ratio}", va="center", fontsize=8)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xscale("log")
    # Room on the right for the labels, and the axis starting below the slowest bar.
    values = [value for row in rows for value in (row.rps, row.ceiling_rps or 0) if value > 0]
    axes.set_xlim(min(values) / 3, max(values) * 8)
    axes.set_xlabel("requests per second (log scale); dashed box = ceiling")
    axes.set_title(
        f"make bench: W={report.config.wait:g} s, {report.machine['cpus']} CPUs "
        f"— green correct, red anti-pattern, grey reference",
        fontsize=10,
    )
    axes.grid(axis="x", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write(report: Report, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        kind: directory / f"bench.{suffix}"
        for kind, suffix in (("markdown", "md"), ("json", "json"), ("png", "png"))
    }
    paths["markdown"].write_text(markdown(report))
    if not chart(report, paths["png"]):
        del paths["png"]
    report.outputs = {kind: str(path) for kind, path in paths.items()}
    paths["json"].write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n")
    return paths
