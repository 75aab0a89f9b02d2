"""The outbox's claims, guarded outcome writes and the batched expiry sweep (issue 12)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.factories import add_message, count_rows, fetch_message
from tracker import clock, db, models
from tracker.dispatch import expiry, outbox
from tracker.domain import status
from tracker.privacy import scrub

Status = status.Status
Outcome = status.Outcome
LEASE = dt.timedelta(seconds=60)
WINDOW = dt.timedelta(hours=23)
ACCEPTED = status.Acceptance("p-1", "Safaricom", "Queued", "Message queued")


async def set_values(database: db.Database, message_id: uuid.UUID, **values: Any) -> None:
    async with database.write() as session:
        await session.execute(
            update(models.Message).where(models.Message.id == message_id).values(**values)
        )


async def claim(database: db.Database, now: dt.datetime | None = None) -> outbox.Claimed:
    async with database.write() as session:
        claimed = await outbox.claim_due(
            session, now=now or clock.utcnow(), lease=LEASE, give_up_after=WINDOW
        )
    assert claimed is not None
    return claimed


async def confirm(database: db.Database, claimed: outbox.Claimed) -> outbox.Claimed | None:
    async with database.write() as session:
        return await outbox.confirm_send(
            session, claimed, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
        )


async def sending(database: db.Database) -> outbox.Claimed:
    """A message claimed and confirmed: ``sending`` at attempt 1."""
    await add_message(database, status=Status.QUEUED)
    confirmed = await confirm(database, await claim(database))
    assert confirmed is not None
    return confirmed


async def transitions(database: db.Database, message_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with database.read() as session:
        e = models.MessageEvent
        rows = await session.execute(
            select(e.from_status, e.to_status, e.outcome)
            .where(e.message_id == message_id)
            .order_by(e.id)
        )
        return [tuple(row) for row in rows]


def test_item_19_claim_due_has_no_limit_parameter() -> None:
    """Item 19: claim_due takes one message at a time; its unused ``limit`` is gone."""
    assert "limit" not in inspect.signature(outbox.claim_due).parameters


# --- item 1: the sweep works in bounded batches --------------------------------------


async def test_item_1_the_sweep_expires_in_batches_and_writers_get_in_between(
    database: db.Database,
) -> None:
    """Item 1: 3x the batch size of expirable rows all end expired, each with its event, in
    several transactions, and a concurrent writer commits between two of them."""
    past = clock.utcnow() - dt.timedelta(seconds=1)
    ids = [await add_message(database, status=Status.QUEUED) for _ in range(30)]
    async with database.write() as session:
        m = models.Message
        await session.execute(update(m).where(m.id.in_(ids)).values(expires_at=past))
    seen: list[int] = []

    async def writer() -> None:  # another writer, reading what the sweep has committed
        for _ in range(200):
            async with database.write() as session:
                expired = select(func.count()).where(m.status == Status.EXPIRED.value)
                seen.append(int(await session.scalar(expired) or 0))
            if seen[-1] == len(ids):
                return
            await asyncio.sleep(0)

    finished, _ = await asyncio.gather(expiry.sweep(database, WINDOW, batch_size=10), writer())
    assert finished == len(ids)
    rows = [await fetch_message(database, i) for i in ids]
    assert {r.status for r in rows} == {Status.EXPIRED}
    assert len({r.final_at for r in rows}) >= 3  # each batch is its own transaction
    assert [await count_rows(database, models.MessageEvent, i) for i in ids] == [1] * 30
    assert any(0 < n < len(ids) for n in seen), seen


async def test_item_1_one_batch_takes_at_most_its_limit(database: db.Database) -> None:
    """Item 1: one transaction finishes at most ``limit`` messages and says more wait."""
    past = clock.utcnow() - dt.timedelta(seconds=1)
    for _ in range(7):
        await set_values(
            database, await add_message(database, status=Status.QUEUED), expires_at=past
        )
    first, _ = await expiry.run_batch(database, clock.utcnow(), WINDOW, limit=5)
    second, _ = await expiry.run_batch(database, clock.utcnow(), WINDOW, limit=5)
    assert (first.expired, first.full, second.expired, second.full) == (5, True, 2, False)


# --- item 2: validity is re-checked right before the call; guarded outcome writes -----


async def test_item_2_validity_that_ran_out_during_the_wait_is_not_sent(
    database: db.Database,
) -> None:
    """Item 2: a claim whose validity ran out before its turn is not confirmed: expired
    (never sent before) or failed (an earlier call may have reached the provider)."""
    fresh = await add_message(database, status=Status.QUEUED)
    first = await claim(database)
    tried = await add_message(database, status=Status.QUEUED)
    await set_values(database, tried, attempts=1, submitted_at=clock.utcnow())
    second = await claim(database)
    past = clock.utcnow() - dt.timedelta(seconds=1)
    for message_id in (fresh, tried):
        await set_values(database, message_id, expires_at=past)
    assert await confirm(database, first) is None
    assert await confirm(database, second) is None
    fresh_row, tried_row = [await fetch_message(database, i) for i in (fresh, tried)]
    assert (fresh_row.status, fresh_row.attempts) == (Status.EXPIRED, 0)
    assert (tried_row.status, tried_row.attempts) == (Status.FAILED, 1)
    assert await transitions(database, fresh) == [("queued", "expired", None)]


async def test_a_send_in_flight_when_its_number_was_erased_is_not_made_again(
    database: db.Database,
) -> None:
    """Erased (number a hash, body gone) while ``sending``: once its lease runs out and it
    is claimed again, it fails with the reason instead of going out with nothing in it."""
    first = await sending(database)
    async with database.write() as session:
        await scrub.redact(session, [first.id], clock.utcnow())
        await scrub.pseudonymise(session, [first.id], b"k" * 32, clock.utcnow())
    later = clock.utcnow() + LEASE + dt.timedelta(seconds=1)
    again = await claim(database, later)
    assert (again.id, again.contact, again.body) == (first.id, "", "")
    assert await confirm(database, again) is None
    row = await fetch_message(database, first.id)
    assert (row.status, row.error, row.attempts) == (Status.FAILED, outbox.ERASED, 1)


async def test_item_2_a_claim_that_no_longer_holds_is_not_confirmed(
    database: db.Database,
) -> None:
    """Item 2: cancelled (or otherwise moved) while waiting for its turn: not sent, unchanged."""
    message_id = await add_message(database, status=Status.QUEUED)
    claimed = await claim(database)
    await set_values(database, message_id, status=Status.CANCELLED.value, rank=5)
    assert await confirm(database, claimed) is None
    row = await fetch_message(database, message_id)
    assert (row.status, row.attempts, row.submitted_at) == (Status.CANCELLED, 0, None)


async def test_item_2_the_sweep_never_touches_a_row_under_a_live_lease(
    database: db.Database,
) -> None:
    """Item 2: sending (or claimed) under a live lease is left to its dispatcher; the same
    row with its lease run out (the dispatcher died) is failed."""
    past = clock.utcnow() - dt.timedelta(seconds=1)
    live = await sending(database)
    claimed_id = await add_message(database, status=Status.QUEUED)
    await claim(database)
    dead = await add_message(database, status=Status.SENDING)
    await set_values(database, dead, attempts=1, lease_until=past)
    for message_id in (live.id, claimed_id, dead):
        await set_values(database, message_id, expires_at=past)
    batch, _ = await expiry.run_batch(database, clock.utcnow(), WINDOW, limit=expiry.BATCH_SIZE)
    assert (batch.expired, batch.failed) == (0, 1)
    statuses = [(await fetch_message(database, i)).status for i in (live.id, claimed_id, dead)]
    assert statuses == [Status.SENDING, Status.QUEUED, Status.FAILED]


Write = Callable[[Any, outbox.Claimed], Awaitable[bool]]
WRITES: dict[str, Write] = {
    "acceptance": lambda s, c: outbox.record_acceptance(
        s, c.id, ACCEPTED, attempt=c.attempts, now=clock.utcnow()
    ),
    "rejection": lambda s, c: outbox.record_rejection(
        s, c.id, "refused", {}, attempt=c.attempts, now=clock.utcnow()
    ),
    "failure": lambda s, c: outbox.record_failure(
        s, c.id, "gave up", attempt=c.attempts, outcome=Outcome.PROVIDER_ERROR, now=clock.utcnow()
    ),
    "retry": lambda s, c: outbox.schedule_retry(
        s,
        c.id,
        "server error",
        at=clock.utcnow(),
        attempt=c.attempts,
        outcome=Outcome.PROVIDER_ERROR,
        now=clock.utcnow(),
    ),
}


@pytest.mark.parametrize("write", sorted(WRITES))
@pytest.mark.parametrize("moved_to", [Status.FAILED, Status.QUEUED])
async def test_item_2_every_outcome_write_is_guarded_by_the_status_it_expects(
    database: db.Database, write: str, moved_to: Status
) -> None:
    """Item 2: an outcome write for an attempt whose row moved on (the sweep failed it, or
    another claim retried it) changes nothing, says so, and records only the event."""
    claimed = await sending(database)
    await set_values(database, claimed.id, status=moved_to.value, rank=status.RANK[moved_to])
    before = await fetch_message(database, claimed.id)
    async with database.write() as session:
        assert await WRITES[write](session, claimed) is False
    after = await fetch_message(database, claimed.id)
    columns = ("status", "attempts", "accepted_at", "provider_message_id", "error", "final_at")
    assert [getattr(after, c) for c in columns] == [getattr(before, c) for c in columns]
    assert (await transitions(database, claimed.id))[-1][1] is None  # recorded, no move


async def test_item_2_release_touches_only_its_own_claim(database: db.Database) -> None:
    """Item 2: release after another claim took the row over changes nothing."""
    message_id = await add_message(database, status=Status.QUEUED)
    stale = await claim(database)
    later = clock.utcnow() + LEASE + dt.timedelta(seconds=1)
    current = await claim(database, now=later)  # the first lease ran out: claimed again
    async with database.write() as session:
        await outbox.release(session, [stale], clock.utcnow())
    row = await fetch_message(database, message_id)
    assert row.lease_until == current.lease_until


# --- item 6: a message waiting for a retry is queued ---------------------------------


async def test_item_6_a_retry_waits_as_queued_and_the_timeline_shows_every_step(
    database: db.Database,
) -> None:
    """Item 6: queued -> sending -> queued (retry, with the reason) -> sending -> pending,
    each an event; while waiting it reads queued with attempts 1 and its next attempt."""
    first = await sending(database)
    at = clock.utcnow() + dt.timedelta(seconds=30)
    async with database.write() as session:
        assert await outbox.schedule_retry(
            session,
            first.id,
            "KIMISMS server error 500",
            at=at,
            attempt=1,
            outcome=Outcome.PROVIDER_ERROR,
            now=clock.utcnow(),
        )
    waiting = await fetch_message(database, first.id)
    assert (waiting.status, waiting.attempts, waiting.next_attempt_at) == (Status.QUEUED, 1, at)
    assert (waiting.lease_until, waiting.error) == (None, "KIMISMS server error 500")
    second = await confirm(database, await claim(database, now=at))
    assert second is not None
    assert (second.id, second.attempts, second.first_attempt_at) == (
        first.id,
        2,
        first.first_attempt_at,
    )
    async with database.write() as session:
        assert await outbox.record_acceptance(session, first.id, ACCEPTED, attempt=2, now=at)
    assert await transitions(database, first.id) == [
        ("queued", "sending", None),
        ("sending", "queued", "provider_error"),
        ("queued", "sending", None),
        ("sending", "pending", "accepted"),
    ]
    assert (await fetch_message(database, first.id)).error is None


async def test_item_6_a_429_does_not_count_as_an_attempt(database: db.Database) -> None:
    """Item 6: refused unsent (429): queued again with attempts back at 0."""
    claimed = await sending(database)
    async with database.write() as session:
        await outbox.schedule_retry(
            session,
            claimed.id,
            "rate limited by KIMISMS",
            at=clock.utcnow(),
            attempt=1,
            outcome=Outcome.RATE_LIMITED,
            now=clock.utcnow(),
        )
    row = await fetch_message(database, claimed.id)
    assert (row.status, row.attempts) == (Status.QUEUED, 0)


async def test_item_6_validity_lapsing_while_waiting_expires_only_what_was_never_sent(
    database: db.Database,
) -> None:
    """Item 6: waiting for a retry when the validity ran out: held back only by 429s
    (attempts 0) is expired; after a call that may have reached KIMISMS it is failed."""
    past = clock.utcnow() - dt.timedelta(seconds=1)
    held, tried = [await add_message(database, status=Status.QUEUED) for _ in range(2)]
    for message_id, attempts in ((held, 0), (tried, 1)):
        await set_values(
            database, message_id, attempts=attempts, expires_at=past, submitted_at=past
        )
    batch, _ = await expiry.run_batch(database, clock.utcnow(), WINDOW, limit=expiry.BATCH_SIZE)
    assert (batch.expired, batch.failed) == (1, 1)
    held_row, tried_row = [await fetch_message(database, i) for i in (held, tried)]
    assert (held_row.status, held_row.error) == (Status.EXPIRED, outbox.VALIDITY_RAN_OUT)
    assert (tried_row.status, tried_row.error) == (Status.FAILED, outbox.WINDOW_RAN_OUT)


async def test_item_6_no_retry_after_the_key_window_from_the_first_attempt(
    database: db.Database,
) -> None:
    """Item 6: a retry-waiting message whose first call is older than the key window is
    never claimed again, and the sweep fails it."""
    message_id = await add_message(database, status=Status.QUEUED)
    first_call = clock.utcnow() - WINDOW - dt.timedelta(seconds=1)
    await set_values(database, message_id, attempts=1, submitted_at=first_call)
    async with database.write() as session:
        assert (
            await outbox.claim_due(session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW)
            is None
        )
    batch, _ = await expiry.run_batch(database, clock.utcnow(), WINDOW, limit=expiry.BATCH_SIZE)
    assert batch.failed == 1
    assert (await fetch_message(database, message_id)).status == Status.FAILED
