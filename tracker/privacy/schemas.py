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


class ErasureRequest(BaseModel):
    """``POST /v1/erasures``."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(description="The number to erase, in any usual form", examples=["0712 345 678"])


class ErasureOut(BaseModel):
    """What the erasure changed, per table; the same counts go to the audit log."""

    messages_found: int = Field(description="Messages to the number (not queued), every client")
    messages_cancelled: int = Field(description="Queued to it, cancelled before being sent")
    messages_redacted: int = Field(description="Bodies removed now (0 for those gone already)")
    messages_pseudonymised: int = Field(description="Numbers replaced by their keyed hash now")
    events: int = Field(description="Event payloads that held a number, rewritten")
    receipts: int = Field(description="Stored callback bodies that held a number, rewritten")
    webhook_deliveries: int = Field(description="Webhook deliveries' data or errors rewritten")
    webhook_attempts: int = Field(description="Webhook attempts' errors or excerpts rewritten")
    idempotency_keys: int = Field(description="Stored Idempotency-Key answers rewritten")


class AuditEventOut(BaseModel):
    """One entry of the audit log: who, what, when, how many; never a number or body."""

    id: int
    action: str = Field(description="erasure, body_read or retention")
    actor: str = Field(description="client/key name, cli, or retention")
    message_id: uuid.UUID | None = Field(description="The message read (body_read)")
    detail: dict[str, int] | None = Field(description="Counts of rows, per table")
    created_at: dt.datetime


class AuditEventList(BaseModel):
    """``GET /v1/audit-events``: the newest 100 first."""

    audit_events: list[AuditEventOut]


class AuditQuery(BaseModel):
    """``GET /v1/audit-events`` filters."""

    model_config = ConfigDict(extra="forbid")

    action: str | None = Field(default=None, description="erasure, body_read or retention")
