"""Logging: one line per record, JSON in containers (LOG_FORMAT=json) or plain text (`make dev`), each
with the event, level, logger, time and the id of the request it was logged for.

Rule: two ways in, one shape out. The standard library's records go through structlog's
ProcessorFormatter on the root logger; the access line (access.py) skips the logging machinery
(RecordWriter runs the same processors on a dict), since a LogRecord costs more than a trivial route.
The request id lives in REQUEST_ID, set by access.py in the request's task.
"""

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# uvicorn configures these itself before it builds the app; they are handed to the root handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
UVICORN_ACCESS_LOGGER = "uvicorn.access"  # uvicorn skips its access line when this has no handler
# orjson renders the time itself (in C) as structlog's ISO stamper would: 2026-01-31T12:00:00.123456Z.
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if event_dict.get("request_id") is None and (request_id := REQUEST_ID.get()) is not None:
        event_dict["request_id"] = request_id
    return event_dict


# Processors that add the request's context to every record; an integration appends its own here.
CONTEXT_FIELDS: list[Processor] = [add_request_id]


def add_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    for processor in CONTEXT_FIELDS:
        event_dict = processor(logger, method_name, event_dict)
    return event_dict


def add_time(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = datetime.now(UTC)  # rendered by orjson (JSON_OPTIONS)
    return event_dict


def render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    try:
        return orjson.dumps(event_dict, default=repr, option=JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits: the standard library renders anything
        return json.dumps(event_dict, default=repr)


def drop_color_message(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event_dict


def line_processors(log_format: str) -> tuple[Processor, list[Processor]]:
    """How a record's dict gets its time, and what then turns it into its line."""
    if log_format == "json":
        # Tracebacks as one string field: a record stays one line.
        return add_time, [add_context, structlog.processors.format_exc_info, render_json]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    return stamp, [add_context, structlog.dev.ConsoleRenderer(colors=False)]


class RecordWriter:
    """Writes records of one logger straight to the handler's stream: the access line's way in."""

    def __init__(self, name: str, handler: logging.StreamHandler, log_format: str) -> None:
        self.name = name
        self.logger = logging.getLogger(name)
        self.handler = handler
        self.stamp, self.finish = line_processors(log_format)

    def info(self, event: str, fields: EventDict) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        line = self.stamp(None, "info", {"event": event, "level": "info", "logger": self.name})
        line.update(fields)
        for processor in self.finish:
            line = processor(None, "info", line)
        self.handler.acquire()  # the stdlib path writes from other threads too: never half a line
        try:
            self.handler.stream.write(line + "\n")
        finally:
            self.handler.release()


def configure_logging(log_format: str, access_logger: str) -> RecordWriter:
    """Every stdlib record to one handler on stderr; returns the writer of `access_logger` on it."""
    stamp, finish = line_processors(log_format)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
                structlog.stdlib.ExtraAdder(),
                drop_color_message,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    uvicorn_access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    return RecordWriter(access_logger, handler, log_format)
