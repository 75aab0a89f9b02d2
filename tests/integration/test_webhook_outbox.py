"""The webhooks' outbox: a status change writes its deliveries in its own transaction."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import Status, add_message, fetch_message
from tracker import clock, db, models
from tracker.clients import records
from tracker.dispatch import expiry, outbox
from tracker.domain import status
from tracker.reports import ingest, plan, reading, spool, writer
from tracker.sending import store


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


async def one_delivery(database: db.Database, event_type: str) -> models.WebhookDelivery:
    (delivery,) = await deliveries(database)
    assert (delivery.event_type, delivery.status) == (event_type, "pending")
    assert delivery.data["status"] == event_type.removeprefix("message.")
    return delivery


async def test_the_dispatchers_acceptance_writes_a_pending_delivery(
    database: db.Database,
) -> None:
    """KIMISMS's 200 (record_acceptance) moves sending -> pending: message.pending."""
    message_id = await add_message(database, status=Status.SENDING)
    await subscribe(database, events=("message.pending",))
    accepted = status.Acceptance("p-9", None, None, None)
    async with database.write() as session:
        assert await outbox.record_acceptance(
            session, message_id, accepted, attempt=0, now=clock.utcnow()
        )
    delivery = await one_delivery(database, "message.pending")
    assert delivery.data["previous_status"] == "sending"
    assert delivery.data["provider_message_id"] == "p-9"


async def test_the_dispatchers_rejection_writes_a_rejected_delivery(
    database: db.Database,
) -> None:
    """KIMISMS's 400 (record_rejection): message.rejected."""
    message_id = await add_message(database, status=Status.SENDING)
    await subscribe(database, events=("message.rejected",))
    async with database.write() as session:
        assert await outbox.record_rejection(
            session, message_id, "unknown sender", {}, attempt=0, now=clock.utcnow()
        )
    await one_delivery(database, "message.rejected")


async def test_the_dispatcher_giving_up_writes_a_failed_delivery(database: db.Database) -> None:
    """The retry policy ran out (record_failure): message.failed."""
    message_id = await add_message(database, status=Status.SENDING)
    await subscribe(database, events=("message.failed",))
    async with database.write() as session:
        assert await outbox.record_failure(
            session,
            message_id,
            "no answer",
            attempt=0,
            outcome=outbox.Outcome.NO_ANSWER,
            now=clock.utcnow(),
        )
    await one_delivery(database, "message.failed")


async def test_a_failed_delivery_report_writes_a_failed_delivery(database: db.Database) -> None:
    """The callback group commit with a Failed report: message.failed."""
    message_id = await add_message(database)
    await subscribe(database, events=("message.failed",))
    assert await apply_reports(database, receipt(message_id, "Failed")) == [plan.Outcome.APPLIED]
    delivery = await one_delivery(database, "message.failed")
    assert delivery.data["previous_status"] == "pending"


async def test_a_spool_replay_writes_its_delivery(database: db.Database, tmp_path: Path) -> None:
    """A callback spooled during an outage, replayed later: message.delivered then."""
    message_id = await add_message(database)
    await subscribe(database)
    box = spool.Spool(tmp_path / "spool")
    box.append([receipt(message_id)])
    assert await ingest.replay(database, box) == 1
    await one_delivery(database, "message.delivered")


async def test_the_expiry_sweep_writes_an_expired_delivery(database: db.Database) -> None:
    """A queued message past its validity, finished by the sweep: message.expired."""
    message_id = await add_message(database, status=Status.QUEUED)
    await subscribe(database, events=("message.expired",))
    async with database.write() as session:
        row = await session.get(models.Message, message_id)
        assert row is not None
        row.expires_at = clock.utcnow() - dt.timedelta(seconds=1)
    assert await expiry.sweep(database, dt.timedelta(hours=23)) == 1
    delivery = await one_delivery(database, "message.expired")
    assert delivery.data["previous_status"] == "queued"


async def test_a_cancel_writes_a_cancelled_delivery(database: db.Database) -> None:
    """The sender's cancel of a queued message: message.cancelled."""
    message_id = await add_message(database, status=Status.QUEUED)
    await subscribe(database, events=("message.cancelled",))
    async with database.write() as session:
        await store.cancel_message(session, message_id, client=None)
    await one_delivery(database, "message.cancelled")


async def test_a_rolled_back_change_leaves_no_delivery(database: db.Database) -> None:
    """Atomicity: the delivery is the status change's own row; a rollback takes both."""
    message_id = await add_message(database, status=Status.QUEUED)
    await subscribe(database, events=("message.cancelled",))

    async def cancel_then_fail() -> None:
        async with database.write() as session:
            await store.cancel_message(session, message_id, client=None)
            raise RuntimeError("the transaction fails after the change")

    with pytest.raises(RuntimeError):
        await cancel_then_fail()
    assert await deliveries(database) == []
    assert (await fetch_message(database, message_id)).status == "queued"
