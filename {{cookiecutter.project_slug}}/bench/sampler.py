"""What the server process costs while a row runs: CPU seconds, and its memory and threads at peak.

psutil reads them from the operating system (Linux and macOS alike); a sampling thread polls the
memory and thread count, because both rise and fall during a row (threadpool threads exit when idle).
"""

import threading
from dataclasses import dataclass

import psutil

SAMPLE_INTERVAL = 0.1


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def machine_cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far: how busy it was, us or not."""
    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


@dataclass
class Peak:
    rss_mb: float | None = None
    threads: int | None = None


class PeakSampler:
    """`with PeakSampler(pid) as peak:` ... then peak.rss_mb and peak.threads hold the highest seen."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.peak = Peak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-sampler", daemon=True)

    def __enter__(self) -> Peak:
        if self.process is not None:
            self._sample()
            self._thread.start()
        return self.peak

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def _poll(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample()

    def _sample(self) -> None:
        try:
            with self.process.oneshot():
                rss_mb = self.process.memory_info().rss / 2**20
                threads = self.process.num_threads()
        except psutil.Error:
            return
        self.peak.rss_mb = max(self.peak.rss_mb or 0.0, round(rss_mb, 1))
        self.peak.threads = max(self.peak.threads or 0, threads)
