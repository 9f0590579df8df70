"""The data the I/O patterns read and write: the items table, and the bodies and parameters of their
routes. Rule: every input is bounded, and its `examples` validate (the docs show them; the loop guard
sends them).

Text bound for the database is refused with a 422 when PostgreSQL could not store it: its text types
have no U+0000 (the driver would fail mid-request, a 500).
"""

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MAX_WAIT_SECONDS = 10
MAX_PAGE_SIZE = 100


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, examples=[1])]
WaitSeconds = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait", examples=[1])]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, examples=[10])]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, examples=[0])]
StorableText = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class ItemCreate(BaseModel):
    name: StorableText = Field(min_length=1, max_length=200, examples=["widget"])
    description: StorableText = Field("", max_length=2000, examples=["a blue one, 40 mm"])


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    created_at: datetime


class Waited(BaseModel):
    waited: float
    source: str


class UpstreamReply(BaseModel):
    delay: float
    upstream_status: int
    upstream_body: dict


class Report(BaseModel):
    item_count: int
    upstream: UpstreamReply
