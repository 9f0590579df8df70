"""The Prometheus metrics this service serves at GET /metrics: how late the loop is, how full each
pool is, how routes answer. Declarations only; who records each one:
- requests per route (count, latency): access.py's middleware, one observation a request;
- loop lag and stalls: the watchdog (watchdog.py), one observation per beat, whatever the traffic;
- the limits (threadpool, connection pools, upstream client, process pool, and any a router adds):
  sampling.py's thread reads their counters every second, nothing on the request path.
monitor.py starts the watchdog and the sampler; metrics_endpoint.py serves the text format.

Several uvicorn worker processes (WEB_CONCURRENCY=2, serve.py) each have their own loop,
threadpool and pools. prometheus-client's multiprocess mode adds them up: with
PROMETHEUS_MULTIPROC_DIR set in the environment (read when prometheus_client is imported, so it
comes from whoever starts the server) every process writes its values to files in that folder and
/metrics reads them all. The folder must be empty when the server starts: compose mounts a fresh
tmpfs there, tools/native.py makes a fresh folder for each native start. Without the variable, the
process serves its own values. Gauges say how processes add up (multiprocess_mode): "livesum" sums
the processes alive; each removes its files when it stops.
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
