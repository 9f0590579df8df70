"""A stand-in for a slow third-party API: `GET /delay/{seconds}` answers after that long.

It is the `upstream` service in docker-compose.yml and in the tests, so the httpx and requests
routes make real HTTP calls with a known wait. Never deploy it.
"""

import asyncio
from typing import Annotated

from fastapi import FastAPI, Path

app = FastAPI(title="upstream stand-in")


@app.get("/delay/{seconds}")
async def delay(seconds: Annotated[float, Path(ge=0, le=60)]) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"delayed": seconds}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
