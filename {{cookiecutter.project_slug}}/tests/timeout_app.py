"""The app with one more route, for tests/test_errors.py: a wait on no dependency at all that runs
out, as a route's `asyncio.wait_for` does. Served like the real app, by the compose `api` command."""

import asyncio

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.main import create_app as create_real_app


def create_app() -> FastAPI:
    app = create_real_app()

    @app.get("/test/wait-on-sleep")
    async def wait_on_sleep() -> dict[str, str]:
        await asyncio.wait_for(asyncio.sleep(5), timeout=0.1)  # raises TimeoutError after 0.1 s
        return {"status": "not reached"}

    return app
