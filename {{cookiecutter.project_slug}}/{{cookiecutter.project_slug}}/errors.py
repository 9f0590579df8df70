"""The app's own error answers, all `{"detail": ...}` JSON: a 422 that repeats at most a short prefix
of the bad input, 504/503 for a wait or connection that names no dependency, and a 500 with the
request's id and no traceback.

Rule: each resource maps its own failures (resources/*.py: 503 database, 502/504 upstream, ...);
what is left here names no dependency (an `asyncio.wait_for` that ran out is a bare TimeoutError), so
it never says "database unavailable", and it is never a 500.
"""

import logging
import math
import reprlib

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

log = logging.getLogger(__name__)

# What FastAPI answers on a route with a body before the route runs (document_body_errors).
BODY_ERRORS = {
    400: {"description": "the body cannot be parsed: not UTF-8 text, or a number too long for Python"},
    413: {"description": "the body is larger than MAX_BODY_BYTES"},
}


class ServiceUnavailable(Exception):
    """Raise with a short reason when a dependency that maps no errors of its own is unavailable."""


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


def document_body_errors(router: APIRouter) -> None:
    """BODY_ERRORS on each route of `router` that reads a body: the OpenAPI schema shows every status."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            route.responses = {**BODY_ERRORS, **route.responses}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)

    async def unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        log.warning("%s %s -> 503: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_exception_handler(ServiceUnavailable, unavailable)
    # Some wait ran out or some connection failed, and nothing says which: raise ServiceUnavailable
    # with its name instead where a route knows it.
    app.add_exception_handler(TimeoutError, _answer(504, "timed out"))
    app.add_exception_handler(ConnectionError, _answer(503, "service unavailable"))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (uvicorn re-raises it there), never to the client.
        return internal_error(request)

    app.add_exception_handler(Exception, unexpected)
