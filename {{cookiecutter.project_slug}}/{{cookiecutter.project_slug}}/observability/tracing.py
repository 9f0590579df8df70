"""Traces (OpenTelemetry), off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then the api and the worker
export every sampled request's spans over OTLP/HTTP, and the SDK reads the other OTEL_* variables.

Rule: unset, nothing here runs (the spans patterns open by hand with the OpenTelemetry API are
no-ops); set, a collector that is down or slow never holds a request (spans wait in a bounded queue,
a failing export is reported once). Who makes which span: docs/observability.md, "Traces".
"""

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Engine
from structlog.typing import EventDict, WrappedLogger

from .logs import CONTEXT_FIELDS

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# The SDK's own lines about dropped spans (warnings) and failed exports (errors, one per batch):
# ReportingExporter says it once instead. An exception while exporting, a bug, is still logged.
QUIETED_LOGGERS = {
    "opentelemetry.sdk._shared_internal": logging.ERROR,
    "opentelemetry.exporter.otlp.proto.http": logging.CRITICAL,
}
SHUTDOWN_SECONDS = 5.0  # the last spans' export on shutdown; a hanging collector does not hold it longer
STATE_TRACE_ID = "trace_id"  # request.state.trace_id: what the stall report names (metrics.py)


class ReportingExporter(SpanExporter):
    """The OTLP exporter, saying once that exports fail (spans are being dropped) and once that they
    work again, where the SDK logs every failed batch."""

    def __init__(self, exporter: SpanExporter, endpoint: str) -> None:
        self.exporter = exporter
        self.endpoint = endpoint
        self.failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.exporter.export(spans)
        failed = result is not SpanExportResult.SUCCESS
        if failed and not self.failing:
            log.warning("trace export to %s failed: spans are dropped until it answers", self.endpoint)
        elif self.failing and not failed:
            log.info("trace export to %s works again", self.endpoint)
        self.failing = failed
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def enabled() -> bool:
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def start_tracing(default_service_name: str) -> TracerProvider | None:
    """The process's tracer provider, exporting over OTLP/HTTP; None (and nothing installed) when off."""
    if not enabled():
        return None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if resource.attributes[SERVICE_NAME].startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    endpoint = next(os.environ[name] for name in reversed(ENDPOINT_VARIABLES) if os.environ.get(name))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # shut_down() bounds it
    provider.add_span_processor(BatchSpanProcessor(ReportingExporter(OTLPSpanExporter(), endpoint)))
    for name, level in QUIETED_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    trace.set_tracer_provider(provider)
    if add_trace_ids not in CONTEXT_FIELDS:  # every log line in a recorded span: trace_id, span_id
        CONTEXT_FIELDS.append(add_trace_ids)
    return provider


def shut_down(provider: TracerProvider) -> None:
    """Exports what is queued, for SHUTDOWN_SECONDS at most (the SDK's own shutdown may wait 30 s on a
    collector that hangs). Blocking: call it off the event loop."""
    flushing = threading.Thread(target=provider.shutdown, name="trace-shutdown", daemon=True)
    flushing.start()
    flushing.join(SHUTDOWN_SECONDS)


def remember_trace_id(span: trace.Span, scope: dict) -> None:
    """FastAPI instrumentation's server_request_hook: the trace id into request.state, where the
    watchdog's thread can read it (the span's context variable is visible to the request's task only)."""
    if span.is_recording():
        trace_id = trace.format_trace_id(span.get_span_context().trace_id)
        scope.setdefault("state", {})[STATE_TRACE_ID] = trace_id


def trace_app(app: FastAPI, provider: TracerProvider) -> None:
    """The server span, outermost: every middleware, the access log's included, runs inside it."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        server_request_hook=remember_trace_id,
        # Not a span per ASGI message: they only repeat the server span's timing, at a cost each.
        exclude_spans=["receive", "send"],
    )


@contextmanager
def traced_clients(
    provider: TracerProvider, engines: list[Engine], http_client: httpx.AsyncClient
) -> Iterator[None]:
    """Instruments the lifespan's engines and clients, and removes it on exit (the instrumentors are
    per process: an app made again in the same process, as tests do, instruments its own)."""
    # Its declared range ends below SQLAlchemy 2.1, whose engine events (all it uses) are unchanged:
    # tests/test_tracing.py proves its spans arrive from both engines.
    SQLAlchemyInstrumentor().instrument(engines=engines, tracer_provider=provider, skip_dep_check=True)
    HTTPXClientInstrumentor.instrument_client(http_client, tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)  # patches requests.Session.send
    try:
        yield
    finally:
        RequestsInstrumentor().uninstrument()
        HTTPXClientInstrumentor.uninstrument_client(http_client)
        SQLAlchemyInstrumentor().uninstrument()


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the ids of the span this record is logged in, when that span is recorded."""
    context = trace.get_current_span().get_span_context()
    if context.trace_flags.sampled:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict
