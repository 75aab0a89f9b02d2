"""Cancelling what is still queued to a number: for an opt-out and for an erasure.

Only ``queued`` messages are cancelled (a retry's wait included): once one is
``sending`` KIMISMS may have it, and cancelling would hide a send that happened.
Each cancelled message gets an event with the reason, so its history and its
webhooks (``message.cancelled``) say why.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Table, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models
from tracker.domain import status

MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]
SOURCE = "api"


async def queued_to(
    session: AsyncSession, msisdn: str, client: str | None, now: dt.datetime, *, reason: str
) -> int:
    """Cancel every message still queued to the number (of ``client``, or of all)."""
    cancelled = status.Status.CANCELLED
    condition = [MESSAGES.c.contact == msisdn, MESSAGES.c.status == status.Status.QUEUED.value]
    if client is not None:
        condition.append(MESSAGES.c.client == client)
    ids = (
        await session.scalars(
            update(MESSAGES)
            .where(*condition)
            .values(**status.ended(cancelled, now), error=reason)
            .returning(MESSAGES.c.id)
        )
    ).all()
    if ids:
        await session.execute(
            insert(EVENTS),
            [
                {"message_id": message_id, "from_status": status.Status.QUEUED.value,
                 "to_status": cancelled.value, "source": SOURCE, "detail": reason,
                 "created_at": now}
                for message_id in ids
            ],
        )  # fmt: skip
    return len(ids)
