"""The figures of a run, typed; `dataclasses.asdict` turns them into the JSON only when written."""

from dataclasses import dataclass, field

from .scenarios import Config, Limits


@dataclass
class LagSummary:
    """Latency of GET /health/live probes sent during a row: how late the server's loop answered."""

    probes: int
    errors: int
    unanswered_at_end_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class OpenLoop:
    """A wait row's requests again, arriving at Poisson times at OPEN_LOOP_SHARE of its ceiling."""

    rate_rps: float  # the arrival rate asked
    rps: float
    completed: int
    errors: int
    most_in_flight: int
    p99_ms: float | None
    lag: LagSummary | None


@dataclass
class Measured:
    """One row: what was asked, what came back, and the ceiling it is judged against."""

    key: str
    section: str
    label: str
    route: str
    server: str
    pattern: str
    kind: str
    note: str
    requests: int
    concurrency: int
    wait_s: float | None
    completed: int
    errors: int
    errors_by_kind: dict[str, int]
    cut_at_max_seconds: bool
    censored: int
    elapsed_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    latency_is_lower_bound: bool
    ceiling_rps: float | None
    binding: str | None
    limits: dict[str, int]
    ratio: float | None
    lag: LagSummary | None
    client_cpu_s: float
    client_cpu_share: float | None
    server_cpu_s: float | None
    server_cpu_share: float | None
    # Each of the server's processes, busiest first: with several workers, whether each was busy.
    server_process_cpu_shares: list[float]
    machine_cpu_busy: float | None
    server_rss_mb: float | None  # the server process's resident memory, highest seen during the row
    server_threads: int | None  # its thread count, highest seen during the row
    server_processes: int | None  # the server's processes (uvicorn's, its workers, pool jobs), at most
    server_env: dict[str, str]  # the settings the server ran with beyond the run's
    server_budget: str | None  # the connection budget its serve.py printed (api-command servers)
    twins: list[str]
    slower_than_each_twin: dict[str, float | None] = field(default_factory=dict)
    slower_than_twins: float | None = None
    rounds_rps: list[float] = field(default_factory=list)  # overhead rows: every round's req/s
    rounds_cpu_us_per_request: list[float] = field(default_factory=list)  # overhead rows: each round's
    server_cpu_us_per_request: float | None = None  # overhead rows: the median round's
    slowest_ms: float | None = None
    fifo_503: list[int] | None = None  # DB rows: the fewest and most 503s FIFO predicts (fifo.py)
    open_loop: OpenLoop | None = None


@dataclass
class Overhead:
    """The trivial route on bare FastAPI, on bare FastAPI with an APIRouter, and on the app."""

    ratio: float | None = None  # bare CPU per request / app CPU per request: the target's figure
    throughput_ratio: float | None = None
    bare_rps: float | None = None
    app_rps: float | None = None
    routed_rps: float | None = None
    bare_cpu_us_per_request: float | None = None
    app_cpu_us_per_request: float | None = None
    routed_cpu_us_per_request: float | None = None
    routed_ratio: float | None = None
    plain_rps: float | None = None  # the app with OBSERVABILITY=false
    plain_cpu_us_per_request: float | None = None
    observability_cost: float | None = None  # app CPU per request / plain's - 1: what watching costs


@dataclass
class ProfileEntry:
    """One function of the profiled trivial route (bench/profiler.py), by its own time."""

    function: str
    calls_per_request: float
    own_us_per_request: float
    own_share: float  # of all the profiled own time


@dataclass
class Target:
    target: str
    met: bool
    misses: list[str]
    checked: list[str]


@dataclass
class Report:
    generated_at: str
    command: str
    duration_s: float
    machine: dict
    versions: dict[str, str | None]
    config: Config
    limits: Limits
    server_command: str
    has_celery: bool
    loadgen_ceiling_rps: float
    overhead: Overhead
    rows: list[Measured]
    targets: list[Target] = field(default_factory=list)
    profile: list[ProfileEntry] = field(default_factory=list)  # the trivial route's, by own time
    metrics_profile_share: float | None = None  # the share of that route's profiled time in prometheus-client
    # The share of that route's profiled time in OpenTelemetry's code, by sampling level: off and 10.
    tracing_profile_shares: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def row(self, key: str) -> Measured | None:
        return next((row for row in self.rows if row.key == key), None)
