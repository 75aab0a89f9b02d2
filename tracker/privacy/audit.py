"""The audit log of personal data: who erased, read or retired what, when, how much.

An entry holds counts and at most a message id, never a number or a body, so
the log itself needs no retention.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, models

AUDIT_EVENTS: Table = models.AuditEvent.__table__  # type: ignore[assignment]
RETENTION_ACTOR = "retention"


class Action(enum.StrEnum):
    ERASURE = "erasure"  # POST /v1/erasures, tracker privacy erase
    BODY_READ = "body_read"  # GET /v1/messages/{id}?include=body
    RETENTION = "retention"  # one run of the retention job that changed rows


def actor_of(client: str, key_name: str) -> str:
    """How an API key is named in the log: ``client/key``."""
    return f"{client}/{key_name}"


async def record(
    session: AsyncSession,
    action: Action,
    actor: str,
    *,
    message_id: uuid.UUID | None = None,
    detail: Mapping[str, int] | None = None,
    at: dt.datetime | None = None,
) -> None:
    """One entry, in the caller's transaction: it commits with what it describes."""
    await session.execute(
        insert(AUDIT_EVENTS).values(
            action=action.value,
            actor=actor,
            message_id=message_id,
            detail=None if detail is None else dict(detail),
            created_at=at or clock.utcnow(),
        )
    )


async def recent(
    session: AsyncSession, *, action: Action | None = None, limit: int = 100
) -> Sequence[Any]:
    """The newest entries first (optionally of one action)."""
    a = AUDIT_EVENTS.c
    query = select(AUDIT_EVENTS).order_by(a.created_at.desc(), a.id.desc()).limit(limit)
    if action is not None:
        query = query.where(a.action == action.value)
    return (await session.execute(query)).mappings().all()
