"""The deliveries' SQL on both databases: claims, leases, per-endpoint room, guarded writes."""

from __future__ import annotations

import collections
import datetime as dt
import uuid

from tests.integration import webhook_receiver as hooks
from tracker import clock, db, models
from tracker.webhooks import deliveries

LEASE = dt.timedelta(seconds=60)


async def claim(
    database: db.Database,
    now: dt.datetime,
    *,
    limit: int = 10,
    per_endpoint: int = 4,
    busy: dict[uuid.UUID, int] | None = None,
) -> list[deliveries.Claimed]:
    async with database.write() as session:
        return await deliveries.claim_due(
            session,
            now=now,
            lease_until=now + LEASE,
            limit=limit,
            per_endpoint=per_endpoint,
            busy=busy or {},
        )


def succeeded(claimed: deliveries.Claimed, now: dt.datetime) -> deliveries.Outcome:
    return deliveries.Outcome(
        claimed=claimed,
        attempted_at=now,
        status_code=200,
        latency_ms=1.0,
        error=None,
        excerpt="ok",
        succeeded=True,
        retry_in=None,
        gone=False,
    )


async def record(database: db.Database, *outcomes: deliveries.Outcome) -> None:
    async with database.write() as session:
        await deliveries.record(session, outcomes, now=clock.utcnow(), disable_after=3600)


async def test_a_leased_delivery_is_not_claimed_again_until_its_lease_runs_out(
    database: db.Database,
) -> None:
    """One claim leases it; a second finds nothing; past the lease it is claimed again."""
    endpoint_id = await hooks.add_endpoint(database, "http://127.0.0.1:9/hook")
    delivery_id = await hooks.add_test_delivery(database, endpoint_id)
    now = clock.utcnow()
    (first,) = await claim(database, now)
    assert (first.id, first.url, first.secrets) == (
        delivery_id,
        "http://127.0.0.1:9/hook",
        [hooks.SECRET],
    )
    assert await claim(database, now + dt.timedelta(seconds=1)) == []
    (again,) = await claim(database, now + LEASE + dt.timedelta(seconds=1))
    assert again.id == delivery_id
    assert again.lease_until > first.lease_until


async def test_an_outcome_under_a_lost_lease_is_not_recorded(database: db.Database) -> None:
    """The first taker's late outcome changes nothing; the second taker's is recorded once."""
    endpoint_id = await hooks.add_endpoint(database, "http://127.0.0.1:9/hook")
    delivery_id = await hooks.add_test_delivery(database, endpoint_id)
    now = clock.utcnow()
    (first,) = await claim(database, now)
    (second,) = await claim(database, now + LEASE + dt.timedelta(seconds=1))
    await record(database, succeeded(first, now))
    assert (await hooks.delivery(database, delivery_id)).status == "pending"
    assert await hooks.attempts(database, delivery_id) == []
    await record(database, succeeded(second, now), succeeded(second, now))
    found = await hooks.delivery(database, delivery_id)
    assert (found.status, found.attempts) == ("succeeded", 1)
    assert len(await hooks.attempts(database, delivery_id)) == 1


async def test_a_claim_gives_each_endpoint_its_room_only(database: db.Database) -> None:
    """Per-endpoint limit 2: A's five give two, less what is in flight; B's its own two."""
    a = await hooks.add_endpoint(database, "http://127.0.0.1:9/a")
    b = await hooks.add_endpoint(database, "http://127.0.0.1:9/b")
    for _ in range(5):
        await hooks.add_test_delivery(database, a)
    for _ in range(3):
        await hooks.add_test_delivery(database, b)
    now = clock.utcnow()
    taken = await claim(database, now, per_endpoint=2, busy={a: 1})
    assert collections.Counter(c.endpoint_id for c in taken) == {a: 1, b: 2}
    taken = await claim(database, now, per_endpoint=2, busy={a: 2})
    assert collections.Counter(c.endpoint_id for c in taken) == {b: 1}
    taken = await claim(database, now, per_endpoint=2, limit=1)
    assert [c.endpoint_id for c in taken] == [a]  # the oldest due first


async def test_only_due_deliveries_of_enabled_endpoints_are_claimed(
    database: db.Database,
) -> None:
    """Not yet due, or of a disabled endpoint: left alone."""
    on = await hooks.add_endpoint(database, "http://127.0.0.1:9/on")
    off = await hooks.add_endpoint(database, "http://127.0.0.1:9/off", disabled_at=clock.utcnow())
    later = await hooks.add_test_delivery(database, on)
    await hooks.add_test_delivery(database, off)
    async with database.write() as session:
        row = await session.get(models.WebhookDelivery, later)
        assert row is not None
        row.next_attempt_at = clock.utcnow() + dt.timedelta(minutes=5)
    assert await claim(database, clock.utcnow()) == []
    (due,) = await claim(database, clock.utcnow() + dt.timedelta(minutes=6))
    assert due.id == later
