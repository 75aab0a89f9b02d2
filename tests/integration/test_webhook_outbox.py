"""The webhooks' outbox: a status change writes its deliveries in its own transaction."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from tests.factories import add_message
from tracker import clock, db, models
from tracker.clients import records
from tracker.reports import plan, reading, writer


def receipt(message_id: uuid.UUID, status: str = "Delivered") -> reading.Receipt:
    body = json.dumps({"message_id": "p-1", "contact": "254712345678", "status": status})
    return reading.Receipt(message_id, body, "127.0.0.1", clock.utcnow())


async def subscribe(
    database: db.Database,
    client: str = "app",
    events: tuple[str, ...] = ("message.delivered",),
    *,
    disabled: bool = False,
) -> uuid.UUID:
    """An endpoint of ``client`` subscribed to ``events`` (written straight to the tables)."""
    async with database.write() as session:
        await records.ensure(session, client)
        endpoint = models.WebhookEndpoint(
            client=client,
            url="https://hooks.example.test/tracker",
            secret="whsec_" + "A" * 32,
            disabled_at=clock.utcnow() if disabled else None,
        )
        session.add(endpoint)
        await session.flush()
        for event_type in events:
            session.add(models.WebhookSubscription(endpoint_id=endpoint.id, event_type=event_type))
    return endpoint.id


async def deliveries(database: db.Database) -> list[models.WebhookDelivery]:
    async with database.read() as session:
        found = await session.scalars(select(models.WebhookDelivery).order_by("id"))
        return list(found)


async def apply_reports(database: db.Database, *receipts: reading.Receipt) -> list[plan.Outcome]:
    batch_writer = writer.for_database(database, 0.5)
    try:
        return await batch_writer.apply(list(receipts))
    finally:
        await batch_writer.close()


async def test_a_delivery_report_writes_one_delivery_per_subscribed_endpoint(
    database: db.Database,
) -> None:
    """The callback group commit: each endpoint subscribed to the event gets one delivery."""
    message_id = await add_message(database)
    first = await subscribe(database)
    second = await subscribe(database, events=("message.delivered", "message.failed"))
    await subscribe(database, events=("message.failed",))  # not this event
    await subscribe(database, client="other")  # not this client's message
    assert await apply_reports(database, receipt(message_id)) == [plan.Outcome.APPLIED]
    found = await deliveries(database)
    assert {d.endpoint_id for d in found} == {first, second}
    assert {d.event_id for d in found} == {found[0].event_id}  # one event, one webhook-id
    delivery = found[0]
    assert delivery.event_type == "message.delivered"
    assert delivery.status == "pending"
    assert delivery.message_id == message_id
    assert delivery.event_id.startswith(f"msg_{message_id.hex}_")
    assert delivery.data["status"] == "delivered"
    assert delivery.data["previous_status"] == "pending"
    assert delivery.data["provider_status"] == "Delivered"
    assert "body" not in delivery.data


async def test_a_disabled_endpoint_gets_its_delivery_as_failed_for_recovery(
    database: db.Database,
) -> None:
    """Nothing is lost while an endpoint is disabled: its delivery is failed, not dropped."""
    message_id = await add_message(database)
    await subscribe(database, disabled=True)
    await apply_reports(database, receipt(message_id))
    (delivery,) = await deliveries(database)
    assert delivery.status == "failed"
    assert delivery.next_attempt_at is None
    assert delivery.last_error == "endpoint disabled"


async def test_a_report_that_moves_nothing_writes_no_delivery(database: db.Database) -> None:
    """A duplicate or stale report changes no status, so it causes no webhook."""
    message_id = await add_message(database)
    await subscribe(database, events=("message.delivered", "message.failed"))
    await apply_reports(database, receipt(message_id))
    outcomes = await apply_reports(database, receipt(message_id), receipt(message_id, "Failed"))
    assert outcomes == [plan.Outcome.DUPLICATE, plan.Outcome.STALE]
    assert len(await deliveries(database)) == 1
