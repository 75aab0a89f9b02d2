"""The opt-out API's bodies, for the OpenAPI document (``privacy.api`` checks requests)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field


class OptOutRequest(BaseModel):
    """``POST /v1/opt-outs``."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(description="The number, in any usual form", examples=["0712 345 678"])
    client: str | None = Field(
        default=None,
        description=(
            "Left out: the key's own client. Admin keys only: another client's name,"
            " or null for every client"
        ),
    )


class OptOutOut(BaseModel):
    """An opt-out; the number itself is kept only as a keyed hash, so it is not shown."""

    id: uuid.UUID
    client: str | None = Field(description="null: every client")
    created_by: str = Field(description="The client whose key added it")
    created_at: dt.datetime


class OptOutAdded(OptOutOut):
    """The answer to a POST: the opt-out, and the queued messages it cancelled."""

    cancelled: int


class OptOutList(BaseModel):
    """``GET /v1/opt-outs``, newest first."""

    opt_outs: list[OptOutOut]


class OptOutQuery(BaseModel):
    """``GET /v1/opt-outs`` filters."""

    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="Only this number's opt-outs")
