"""Bare FastAPI apps with the template's trivial route, to measure what the template itself costs.

Same route, same response, same uvicorn command as the generated app; no settings, lifespan,
database engines, clients or exception handlers. `app` declares the route on the application;
`routed_app` declares it in an APIRouter that the application includes, as the template's router
modules do, so that the cost of that layer is measured apart from the template's own.
`uvicorn bench.bare_app:app` / `uvicorn bench.bare_app:routed_app`.
"""

from fastapi import APIRouter, FastAPI

app = FastAPI()


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


router = APIRouter(prefix="/health")


@router.get("/live")
async def routed_live() -> dict[str, str]:
    return {"status": "ok"}


routed_app = FastAPI()
routed_app.include_router(router)
