"""Where the trivial route's server CPU goes: the app under cProfile, functions ranked by own time.

The overhead rows say how much the app costs over bare FastAPI; this says on what. The app is
served as the compose `api` command serves it (the factory, uvicorn's defaults and the compose
flags, observability on) by a child process that profiles its own event loop thread between two
signals, so that start-up and warm-up stay out: SIGUSR1 starts the profiler, SIGUSR2 stops it
and writes the pstats file. It sees the event loop's thread only: the request path (the watchdog
and sampler threads are measured by the overhead rows). cProfile's own cost per call inflates
small functions called often, so the table says where the time goes; the overhead rows say how
much there is.
`python -m bench.profiler <port> <pstats file> <app>` is the child; `profiled_run` drives it.
"""

import cProfile
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from . import loadgen
from .results import ProfileEntry
from tools.native import PROJECT_ROOT, free_port, native_env

TOP = 15  # functions listed
APP = "{{ cookiecutter.project_slug }}.main:create_app"


def serve(port: int, output: Path, app: str) -> None:
    profiler = cProfile.Profile()  # wall time: a CPU-time timer costs more than what it would measure

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(output)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    uvicorn.run(app, factory=app == APP, host="127.0.0.1", port=port, timeout_keep_alive=5)


def where(function: tuple[str, int, str]) -> str:
    """`package/module.py:line name`, the path cut to what follows site-packages or the project."""
    filename, line, name = function
    for marker in ("site-packages/", f"{PROJECT_ROOT}/", "lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line} {name}" if line else name


def top_functions(stats_file: Path, requests: int) -> list[ProfileEntry]:
    stats = pstats.Stats(str(stats_file)).stats  # {function: (calls, primitive, own, cumulative, callers)}
    total = sum(entry[2] for entry in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    return [
        ProfileEntry(
            function=where(function),
            calls_per_request=round(calls / requests, 2),
            own_us_per_request=round(own / requests * 1e6, 1),
            own_share=round(own / total, 3),
        )
        for function, (calls, _, own, _, _) in ranked
    ]


def package_share(stats_file: Path, package: str) -> float:
    """The share of the profiled own time spent in `package`'s modules (a folder in site-packages)."""
    stats = pstats.Stats(str(stats_file)).stats
    total = sum(entry[2] for entry in stats.values()) or 1.0
    marker = f"site-packages/{package}/"
    return round(sum(entry[2] for function, entry in stats.items() if marker in function[0]) / total, 3)


def profiled_run(
    env: dict[str, str], path: str, requests: int, concurrency: int, log: Path, app: str = APP
) -> tuple[Path, int]:
    """The pstats file of `requests` GETs of `path` on `app` served in a profiled child, and how
    many of them completed."""
    port = free_port()
    output = log.with_suffix(".pstats")
    output.unlink(missing_ok=True)
    with log.open("ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.profiler", str(port), str(output), app],
            cwd=PROJECT_ROOT,
            env=native_env(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    operation = loadgen.get(lambda _: path)
    try:
        wait_until_serving(port, path, child)
        loadgen.run(loadgen.run_load("127.0.0.1", port, operation, requests // 4, concurrency, 60))  # warm-up
        child.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        load = loadgen.run(loadgen.run_load("127.0.0.1", port, operation, requests, concurrency, 120))
        child.send_signal(signal.SIGUSR2)
        wait_for_file(output)
    finally:
        child.terminate()
        child.wait(timeout=30)
    return output, load.completed


def wait_until_serving(port: int, path: str, child: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the profiled server exited with {child.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the profiled server did not answer in time")


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """The stats file, once written: its size stops changing after the dump returned."""
    deadline, size = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        current = path.stat().st_size if path.exists() else -1
        if current > 0 and current == size:
            return
        size = current
        time.sleep(0.2)
    raise RuntimeError(f"the profiled server wrote no {path.name}")


if __name__ == "__main__":
    os.chdir(PROJECT_ROOT)
    serve(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
