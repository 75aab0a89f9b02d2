"""Redaction and pseudonymisation (#17): every table that holds a number or a body."""

from __future__ import annotations

from sqlalchemy import select

from tests import factories
from tests.integration import privacy_support
from tracker import clock, db, models
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
