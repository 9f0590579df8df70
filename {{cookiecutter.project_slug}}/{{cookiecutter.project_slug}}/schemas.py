"""Request and response bodies, and the bounded query parameters every router family shares.

Every input has `examples`: the OpenAPI docs show them, and each is valid by its own schema, so a
client sending them gets an answer, not a 422.
"""

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

MAX_WAIT_SECONDS = 10
MAX_PAGE_SIZE = 100

ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, examples=[1])]
WaitSeconds = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait", examples=[1])]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, examples=[10])]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, examples=[0])]

# What FastAPI answers for a route with a body before the route runs, listed on each such route so
# clients know every status they can get.
BODY_ERRORS = {
    400: {"description": "the body cannot be parsed: not UTF-8 text, or a number too long for Python"},
    413: {"description": "the body is larger than MAX_BODY_BYTES"},
}

# Text bound for the database is refused here, with a 422, when PostgreSQL could not store it: its
# text types have no U+0000 (the driver would fail mid-request, a 500). Lone surrogates, which UTF-8
# cannot encode, are refused by pydantic itself. The pattern is in the OpenAPI schema, so clients
# and fuzzers know the rule.
NO_NUL = r"^[^\x00]*$"
StorableText = Annotated[str, Field(pattern=NO_NUL)]


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


class PrimeCount(BaseModel):
    below: int
    primes: int = Field(description="how many primes are below `below`")
