"""Logging: one line per record, JSON in containers (LOG_FORMAT=json) or plain text (`make dev`).

Every record goes through the standard library's logging, uvicorn's and the libraries' too, and is
rendered by structlog's ProcessorFormatter, which adds the time, the level, the logger's name, the
fields passed with `extra=` and the id of the request it was logged for. That id comes from
asgi-correlation-id: its middleware takes the X-Request-ID header (or makes one), returns it in the
response, and keeps it in a context variable for as long as the request runs, so a record logged
while serving a request, an error handler's included, carries it. Records logged by other threads
for a request (the watchdog's stall report) pass it in `extra`.
"""

import logging
import sys

import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, WrappedLogger

# uvicorn configures these itself before it builds the app; they are handed to the root handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def drop_color_message(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event_dict


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if event_dict.get("request_id") is None:
        request_id = correlation_id.get()
        if request_id:
            event_dict["request_id"] = request_id
    return event_dict


def formatter(log_format: str) -> structlog.stdlib.ProcessorFormatter:
    shared = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        drop_color_message,
        add_request_id,
    ]
    if log_format == "json":
        # Tracebacks as one string field: a record stays one line.
        rendering = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        rendering = [structlog.dev.ConsoleRenderer(colors=False)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
