"""Sync drivers. Rule: plain `def` routes, so FastAPI runs each in the threadpool where blocking is
harmless: psycopg2 through Session, HTTP through requests. Never write `async def` in this module;
never `await` here. Open the session inside the route (`with sessions() as db:`), so its connection
is back in the pool before the response is validated (docs/concurrency.md: the deadlock this avoids).
"""

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select, text

from ..models import Item, ItemCreate, ItemId, ItemOut, Limit, Offset, UpstreamReply, Waited, WaitSeconds
from ..resources.requests_session import RequestsSession
from ..resources.sync_database import SyncSessions

router = APIRouter(prefix="/sync", tags=["def + psycopg2/requests"])


@router.post("/items", status_code=status.HTTP_201_CREATED)
def create_item(body: ItemCreate, sessions: SyncSessions) -> ItemOut:
    with sessions() as db:
        item = Item(name=body.name, description=body.description)
        db.add(item)
        db.commit()
        db.refresh(item)
        return ItemOut.model_validate(item)


@router.get("/items/{item_id}", responses={404: {"description": "no such item"}})
def read_item(item_id: ItemId, sessions: SyncSessions) -> ItemOut:
    with sessions() as db:
        item = db.get(Item, item_id)
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "item not found")
        return ItemOut.model_validate(item)


@router.get("/items")
def list_items(sessions: SyncSessions, limit: Limit = 10, offset: Offset = 0) -> list[ItemOut]:
    with sessions() as db:
        rows = db.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
        return [ItemOut.model_validate(item) for item in rows]


@router.get("/db-wait", responses={503: {"description": "database unavailable"}})
def database_wait(seconds: WaitSeconds, sessions: SyncSessions) -> Waited:
    """The same wait as /async/db-wait, holding a worker thread (and a token) instead."""
    with sessions() as db:
        db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    return Waited(waited=seconds, source="postgres via psycopg2")


@router.get(
    "/upstream",
    responses={502: {"description": "upstream failed"}, 504: {"description": "upstream timed out"}},
)
def call_upstream(delay: WaitSeconds, http: RequestsSession) -> UpstreamReply:
    response = http.get(f"/delay/{delay}")
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())
