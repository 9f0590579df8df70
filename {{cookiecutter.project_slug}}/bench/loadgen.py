"""The load generator: a raw-asyncio HTTP/1.1 keep-alive client, in the spirit of `ab -k -n N -c C`.

httpx costs hundreds of microseconds of Python per request; on a 2-core machine that would make the
client, not the server, the bottleneck of the fast rows. This client does the minimum per request
(one write, one header read, one body read on a connection kept open), runs on uvloop when it is
installed, and measures its own CPU time so that every row can say whether the client kept up.

A run is bounded twice: by a number of requests and by a deadline. Requests still in flight at the
deadline are "censored": their age at that moment is a lower bound of their latency.
"""

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

HEADER_END = b"\r\n\r\n"


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop when it is installed: the same loop uvicorn picks for the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


class HTTPError(Exception):
    """The server answered something this client cannot read as HTTP/1.1."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after an error, a `Connection: close`, or the
    server's closing it while it was idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._host_header = f"Host: {host}:{port}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._reader is not None and self._reader.at_eof():
            # The server closed it while it sat idle (uvicorn's keep-alive timeout is 5 s: the open
            # loop's spare connections outlast it). Pooling clients (urllib3, httpcore) drop such a
            # connection before they reuse it; sending on it would count the server's tidying as an error.
            self.close()
        if self._reader is None or self._writer is None:
            reader, writer = await self.open()
        else:
            reader, writer = self._reader, self._writer
        head = f"{method} {path} HTTP/1.1\r\n{self._host_header}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        try:
            header = await reader.readuntil(HEADER_END)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            self.close()
            raise HTTPError(f"no complete response header: {error!r}") from None
        status = int(header[9:12])
        length = None
        chunked = close = False
        for line in header[:-4].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            payload = await read_chunked(reader)
        elif length is not None:
            payload = await reader.readexactly(length)
        else:
            payload = await reader.read()
            close = True
        if close:
            self.close()
        return status, payload


# What a failed operation may raise: counted by kind, and its connection reopened.
FAILURES = (OSError, HTTPError, asyncio.IncompleteReadError, ValueError, KeyError)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body: each chunk is its size in hex, CRLF, the bytes, CRLF; size 0 ends the body."""
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


# One operation (the i-th of the run) on a connection: returns None when it succeeded, else what
# went wrong (the HTTP status, or a short reason), counted by kind in the row's errors.
Operation = Callable[[Connection, int], Awaitable[str | None]]


def get(path_for: Callable[[int], str]) -> Operation:
    """The common case: one GET per operation, a success is a 2xx answer."""

    async def operation(connection: Connection, index: int) -> str | None:
        status, _ = await connection.request("GET", path_for(index))
        return None if 200 <= status < 300 else str(status)

    return operation


def celery_job(n: int, poll_interval: float) -> Operation:
    """Submit a job to POST /cpu/jobs and poll GET /cpu/jobs/{id} until it is done: one operation."""
    body = json.dumps({"n": n}).encode()

    async def operation(connection: Connection, index: int) -> str | None:
        status, payload = await connection.request("POST", "/cpu/jobs", body)
        if status != 202:
            return f"submit {status}"
        job_id = json.loads(payload)["id"]
        while True:
            await asyncio.sleep(poll_interval)
            status, payload = await connection.request("GET", f"/cpu/jobs/{job_id}")
            if status != 200:
                return f"poll {status}"
            state = json.loads(payload)["state"]
            if state == "succeeded":
                return None
            if state == "failed":
                return "job failed"

    return operation


@dataclass
class LoadResult:
    requested: int
    concurrency: int
    max_seconds: float
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # successful operations, seconds
    errors_by_kind: dict[str, int] = field(default_factory=dict)  # "503": 12, "ConnectionResetError": 1
    censored: list[float] = field(default_factory=list)  # ages of the operations cut by the deadline
    client_cpu: float = 0.0  # CPU seconds this process spent during the run

    @property
    def errors(self) -> int:
        return sum(self.errors_by_kind.values())

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def cut(self) -> bool:
        return bool(self.censored) or self.completed + self.errors < self.requested

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile over successes and censored ages (so a lower bound when cut)."""
        return percentile(self.latencies + self.censored, p)


def record_failure(result: LoadResult, failure: str) -> None:
    result.errors_by_kind[failure] = result.errors_by_kind.get(failure, 0) + 1


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


Progress = Callable[[int, int, float, bool], None]  # done, total, elapsed, final


async def run_load(
    host: str,
    port: int,
    operation: Operation,
    requests: int,
    concurrency: int,
    max_seconds: float,
    progress: Progress | None = None,
    ramp: float = 0.0,
) -> LoadResult:
    """`requests` operations over `concurrency` connections, opened before the clock starts; with
    `ramp`, one connection every `ramp` seconds after it starts, as clients arrive at a busy server.

    The ramp is for servers with several worker processes on one listening socket: a burst of new
    connections is accepted mostly by whichever worker wakes first (1 and 39 of 40 were seen), while
    a connection that arrives during the load goes to a worker that is not busy."""
    concurrency = max(1, min(concurrency, requests))
    result = LoadResult(requested=requests, concurrency=concurrency, max_seconds=max_seconds)
    connections = [Connection(host, port) for _ in range(concurrency)]
    if not ramp:
        await asyncio.gather(*(connection.open() for connection in connections))
    issued = 0
    in_flight: dict[int, float] = {}
    last_done = 0.0

    async def worker(slot: int, connection: Connection) -> None:
        nonlocal issued, last_done
        await asyncio.sleep(slot * ramp)  # (the connection opens with its first request)
        while issued < requests:
            index = issued
            issued += 1
            started = time.perf_counter()
            in_flight[slot] = started
            try:
                failure = await operation(connection, index)
            except FAILURES as error:
                failure = type(error).__name__
                connection.close()
            finished = time.perf_counter()
            del in_flight[slot]
            last_done = finished
            if failure is None:
                result.latencies.append(finished - started)
            else:
                record_failure(result, failure)

    cpu_before = time.process_time()
    start = time.perf_counter()
    tasks = [asyncio.create_task(worker(slot, conn)) for slot, conn in enumerate(connections)]
    reporter = asyncio.create_task(_report(progress, result, requests, start)) if progress else None
    _, pending = await asyncio.wait(tasks, timeout=max_seconds)
    deadline = time.perf_counter()
    if pending:
        result.censored = [deadline - started for started in in_flight.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        result.elapsed = deadline - start
    else:
        result.elapsed = last_done - start
    result.client_cpu = time.process_time() - cpu_before
    if reporter:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        progress(result.completed + result.errors, requests, result.elapsed, True)
    for connection in connections:
        connection.close()
    return result


async def _report(progress: Progress, result: LoadResult, requests: int, start: float) -> None:
    while True:
        await asyncio.sleep(0.5)
        progress(result.completed + result.errors, requests, time.perf_counter() - start, False)


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m bench.loadgen HOST PORT PATH N C
    host, port, path, n, c = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    outcome = run(run_load(host, port, get(lambda _: path), n, c, 60))
    print(f"{outcome.rps:.1f} req/s, errors {outcome.errors}, client CPU {outcome.client_cpu:.2f} s")
