"""The benchmark's targets, each met or missed, with the rows that decide it and why a miss missed.

They are judged for the default settings on the machine at hand; quick runs print them as indicative.
"""

from collections.abc import Callable

from .figures import tracing_cost
from .results import Measured, Overhead, Report, Target
from .scenarios import ANTI, CORRECT, OPEN_LOOP_SHARE, TRACING_ROWS, WORKER_COUNTS, WORKERS

CEILING_TARGET = 0.9  # correct wait rows at the articles' load
ASYNC_HTTP_TARGET = 0.85  # async + httpx at twice the articles' load
ASYNC_ADVANTAGE = 3.0  # async + httpx over def + requests, past the threadpool's size
COLLAPSE_TARGET = 10.0  # an anti-pattern against its best correct twin
LAG_TARGET_MS = 10.0
HTTP_LAG_TARGET_MS = 20.0  # rows that also parse an upstream's answer on the loop
ASYNC_HTTP_LAG_TARGET_MS = 30.0
OVERHEAD_TARGET = 0.9
DB_SLOWEST_TARGET = 1.25  # async + asyncpg's slowest request over the def + psycopg2 twin's
OPEN_LOOP_LAG_TARGET_MS = 20.0
OBSERVABILITY_COST_TARGET = 0.05  # the watchdog and metrics: extra server CPU per request
TRACING_COST_TARGET = 0.10  # tracing at 10% sampling: extra server CPU per request over tracing off
# 2 api worker processes over 1 on 2 CPUs: not 2x, because PostgreSQL and the load generator need
# CPU from the same cores for every request.
WORKERS_SCALING_TARGET = 1.6
UNEVEN_WORKERS = 0.5  # the less busy of two workers below this share of the busier one's CPU
# A row measured above this share of the client's own ceiling, or with the client's CPU this busy,
# may have measured the load generator rather than the server.
CLIENT_SHARE_LIMIT = 0.5
CLIENT_CPU_LIMIT = 0.8

Check = Callable[[Measured], str | None]  # None when the row meets the target, else why not


def evaluate(report: Report) -> list[Target]:
    return [*wait_targets(report), *db_targets(report), *other_targets(report)]


def wait_targets(report: Report) -> list[Target]:
    config = report.config
    at_load = [r for r in report.rows if r.concurrency == config.concurrency and r.pattern == CORRECT]
    waits = [r for r in at_load if r.kind == "wait"]
    double = 2 * config.concurrency
    async_http = [r for r in report.rows if r.key == f"upstream.async@{double}"]
    beyond_threads = [
        r for r in report.rows if r.key.startswith("upstream.async@") and r.concurrency > config.concurrency
    ]
    lagged = [r for r in at_load if r.lag and r.kind in ("wait", "cpu")]
    return [
        judge(
            f"correct wait rows at {config.concurrency} concurrent reach >= {CEILING_TARGET:.0%} of their "
            "ceiling",
            waits,
            below(CEILING_TARGET),
        ),
        judge(
            f"async + httpx at {double} concurrent reaches >= {ASYNC_HTTP_TARGET:.0%} of its ceiling "
            f"with loop lag p99 < {ASYNC_HTTP_LAG_TARGET_MS:g} ms",
            async_http,
            both(below(ASYNC_HTTP_TARGET), lagging(ASYNC_HTTP_LAG_TARGET_MS)),
        ),
        judge(
            f"async + httpx serves >= {ASYNC_ADVANTAGE:g}x what def + requests does past "
            f"{config.concurrency} concurrent",
            beyond_threads,
            advantage(report),
        ),
        judge(
            f"loop lag p99 < {LAG_TARGET_MS:g} ms on correct rows at {config.concurrency} concurrent "
            f"(< {HTTP_LAG_TARGET_MS:g} ms on rows that call the upstream)",
            lagged,
            lag_by_kind,
        ),
        judge(
            f"open-loop loop lag p99 < {OPEN_LOOP_LAG_TARGET_MS:g} ms on every correct wait row at "
            f"{OPEN_LOOP_SHARE:.0%} of its ceiling",
            [r for r in report.rows if r.open_loop],
            open_loop_lag,
        ),
    ]


def db_targets(report: Report) -> list[Target]:
    config = report.config
    double = 2 * config.concurrency
    fair_levels = {f"db.async@{level}" for level in (config.concurrency, double)}
    return [
        judge(
            f"async + asyncpg at {config.concurrency} and {double} in flight: no 503, slowest request "
            f"<= {DB_SLOWEST_TARGET:g}x the def + psycopg2 twin's",
            [r for r in report.rows if r.key in fair_levels],
            db_fair(report),
        ),
        judge(
            f"async + asyncpg past {double} in flight: no more 503s than FIFO predicts past DB_POOL_TIMEOUT",
            [r for r in report.rows if r.key.startswith("db.async@") and r.concurrency > double],
            fifo_bound,
        ),
    ]


def other_targets(report: Report) -> list[Target]:
    return [
        judge(
            f"anti-patterns are >= {COLLAPSE_TARGET:g}x slower than their best correct twin",
            [r for r in report.rows if r.pattern == ANTI and r.kind == "wait"],
            not_collapsed,
        ),
        judge(
            f"the template's trivial route is within {1 - OVERHEAD_TARGET:.0%} of bare FastAPI",
            [r for r in report.rows if r.key == "overhead.app"],
            overhead(report),
        ),
        judge(
            f"the loop watchdog and metrics cost <= {OBSERVABILITY_COST_TARGET:.0%} more server CPU per "
            "request than the app without them",
            [r for r in report.rows if r.key == "overhead.app"],
            observability_cost(report),
        ),
        judge(
            f"{WORKER_COUNTS[-1]} api worker processes serve >= {WORKERS_SCALING_TARGET:g}x what "
            f"{WORKER_COUNTS[0]} does (async def + asyncpg point read at full speed, "
            f"{report.limits.cpus} CPUs)",
            [r for r in report.rows if r.key == f"workers.items.{WORKER_COUNTS[-1]}"],
            workers_scaling(report),
        ),
        judge(
            f"tracing at 10% sampling costs <= {TRACING_COST_TARGET:.0%} more server CPU per request than "
            "tracing off (OTEL_EXPORTER_OTLP_ENDPOINT unset)",
            [r for r in report.rows if r.key in {f"{spec.key}.10" for spec in TRACING_ROWS}],
            tracing_within(report),
        ),
        judge(
            "the load generator is not the bottleneck",
            [r for r in report.rows if r.server != "raw"],
            client_bound(report),
        ),
    ]


def db_fair(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        twin = report.row(r.key.replace("db.async@", "db.sync@"))
        if twin is None or not twin.slowest_ms:
            return f"{r.key}: no def + psycopg2 twin measured"
        misses = [f"{r.errors} errors {r.errors_by_kind}"] if r.errors else []
        times = (r.slowest_ms or 0) / twin.slowest_ms
        if times > DB_SLOWEST_TARGET:
            misses.append(f"slowest {r.slowest_ms:g} ms, {times:.2f}x the twin's {twin.slowest_ms:g} ms")
        return f"at {r.concurrency} in flight: {'; '.join(misses)}" if misses else None

    return check


def fifo_bound(r: Measured) -> str | None:
    if r.fifo_503 is None:
        return f"{r.key}: no FIFO prediction (nothing served)"
    refused = r.errors_by_kind.get("503", 0)
    others = {kind: count for kind, count in r.errors_by_kind.items() if kind != "503"}
    low, high = r.fifo_503
    if refused <= high and not others:
        return None
    return f"at {r.concurrency} in flight: {refused} 503s where FIFO predicts {low}-{high}" + (
        f", and other errors {others}" if others else ""
    )


def open_loop_lag(r: Measured) -> str | None:
    run = r.open_loop
    p99 = run.lag.p99_ms if run and run.lag else None
    if run is None or (p99 is not None and p99 < OPEN_LOOP_LAG_TARGET_MS):
        return None
    errors = f", {run.errors} errors" if run.errors else ""
    return (
        f"{r.route} at {run.rate_rps:g} req/s open loop: lag p99 {p99} ms (served {run.rps:g} req/s, "
        f"at most {run.most_in_flight} in flight{errors})"
    )


def judge(name: str, checked: list[Measured], check: Check) -> Target:
    misses = [miss for miss in map(check, checked) if miss]
    return Target(name, met=bool(checked) and not misses, misses=misses, checked=[r.key for r in checked])


def both(*checks: Check) -> Check:
    def check(r: Measured) -> str | None:
        return "; ".join(miss for miss in (c(r) for c in checks) if miss) or None

    return check


def below(minimum: float) -> Check:
    def check(r: Measured) -> str | None:
        if r.ratio is not None and r.ratio >= minimum:
            return None
        # What the row itself shows about why: failed requests, or a server busy computing.
        clues = [f"{r.errors} errors {r.errors_by_kind}"] if r.errors else []
        if r.server_cpu_s and r.completed:
            clues.append(
                f"server CPU {r.server_cpu_share:.0%} of a core, "
                f"{r.server_cpu_s / r.completed * 1000:.1f} ms per request"
            )
        share = f"{r.ratio or 0:.0%} of {r.ceiling_rps:g} req/s"
        return f"{r.route} at {r.concurrency}: {share} ({'; '.join(clues)})"

    return check


def lagging(limit_ms: float) -> Check:
    def check(r: Measured) -> str | None:
        p99 = r.lag.p99_ms if r.lag else None
        if p99 is not None and p99 < limit_ms:
            return None
        return f"{r.route} at {r.concurrency}: lag p99 {p99} ms"

    return check


def lag_by_kind(r: Measured) -> str | None:
    calls_upstream = "upstream" in r.key or "mixed" in r.key
    return lagging(HTTP_LAG_TARGET_MS if calls_upstream else LAG_TARGET_MS)(r)


def advantage(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        twin = report.row(r.key.replace("upstream.async@", "upstream.sync@"))
        if twin is None or not twin.rps:
            return f"{r.key}: no def + requests twin measured"
        times = r.rps / twin.rps
        return None if times >= ASYNC_ADVANTAGE else f"at {r.concurrency} concurrent only {times:.1f}x"

    return check


def not_collapsed(r: Measured) -> str | None:
    if (r.slower_than_twins or 0) >= COLLAPSE_TARGET or (r.rps == 0 and not r.errors):
        return None  # (none finished within its time: collapsed beyond measure)
    if r.slower_than_twins is None:
        return f"{r.route}: no request succeeded ({r.errors_by_kind})"
    return f"{r.route} at {r.concurrency} only {r.slower_than_twins}x slower"


def overhead(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        ratio = report.overhead.ratio
        if ratio is not None and ratio >= OVERHEAD_TARGET:
            return None
        return f"generated app at {ratio or 0:.0%} of bare: {overhead_layers(report.overhead)}"

    return check


def overhead_layers(overhead: Overhead) -> str:
    """Where the extra server CPU per request goes, layer by layer, from the four overhead rows."""
    bare, routed = overhead.bare_cpu_us_per_request, overhead.routed_cpu_us_per_request
    plain, app = overhead.plain_cpu_us_per_request, overhead.app_cpu_us_per_request
    if None in (bare, routed, plain, app):
        return "not every overhead row was measured"
    layers = [
        ("FastAPI's APIRouter layer (overhead.routed - overhead.bare)", routed - bare),
        ("the template's middleware, access line, body limit and handlers (plain - routed)", plain - routed),
        ("watchdog and metrics (app - plain)", app - plain),
    ]
    parts = "; ".join(f"{name} {extra:+.0f} µs" for name, extra in layers)
    return f"{app:.0f} vs {bare:.0f} µs per request = {parts}"


def observability_cost(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        cost = report.overhead.observability_cost
        if cost is not None and cost <= OBSERVABILITY_COST_TARGET:
            return None
        plain, app = report.overhead.plain_cpu_us_per_request, report.overhead.app_cpu_us_per_request
        extra = f" ({app - plain:+.0f} µs: {app:.0f} vs {plain:.0f})" if app and plain else ""
        reason = f"watchdog and metrics cost {cost or 0:+.1%}{extra} server CPU per request over plain"
        if (share := report.metrics_profile_share) is not None:
            # The watchdog and sampler threads are not on the profiled loop thread: what is, is metrics.
            reason += f"; prometheus-client's code is {share:.1%} of the app's profiled event-loop time"
        return reason

    return check


def tracing_within(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        row = r.key.rsplit(".", 1)[0]  # tracing.live.10 -> tracing.live
        cost = tracing_cost(report, row, "10")
        if cost is not None and cost <= TRACING_COST_TARGET:
            return None
        off = report.row(f"{row}.off")
        extra = ""
        if off and off.server_cpu_us_per_request and r.server_cpu_us_per_request:
            extra = f" ({r.server_cpu_us_per_request - off.server_cpu_us_per_request:+.0f} µs)"
        reason = f"{r.route}: tracing at 10% costs {cost or 0:+.1%}{extra} server CPU per request over off"
        share = report.tracing_profile_shares.get("10")  # profiled on the trivial route, TRACING_ROWS[0]
        if row == TRACING_ROWS[0].key and share is not None:
            reason += f", and OpenTelemetry's code is {share:.0%} of its event-loop time under the profiler"
        return reason

    return check


def client_bound(report: Report) -> Check:
    def check(r: Measured) -> str | None:
        share = r.client_cpu_share or 0
        if r.rps <= CLIENT_SHARE_LIMIT * report.loadgen_ceiling_rps and share <= CLIENT_CPU_LIMIT:
            return None
        return f"{r.route}: {r.rps:g} req/s with the client's CPU {share:.0%} busy"

    return check


def workers_scaling(report: Report) -> Check:
    """A miss says what shared the CPUs, and whether the client bound either row (then the ratio
    measured the load generator as much as the workers)."""

    def check(r: Measured) -> str | None:
        fewer = report.row(f"workers.items.{WORKER_COUNTS[0]}")
        if fewer is None or not fewer.rps:
            return f"{r.key}: no {WORKER_COUNTS[0]}-worker row measured"
        times = r.rps / fewer.rps
        if times >= WORKERS_SCALING_TARGET:
            return None
        cpus = report.limits.cpus
        clues = [f"only {cpus} CPU: the second worker has no core of its own"] if cpus < 2 else []
        clues += [f"{row.limits[WORKERS]} worker(s): {cpu_split(row, cpus)}" for row in (fewer, r)]
        busiest = r.server_process_cpu_shares[:2]
        if len(busiest) == 2 and busiest[1] < UNEVEN_WORKERS * busiest[0]:
            clues.append(
                f"one worker did most of the work ({busiest[0]:.2f} vs {busiest[1]:.2f} cores): the "
                "workers share one listening socket, and the one that wakes first accepts a burst of new "
                "keep-alive connections"
            )
        bound = [miss for miss in map(client_bound(report), (fewer, r)) if miss]
        clues.append("client-bound: " + "; ".join(bound) if bound else "the client kept up")
        return f"{times:.2f}x ({r.rps:g} vs {fewer.rps:g} req/s): {'; '.join(clues)}"

    return check


def cpu_split(r: Measured, cpus: int) -> str:
    """Who used the machine's CPUs during a row: the server, the load generator, and everything else
    (PostgreSQL's backends, and whatever else the machine runs)."""
    busy = (r.machine_cpu_busy or 0) * cpus
    server, client = r.server_cpu_share or 0, r.client_cpu_share or 0
    return (
        f"{busy:.2f} of {cpus} CPUs busy: server {server:.2f}, load generator {client:.2f}, "
        f"PostgreSQL and the rest {max(0.0, busy - server - client):.2f}"
    )
