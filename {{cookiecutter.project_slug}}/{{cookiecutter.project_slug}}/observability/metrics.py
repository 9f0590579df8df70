"""The Prometheus metrics served at GET /metrics: how late the loop is, how full each pool is, how
routes answer. Declarations only: access.py records the requests, the watchdog the loop's lag,
sampling.py's thread the limits.

Rule: with PROMETHEUS_MULTIPROC_DIR set (an empty folder, before the server starts), every worker
process writes its values there and /metrics adds them up (docs/observability.md).
"""

import os

from prometheus_client import Counter, Gauge, Histogram

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran the watchdog's callback",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_STALLS = Counter("event_loop_stalls", "Times the event loop was late by more than LOOP_STALL_THRESHOLD")
REQUESTS = Histogram(
    "http_request_duration_seconds",
    "Requests served, by route template and status, and how long each took",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def livesum(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, help_text, labels, multiprocess_mode="livesum")


THREADPOOL_TOKENS = livesum("threadpool_tokens", "Threadpool tokens (THREADPOOL_TOKENS per process)")
THREADPOOL_BORROWED = livesum("threadpool_tokens_borrowed", "Tokens held by def routes and run_in_threadpool")
THREADPOOL_WAITING = livesum("threadpool_tasks_waiting", "Tasks waiting for a threadpool token")
DB_POOL_SIZE = livesum("db_pool_size", "Connections the pool keeps", ("engine",))
DB_POOL_CHECKED_OUT = livesum("db_pool_checked_out", "Connections in use", ("engine",))
DB_POOL_OVERFLOW = livesum("db_pool_overflow", "Connections open beyond the pool size", ("engine",))
DB_POOL_WAITING = livesum("db_pool_waiting", "Checkouts waiting for a connection", ("engine",))
DB_POOL_WAIT = Histogram(
    "db_pool_wait_seconds",
    "How long each checkout waited for a connection (opening one included)",
    ["engine"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = livesum("http_client_requests_in_flight", "Upstream requests sent and not answered yet")
PROCESS_POOL_RUNNING = livesum("process_pool_jobs_running", "CPU jobs computing in the process pool")
PROCESS_POOL_QUEUED = livesum("process_pool_jobs_queued", "CPU jobs waiting for a pool process")
{%- if cookiecutter.use_celery == "yes" %}
# Every web process reads the same Redis list: /metrics shows the most recent reading.
QUEUE_DEPTH = Gauge(
    "celery_queue_depth",
    "Jobs waiting for a worker (LLEN of the queue)",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
{%- endif %}
