"""The process pool: right answers, bounded input, a pool process killed mid-job is a 503 for the
requests on it and the next request succeeds, and the event loop stays free while the pool computes
(the same computation inline in `async def` does not).
"""

import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from .loop_guard import MAX_PROBE_LATENCY, RouteCall, guard
from .services import above_limit_detail

# pi(n): the number of primes below n.
KNOWN_COUNTS = {10: 4, 100: 25, 10_000: 1229, 300_000: 25997}


@pytest.mark.parametrize(("n", "primes"), KNOWN_COUNTS.items())
def test_compute_counts_primes(api, n, primes):
    response = httpx.get(f"{api.url}/cpu/compute", params={"n": n}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"below": n, "primes": primes}


def test_compute_above_cpu_max_n_is_422(api, settings):
    # CPU_MAX_N bounds how long one request can hold a pool process.
    response = httpx.get(f"{api.url}/cpu/compute", params={"n": settings.cpu_max_n + 1})
    assert response.status_code == 422, response.text
    # The same shape as any validation error: the bound is a setting, not in the schema.
    assert response.json()["detail"] == above_limit_detail(["query", "n"], settings.cpu_max_n)


@pytest.mark.parametrize("params", [{"n": 1}, {"n": -5}, {"n": "many"}, {"n": 2.5}, {}], ids=str)
def test_compute_rejects_bad_input(api, params):
    response = httpx.get(f"{api.url}/cpu/compute", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def children(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process; 0 once it has exited."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def busy_children(pid: int, count: int, baseline: dict[int, float], timeout: float = 30.0) -> list[int]:
    """`count` children of `pid` that are computing: each used 0.3 s of CPU since `baseline`, well
    beyond what a freshly spawned pool process spends starting up, so they are running our jobs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [child for child in children(pid) if cpu_seconds(child) - baseline.get(child, 0) >= 0.3]
        if len(busy) >= count:
            return busy
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} children of {pid} used the CPU within {timeout} s")


def test_killed_pool_process_is_a_503_then_the_pool_is_rebuilt(api, settings):
    answers: list[httpx.Response] = []

    def compute_the_largest() -> None:  # seconds of work, so the kill lands in the middle of it
        answers.append(httpx.get(f"{api.url}/cpu/compute", params={"n": settings.cpu_max_n}, timeout=120))

    # Two jobs running at once; killing the process of one breaks the whole executor, so both fail.
    running = min(2, settings.process_pool_workers)
    requests = [threading.Thread(target=compute_the_largest) for _ in range(running)]
    baseline = {child: cpu_seconds(child) for child in children(api.process.pid)}  # earlier tests' work
    for request in requests:
        request.start()
    try:
        os.kill(busy_children(api.process.pid, running, baseline)[0], signal.SIGKILL)
    finally:
        for request in requests:
            request.join(timeout=120)
    assert [answer.status_code for answer in answers] == [503] * running, [answer.text for answer in answers]
    assert all("retry" in answer.json()["detail"] for answer in answers)

    after = httpx.get(f"{api.url}/cpu/compute", params={"n": 10_000}, timeout=60)
    assert after.status_code == 200, after.text
    assert after.json() == {"below": 10_000, "primes": 1229}


LOAD_N = 300_000  # ~0.5 s of pure Python each: ten of them keep both pool processes busy for seconds


def test_loop_stays_free_while_the_pool_computes(api):
    result = guard(api.url, RouteCall("GET", "/cpu/compute", "/cpu/compute", {"n": LOAD_N}))
    assert result.statuses == [200] * len(result.statuses)
    assert not result.problems(), result.problems()
    # The probe kept answering during the whole load, not just once before it started.
    assert len(result.probe_latencies) >= 5, result.probe_latencies


def test_the_same_check_fails_on_cpu_work_inline_in_async_def(anti_api):
    """Negative control: /anti/cpu runs the same count_primes on the event loop."""
    result = guard(anti_api.url, RouteCall("GET", "/anti/cpu", "/anti/cpu", {"n": LOAD_N}))
    assert result.statuses == [200] * len(result.statuses)
    assert result.worst_probe_latency > MAX_PROBE_LATENCY, (
        f"inline CPU work did not show up: worst probe {result.worst_probe_latency:.3f} s"
    )
    assert result.problems()
