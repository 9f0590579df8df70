"""What the server costs while a row runs: CPU seconds, and its memory, threads and processes at peak.

A server is a process and its descendants: with WEB_CONCURRENCY > 1, uvicorn's process only
supervises and its worker processes serve, and the process pool's jobs run in children too. psutil
reads the figures from the operating system (Linux and macOS alike); a sampling thread polls the
memory, threads and processes, because they rise and fall during a row (idle threadpool threads exit).
"""

import threading
import time
from dataclasses import dataclass

import psutil

SAMPLE_INTERVAL = 0.1
# Finding a process's descendants reads every process of the machine (~5 ms): it is redone every
# this many samples only, because the sampler runs in the load generator's process and CPU.
REFRESH_EVERY = 10


def server_processes(process: psutil.Process) -> list[psutil.Process]:
    """The process and every live descendant (raises psutil.Error once the process is gone)."""
    return [process, *process.children(recursive=True)]


def cpu_seconds_by_process(pid: int) -> dict[int, float] | None:
    """User + system CPU seconds of a process and of each live descendant; None once it is gone."""
    try:
        processes = server_processes(psutil.Process(pid))
    except psutil.Error:
        return None
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # a child that exited in between: (a server's workers do not)
        seconds[process.pid] = times.user + times.system
    return seconds


def cpu_spent(before: dict[int, float] | None, after: dict[int, float] | None) -> dict[int, float] | None:
    """CPU seconds each process spent between two readings (one started in between: all of its own)."""
    if before is None or after is None:
        return None
    return {pid: seconds - before.get(pid, 0.0) for pid, seconds in after.items()}


def machine_cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far: how busy it was, us or not."""
    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def wait_until_quiet(busy_below: float, timeout: float, window: float = 0.25) -> float:
    """Block until the whole machine was busy less than `busy_below` (a share of all its CPUs) over
    one `window`, or `timeout` passed: what a previous row left running (an exporter flushing, a
    server draining) then does not land on the next. The last window's share."""
    deadline = time.monotonic() + timeout
    while True:
        busy = psutil.cpu_percent(interval=window) / 100
        if busy < busy_below or time.monotonic() > deadline:
            return busy


@dataclass
class Peak:
    rss_mb: float | None = None  # summed over the processes
    threads: int | None = None
    processes: int | None = None


class PeakSampler:
    """`with PeakSampler(pid) as peak:` ... then peak's figures hold the highest seen."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.peak = Peak()
        self._processes: list[psutil.Process] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-sampler", daemon=True)

    def __enter__(self) -> Peak:
        if self.process is not None:
            self._sample(refresh=True)
            self._thread.start()
        return self.peak

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self._stop.set()
            self._thread.join()
            self._sample(refresh=True)

    def _poll(self) -> None:
        count = 0
        while not self._stop.wait(SAMPLE_INTERVAL):
            count += 1
            self._sample(refresh=count % REFRESH_EVERY == 0)

    def _sample(self, refresh: bool) -> None:
        if refresh:
            try:
                self._processes = server_processes(self.process)
            except psutil.Error:
                return
        rss, threads, alive = 0, 0, 0
        for process in self._processes:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    threads += process.num_threads()
            except psutil.Error:
                continue
            alive += 1
        self.peak.rss_mb = max(self.peak.rss_mb or 0.0, round(rss / 2**20, 1))
        self.peak.threads = max(self.peak.threads or 0, threads)
        self.peak.processes = max(self.peak.processes or 0, alive)
