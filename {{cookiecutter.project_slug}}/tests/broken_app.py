"""The negative control of tests/test_fuzz.py: an app whose bugs the fuzz check must each report, and
one documented 503 it must not. Served like the real app, by the compose `api` command."""

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

N = Annotated[int, Query(ge=0, le=1000)]


class Ratio(BaseModel):
    ratio: float


def create_app() -> FastAPI:
    app = FastAPI(title="broken on purpose")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/inverse")
    async def inverse(n: N) -> Ratio:
        return Ratio(ratio=1 / n)  # n=0 is valid input: ZeroDivisionError, a 500

    @app.get("/ratio", response_model=None, responses={200: {"model": Ratio}})
    async def ratio(n: N) -> JSONResponse:
        # Past 500, a string where the documented Ratio has a number: a hand-built response skips
        # FastAPI's response_model validation, which is how bodies drift from their documentation.
        return JSONResponse({"ratio": n / 1000 if n <= 500 else "many"})

    @app.get("/queue-full", responses={200: {"model": Ratio}})
    async def queue_full(n: N) -> JSONResponse:
        return JSONResponse({"detail": "queue full"}, status_code=503)  # a 503 it does not document

    @app.get("/unavailable", responses={503: {"description": "a dependency is down; retry"}})
    async def unavailable(n: N) -> JSONResponse:
        return JSONResponse({"detail": "down"}, status_code=503)  # documented: not a failure

    return app
