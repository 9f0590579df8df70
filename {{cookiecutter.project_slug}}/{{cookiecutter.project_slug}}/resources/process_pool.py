"""A process pool for short CPU jobs, rebuilt when one of its processes dies.

Rule: a dead pool process (SIGKILL, OOM killer, a crash in C code) breaks the whole
ProcessPoolExecutor, so every job in flight on it fails: each of those requests gets a 503 to
retry, the first one swaps in a fresh pool, and later requests never see the broken one.
"""

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from opentelemetry import trace

from ..errors import ServiceUnavailable

T = TypeVar("T")
# OpenTelemetry's API only: a no-op until the app installs a tracer provider (tracing.py).
tracer = trace.get_tracer(__name__)


class CpuPool:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._executor = self._new_executor()
        self._in_pool = 0  # jobs submitted and not finished; changed on the event loop only

    def _new_executor(self) -> ProcessPoolExecutor:
        # "spawn": forking a process that runs an event loop and threads copies their locks mid-use.
        return ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))

    async def run(self, function: Callable[..., T], *args: object) -> T:
        executor = self._executor
        self._in_pool += 1
        try:
            # The span covers the wait for a free pool process and the computing (no context
            # crosses into the process: the job opens no spans of its own).
            with tracer.start_as_current_span(f"process pool {function.__name__}"):
                return await asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except BrokenProcessPool:
            self._replace(executor)
            raise ServiceUnavailable("a CPU worker process died; retry the request") from None
        finally:
            self._in_pool -= 1

    def load(self) -> tuple[int, int]:
        """(jobs running, jobs queued): the pool starts a job as soon as one of its processes is free."""
        in_pool = self._in_pool
        return min(in_pool, self._workers), max(0, in_pool - self._workers)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:  # many requests see the same broken pool; only the first rebuilds it
            if self._executor is broken:
                self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


async def get_cpu_pool(request: Request) -> CpuPool:
    return request.app.state.cpu_pool


ProcessPool = Annotated[CpuPool, Depends(get_cpu_pool)]
