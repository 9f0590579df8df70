"""The event-loop lag probe: GET /health/live every ~50 ms from a process of its own.

/health/live is an `async def` that touches nothing, so its latency is how long the server's event
loop took to get to it: about a millisecond when the loop is free, the length of the blocking call
when something blocks it. The probe runs outside the load generator's process so that the load
generator's own busy loop does not add to what it measures. One probe is in flight at a time; one
still unanswered when the row ends is counted with its age then (a lower bound).
"""

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe

from .loadgen import Connection, HTTPError, percentile, run
from .results import LagSummary


@dataclass
class LagResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    unanswered_age: float | None = None  # the probe still waiting when the row ended

    @property
    def samples(self) -> list[float]:
        extra = [self.unanswered_age] if self.unanswered_age is not None else []
        return self.latencies + extra

    def summary(self) -> LagSummary:
        samples = self.samples
        return LagSummary(
            probes=len(self.latencies),
            errors=self.errors,
            unanswered_at_end_ms=_ms(self.unanswered_age),
            p50_ms=_ms(percentile(samples, 50)),
            p99_ms=_ms(percentile(samples, 99)),
            max_ms=_ms(max(samples) if samples else None),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class LagProbe:
    """The parent side: start(port) before a row, stop() after it returns the row's LagResult."""

    def __init__(self, host: str = "127.0.0.1", path: str = "/health/live", interval: float = 0.05) -> None:
        self.host, self.path, self.interval = host, path, interval
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_child, args=(child,), name="bench-lag-probe", daemon=True)
        self._process.start()
        child.close()

    def start(self, port: int) -> None:
        self._pipe.send(("start", self.host, port, self.path, self.interval))
        reply = self._pipe.recv()  # "started" once its connection is open, so no part of the row is missed
        if reply != "started":
            raise RuntimeError(f"lag probe could not start: {reply}")

    def stop(self) -> LagResult:
        self._pipe.send(("stop",))
        return self._pipe.recv()

    def close(self) -> None:
        if self._process.is_alive():
            self._pipe.send(("exit",))
            self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()


def _child(pipe: Pipe) -> None:
    run(_serve(pipe))


async def _serve(pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] != "start":
            return
        _, host, port, path, interval = command
        connection = Connection(host, port)
        try:
            await connection.open()
        except OSError as error:
            pipe.send(f"cannot connect: {error!r}")
            continue
        stop = asyncio.Event()
        probing = asyncio.create_task(_probe(connection, path, interval, stop))
        pipe.send("started")
        await loop.run_in_executor(None, pipe.recv)  # ("stop",)
        stop.set()
        pipe.send(await probing)


async def _probe(connection: Connection, path: str, interval: float, stop: asyncio.Event) -> LagResult:
    result = LagResult()
    stopped = asyncio.create_task(stop.wait())

    async def one() -> float:
        status, _ = await connection.request("GET", path)
        if status != 200:
            raise HTTPError(f"status {status}")
        return time.perf_counter()

    next_at = time.perf_counter()
    while not stop.is_set():
        sent = time.perf_counter()
        answer = asyncio.create_task(one())
        await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            result.unanswered_age = time.perf_counter() - sent
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            break
        try:
            result.latencies.append(answer.result() - sent)
        except (OSError, HTTPError, asyncio.IncompleteReadError, ValueError) as error:
            result.errors += 1
            connection.close()
            if isinstance(error, OSError):
                await asyncio.sleep(interval)  # a refused connection would otherwise spin
        next_at = max(next_at + interval, time.perf_counter())
        await asyncio.wait({stopped}, timeout=next_at - time.perf_counter())
    connection.close()
    stopped.cancel()
    return result
