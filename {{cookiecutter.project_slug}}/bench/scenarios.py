"""What the benchmark measures: one Row per pattern, with the ceiling Little's law gives it.

Little's law: throughput = requests in service / time each spends there. A route whose requests
each wait W seconds can serve at most `slots / W` requests per second, where `slots` is the
smallest of the limits on how many can wait at once: the client's concurrency, the threadpool
tokens, a connection pool, or 1 when the wait blocks the event loop. That smallest limit "binds".
CPU jobs are the same with W = the job's CPU time and the slots = processes that can compute at
once (never more than the CPU count). Rows with no wait at all ("full speed") are bound by the
server's own CPU: their ceiling is what one core would serve at the CPU cost per request measured
during the run, so measured / ceiling there is how busy the server's core was.
"""

from dataclasses import dataclass, field

from . import loadgen

ARTICLES = "articles"
IO = "real I/O"
CPU = "CPU"
OVERHEAD = "overhead"
CONTROL = "load generator"

CORRECT = "correct"
ANTI = "anti-pattern"
REFERENCE = "reference"


@dataclass
class Config:
    """The knobs of one run (the JSON records them all)."""

    quick: bool
    only: list[str] | None  # row keys (prefixes) to run; None: all
    requests: int  # per wait row (the articles: 300)
    anti_requests: int  # per blocking anti-pattern row
    concurrency: int  # per wait row (the articles: 100)
    wait: float  # seconds of wait per request (the articles: 0.5)
    max_seconds: float  # per row: the blocking rows would otherwise take requests * wait
    full_requests: int  # per full-speed row
    full_concurrency: int
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


@dataclass
class Row:
    key: str
    section: str
    label: str
    server: str  # a Stack service: api, anti, bare, upstream, raw
    route: str
    pattern: str
    kind: str  # "wait" (Little's law), "cpu" (jobs), "full" (no wait: CPU-bound)
    operation: loadgen.Operation
    requests: int
    concurrency: int
    wait: float | None = None  # per request: the wait (wait rows) or the job's CPU time (cpu rows)
    limits: dict[str, int] = field(default_factory=dict)
    twins: tuple[str, ...] = ()  # keys of the correct rows an anti-pattern is compared with
    # Servers restarted before the row. A pool keeps every connection it ever opened: fresh processes
    # keep the run's PostgreSQL connections near one pool at a time (max_connections is often 100).
    restart_before: tuple[str, ...] = ()
    note: str = ""

    @property
    def warmup(self) -> int:
        """Unmeasured requests first, so that pools, threads and worker processes exist."""
        if self.pattern == ANTI:
            return 0  # it would take as long as the row, and there is nothing to warm
        if self.kind == "full":
            return min(self.requests, 200)
        return self.concurrency

    def ceiling(self) -> tuple[float, str] | None:
        """(requests/s, which limit binds) for wait and cpu rows; full-speed rows are measured."""
        if not self.limits or not self.wait:
            return None
        slots = min(self.limits.values())
        binding = " = ".join(f"{name} {value}" for name, value in self.limits.items() if value == slots)
        return slots / self.wait, f"{binding} / {self.wait:.3g} s"


def build_rows(config: Config, limits: Limits, has_celery: bool, item_ids: list[int]) -> list[Row]:
    c, w = config.concurrency, config.wait
    wait_row = {"requests": config.requests, "concurrency": c, "wait": w, "kind": "wait"}
    # One request per connection: at 1 / W req/s the articles' 300 would take 150 s a row, for the
    # same throughput.
    anti_row = {**wait_row, "requests": config.anti_requests}
    tokens = {"concurrency": c, "THREADPOOL_TOKENS": limits.threadpool_tokens}
    loop = {"concurrency": c, "one event loop": 1}
    full = {"requests": config.full_requests, "concurrency": config.full_concurrency, "kind": "full"}

    def path(template: str) -> loadgen.Operation:
        return loadgen.get(lambda _: template)

    def get(url: str) -> dict:
        """A row's route and its operation, from one URL."""
        return {"route": f"GET {url}", "operation": path(url)}

    def items(prefix: str) -> loadgen.Operation:
        return loadgen.get(lambda i: f"{prefix}/items/{item_ids[i % len(item_ids)]}")

    rows = [
        Row(
            "loadgen.raw",
            CONTROL,
            "load generator vs canned-answer server",
            "raw",
            "GET / (bench.rawserver)",
            REFERENCE,
            "full",
            path("/"),
            config.loadgen_requests,
            config.full_concurrency,
            note="its req/s is the client's own ceiling",
        ),
        Row(
            "loadgen.upstream",
            CONTROL,
            "upstream stand-in alone",
            "upstream",
            pattern=REFERENCE,
            **get(f"/delay/{w:g}"),
            limits={"concurrency": c},
            note="checks the client reaches C / W against a pure-async server",
            **wait_row,
        ),
        # The articles' four ways to wait W seconds per request.
        Row(
            "articles.def",
            ARTICLES,
            "def + time.sleep",
            "anti",
            pattern=CORRECT,
            **get(f"/articles/def-sleep?seconds={w:g}"),
            limits=tokens,
            **wait_row,
        ),
        Row(
            "articles.async",
            ARTICLES,
            "async def + asyncio.sleep",
            "anti",
            pattern=CORRECT,
            **get(f"/articles/async-sleep?seconds={w:g}"),
            limits={"concurrency": c},
            **wait_row,
        ),
        Row(
            "articles.threadpool",
            ARTICLES,
            "async def + run_in_threadpool(time.sleep)",
            "anti",
            pattern=CORRECT,
            **get(f"/articles/threadpool-sleep?seconds={w:g}"),
            limits=tokens,
            **wait_row,
        ),
        Row(
            "articles.blocking",
            ARTICLES,
            "async def + time.sleep",
            "anti",
            pattern=ANTI,
            **get(f"/anti/sleep?seconds={w:g}"),
            limits=loop,
            twins=("articles.def", "articles.async", "articles.threadpool"),
            **anti_row,
        ),
        # The same wait, spent in PostgreSQL (pg_sleep) and in the upstream service.
        Row(
            "io.db.async",
            IO,
            "async def + asyncpg",
            "api",
            pattern=CORRECT,
            **get(f"/async/db-wait?seconds={w:g}"),
            limits={"concurrency": c, "ASYNC_DB_POOL_SIZE": limits.async_db_pool_size},
            **wait_row,
        ),
        Row(
            "io.db.sync",
            IO,
            "def + psycopg2",
            "api",
            pattern=CORRECT,
            **get(f"/sync/db-wait?seconds={w:g}"),
            limits={**tokens, "SYNC_DB_POOL_SIZE": limits.sync_db_pool_size},
            restart_before=("api",),
            **wait_row,
        ),
        Row(
            "io.db.anti",
            IO,
            "async def + psycopg2",
            "anti",
            pattern=ANTI,
            **get(f"/anti/db-wait?seconds={w:g}"),
            limits=loop,
            twins=("io.db.async", "io.db.sync"),
            **anti_row,
        ),
        Row(
            "io.upstream.async",
            IO,
            "async def + httpx",
            "api",
            pattern=CORRECT,
            **get(f"/async/upstream?delay={w:g}"),
            limits={"concurrency": c, "HTTP_MAX_CONNECTIONS": limits.http_max_connections},
            restart_before=("api",),
            **wait_row,
        ),
        Row(
            "io.upstream.sync",
            IO,
            "def + requests",
            "api",
            pattern=CORRECT,
            **get(f"/sync/upstream?delay={w:g}"),
            # requests' pool is sized to the tokens (clients.py): one connection per thread.
            limits={**tokens, "requests pool": limits.threadpool_tokens},
            **wait_row,
        ),
        Row(
            "io.upstream.anti",
            IO,
            "async def + requests",
            "anti",
            pattern=ANTI,
            **get(f"/anti/upstream?delay={w:g}"),
            limits=loop,
            twins=("io.upstream.async", "io.upstream.sync"),
            **anti_row,
        ),
        Row(
            "io.mixed",
            IO,
            "async def + asyncpg + run_in_threadpool(requests)",
            "api",
            pattern=CORRECT,
            **get(f"/mixed/report?delay={w:g}"),
            # The route commits (returning its connection) before the blocking call, so only the
            # threadpool tokens are held across the upstream wait.
            limits=tokens,
            **wait_row,
        ),
        Row(
            "io.mixed.anti",
            IO,
            "async def + asyncpg + requests (naive)",
            "anti",
            pattern=ANTI,
            **get(f"/anti/mixed?delay={w:g}"),
            limits=loop,
            twins=("io.mixed",),
            **anti_row,
        ),
        Row(
            "io.items.async",
            IO,
            "async def + asyncpg, full speed",
            "api",
            "GET /async/items/{id}",
            CORRECT,
            operation=items("/async"),
            **full,
        ),
        Row(
            "io.items.sync",
            IO,
            "def + psycopg2, full speed",
            "api",
            "GET /sync/items/{id}",
            CORRECT,
            operation=items("/sync"),
            **full,
        ),
    ]
    n, job = config.cpu_n, limits.cpu_job_seconds
    cpu_row = {
        "requests": config.cpu_requests,
        "concurrency": config.cpu_concurrency,
        "wait": job,
        "kind": "cpu",
    }
    cpu_c = {"concurrency": config.cpu_concurrency, "CPUs": limits.cpus}
    rows += [
        Row(
            "cpu.inline",
            CPU,
            "async def + CPU inline",
            "anti",
            pattern=ANTI,
            **get(f"/anti/cpu?n={n}"),
            limits={"concurrency": config.cpu_concurrency, "one event loop": 1},
            twins=("cpu.pool", "cpu.celery"),
            restart_before=("api", "anti"),
            **cpu_row,
        ),
        Row(
            "cpu.pool",
            CPU,
            "process pool",
            "api",
            pattern=CORRECT,
            **get(f"/cpu/compute?n={n}"),
            limits={**cpu_c, "PROCESS_POOL_WORKERS": limits.process_pool_workers},
            **cpu_row,
        ),
    ]
    if has_celery and limits.worker_concurrency:
        rows.append(
            Row(
                "cpu.celery",
                CPU,
                "Celery job, submit + poll",
                "api",
                f"POST /cpu/jobs n={n}, GET /cpu/jobs/" + "{id}",
                CORRECT,
                operation=loadgen.celery_job(n, config.poll_interval),
                limits={**cpu_c, "WORKER_CONCURRENCY": limits.worker_concurrency},
                note=f"polled every {config.poll_interval * 1000:g} ms",
                **cpu_row,
            )
        )
    return rows


def overhead_rows(config: Config) -> list[Row]:
    """The same trivial route on bare FastAPI and on the generated app, same uvicorn command."""
    common = {"requests": config.overhead_requests, "concurrency": config.full_concurrency, "kind": "full"}
    live = loadgen.get(lambda _: "/health/live")
    return [
        Row(
            "overhead.bare",
            OVERHEAD,
            "bare FastAPI",
            "bare",
            "GET /health/live",
            REFERENCE,
            operation=live,
            **common,
        ),
        Row(
            "overhead.routed",
            OVERHEAD,
            "bare FastAPI, route in an APIRouter",
            "routed",
            "GET /health/live",
            REFERENCE,
            operation=live,
            **common,
        ),
        Row(
            "overhead.app",
            OVERHEAD,
            "generated app",
            "api",
            "GET /health/live",
            CORRECT,
            operation=live,
            **common,
        ),
    ]
