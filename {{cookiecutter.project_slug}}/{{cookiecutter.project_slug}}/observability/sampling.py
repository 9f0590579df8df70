"""The sampler: a thread that reads each limit's counters every SAMPLE_INTERVAL into its gauge.

Nothing of this runs on the request path or on the loop. Reading from this thread is safe: every
sample reads plain numbers that their owners publish (the limiter's statistics, the pool's counts,
the upstream transport's and the process pool's counters). A router's lifespan may add a sample of
its own to app.state.metric_samples. A failing sample (Redis down) is logged once, until it works
again.
"""

import logging
import threading
from collections.abc import Callable

import anyio

from ..resources.clients import UpstreamTransport
from ..resources.pools import CountedQueuePool, FairAsyncPool
from ..resources.process_pool import CpuPool
from .metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_OVERFLOW,
    DB_POOL_SIZE,
    DB_POOL_WAIT,
    DB_POOL_WAITING,
    HTTP_IN_FLIGHT,
    PROCESS_POOL_QUEUED,
    PROCESS_POOL_RUNNING,
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


def engine_sample(name: str, pool: FairAsyncPool | CountedQueuePool) -> Sample:
    waited = DB_POOL_WAIT.labels(name)

    def sample() -> None:
        DB_POOL_SIZE.labels(name).set(pool.size())
        DB_POOL_CHECKED_OUT.labels(name).set(pool.checkedout())
        DB_POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))  # counts up from -size
        DB_POOL_WAITING.labels(name).set(pool.counter.waiting)
        waits = pool.counter.waits
        for _ in range(len(waits)):  # the waits since the last sample, observed here, off the request path
            waited.observe(waits.popleft())

    return sample


def http_client_sample(transport: UpstreamTransport) -> Sample:
    def sample() -> None:
        HTTP_IN_FLIGHT.set(transport.in_flight)

    return sample


def process_pool_sample(pool: CpuPool) -> Sample:
    def sample() -> None:
        running, queued = pool.load()
        PROCESS_POOL_RUNNING.set(running)
        PROCESS_POOL_QUEUED.set(queued)

    return sample


class Sampler:
    """start() and stop() from the lifespan (stop joins the thread: not on the loop)."""

    def __init__(self, samples: dict[str, Sample]) -> None:
        self.samples = samples  # the app's dict: a router's lifespan may add to it later
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
