"""Mixed. Rule: an `async def` route that awaits async I/O and has exactly one blocking call it
cannot avoid (a legacy SDK, a sync-only driver) sends that call through `run_in_threadpool`.
Calling it directly here would freeze the loop for its whole duration.
"""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from opentelemetry import trace
from sqlalchemy import func, select

from ..models import Item, Report, UpstreamReply, WaitSeconds
from ..resources.async_database import AsyncDB
from ..resources.requests_session import RequestsSession, UpstreamSession

tracer = trace.get_tracer(__name__)  # OpenTelemetry's API: a no-op until the app installs a provider

router = APIRouter(prefix="/mixed", tags=["async def + run_in_threadpool"])


def fetch_delay_blocking(http: UpstreamSession, delay: float) -> UpstreamReply:
    """Stands for a blocking SDK you cannot rewrite: it holds its thread for the whole call."""
    response = http.get(f"/delay/{delay}")
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())


@router.get(
    "/report", responses={502: {"description": "upstream failed"}, 504: {"description": "upstream timed out"}}
)
async def report(delay: WaitSeconds, db: AsyncDB, http: RequestsSession) -> Report:
    item_count = await db.scalar(select(func.count()).select_from(Item))
    await db.commit()  # ends the transaction: the connection goes back to the pool before the slow call
    # The blocking call runs on a worker thread while the loop serves other requests. (Not in
    # asyncio.gather with the query: if one failed, the other would still use the closing session.)
    # Its span includes the wait for a threadpool token; the thread's own spans nest in it.
    with tracer.start_as_current_span("run_in_threadpool fetch_delay_blocking"):
        upstream = await run_in_threadpool(fetch_delay_blocking, http, delay)
    return Report(item_count=item_count, upstream=upstream)
