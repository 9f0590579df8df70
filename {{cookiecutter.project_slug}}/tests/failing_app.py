"""A test-only app: the real one (create_app) plus one route with a bug, so tests/test_request_ids.py
can see what a caller gets from an unhandled exception. Served like the real app, by the compose `api`
command."""

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.main import create_app as create_real_app

BUG_PATH = "/test-only/bug"


class Bug(Exception):
    """What no handler knows: the catch-all 500."""


def create_app() -> FastAPI:
    app = create_real_app()

    @app.get(BUG_PATH)
    async def bug() -> None:
        raise Bug("a bug on purpose")

    return app
