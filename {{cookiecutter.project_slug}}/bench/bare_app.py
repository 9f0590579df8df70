"""A bare FastAPI app with the template's trivial route, to measure what the template itself costs.

Same route, same response, same uvicorn command as the generated app; no settings, lifespan,
database engines, clients or exception handlers. `uvicorn bench.bare_app:app`.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}
