"""A process pool for short CPU jobs (milliseconds to seconds), opened and closed by the lifespan.

Rule: CPU-bound code runs in another process, never on the event loop nor in the threadpool (the
GIL lets one thread compute at a time). A dead pool process (SIGKILL, the OOM killer) breaks the
whole ProcessPoolExecutor: the jobs in flight on it answer 503 to retry, and the first of them swaps
in a fresh pool, so later requests never see the broken one.
"""

import asyncio
import multiprocessing
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T")
tracer = trace.get_tracer(__name__)  # OpenTelemetry's API: a no-op until the app installs a provider


class ProcessPoolSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    process_pool_workers: int = Field(2, ge=1, le=64, description="CPU jobs at once per api process")
    cpu_max_n: int = Field(1_000_000, ge=10, description="largest n /cpu/compute accepts")


class WorkerDied(Exception):
    """A pool process died under this job: the pool is replaced, the request answers 503."""


class CpuPool:
    def __init__(self, settings: ProcessPoolSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._executor = self._new_executor()
        self._in_pool = 0  # jobs submitted and not finished; changed on the event loop only

    def _new_executor(self) -> ProcessPoolExecutor:
        # "spawn": forking a process that runs an event loop and threads copies their locks mid-use.
        spawn = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.settings.process_pool_workers, mp_context=spawn)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        executor = self._executor
        self._in_pool += 1
        try:  # the span covers the wait for a free process and the computing
            with tracer.start_as_current_span(f"process pool {function.__name__}"):
                return await asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except BrokenProcessPool:
            self._replace(executor)
            raise WorkerDied("a CPU worker process died; retry the request") from None
        finally:
            self._in_pool -= 1

    def load(self) -> tuple[int, int]:
        """(jobs running, jobs queued), for /metrics."""
        workers = self.settings.process_pool_workers
        return min(self._in_pool, workers), max(0, self._in_pool - workers)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:  # many requests see the same broken pool; only the first rebuilds it
            if self._executor is broken:
                self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@asynccontextmanager
async def open_process_pool(
    app: FastAPI, settings: ProcessPoolSettings | None = None
) -> AsyncIterator[CpuPool]:
    pool = app.state.process_pool = CpuPool(settings or ProcessPoolSettings())
    try:
        yield pool
    finally:  # joins the processes: off the loop
        await anyio.to_thread.run_sync(pool.shutdown)


async def process_pool(request: Request) -> CpuPool:
    return request.app.state.process_pool


ProcessPool = Annotated[CpuPool, Depends(process_pool)]


async def worker_died(request: Request, error: WorkerDied) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WorkerDied, worker_died)
