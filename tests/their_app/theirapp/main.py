"""The existing app: its own lifespan, route, logging and the loop guard's probe. A recipe's
main.py block is appended below and joins the pattern to this `app`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from .config import get_settings

# Its own log format: the harness looks for the start-up line in exactly this shape.
logging.basicConfig(level=logging.INFO, format="THEIRAPP %(levelname)s %(name)s: %(message)s")
log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.greeting = get_settings().greeting
    log.info("started with greeting %s", app.state.greeting)
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/hello")
async def hello(request: Request) -> dict[str, str]:
    return {"greeting": request.app.state.greeting}


@app.get("/health/live")  # the loop guard's probe: it touches nothing, so its latency is the loop's
async def live() -> dict[str, str]:
    return {"status": "ok"}
