"""Redaction and pseudonymisation (#17): every table that holds a number or a body."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select, update

from tests import factories
from tests.integration import privacy_support
from tracker import clock, db, models
from tracker.domain.status import Status
from tracker.privacy import pseudonyms, scrub

KEY = b"a-test-pseudonym-key-of-32-characters"
NUMBER = "254712345678"
OTHER = "254722000111"
HASH = pseudonyms.of(NUMBER, KEY)


async def test_pseudonymise_replaces_every_number_the_message_left_behind(
    database: db.Database,
) -> None:
    """Contact, metadata, events, receipts, webhook data, errors and attempts: no number left."""
    message_id = await factories.add_message(database)
    await privacy_support.history(database, message_id, NUMBER, also=OTHER)
    async with database.write() as session:
        done = await scrub.pseudonymise(session, [message_id], KEY, clock.utcnow())
    assert done == scrub.Pseudonymised(1, 1, 1, 1, 1)
    async with database.read() as session:
        message = await session.get(models.Message, message_id)
        assert message is not None
        assert (message.contact, message.contact_pseudonym) == ("", HASH)
        assert message.pseudonymised_at is not None
        assert message.body is not None  # pseudonymising is not redacting
        rows = [
            str((await session.execute(select(model.__table__))).mappings().all())
            for model in (models.MessageEvent, models.CallbackReceipt,
                          models.WebhookDelivery, models.WebhookAttempt)
        ]  # fmt: skip
    for row in rows:
        assert "712345678" not in row
        assert "722000111" not in row
        assert "722 000 111" not in row
        assert not [form for form in privacy_support.forms_of(NUMBER) if form in row]
        assert HASH in row
    assert pseudonyms.of(OTHER, KEY) in rows[0]  # any number, not only the message's own


async def test_pseudonymise_twice_changes_nothing_more(database: db.Database) -> None:
    """A second pass finds the message done and leaves its hash as it was."""
    message_id = await factories.add_message(database)
    async with database.write() as session:
        await scrub.pseudonymise(session, [message_id], KEY, clock.utcnow())
    async with database.write() as session:
        again = await scrub.pseudonymise(session, [message_id], KEY, clock.utcnow())
    assert again == scrub.Pseudonymised()
    assert (await factories.fetch_message(database, message_id)).contact_pseudonym == HASH


async def _late_receipt(database: db.Database, message_id: uuid.UUID) -> None:
    """A duplicate report for a final message: a receipt, and the message unchanged."""
    async with database.write() as session:
        await session.execute(
            insert(models.CallbackReceipt).values(
                message_id=message_id, dedupe_key=uuid.uuid4().hex, outcome="duplicate",
                body=f'{{"contact": "{NUMBER}", "status": "Delivered"}}',
                received_at=clock.utcnow(),
            )
        )  # fmt: skip


async def test_a_report_stored_between_the_plan_and_its_write_is_rewritten_too(
    database: db.Database,
) -> None:
    """Retention plans a batch outside the write transaction; a receipt that came in
    meanwhile is found at write time and pseudonymised with the rest."""
    message_id = await factories.add_message(database, status=Status.DELIVERED)
    await privacy_support.history(database, message_id, NUMBER)
    async with database.read() as session:
        planned = await scrub.plan(session, [message_id], KEY)
    await _late_receipt(database, message_id)
    async with database.write() as session:
        done = await scrub.apply(session, planned, clock.utcnow())
    assert done == scrub.Pseudonymised(1, 1, 2, 1, 1)
    rows = await privacy_support.every_row(database)
    assert not [form for form in privacy_support.forms_of(NUMBER) if form in rows]
    assert rows.count(HASH) >= 5


async def test_a_message_changed_since_its_plan_is_left_for_a_later_batch(
    database: db.Database,
) -> None:
    """A row that moved on after the plan (a late report, a retry) is not overwritten with
    values worked out from its old state; pseudonymising it again then succeeds."""
    message_id = await factories.add_message(database, status=Status.FAILED)
    async with database.read() as session:
        planned = await scrub.plan(session, [message_id], KEY)
    async with database.write() as session:
        await session.execute(
            update(models.Message)
            .where(models.Message.id == message_id)
            .values(error=f"retried for {NUMBER}")
        )
    async with database.write() as session:
        assert await scrub.apply(session, planned, clock.utcnow()) == scrub.Pseudonymised()
    message = await factories.fetch_message(database, message_id)
    assert (message.contact, message.pseudonymised_at) == (NUMBER, None)
    async with database.write() as session:
        again = await scrub.pseudonymise(session, [message_id], KEY, clock.utcnow())
    assert again.messages == 1
    message = await factories.fetch_message(database, message_id)
    assert (message.contact, message.error) == ("", f"retried for {HASH}")


async def test_redact_removes_only_the_named_bodies(database: db.Database) -> None:
    """The named message loses its body and records when; another keeps its own."""
    gone, kept = await factories.add_message(database), await factories.add_message(database)
    async with database.write() as session:
        assert await scrub.redact(session, [gone], clock.utcnow()) == 1
        assert await scrub.redact(session, [gone], clock.utcnow()) == 0
    redacted = await factories.fetch_message(database, gone)
    assert redacted.body is None
    assert redacted.redacted_at is not None
    assert (await factories.fetch_message(database, kept)).body == "Your code is 123456"
