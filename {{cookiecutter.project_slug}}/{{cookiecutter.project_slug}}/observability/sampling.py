"""The sampler: a thread that reads each limit's counters every SAMPLE_INTERVAL into its gauge.

Rule: nothing of this runs on the request path or on the loop. Every sample reads plain numbers
that a resource publishes (the limiter's statistics, the pools' counts, the clients' counters); the
lifespan lists the samples once (main.py). A failing sample (Redis down) is logged once, until it
works again.
"""

import logging
import threading
from collections.abc import Callable

import anyio

from ..resources.async_database import AsyncDatabase
from ..resources.http_client import UpstreamClient
{%- if cookiecutter.use_celery == "yes" %}
from ..resources.job_queue import JobQueue
{%- endif %}
from ..resources.process_pool import CpuPool
from ..resources.sync_database import SyncDatabase
from .metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_OVERFLOW,
    DB_POOL_SIZE,
    DB_POOL_WAIT,
    DB_POOL_WAITING,
    HTTP_IN_FLIGHT,
    PROCESS_POOL_QUEUED,
    PROCESS_POOL_RUNNING,
{%- if cookiecutter.use_celery == "yes" %}
    QUEUE_DEPTH,
{%- endif %}
    THREADPOOL_BORROWED,
    THREADPOOL_TOKENS,
    THREADPOOL_WAITING,
)

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0

Sample = Callable[[], None]


def threadpool_sample(limiter: anyio.CapacityLimiter) -> Sample:
    def sample() -> None:
        statistics = limiter.statistics()
        THREADPOOL_TOKENS.set(statistics.total_tokens)
        THREADPOOL_BORROWED.set(statistics.borrowed_tokens)
        THREADPOOL_WAITING.set(statistics.tasks_waiting)

    return sample


def engine_sample(name: str, database: AsyncDatabase | SyncDatabase) -> Sample:
    waited, pool = DB_POOL_WAIT.labels(name), database.pool

    def sample() -> None:
        DB_POOL_SIZE.labels(name).set(pool.size())
        DB_POOL_CHECKED_OUT.labels(name).set(pool.checkedout())
        DB_POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))  # counts up from -size
        DB_POOL_WAITING.labels(name).set(pool.waiting)
        waits = pool.waits
        for _ in range(len(waits)):  # the waits since the last sample, observed here, off the request path
            waited.observe(waits.popleft())

    return sample


def http_client_sample(client: UpstreamClient) -> Sample:
    def sample() -> None:
        HTTP_IN_FLIGHT.set(client.upstream_transport.in_flight)

    return sample


def process_pool_sample(pool: CpuPool) -> Sample:
    def sample() -> None:
        running, queued = pool.load()
        PROCESS_POOL_RUNNING.set(running)
        PROCESS_POOL_QUEUED.set(queued)

    return sample


{%- if cookiecutter.use_celery == "yes" %}


def job_queue_sample(queue: JobQueue) -> Sample:
    def sample() -> None:  # a blocking Redis call: on this thread, never on the loop
        QUEUE_DEPTH.labels(queue.queue_name).set(queue.depth())

    return sample
{%- endif %}


class Sampler:
    """start() and stop() from the lifespan (stop joins the thread: not on the loop)."""

    def __init__(self, samples: dict[str, Sample]) -> None:
        self.samples = samples
        self.failing: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            for name, sample in list(self.samples.items()):
                try:
                    sample()
                    self.failing.discard(name)
                except Exception:
                    if name not in self.failing:
                        log.warning("metrics sample %s failed", name, exc_info=True)
                    self.failing.add(name)
            if self.stopping.wait(SAMPLE_INTERVAL):
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
