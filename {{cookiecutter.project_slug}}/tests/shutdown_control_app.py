"""The negative control of tests/test_shutdown.py: the real app plus one resource whose closing fails,
so a shutdown that logs an error is seen by the same check. Served like the real app, by the compose
`api` command."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from {{ cookiecutter.project_slug }}.main import create_app as create_real_app


class CloseFailed(Exception):
    """What a resource that closes badly raises."""


@asynccontextmanager
async def closes_badly(app: FastAPI) -> AsyncIterator[None]:
    yield
    raise CloseFailed("a resource that fails to close, on purpose")


def create_app() -> FastAPI:
    app = create_real_app()
    app.include_router(APIRouter(lifespan=closes_badly))
    return app
