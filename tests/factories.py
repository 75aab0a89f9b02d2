"""Rows for tests that need messages in a given state (written through the real database)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from tracker import clock, db, models
from tracker.clients import records
from tracker.domain import segments, status

# Module-level names: the factories take a ``status`` keyword, which shadows the module.
Status = status.Status
RANK = status.RANK
NORMAL_PRIORITY = status.PRIORITY_ORDER[status.Priority.NORMAL]


async def add_message(
    database: db.Database,
    *,
    status: Status = Status.PENDING,
    contact: str = "254712345678",
    provider_message_id: str | None = None,
    client: str = "app",
) -> uuid.UUID:
    """Insert one message in ``status`` (of ``client``, created if missing) and return its id."""
    message = models.Message(
        id=models.new_id(),
        client=client,
        sender_name="KIMISMS",
        contact=contact,
        network="Safaricom",
        body="Your code is 123456",
        segments=1,
        encoding=segments.Encoding.GSM7.value,
        priority=NORMAL_PRIORITY,
        status=status.value,
        rank=RANK[status],
        provider_message_id=provider_message_id,
        next_attempt_at=clock.utcnow(),
    )
    async with database.write() as session:
        await records.ensure(session, client)
        session.add(message)
    return message.id


async def fetch_message(database: db.Database, message_id: uuid.UUID) -> models.Message:
    async with database.read() as session:
        row = await session.get(models.Message, message_id)
    assert row is not None
    return row


async def count_rows(database: db.Database, model: type[models.Base], message_id: uuid.UUID) -> int:
    """How many rows of ``model`` (receipts, events) belong to a message."""
    async with database.read() as session:
        column = model.message_id  # type: ignore[attr-defined]
        value = await session.scalar(select(func.count()).where(column == message_id))
    return int(value or 0)
