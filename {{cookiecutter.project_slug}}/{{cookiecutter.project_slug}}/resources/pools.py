"""The engines' connection pools: waiters served in arrival order, and counted for /metrics.

SQLAlchemy's async pool (AsyncAdaptedQueuePool, over an asyncio.Queue) is not first come, first
served: a returned connection goes to whoever asks next, and a request that was already waiting
wakes to an empty queue and queues again at the back. Under overload some waiters starve until
DB_POOL_TIMEOUT while later arrivals are served (db.py has the measurement). FairAsyncPool admits
checkouts through an asyncio.Semaphore as large as the pool: since CPython 3.11.1 a semaphore hands
a released slot to its oldest waiter, and a newcomer cannot take it while anyone waits. Every user
of the engine (sessions, pings, readiness) checks out through the pool, so every one is in line.

The sync pool needs no gate: psycopg2 is used from threadpool threads only, the threadpool's
CapacityLimiter is FIFO, and Settings keep SYNC_DB_POOL_SIZE >= THREADPOOL_TOKENS, so a thread
always finds a connection. CountedQueuePool only counts its waits.

Both keep two public figures that the metrics sampler reads (metrics.py): `waiting`, the checkouts
waiting now, and `waits`, the seconds each checkout waited since the sampler last drained them.
"""

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool
from sqlalchemy.util.concurrency import await_

UNDRAINED_WAITS = 10_000  # kept when nothing drains them (OBSERVABILITY=false): the oldest go


class WaitCounter:
    """How many checkouts wait now, and how long each one waited (creating a connection counts)."""

    def __init__(self) -> None:
        self.waiting = 0
        self.waits: deque[float] = deque(maxlen=UNDRAINED_WAITS)
        self._lock = threading.Lock()  # the sync pool counts from many threads

    @contextmanager
    def timing(self) -> Iterator[None]:
        started = time.perf_counter()
        with self._lock:
            self.waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self.waiting -= 1
            self.waits.append(time.perf_counter() - started)


class FairAsyncPool(AsyncAdaptedQueuePool):
    """The async pool behind a FIFO gate of the pool's size; a wait past `timeout` raises the pool's
    own TimeoutError (errors.py answers it 503 "database unavailable")."""

    def __init__(self, *args, max_overflow: int = 10, **kwargs) -> None:  # 10: SQLAlchemy's default
        if max_overflow != 0:
            raise ValueError("FairAsyncPool admits pool_size checkouts: max_overflow must be 0")
        super().__init__(*args, max_overflow=max_overflow, **kwargs)
        self.counter = WaitCounter()
        self._admission = asyncio.Semaphore(self.size())  # bound to the loop that first waits on it

    async def _admit(self) -> None:
        try:
            async with asyncio.timeout(self.timeout()):
                await self._admission.acquire()
        except TimeoutError:
            raise PoolTimeout(f"no connection within {self.timeout():g} s ({self.size()} in use)") from None

    def _do_get(self) -> ConnectionPoolEntry:
        with self.counter.timing():
            await_(self._admit())  # runs on the loop: SQLAlchemy calls the pool inside a greenlet
            try:
                # Admitted: a connection is in the queue, or there is room to open one.
                return super()._do_get()
            except BaseException:  # opening one failed or was cancelled: the slot goes back
                self._admission.release()
                raise

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        # SQLAlchemy returns each entry it got from _do_get exactly once (checkin, a failed
        # checkout, detach, invalidation): the connection goes back first, then its slot.
        super()._do_return_conn(record)
        self._admission.release()


class CountedQueuePool(QueuePool):
    """SQLAlchemy's sync pool, with its waits counted."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counter = WaitCounter()

    def _do_get(self) -> ConnectionPoolEntry:
        with self.counter.timing():
            return super()._do_get()
