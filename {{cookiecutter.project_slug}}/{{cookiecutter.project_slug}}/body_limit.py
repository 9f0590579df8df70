"""A request body over MAX_BODY_BYTES gets one answer however it is framed: 413 `{"detail": ...}`, with
the request's X-Request-ID and access line, as every other refusal.

Rule: FastAPI counts a body while a route reads it (`max_body_size` on each router); a declared
Content-Length over the limit is refused here, unread, inside AccessMiddleware: Starlette's own
limiter would answer it in text/plain, and outside every middleware when the limit is the app's.
"""

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOO_LARGE = "Content Too Large"  # as Starlette's own 413 says it


async def too_large(request: Request, exc: Exception | None = None) -> JSONResponse:
    return JSONResponse({"detail": TOO_LARGE}, status_code=413)


def declared_length(scope: Scope) -> int | None:
    """The Content-Length the client sent, if any (uvicorn has already refused one that is no number)."""
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class DeclaredBodyLimit:
    """ASGI, because no hook of FastAPI's runs both inside AccessMiddleware and before the route's
    limiter, which would answer a declared length over the limit in text/plain: a middleware added
    before AccessMiddleware is both. It reads the header, never the body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (declared_length(scope) or 0) > self.max_body_bytes:
            response = await too_large(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def limit_bodies(app: FastAPI, max_body_bytes: int) -> None:
    """Call before adding AccessMiddleware, so that it is outside, and give the routers the limit."""
    app.add_exception_handler(413, too_large)  # the HTTPException FastAPI raises past the limit
    app.add_middleware(DeclaredBodyLimit, max_body_bytes=max_body_bytes)
