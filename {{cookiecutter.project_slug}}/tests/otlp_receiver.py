"""An OTLP/HTTP trace receiver of the tests' own: what a collector gets from the api and the worker.

It decodes each POST /v1/traces body as the exporter sends it (protobuf ExportTraceServiceRequest,
opentelemetry-proto's own message classes) and keeps every span, so a test reads the traces the real
servers exported. `hanging_collector` is the other kind: it accepts connections and never answers.
"""

import gzip
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER
    attributes: dict[str, object]


def plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def decoded(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: plain(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name")),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes={a.key: plain(a.value) for a in span.attributes},
                    )
                )
    return spans


class Receiver:
    """Listens on a free port of 127.0.0.1 while in its `with` block."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0  # POST requests received
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == TRACES_PATH:
                    receiver.spans.extend(decoded(body))
                    receiver.exports += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == TRACES_PATH else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per export on the test's output says nothing

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in list(self.spans) if span.trace_id == trace_id]

    def wait_for(self, found: Callable[[], bool], timeout: float = 20.0) -> bool:
        """Whether `found` became true within timeout (the processor exports on its own schedule)."""
        deadline = time.monotonic() + timeout
        while not found() and time.monotonic() < deadline:
            time.sleep(0.1)
        return found()


@contextmanager
def hanging_collector() -> Iterator[str]:
    """An endpoint that takes the connection and never answers (the kernel completes the handshake
    for a listening socket nobody accepts on)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def traced_env(endpoint: str) -> dict[str, str]:
    """What a traced server gets: the endpoint, every span sampled, an export every 100 ms, and an
    export timeout of 1 s (a dead collector is seen quickly)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }


def new_trace() -> tuple[str, dict[str, str]]:
    """A trace id of the test's choosing and the W3C header that makes a request part of it."""
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def descends_from(span: ReceivedSpan, root: ReceivedSpan, spans: list[ReceivedSpan]) -> bool:
    by_id = {s.span_id: s for s in spans}
    while span.parent_id in by_id:
        if span.parent_id == root.span_id:
            return True
        span = by_id[span.parent_id]
    return False
