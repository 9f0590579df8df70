"""The loop stall watchdog: a thread that notices when the event loop is late, and says which line.

Its rule: it reads only what is there to be read from another thread, the loop thread's stack and
the request published in SERVING against the task serving it; its report is one WARNING whose message
reads alone under any logging setup, with the same facts as fields in `extra`. Why: docs/observability.md.
"""

import asyncio
import logging
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

INTERVAL = 0.1  # seconds between two beats: the lag histogram's sampling rate
STACK_DEPTH = 30  # frames kept in a report, innermost first
STILL_BLOCKED_AFTER = 10.0  # seconds: a loop stuck this long is reported without waiting for its end
REPORTS_PER_MINUTE = 6  # a storm of stalls is counted in full but logged this often at most

# Frames from these folders are libraries; the first frame outside them is the application's line.
# The package itself may be installed into site-packages (the Docker image), so it is matched by name.
LIBRARY_FOLDERS = tuple({sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")})
OWN_PACKAGE = __name__.split(".")[0]

# The task serving each request -> its ASGI scope, from the request's start to its end: access.py's
# middleware (or WatchRequests) publishes it there. The report reads the scope when a stall is seen.
SERVING: dict[asyncio.Task, MutableMapping[str, Any]] = {}


@dataclass
class Beat:
    """One callback posted onto the loop; it records when the loop got to it."""

    posted: float = field(default_factory=time.perf_counter)
    ran: threading.Event = field(default_factory=threading.Event)
    ran_at: float = 0.0

    def __call__(self) -> None:  # runs on the loop
        self.ran_at = time.perf_counter()
        self.ran.set()

    @property
    def late(self) -> float:
        return (self.ran_at if self.ran.is_set() else time.perf_counter()) - self.posted


@dataclass
class Stall:
    blocked_at: str | None
    stack: list[str]
    request: dict[str, str] | None


def is_application(frame: FrameType) -> bool:
    if frame.f_globals.get("__name__", "").split(".")[0] == OWN_PACKAGE:
        return True
    filename = frame.f_code.co_filename
    return not filename.startswith(LIBRARY_FOLDERS) and not filename.startswith("<")  # "<frozen ...>"


def where(frame: FrameType, line: int) -> str:
    return f"{frame.f_code.co_filename}:{line} in {frame.f_code.co_name}"


def request_of(scope: MutableMapping[str, Any] | None) -> dict[str, str] | None:
    """What a report says of the request: the route template once matched, the ids from scope["state"]
    (access.py's STATE_REQUEST_ID, tracing.py's STATE_TRACE_ID)."""
    if scope is None:
        return None
    state = scope.get("state") or {}
    route = getattr(scope.get("route"), "path", scope.get("path"))
    ids = {name: state.get(name) for name in ("request_id", "trace_id")}
    return {"method": scope.get("method"), "route": route, **ids}


def snapshot(frame: FrameType | None, scope: MutableMapping[str, Any] | None) -> Stall:
    """The loop thread's stack, innermost first, and the request its task is serving."""
    frames = list(traceback.walk_stack(frame)) if frame is not None else []
    stack = [where(f, line) for f, line in frames[:STACK_DEPTH]]
    blocked_at = next((where(f, line) for f, line in frames if is_application(f)), None)
    return Stall(blocked_at, stack, request_of(scope))


class WatchRequests:
    """Opt-in ASGI middleware for an app without access.py's: publishes each request in SERVING."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        task = asyncio.current_task()
        SERVING[task] = scope
        try:
            await self.app(scope, receive, send)
        finally:
            SERVING.pop(task, None)


class LoopWatchdog:
    """start() on the loop it watches; stop() from anywhere (it joins the thread: not on the loop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        on_lag: Callable[[float], None] = lambda late: None,  # each beat's lateness (a histogram)
        on_stall: Callable[[], None] = lambda: None,  # each stall, reported or not (a counter)
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.on_lag = on_lag
        self.on_stall = on_stall
        self.loop_thread_id = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)
        self.report_times: list[float] = []
        self.unreported = 0

    def start(self) -> None:
        self.loop_thread_id = threading.get_ident()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=STILL_BLOCKED_AFTER)

    def _run(self) -> None:
        while not self.stopping.wait(INTERVAL):
            beat = Beat()
            try:
                self.loop.call_soon_threadsafe(beat)
            except RuntimeError:  # the loop is closed: nothing left to watch
                return
            if not beat.ran.wait(self.threshold):
                self._stalled(beat)
            self.on_lag(beat.late)

    def _stalled(self, beat: Beat) -> None:
        # Now, while the loop is still held: the blocking frame is on its stack.
        frame = sys._current_frames().get(self.loop_thread_id)
        stall = snapshot(frame, SERVING.get(asyncio.current_task(self.loop)))  # None between tasks
        del frame  # a frame keeps every local of the stack alive
        self.on_stall()
        deadline = time.perf_counter() + STILL_BLOCKED_AFTER
        while not beat.ran.wait(0.05) and not self.stopping.is_set():
            if time.perf_counter() > deadline:
                break
        self._report(stall, beat.late, still_blocked=not beat.ran.is_set())

    def _report(self, stall: Stall, late: float, still_blocked: bool) -> None:
        now = time.monotonic()
        self.report_times = [t for t in self.report_times if now - t < 60]
        if len(self.report_times) >= REPORTS_PER_MINUTE:
            self.unreported += 1
            return
        self.report_times.append(now)
        request = stall.request or {}
        served = ""
        if request:
            served = f"; serving {request['method']} {request['route']} id={request['request_id']}"
        log.warning(
            "event loop stalled: %.0f ms late (threshold %.0f ms%s), blocked at %s%s%s",
            late * 1000,
            self.threshold * 1000,
            ", still blocked" if still_blocked else "",
            stall.blocked_at or "no line of the application",
            served,
            f"; {self.unreported} earlier stalls not logged" if self.unreported else "",
            extra={
                "late_ms": round(late * 1000, 1),
                "threshold_ms": round(self.threshold * 1000, 1),
                "still_blocked": still_blocked,
                "blocked_at": stall.blocked_at,
                "method": request.get("method"),
                "route": request.get("route"),
                "request_id": request.get("request_id"),
                "trace_id": request.get("trace_id"),
                "stack": stall.stack,
                "unreported_before": self.unreported,
            },
        )
        self.unreported = 0
