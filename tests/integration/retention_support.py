"""Messages that became final at a chosen time, with their history, for the retention tests."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, insert, select

from tracker import db, models
from tracker.clients import records
from tracker.domain import segments, status

Status = status.Status
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
NUMBER = "254712345678"
BODY = "Your code is 123456"


async def add(
    database: db.Database,
    *,
    final_days_ago: float | None,
    client: str = "app",
    state: Status = Status.DELIVERED,
    created_days_ago: float | None = None,
    history: bool = True,
) -> uuid.UUID:
    """One message final ``final_days_ago`` before NOW (None: not final), with an event and
    a receipt naming its number; billed (accepted) unless it never reached the provider."""
    final_at = None if final_days_ago is None else NOW - dt.timedelta(days=final_days_ago)
    created = NOW - dt.timedelta(days=created_days_ago or (final_days_ago or 0) + 0.01)
    message_id = models.new_id()
    async with database.write() as session:
        await records.ensure(session, client)
        await session.execute(
            insert(models.Message).values(
                id=message_id, client=client, sender_name="KIMISMS", contact=NUMBER,
                network="Safaricom", body=BODY, segments=2,
                encoding=segments.Encoding.GSM7.value, priority=1, status=state.value,
                rank=status.RANK[state], next_attempt_at=created, created_at=created,
                updated_at=created, final_at=final_at,
                accepted_at=None if state is Status.QUEUED else created,
                provider_message_id=None if state is Status.QUEUED else f"p-{message_id.hex}",
            )
        )  # fmt: skip
        if history:
            await session.execute(
                insert(models.MessageEvent).values(
                    message_id=message_id, source="callback", to_status=state.value,
                    payload={"contact": NUMBER}, created_at=created,
                )
            )  # fmt: skip
            await session.execute(
                insert(models.CallbackReceipt).values(
                    message_id=message_id, dedupe_key=uuid.uuid4().hex, outcome="applied",
                    body=f'{{"contact": "{NUMBER}"}}', received_at=created, applied_at=created,
                )
            )  # fmt: skip
    return message_id


async def message(database: db.Database, message_id: uuid.UUID) -> models.Message | None:
    async with database.read() as session:
        return await session.get(models.Message, message_id)


async def rows(database: db.Database, model: type[models.Base]) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
