"""Mixed. Rule: an `async def` route that awaits async I/O and has exactly one blocking call it
cannot avoid (a legacy SDK, a sync-only driver) sends that call through `run_in_threadpool`.
Calling it directly here would freeze the loop for its whole duration.
"""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from opentelemetry import trace
from sqlalchemy import func, select

from ..deps import AppSettings, AsyncDB, RequestsSession
from ..models import Item
from ..resources.clients import fetch_delay_blocking
from ..schemas import Report, WaitSeconds

# OpenTelemetry's API only: a no-op until the app installs a tracer provider (tracing.py).
tracer = trace.get_tracer(__name__)

router = APIRouter(prefix="/mixed", tags=["async def + run_in_threadpool"])


@router.get(
    "/report", responses={502: {"description": "upstream failed"}, 504: {"description": "upstream timed out"}}
)
async def report(delay: WaitSeconds, db: AsyncDB, http: RequestsSession, settings: AppSettings) -> Report:
    item_count = await db.scalar(select(func.count()).select_from(Item))
    await db.commit()  # ends the transaction: the connection goes back to the pool before the slow call
    # fetch_delay_blocking stands for a blocking SDK you cannot rewrite: it runs on a worker thread
    # while the loop serves other requests. (Not in asyncio.gather with the query above: if one
    # failed, the other would still be using the session while the request closes it.)
    # Its span includes the wait for a threadpool token; the thread's own spans (requests') nest in it.
    with tracer.start_as_current_span("run_in_threadpool fetch_delay_blocking"):
        upstream = await run_in_threadpool(fetch_delay_blocking, http, settings, delay)
    return Report(item_count=item_count, upstream=upstream)
