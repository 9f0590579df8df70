"""The benchmark's outputs: a Markdown table, the JSON with every figure, and a PNG chart."""

import json
from pathlib import Path

from . import scenarios

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


def markdown(report: dict) -> str:
    config, limits = report["config"], report["limits"]
    lines = [
        f"Command: `{report['command']}` ({'quick' if config['quick'] else 'default'} settings), "
        f"{report['generated_at']}, {report['machine']['cpus']} CPUs, load average before "
        f"{report['machine']['loadavg_before'][0]}, measured in {report['duration_s']} s.",
        "",
        f"Wait rows: {config['requests']} requests, {config['concurrency']} concurrent, "
        f"W = {config['wait']:g} s per request, each row cut at {config['max_seconds']:g} s. "
        f"Full-speed rows: {config['full_requests']} requests, {config['full_concurrency']} concurrent. "
        f"CPU rows: {config['cpu_requests']} jobs of count_primes({config['cpu_n']}) = "
        f"{limits['cpu_job_seconds'] * 1000:.0f} ms, {config['cpu_concurrency']} concurrent.",
        f"Limits: THREADPOOL_TOKENS {limits['threadpool_tokens']}, "
        f"SYNC_DB_POOL_SIZE {limits['sync_db_pool_size']}, "
        f"ASYNC_DB_POOL_SIZE {limits['async_db_pool_size']}, "
        f"HTTP_MAX_CONNECTIONS {limits['http_max_connections']}, "
        f"PROCESS_POOL_WORKERS {limits['process_pool_workers']}, "
        f"WORKER_CONCURRENCY {limits['worker_concurrency'] or '— (no Celery)'}.",
        f"Load generator's own ceiling: {_num(report['loadgen_ceiling_rps'])} req/s "
        f"({report['rows'][0]['concurrency']} connections, against bench.rawserver).",
        "",
        "| # | section | pattern | route | req/s | ceiling req/s: what binds | measured / ceiling "
        "| p50 ms | p99 ms | errors | loop lag p99 / max ms |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for number, row in enumerate(report["rows"], 1):
        bound = "≥ " if row["latency_is_lower_bound"] else ""
        rps = _num(row["rps"])
        if row["cut_at_max_seconds"]:
            rps += f" (cut at {row['elapsed_s']:.0f} s: {row['completed']} done)"
        if row.get("rounds_rps"):
            rps += f" (best of {len(row['rounds_rps'])})"
        pattern = row["label"] + (" ✗" if row["pattern"] == scenarios.ANTI else "")
        ceiling = f"{_num(row['ceiling_rps'])}: {row['binding']}" if row["ceiling_rps"] else "—"
        ratio = f"{row['ratio']:.0%}" if row["ratio"] is not None else "—"
        lag = row["lag"]
        lag_text = f"{_num(lag['p99_ms'])} / {_num(lag['max_ms'])}" if lag else "—"
        errors = str(row["errors"])
        if row["errors"]:
            errors += (
                " (" + ", ".join(f"{kind}: {count}" for kind, count in row["errors_by_kind"].items()) + ")"
            )
        lines.append(
            f"| {number} | {row['section']} | {pattern} | `{row['route']}` | {rps} | {ceiling} | {ratio} "
            f"| {bound}{_num(row['p50_ms'])} | {bound}{_num(row['p99_ms'])} | {errors} | {lag_text} |"
        )
    overhead = report["overhead"]
    lines += [
        "",
        "✗ = anti-pattern (blocking call inside `async def`, antipatterns/app.py). "
        "Ceilings: Little's law, min(slots) / W; full-speed rows: one core at the CPU cost per request "
        "measured in the server process (so measured / ceiling = how busy that core was). "
        "Loop lag = latency of `GET /health/live` sent every "
        f"{config['probe_interval'] * 1000:g} ms from another process during the row. "
        "≥: the row was cut, unfinished requests count with their age then. "
        "Every process here (servers, workers, PostgreSQL, the load generator) shares the machine's CPUs: "
        "`machine_cpu_busy` in the JSON says how busy they were during each row.",
        "",
        *overhead_lines(overhead, config),
        "",
        *articles_comparison(report),
        "",
        "Targets"
        + (" (quick mode: indicative only; they are for the default settings)" if config["quick"] else ""),
        "",
    ]
    for target in report["targets"]:
        status = "met" if target["met"] else "MISSED"
        detail = f": {'; '.join(target['misses'])}" if target["misses"] else ""
        lines.append(f"- {status}: {target['target']}{detail}")
    return "\n".join(lines) + "\n"


def overhead_lines(overhead: dict, config: dict) -> list[str]:
    if overhead.get("ratio") is None:
        return ["Framework overhead: not measured in this run."]
    return [
        f"Framework overhead on `GET /health/live`, same uvicorn command, "
        f"{config['overhead_rounds']} alternated rounds of {config['overhead_requests']} requests: "
        f"the generated app costs "
        f"{overhead['app_cpu_us_per_request']:g} µs of server CPU per request, bare FastAPI "
        f"{overhead['bare_cpu_us_per_request']:g} µs: the app's ceiling is {overhead['ratio']:.0%} of bare "
        f"FastAPI's. Best rounds: {_num(overhead['app_rps'])} vs {_num(overhead['bare_rps'])} req/s "
        f"({overhead['throughput_ratio']:.0%}; on a shared machine this one moves with the neighbours)."
        + (
            f" Bare FastAPI with the route in an included APIRouter, as the template's routers are: "
            f"{overhead['routed_cpu_us_per_request']:g} µs, {overhead['routed_ratio']:.0%} of bare."
            if overhead.get("routed_ratio")
            else ""
        )
    ]


def articles_comparison(report: dict) -> list[str]:
    """Different waits, same shape: req/s x wait = requests served at once, comparable across W."""
    by_key = {row["key"]: row for row in report["rows"]}
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
    wait = report["config"]["wait"]
    cells = [_served(by_key[key]["rps"] if key in by_key else None, wait) for key in keys]
    lines.append("| this run | " + " | ".join(cells) + " |")
    return lines


def _served(rps: float | None, wait: float) -> str:
    return "—" if rps is None else f"{rps:.3g} req/s x {wait:g} s = {rps * wait:.1f}"


def chart(report: dict, path: Path) -> bool:
    """req/s per row beside its ceiling, log scale; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = report["rows"]
    colours = {scenarios.CORRECT: "#2b8a3e", scenarios.ANTI: "#c92a2a", scenarios.REFERENCE: "#868e96"}
    labels = [f"{row['label']}  {row['route']}" for row in rows]
    positions = list(range(len(rows)))[::-1]
    figure, axes = plt.subplots(figsize=(13, 0.42 * len(rows) + 1.8))
    ceilings = [row["ceiling_rps"] or 0 for row in rows]
    axes.barh(positions, ceilings, height=0.8, color="none", edgecolor="#343a40", linestyle="--")
    axes.barh(
        positions,
        [max(row["rps"], 1e-3) for row in rows],
        height=0.55,
        color=[colours[row["pattern"]] for row in rows],
    )
    for position, row in zip(positions, rows, strict=True):
        ratio = f"  {row['ratio']:.0%} of ceiling" if row["ratio"] is not None else ""
        axes.text(max(row["rps"], 1e-3), position, f" {_num(row['rps'])}{ratio}", va="center", fontsize=8)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xscale("log")
    # Room on the right for the labels, and the axis starting below the slowest bar.
    values = [value for row in rows for value in (row["rps"], row["ceiling_rps"] or 0) if value > 0]
    axes.set_xlim(min(values) / 3, max(values) * 8)
    axes.set_xlabel("requests per second (log scale); dashed box = ceiling")
    config = report["config"]
    axes.set_title(
        f"make bench: C={config['concurrency']}, W={config['wait']:g} s, {report['machine']['cpus']} CPUs "
        f"— green correct, red anti-pattern, grey reference",
        fontsize=10,
    )
    axes.grid(axis="x", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write(report: dict, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        kind: directory / f"bench.{suffix}"
        for kind, suffix in (("markdown", "md"), ("json", "json"), ("png", "png"))
    }
    text = markdown(report)
    paths["markdown"].write_text(text)
    if not chart(report, paths["png"]):
        del paths["png"]
    report["outputs"] = {kind: str(path) for kind, path in paths.items()}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return paths
