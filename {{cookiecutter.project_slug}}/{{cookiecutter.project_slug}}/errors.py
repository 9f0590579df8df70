"""Dependency failures become short JSON answers: 503 database, 502/504 upstream. No stack traces.
Bad input becomes a 422 in FastAPI's documented shape that repeats at most a short prefix of it.

Registered once on the app, so `async def` and `def` routes fail the same way. Each answer is
chosen by the exception's type, so the type must say what failed: the database is unavailable only
when SQLAlchemy says so (both engines raise its errors, db.py). A bare TimeoutError or
ConnectionError names no dependency (an `asyncio.wait_for` that ran out is a TimeoutError): it gets
504 "timed out" or 503 "service unavailable", never "database unavailable" and never a 500.
"""

import logging
import math
import reprlib
from collections.abc import Sequence

import httpx
import requests
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # pool exhausted for db_pool_timeout seconds
)
UNAVAILABLE_SQLSTATE_CLASSES = {"08", "53", "57"}
UPSTREAM_TIMEOUT = (httpx.TimeoutException, requests.Timeout)
UPSTREAM_FAILED = (httpx.HTTPError, requests.RequestException)


class ServiceUnavailable(Exception):
    """Raise with a short reason when a dependency other than the database is unavailable."""


def above_limit(loc: Sequence[str], value: int, limit: int) -> RequestValidationError:
    """A bound known only at run time (a setting) refused as FastAPI refuses a static `le=`: the same
    422 body, so clients and the OpenAPI schema see one shape for every validation error."""
    error = {
        "type": "less_than_equal",
        "loc": tuple(loc),
        "msg": f"Input should be less than or equal to {limit}",
        "input": value,
        "ctx": {"le": limit},
    }
    return RequestValidationError([error])


MAX_ECHO_CHARS = 80
_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = MAX_ECHO_CHARS
_short.maxlevel, _short.maxdict, _short.maxlist = 2, 4, 4


def echo(value: object) -> object:
    """What a 422 may repeat of an input: a short scalar as it is, anything else as a repr of at most
    ~MAX_ECHO_CHARS. Never the whole input (a 1 MiB body would come back whole), and never what JSON
    cannot encode (a lone surrogate, NaN), which would turn the 422 into a 500."""
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**53):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = value if isinstance(value, str) and len(value) <= MAX_ECHO_CHARS else _short.repr(value)
    return text.encode("utf-8", "replace").decode("utf-8")


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {**error, "input": echo(error["input"])} if "input" in error else error for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def internal_error(request: Request) -> JSONResponse:
    """An unhandled exception's 500. Starlette sends it from ServerErrorMiddleware, outside
    AccessMiddleware, which adds X-Request-ID to every other answer (the handlers above included): the
    id it left in request.state (access.py) goes back, so the caller can quote the id that the
    traceback's log record carries. An app without that middleware answers without one."""
    request_id = getattr(request.state, "request_id", None)
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse({"detail": "internal server error"}, status_code=500, headers=headers)


def _answer(status: int, detail: str):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s -> %s: %r", request.method, request.url.path, status, exc)
        return JSONResponse({"detail": detail}, status_code=status)

    return handler


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    for exc_class in DATABASE_DOWN:
        app.add_exception_handler(exc_class, _answer(503, "database unavailable"))
    # Starlette answers with the handler of the first class in the exception's MRO that has one, so a
    # timeout (also an HTTPError/RequestException) gets 504 whatever the order here.
    for exc_class in UPSTREAM_TIMEOUT:
        app.add_exception_handler(exc_class, _answer(504, "upstream timed out"))
    for exc_class in UPSTREAM_FAILED:
        app.add_exception_handler(exc_class, _answer(502, "upstream failed"))

    async def unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        log.warning("%s %s -> 503: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_exception_handler(ServiceUnavailable, unavailable)
    # Some wait ran out or some connection failed, and nothing says which: raise ServiceUnavailable
    # with its name instead where a route knows it.
    app.add_exception_handler(TimeoutError, _answer(504, "timed out"))
    app.add_exception_handler(ConnectionError, _answer(503, "service unavailable"))

    async def database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        # SQLSTATE classes 08 (connection), 53 (too many clients, out of resources) and 57
        # (server shutting down) are the database being unavailable; anything else is a bug.
        sqlstate = str(getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
            return await _answer(503, "database unavailable")(request, exc)
        log.exception("%s %s -> 500", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)  # inside AccessMiddleware

    app.add_exception_handler(sqlalchemy.exc.DBAPIError, database_error)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (uvicorn re-raises it there), never to the client.
        return internal_error(request)

    app.add_exception_handler(Exception, unexpected)
