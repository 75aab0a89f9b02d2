"""The dispatcher against the sandbox over real HTTP, with callbacks closing the loop."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select, update

from tests.conftest import SettingsFactory
from tests.factories import add_message, fetch_message
from tests.provider_loop import (
    CLIENT_ID,
    dispatching,
    is_final,
    loop,
    sandbox_calls,
    sandbox_config,
    sandbox_sends,
    sends_per_key,
    wait_for,
)
from tracker import clock, db, models
from tracker.app import provider_client
from tracker.dispatch import dispatcher, outbox
from tracker.domain import status

Status = status.Status


async def test_queued_messages_are_sent_once_each_and_end_delivered(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """The whole loop: queued -> sending -> pending -> delivered, one send per message."""
    ids = [await add_message(database, status=Status.QUEUED) for _ in range(5)]
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with dispatching(settings, database):
            rows = await wait_for(database, ids, lambda r: r.status == Status.DELIVERED)
        assert [r.status for r in rows] == [Status.DELIVERED] * 5
        assert all(r.provider_message_id and r.accepted_at and r.final_at for r in rows)
        assert sends_per_key(sandbox_url) == {str(i): 1 for i in ids}


async def test_a_refused_sender_is_rejected_with_the_providers_reason(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A 400 is permanent: rejected at once, the field message kept, never retried."""
    message_id = await add_message(database, status=Status.QUEUED)
    async with database.write() as session:
        await session.execute(
            update(models.Message).where(models.Message.id == message_id).values(sender_name="NOPE")
        )
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with dispatching(settings, database):
            [row] = await wait_for(database, [message_id], is_final)
        assert row.status == Status.REJECTED
        assert row.error is not None
        assert "Sender ID not found" in row.error
        assert row.attempts == 1
        assert sandbox_sends(sandbox_url) == []


@pytest.mark.parametrize(
    ("contact", "fault"),
    [("254700000502", "500 once"), ("254700000504", "accept then hang"), ("254700000505", "429")],
)
async def test_transient_failures_are_retried_with_the_same_key_and_sent_once(
    make_settings: SettingsFactory,
    database_url: str,
    database: db.Database,
    contact: str,
    fault: str,
) -> None:
    """500s, lost answers and 429s are retried under one Idempotency-Key: one send."""
    message_id = await add_message(database, status=Status.QUEUED, contact=contact)
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with dispatching(settings, database):
            [row] = await wait_for(database, [message_id], lambda r: r.status == Status.DELIVERED)
        assert row.status == Status.DELIVERED, fault
        assert sends_per_key(sandbox_url) == {str(message_id): 1}


async def test_a_message_that_always_fails_is_given_up_after_the_attempts(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """After max_attempts transient failures the message is failed with the reason."""
    message_id = await add_message(database, status=Status.QUEUED, contact="254700000503")
    config = sandbox_config()
    with loop(make_settings, database_url, config, max_attempts=3) as (settings, sandbox_url):
        async with dispatching(settings, database):
            [row] = await wait_for(database, [message_id], is_final)
        assert row.status == Status.FAILED
        assert row.attempts == 3
        assert row.error is not None
        assert "after 3 attempts" in row.error
        assert sandbox_sends(sandbox_url) == []


async def test_an_expired_message_is_never_sent(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Validity that ran out before sending makes the message expired, not sent."""
    message_id = await add_message(database, status=Status.QUEUED)
    async with database.write() as session:
        past = clock.utcnow() - dt.timedelta(seconds=1)
        await session.execute(
            update(models.Message).where(models.Message.id == message_id).values(expires_at=past)
        )
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with dispatching(settings, database):
            [row] = await wait_for(database, [message_id], is_final)
        assert row.status == Status.EXPIRED
        assert sandbox_sends(sandbox_url) == []


async def test_an_interim_report_before_the_send_answer_keeps_its_words(
    database: db.Database,
) -> None:
    """'Buffered' arrived while sending; the later 200 moves to pending, words kept."""
    message_id = await add_message(database, status=Status.SENDING)
    async with database.write() as session:
        await session.execute(
            update(models.Message)
            .where(models.Message.id == message_id)
            .values(provider_status="Buffered", provider_description="phone off")
        )
    accepted = status.Acceptance("p-1", "Safaricom", "Queued", "Message queued")
    async with database.write() as session:
        moved = await outbox.record_acceptance(
            session, message_id, accepted, attempt=0, now=clock.utcnow()
        )
    row = await fetch_message(database, message_id)
    assert moved
    assert row.status == Status.PENDING
    assert (row.provider_status, row.provider_description) == ("Buffered", "phone off")
    assert row.provider_message_id == "p-1"


async def test_a_callback_before_the_send_answer_is_not_undone(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Race: the report lands while the message is sending; the late 200 keeps delivered."""
    message_id = await add_message(database, status=Status.QUEUED, contact="254700000508")
    with loop(make_settings, database_url, sandbox_config()) as (settings, _):
        async with dispatching(settings, database):
            [row] = await wait_for(database, [message_id], lambda r: r.accepted_at is not None)
        assert row.status == Status.DELIVERED
        assert row.provider_name == "Swift"


async def test_high_priority_messages_go_first(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Claims order by priority, then age."""
    low = [await add_message(database, status=Status.QUEUED) for _ in range(3)]
    high = await add_message(database, status=Status.QUEUED)
    async with database.write() as session:
        values = {"priority": status.PRIORITY_ORDER[status.Priority.LOW]}
        await session.execute(
            update(models.Message).where(models.Message.id.in_(low)).values(**values)
        )
    with loop(make_settings, database_url, sandbox_config(), rate_limit_per_minute=600) as (
        settings,
        sandbox_url,
    ):
        async with dispatching(settings, database):
            await wait_for(database, [*low, high], lambda r: r.accepted_at is not None)
        order = [send["idempotency_key"] for send in sandbox_sends(sandbox_url)]
    assert order[0] == str(high)


async def test_an_expired_provider_token_is_refreshed_and_shared(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A token that expires mid-run is renewed (on 401 or before expiry); sends go on."""
    config = sandbox_config(token_lifetime_seconds=1)
    with loop(make_settings, database_url, config) as (settings, sandbox_url):
        async with dispatching(settings, database):
            first = await add_message(database, status=Status.QUEUED)
            await wait_for(database, [first], lambda r: r.accepted_at is not None)
            await asyncio.sleep(1.5)
            second = await add_message(database, status=Status.QUEUED)
            rows = await wait_for(database, [first, second], lambda r: r.accepted_at is not None)
        assert all(r.accepted_at for r in rows)
        calls = sandbox_calls(sandbox_url)
        token_calls = [c for c in calls if c["path"] == "/api/generate-token"]
        assert len(token_calls) >= 2
    async with database.read() as session:
        stored = await session.get(models.ProviderToken, CLIENT_ID)
    assert stored is not None


async def test_stop_during_a_provider_pause_exits_at_once_without_claiming(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """SIGTERM while every send waits out a 429 pause: no claim, no call, a prompt exit."""
    message_id = await add_message(database, status=Status.QUEUED)
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with provider_client(settings) as http:
            sender = dispatcher.create(settings, database, http)
            sender.client.pacer.pause(60)  # as after a 429 with Retry-After: 60
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(0.5)
            sender.stop()
            await asyncio.wait_for(task, 5)  # well before the pause would end
        assert sandbox_calls(sandbox_url) == []
    row = await fetch_message(database, message_id)
    assert (row.status, row.attempts) == (Status.QUEUED, 0)


async def test_item_2_a_send_whose_validity_ran_out_during_a_pause_is_never_made(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Item 2: claimed, then a 429 elsewhere pauses every send past the validity: at its
    turn the message is expired without a send-sms call (the sandbox's call log)."""
    message_id = await add_message(database, status=Status.QUEUED)
    # Wide margins: the poll below must see the claim before its turn, under load too.
    expires = clock.utcnow() + dt.timedelta(seconds=2)
    async with database.write() as session:
        await session.execute(
            update(models.Message).where(models.Message.id == message_id).values(expires_at=expires)
        )
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with provider_client(settings) as http:
            sender = dispatcher.create(settings, database, http)
            sender.client.pacer.pause(1.0)  # the claim comes a little before the turn
            task = asyncio.create_task(sender.run())
            [claimed] = await wait_for(database, [message_id], lambda r: r.lease_until is not None)
            sender.client.pacer.pause(3.0)  # as after a 429 on another send
            [row] = await wait_for(database, [message_id], is_final)
            sender.stop()
            await asyncio.wait_for(task, 10)
        assert claimed.status == Status.QUEUED
        assert (row.status, row.attempts, row.accepted_at) == (Status.EXPIRED, 0, None)
        assert row.lease_until is None  # a final message holds no claim
        assert [c for c in sandbox_calls(sandbox_url) if c["path"] == "/api/send-sms"] == []


async def test_item_6_a_retried_message_waits_queued_and_its_timeline_has_every_step(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Item 6: a 500 then success: queued -> sending -> queued (retry, reason) -> sending ->
    pending, recorded by the dispatcher, under one Idempotency-Key (one send)."""
    message_id = await add_message(database, status=Status.QUEUED, contact="254700000502")
    with loop(make_settings, database_url, sandbox_config()) as (settings, sandbox_url):
        async with dispatching(settings, database):
            await wait_for(database, [message_id], lambda r: r.accepted_at is not None)
        assert sends_per_key(sandbox_url) == {str(message_id): 1}
    async with database.read() as session:
        e = models.MessageEvent
        rows = (
            await session.execute(
                select(e.from_status, e.to_status, e.outcome, e.detail)
                .where(e.message_id == message_id, e.source == "dispatcher")
                .order_by(e.id)
            )
        ).all()
    assert [(r.from_status, r.to_status, r.outcome) for r in rows] == [
        ("queued", "sending", None),
        ("sending", "queued", "provider_error"),
        ("queued", "sending", None),
        ("sending", "pending", "accepted"),
    ]
    assert "KIMISMS server error 500" in rows[1].detail
