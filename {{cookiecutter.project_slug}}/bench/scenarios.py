"""What the benchmark measures: one Row per pattern, with the ceiling Little's law gives it.

A route whose requests each wait W seconds serves at most `slots / W` requests per second, where
`slots` is the smallest limit on how many can wait at once (Little's law, explained with the
settings in config.py): the client's concurrency, the threadpool tokens, a connection pool, or 1
when the wait blocks the event loop. That smallest limit "binds", and the table names it. CPU jobs
are the same with W = the job's CPU time. Rows with no wait ("full speed") are bound by the
server's own CPU: their ceiling is what one core serves at the CPU cost per request measured during
the run, or, for the worker-process rows, as many cores as the smaller of WEB_CONCURRENCY and the CPUs.

The rows are data: one line each below, a URL template ({w}: the wait, {n}: the CPU job's size)
and the names of the limits that bound it.
"""

from dataclasses import dataclass, field

from . import loadgen

ARTICLES = "articles"
IO = "real I/O"
SWEEP = "concurrency sweep"
CPU = "CPU"
OVERHEAD = "overhead"
TRACING = "tracing"
CONTROL = "load generator"
WORKER_PROCESSES = "worker processes"

CORRECT = "correct"
ANTI = "anti-pattern"
REFERENCE = "reference"
OPEN_LOOP_SHARE = 0.8  # of a wait row's ceiling: the arrival rate of its open-loop run

# Limit names, as the table prints them.
CLIENTS = "concurrency"
LOOP = "one event loop"
TOKENS = "THREADPOOL_TOKENS"
SYNC_POOL = "SYNC_DB_POOL_SIZE"
ASYNC_POOL = "ASYNC_DB_POOL_SIZE"
HTTP_CONNECTIONS = "HTTP_MAX_CONNECTIONS"
REQUESTS_POOL = "requests pool"  # sized to the tokens (clients.py): one connection per thread
PROCESSES = "PROCESS_POOL_WORKERS"
CELERY = "WORKER_CONCURRENCY"
CPUS = "CPUs"
WORKERS = "WEB_CONCURRENCY"  # api worker processes (serve.py); set per row, not a setting of the run


@dataclass
class Config:
    """The knobs of one run (the JSON records them all)."""

    quick: bool
    only: list[str] | None  # row keys (prefixes) to run; None: all
    requests: int  # per wait row at the articles' load (the articles: 300)
    concurrency: int  # the articles' load (100)
    sweep: list[int]  # concurrency levels of the sweep
    waves: int  # sweep rows send waves x concurrency requests
    wait: float  # seconds of wait per request (the articles: 0.5)
    max_seconds: float  # per row: a safety cut
    anti_seconds: float  # blocking rows run this long (they would take requests x wait)
    full_requests: int  # per full-speed row
    full_concurrency: int
    workers_concurrency: int  # the worker-process rows (all alike, so only the processes differ)
    cpu_n: int  # count primes below n: one CPU job
    cpu_requests: int
    cpu_concurrency: int
    overhead_requests: int
    overhead_rounds: int
    loadgen_requests: int
    poll_interval: float  # Celery job polling
    probe_interval: float
    item_count: int


@dataclass
class Limits:
    """The system's limits, read from the same settings the services run with."""

    threadpool_tokens: int
    sync_db_pool_size: int
    async_db_pool_size: int
    http_max_connections: int
    process_pool_workers: int
    worker_concurrency: int | None
    cpus: int
    cpu_job_seconds: float  # calibrated: count_primes(cpu_n) in this process
    db_pool_timeout: float | None = None  # (None in the JSON of runs before it was recorded)

    def by_name(self, concurrency: int) -> dict[str, int | None]:
        return {
            CLIENTS: concurrency,
            LOOP: 1,
            TOKENS: self.threadpool_tokens,
            REQUESTS_POOL: self.threadpool_tokens,
            SYNC_POOL: self.sync_db_pool_size,
            ASYNC_POOL: self.async_db_pool_size,
            HTTP_CONNECTIONS: self.http_max_connections,
            PROCESSES: self.process_pool_workers,
            CELERY: self.worker_concurrency,
            CPUS: self.cpus,
        }


@dataclass(frozen=True)
class Spec:
    """One row as written in the tables below."""

    key: str
    label: str
    server: str  # a Stack service: api, anti, threads, bare, routed, upstream, raw
    url: str
    pattern: str
    binds: tuple[str, ...] = ()
    twins: tuple[str, ...] = ()  # correct rows (key prefixes) an anti-pattern is compared with
    note: str = ""


@dataclass
class Row:
    key: str
    section: str
    label: str
    server: str
    route: str
    pattern: str
    kind: str  # "wait" (Little's law), "cpu" (jobs), "full" (no wait: CPU-bound)
    operation: loadgen.Operation
    requests: int
    concurrency: int
    max_seconds: float
    wait: float | None = None  # per request: the wait (wait rows) or the job's CPU time (cpu rows)
    limits: dict[str, int] = field(default_factory=dict)
    twins: tuple[str, ...] = ()
    # Settings the row's server runs with, beyond the defaults (it is restarted when they change).
    server_env: dict[str, str] = field(default_factory=dict)
    # Servers restarted before the row. A pool keeps every connection it ever opened: fresh processes
    # keep the run's PostgreSQL connections near one pool at a time (max_connections is often 100).
    restart_before: tuple[str, ...] = ()
    ramp: float = 0.0  # seconds between connections opened during the load (loadgen.run_load); 0: all first
    pool_timeout: float | None = None  # DB rows: DB_POOL_TIMEOUT, for the 503s FIFO predicts (fifo.py)
    open_loop: bool = False  # also run open-loop at OPEN_LOOP_SHARE of the ceiling (bench/openloop.py)
    note: str = ""

    @property
    def warmup(self) -> int:
        """Unmeasured requests first, so that pools, threads and worker processes exist."""
        if self.pattern == ANTI:
            return 0  # it would take as long as the row, and there is nothing to warm
        if self.kind == "full":
            return min(self.requests, 200)
        return self.concurrency

    @property
    def open_loop_rate(self) -> float:
        ceiling = self.ceiling()
        return OPEN_LOOP_SHARE * ceiling[0] if ceiling else 0.0

    def ceiling(self) -> tuple[float, str] | None:
        """(requests/s, which limit binds) for wait and cpu rows; full-speed rows are measured."""
        if not self.limits or not self.wait:
            return None
        slots = min(self.limits.values())
        binding = " = ".join(f"{name} {value}" for name, value in self.limits.items() if value == slots)
        return slots / self.wait, f"{binding} / {self.wait:.3g} s"


# fmt: off
ARTICLE_ROWS = [  # the articles' four ways to wait W seconds per request
    Spec("articles.def", "def + time.sleep", "anti", "/articles/def-sleep?seconds={w}", CORRECT, (CLIENTS, TOKENS)),
    Spec("articles.async", "async def + asyncio.sleep", "anti", "/articles/async-sleep?seconds={w}", CORRECT, (CLIENTS,)),
    Spec("articles.threadpool", "async def + run_in_threadpool(time.sleep)", "anti", "/articles/threadpool-sleep?seconds={w}", CORRECT, (CLIENTS, TOKENS)),
    Spec("articles.blocking", "async def + time.sleep", "anti", "/anti/sleep?seconds={w}", ANTI, (CLIENTS, LOOP), ("articles.def", "articles.async", "articles.threadpool")),
]
SWEEP_ROWS = [  # the same wait in the upstream service and in PostgreSQL, at each concurrency level
    Spec("upstream.async", "async def + httpx", "api", "/async/upstream?delay={w}", CORRECT, (CLIENTS, HTTP_CONNECTIONS)),
    Spec("upstream.sync", "def + requests", "api", "/sync/upstream?delay={w}", CORRECT, (CLIENTS, TOKENS, REQUESTS_POOL)),
    Spec("upstream.threads", "def + requests, THREADPOOL_TOKENS = concurrency", "threads", "/sync/upstream?delay={w}", REFERENCE, (CLIENTS, TOKENS, REQUESTS_POOL), note="threads raised to compete"),
    Spec("upstream.anti", "async def + requests", "anti", "/anti/upstream?delay={w}", ANTI, (CLIENTS, LOOP), ("upstream.async", "upstream.sync")),
    Spec("db.async", "async def + asyncpg", "api", "/async/db-wait?seconds={w}", CORRECT, (CLIENTS, ASYNC_POOL)),
    Spec("db.sync", "def + psycopg2", "api", "/sync/db-wait?seconds={w}", CORRECT, (CLIENTS, TOKENS, SYNC_POOL)),
]
IO_ROWS = [  # at the articles' load only
    Spec("io.upstream.httpcore", "async def + httpx, default transport (httpcore)", "anti", "/articles/httpcore-upstream?delay={w}", REFERENCE, (CLIENTS, HTTP_CONNECTIONS), note="why clients.py uses aiohttp's transport"),
    Spec("io.db.anti", "async def + psycopg2", "anti", "/anti/db-wait?seconds={w}", ANTI, (CLIENTS, LOOP), ("db.async", "db.sync")),
    # The route commits (returning its connection) before the blocking call: only tokens are held.
    Spec("io.mixed", "async def + asyncpg + run_in_threadpool(requests)", "api", "/mixed/report?delay={w}", CORRECT, (CLIENTS, TOKENS)),
    Spec("io.mixed.anti", "async def + asyncpg + requests (naive)", "anti", "/anti/mixed?delay={w}", ANTI, (CLIENTS, LOOP), ("io.mixed",)),
]
CPU_ROWS = [
    Spec("cpu.inline", "async def + CPU inline", "anti", "/anti/cpu?n={n}", ANTI, (CLIENTS, LOOP), ("cpu.pool", "cpu.celery")),
    Spec("cpu.pool", "process pool", "api", "/cpu/compute?n={n}", CORRECT, (CLIENTS, CPUS, PROCESSES)),
]
OVERHEAD_ROWS = [  # the same trivial route, same uvicorn command
    Spec("overhead.bare", "bare FastAPI", "bare", "/health/live", REFERENCE),
    Spec("overhead.routed", "bare FastAPI, route in an APIRouter", "routed", "/health/live", REFERENCE),
    Spec("overhead.plain", "generated app, OBSERVABILITY=false", "plain", "/health/live", REFERENCE),
    Spec("overhead.app", "generated app", "api", "/health/live", CORRECT),
]
# Settings of the servers above beyond the defaults: the app without its watchdog and metrics.
OVERHEAD_SERVER_ENV = {"plain": {"OBSERVABILITY": "false"}}
# What tracing costs (tracing.py): the trivial route and the mixed wait row (a query, a threadpool call
# and an upstream call: five spans a request), with tracing off, at 10% and at 100% sampling,
# exporting to bench.otlp_sink. The SDK reads these variables; the stack adds the endpoint.
TRACING_ROWS = [
    Spec("tracing.live", "trivial route", "api", "/health/live", CORRECT),
    Spec("tracing.mixed", "async def + asyncpg + run_in_threadpool(requests)", "api", "/mixed/report?delay={w}", CORRECT, (CLIENTS, TOKENS)),
]
SAMPLING = {
    "off": {},
    "10": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}
# The async point read with 1 and with 2 api worker processes, each restarted with WEB_CONCURRENCY set
# and the same per-worker pools, small enough that two workers fit the connection budget of a
# max_connections = 100 server (budget.py: 2 x (20 + 20) + 1 migrate = 81 <= 97).
WORKER_COUNTS = (1, 2)
WORKER_POOLS = {"THREADPOOL_TOKENS": "20", "SYNC_DB_POOL_SIZE": "20", "ASYNC_DB_POOL_SIZE": "20"}
# One connection every 20 ms: for a shared listening socket Linux wakes the worker that went idle
# last, so a burst of new connections (2 ms apart) went nearly all to one worker (0.96 vs 0.04 cores).
WORKERS_RAMP = 0.02
# fmt: on


def sweep_key(spec: Spec, concurrency: int) -> str:
    return f"{spec.key}@{concurrency}"


class Builder:
    """Turns Specs into Rows for one run: fills in the wait, the limits and the load."""

    def __init__(self, config: Config, limits: Limits) -> None:
        self.config = config
        self.limits = limits

    def row(self, spec: Spec, section: str, kind: str, requests: int, concurrency: int, **extra) -> Row:
        url = spec.url.format(w=f"{self.config.wait:g}", n=self.config.cpu_n)
        values = self.limits.by_name(concurrency) | extra.pop("limit_values", {})
        anti = spec.pattern == ANTI
        return Row(
            key=extra.pop("key", spec.key),
            section=section,
            label=extra.pop("label", spec.label),
            server=spec.server,
            route=extra.pop("route", f"GET {url}"),
            pattern=spec.pattern,
            kind=kind,
            operation=extra.pop("operation", loadgen.get(lambda _: url)),
            # A blocking row serves 1 / W req/s whatever it is sent: one wave, cut after anti_seconds.
            requests=concurrency if anti and kind == "wait" else requests,
            concurrency=concurrency,
            max_seconds=self.config.anti_seconds if anti else self.config.max_seconds,
            limits={name: values[name] for name in spec.binds},
            twins=extra.pop("twins", spec.twins),
            note=extra.pop("note", spec.note),
            **extra,
        )

    def wait_row(self, spec: Spec, section: str, requests: int, concurrency: int, **extra) -> Row:
        # Correct rows at the articles' load also measure loop lag under open-loop arrivals.
        open_loop = spec.pattern == CORRECT and concurrency == self.config.concurrency
        return self.row(
            spec, section, "wait", requests, concurrency, wait=self.config.wait, open_loop=open_loop, **extra
        )


def build_rows(config: Config, limits: Limits, has_celery: bool, item_ids: list[int]) -> list[Row]:
    build = Builder(config, limits)
    c = config.concurrency
    rows = [*control_rows(config, build)]
    rows += [build.wait_row(spec, ARTICLES, config.requests, c) for spec in ARTICLE_ROWS]
    for level in config.sweep:
        rows += [sweep_row(build, spec, level) for spec in SWEEP_ROWS]
    rows += [build.wait_row(spec, IO, config.requests, c, twins=io_twins(spec, c)) for spec in IO_ROWS]
    rows += item_rows(config, build, item_ids)
    rows += worker_rows(config, build, item_ids)
    rows += cpu_rows(config, build, has_celery)
    return rows


def io_twins(spec: Spec, concurrency: int) -> tuple[str, ...]:
    """An I/O anti-pattern is compared with its twins in the sweep at the same concurrency."""
    sweep_keys = {row.key for row in SWEEP_ROWS}
    return tuple(f"{twin}@{concurrency}" if twin in sweep_keys else twin for twin in spec.twins)


def sweep_row(build: Builder, spec: Spec, level: int) -> Row:
    extra: dict = {"key": sweep_key(spec, level), "twins": tuple(f"{t}@{level}" for t in spec.twins)}
    if spec.server == "threads":
        # As many threads (and requests-pool connections) as requests in flight; the settings
        # refuse a psycopg2 pool smaller than the tokens, though these rows never open one, so the
        # connection budget may be overcommitted here.
        extra["server_env"] = {
            "THREADPOOL_TOKENS": str(level),
            "SYNC_DB_POOL_SIZE": str(level),
            "DB_BUDGET_OVERCOMMIT": "true",
        }
        extra["limit_values"] = {TOKENS: level, REQUESTS_POOL: level}
    if spec.key.startswith("db."):
        extra["restart_before"] = ("api",)  # one pool's connections at a time (see Row)
        extra["pool_timeout"] = build.limits.db_pool_timeout
    return build.wait_row(spec, SWEEP, build.config.waves * level, level, **extra)


def control_rows(config: Config, build: Builder) -> list[Row]:
    raw = Spec("loadgen.raw", "load generator vs canned-answer server", "raw", "/", REFERENCE)
    upstream = Spec(
        "loadgen.upstream", "upstream stand-in alone", "upstream", "/delay/{w}", REFERENCE, (CLIENTS,)
    )
    top = max(config.sweep)
    return [
        build.row(raw, CONTROL, "full", config.loadgen_requests, config.full_concurrency,
                  route="GET / (bench.rawserver)", note="its req/s is the client's own ceiling"),
        build.wait_row(upstream, CONTROL, config.waves * top, top,
                       note="checks the client and the upstream reach C / W at the sweep's top level"),
    ]  # fmt: skip


def read_items(prefix: str, item_ids: list[int]) -> loadgen.Operation:
    """GET <prefix>/items/{id}, cycling through the seeded items."""
    return loadgen.get(lambda i: f"{prefix}/items/{item_ids[i % len(item_ids)]}")


def items_route(prefix: str) -> str:
    return f"GET {prefix}/items/" + "{id}"  # (braces doubled would be Jinja)


def item_rows(config: Config, build: Builder, item_ids: list[int]) -> list[Row]:
    rows = []
    for prefix, label in (("/async", "async def + asyncpg"), ("/sync", "def + psycopg2")):
        spec = Spec(f"io.items{prefix.replace('/', '.')}", f"{label}, full speed", "api", "", CORRECT)
        rows.append(build.row(spec, IO, "full", config.full_requests, config.full_concurrency,
                              route=items_route(prefix), operation=read_items(prefix, item_ids)))  # fmt: skip
    return rows


def worker_rows(config: Config, build: Builder, item_ids: list[int]) -> list[Row]:
    """The async point read at full speed with WORKER_COUNTS api processes: what a second worker adds.

    Bound by CPU: one process uses at most one core, so the smaller of WEB_CONCURRENCY and the CPUs
    binds. The load is the same for every count: as many connections as a worker's pool (so the pool
    binds neither row; with more, one worker's requests queue for it and cost more CPU each), opened
    one every WORKERS_RAMP seconds while the load runs, because the workers share one listening
    socket and a burst of connections opened at once goes mostly to one of them (loadgen.run_load)."""
    rows = []
    for workers in WORKER_COUNTS:
        processes = f"{workers} api worker process" + ("es" if workers > 1 else "")
        spec = Spec(f"workers.items.{workers}", f"async def + asyncpg, full speed, {processes}", "api", "",
                    CORRECT, (WORKERS, CPUS), note=f"connections opened {WORKERS_RAMP * 1000:g} ms apart")  # fmt: skip
        row = build.row(spec, WORKER_PROCESSES, "full", config.full_requests, config.workers_concurrency,
                        route=items_route("/async"), operation=read_items("/async", item_ids),
                        limit_values={WORKERS: workers},
                        server_env={**WORKER_POOLS, "WEB_CONCURRENCY": str(workers)},
                        ramp=WORKERS_RAMP)  # fmt: skip
        rows.append(row)
    return rows


def cpu_rows(config: Config, build: Builder, has_celery: bool) -> list[Row]:
    job = build.limits.cpu_job_seconds
    load = {"requests": config.cpu_requests, "concurrency": config.cpu_concurrency}
    rows = [build.row(spec, CPU, "cpu", **load, wait=job) for spec in CPU_ROWS]
    rows[0].restart_before = ("api", "anti")
    if has_celery and build.limits.worker_concurrency:
        celery = Spec("cpu.celery", "Celery job, submit + poll", "api", "", CORRECT, (CLIENTS, CPUS, CELERY))
        rows.append(
            build.row(celery, CPU, "cpu", **load, wait=job,
                      route=f"POST /cpu/jobs n={config.cpu_n}, GET /cpu/jobs/" + "{id}",
                      operation=loadgen.celery_job(config.cpu_n, config.poll_interval),
                      note=f"polled every {config.poll_interval * 1000:g} ms")
        )  # fmt: skip
    return rows


def overhead_rows(config: Config, limits: Limits) -> list[Row]:
    build = Builder(config, limits)
    return [
        build.row(spec, OVERHEAD, "full", config.overhead_requests, config.full_concurrency,
                  server_env=OVERHEAD_SERVER_ENV.get(spec.server, {}))
        for spec in OVERHEAD_ROWS
    ]  # fmt: skip


def tracing_rows(config: Config, limits: Limits, endpoint: str) -> list[Row]:
    """TRACING_ROWS at each SAMPLING level, grouped by level (the api restarts when its settings change):
    keys `tracing.live.off`, `tracing.mixed.off`, `tracing.live.10`, ..."""
    build = Builder(config, limits)
    live, mixed = TRACING_ROWS
    rows = []
    for level, sampler in SAMPLING.items():
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **sampler} if sampler else {}
        tracing = f"tracing at {level}% sampling" if sampler else "tracing off"
        rows += [
            build.row(live, TRACING, "full", config.overhead_requests, config.full_concurrency,
                      key=f"{live.key}.{level}", label=f"{live.label}, {tracing}", server_env=env),
            build.wait_row(mixed, TRACING, config.requests, config.concurrency,
                           key=f"{mixed.key}.{level}", label=f"{mixed.label}, {tracing}", server_env=env),
        ]  # fmt: skip
    return rows
