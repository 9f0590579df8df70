"""True-async I/O. Rule: `async def` here awaits every wait: asyncpg through AsyncSession, HTTP
through the one shared httpx.AsyncClient. Never call psycopg2, requests, time.sleep or heavy CPU
work in this module: any of them stops every request on the process, not just this one.
"""

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select, text

from ..models import Item, ItemCreate, ItemId, ItemOut, Limit, Offset, UpstreamReply, Waited, WaitSeconds
from ..resources.async_database import AsyncDB
from ..resources.http_client import HttpClient

router = APIRouter(prefix="/async", tags=["async def + asyncpg/httpx"])


@router.post("/items", status_code=status.HTTP_201_CREATED)
async def create_item(body: ItemCreate, db: AsyncDB) -> ItemOut:
    item = Item(name=body.name, description=body.description)
    db.add(item)
    await db.commit()
    await db.refresh(item)  # loads created_at now; a lazy load later would need I/O off an await
    return ItemOut.model_validate(item)


@router.get("/items/{item_id}", responses={404: {"description": "no such item"}})
async def read_item(item_id: ItemId, db: AsyncDB) -> ItemOut:
    item = await db.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "item not found")
    return ItemOut.model_validate(item)


@router.get("/items")
async def list_items(db: AsyncDB, limit: Limit = 10, offset: Offset = 0) -> list[ItemOut]:
    rows = await db.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    return [ItemOut.model_validate(item) for item in rows]


@router.get("/db-wait", responses={503: {"description": "database unavailable"}})
async def database_wait(seconds: WaitSeconds, db: AsyncDB) -> Waited:
    """A real wait inside PostgreSQL: the connection is busy, the loop is free."""
    await db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    return Waited(waited=seconds, source="postgres via asyncpg")


@router.get(
    "/upstream",
    responses={502: {"description": "upstream failed"}, 504: {"description": "upstream timed out"}},
)
async def call_upstream(delay: WaitSeconds, http: HttpClient) -> UpstreamReply:
    response = await http.get(f"/delay/{delay}")
    response.raise_for_status()
    return UpstreamReply(delay=delay, upstream_status=response.status_code, upstream_body=response.json())
