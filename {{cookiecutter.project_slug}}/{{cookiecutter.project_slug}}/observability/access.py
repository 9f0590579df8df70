"""What every request records, in one pure ASGI middleware: its id, its access line, its metrics;
and it publishes the request it serves for the loop watchdog.

Rule: outermost, a few microseconds a request, on the scope already at hand. A client's X-Request-ID
is kept only when it is a safe token, else replaced by a new one (docs/observability.md: which, why).
"""

import re
import secrets
import time
from asyncio import current_task

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import REQUEST_ID, RecordWriter
from .metrics import REQUESTS
from .watchdog import SERVING

ACCESS_LOGGER = __name__  # the access line's logger: its level silences the line like any other
REQUEST_ID_HEADER = b"x-request-id"  # as ASGI spells header names: lower case
STATE_REQUEST_ID = "request_id"  # request.state.request_id: what errors.internal_error answers with
SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "<unmatched>"  # the route label of a 404: one series, not one per path scanned
# Any other method (a scanner's invention) is counted as OTHER: labels stay a fixed, small set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_of(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """The request's id, and whether the client sent one that was refused."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if SAFE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii"), False
            return secrets.token_hex(16), True
    return secrets.token_hex(16), False


class AccessMiddleware:
    """Outermost (added last): every record of a request, the error handlers' included, has its id.
    With `metrics` off (OBSERVABILITY=false) it still sets the id and writes the access line."""

    def __init__(self, app: ASGIApp, log: RecordWriter, metrics: bool) -> None:
        self.app = app
        self.log = log
        self.metrics = metrics
        # (method, route, status) -> its histogram: REQUESTS.labels() costs more than the observation.
        self.series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, refused = request_id_of(scope["headers"])
        REQUEST_ID.set(request_id)
        scope.setdefault("state", {})[STATE_REQUEST_ID] = request_id
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500  # if the app raises before answering, the client gets ServerErrorMiddleware's 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        task = current_task()
        SERVING[task] = scope  # the stall report's request (watchdog.py)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            SERVING.pop(task, None)
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED)  # the template, set once matched
            if self.metrics:
                self.observe(scope["method"], route, status, seconds)
            self.write_access_line(scope, route, status, seconds, refused)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in METHODS else "OTHER", route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = REQUESTS.labels(key[0], route, str(status))
        series.observe(seconds)

    def write_access_line(self, scope: Scope, route: str, status: int, seconds: float, refused: bool) -> None:
        client, raw_path = scope.get("client"), scope.get("raw_path")
        fields = {
            "method": scope["method"],
            # As the client sent it, still percent-encoded, without the query (which may hold secrets).
            "path": raw_path.decode("latin-1") if raw_path else scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        }
        if refused:
            fields["request_id_refused"] = True
        self.log.info("request", fields)
