"""The lifespan's observability part: the loop watchdog and the metrics sampler run while the app
does (OBSERVABILITY=true, the default). main.py enters it last, so the watchdog watches the loop
from the moment the app serves."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from prometheus_client import multiprocess

from .metrics import LOOP_LAG, LOOP_STALLS, MULTIPROCESS_DIR
from .sampling import Sample, Sampler
from .watchdog import LoopWatchdog


@asynccontextmanager
async def observe(stall_threshold: float, samples: dict[str, Sample]) -> AsyncIterator[None]:
    watchdog = LoopWatchdog(
        asyncio.get_running_loop(),
        stall_threshold,
        on_lag=LOOP_LAG.observe,
        on_stall=LOOP_STALLS.inc,
    )
    sampler = Sampler(samples)
    watchdog.start()
    sampler.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(watchdog.stop)  # joins a thread: off the loop
        await anyio.to_thread.run_sync(sampler.stop)
        if MULTIPROCESS_DIR:
            multiprocess.mark_process_dead(os.getpid())  # this process's live gauges leave the sums
