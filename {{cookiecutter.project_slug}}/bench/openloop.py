"""Open-loop load: requests arrive at a fixed average rate at Poisson times, whatever the server's
pace, as independent clients do; the closed loop (loadgen.run_load) sends the next request only when
one answered, so its arrivals come in waves. An arrival takes an idle keep-alive connection, or opens
a new one when all are busy."""

import asyncio
import random
import time

from .loadgen import FAILURES, Connection, LoadResult, Operation, record_failure


async def run_open_loop(
    host: str, port: int, operation: Operation, rate: float, requests: int, max_seconds: float
) -> LoadResult:
    """`requests` operations at `rate` per second on average (exponential gaps, a fixed seed)."""
    result = LoadResult(requested=requests, concurrency=0, max_seconds=max_seconds)
    opened: list[Connection] = []
    idle: list[Connection] = []
    in_flight: dict[int, float] = {}

    async def send(index: int) -> None:
        if not idle:
            opened.append(Connection(host, port))
            idle.append(opened[-1])
        connection = idle.pop()
        started = in_flight[index] = time.perf_counter()
        result.concurrency = max(result.concurrency, len(in_flight))
        try:
            failure = await operation(connection, index)
        except FAILURES as error:
            failure = type(error).__name__
            connection.close()
        answered = time.perf_counter()
        del in_flight[index]
        if failure is None:
            result.latencies.append(answered - started)
        else:
            record_failure(result, failure)
        idle.append(connection)

    gaps = random.Random(0)  # noqa: S311 - arrival times, not secrets
    cpu_before, start = time.process_time(), time.perf_counter()
    tasks, arrival = [], start
    for index in range(requests):
        arrival += gaps.expovariate(rate)
        if arrival - start > max_seconds:
            break
        await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
        tasks.append(asyncio.create_task(send(index)))
    left = max(0.001, max_seconds - (time.perf_counter() - start))
    _, pending = await asyncio.wait(tasks, timeout=left) if tasks else (set(), set())
    result.elapsed = time.perf_counter() - start
    result.censored = [start + result.elapsed - started for started in in_flight.values()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.client_cpu = time.process_time() - cpu_before
    for connection in opened:
        connection.close()
    return result
