"""Helpers shared by the privacy tests (#17): a message's history, and every row as text."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select

from tracker import clock, db, models

# Every table a number or a body can reach (besides the messages' own columns).
TABLES: tuple[type[models.Base], ...] = (
    models.Message,
    models.MessageEvent,
    models.CallbackReceipt,
    models.WebhookDelivery,
    models.WebhookAttempt,
    models.IdempotencyKey,
)


def _spaced(number: str) -> str:
    local = "0" + number[3:]
    return f"{local[:4]} {local[4:7]} {local[7:]}"


async def history(
    database: db.Database, message_id: uuid.UUID, number: str, *, also: str | None = None
) -> None:
    """An event, a receipt, a webhook delivery and its attempt, each naming ``number``
    in another written form (0712..., +254..., spaced); the event names ``also`` too."""
    local = "0" + number[3:]
    spaced = _spaced(number) + ("" if also is None else f", also {_spaced(also)}")
    now = clock.utcnow()
    async with database.write() as session:
        await session.execute(
            insert(models.MessageEvent).values(
                message_id=message_id, source="callback", created_at=now,
                payload={"contact": number, "note": f"called back on {spaced}"},
            )
        )  # fmt: skip
        await session.execute(
            insert(models.CallbackReceipt).values(
                message_id=message_id, dedupe_key=uuid.uuid4().hex, outcome="applied",
                body=f'{{"contact": "{number}", "status": "Delivered"}}', applied_at=now,
                received_at=now,
            )
        )  # fmt: skip
        endpoint = models.WebhookEndpoint(
            client="app", url="https://example.com/hook", secret="whsec_x"
        )
        session.add(endpoint)
        await session.flush()
        delivery = models.WebhookDelivery(
            endpoint_id=endpoint.id, event_id=f"msg_{uuid.uuid4().hex}",
            event_type="message.delivered", message_id=message_id, data={"to": number},
            occurred_at=now, status="failed", next_attempt_at=now,
            last_error=f"receiver said +{number} unknown",
        )  # fmt: skip
        session.add(delivery)
        await session.flush()
        session.add(
            models.WebhookAttempt(
                delivery_id=delivery.id, attempted_at=now, latency_ms=1.0,
                response_excerpt=f"no such user {local}",
            )
        )  # fmt: skip


async def every_row(database: db.Database) -> str:
    """Every row of every table in ``TABLES``, as one text to search."""
    async with database.read() as session:
        texts = [
            str((await session.execute(select(model.__table__))).mappings().all())
            for model in TABLES
        ]
    return "\n".join(texts)


def forms_of(number: str) -> list[str]:
    """The written forms a search for ``number`` must not find."""
    local = "0" + number[3:]
    return [number[3:], f"{local[:4]} {local[4:7]} {local[7:]}", f"{number[3:6]} {number[6:]}"]
