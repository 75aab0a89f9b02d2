"""The fair claim (issue 14): strict lanes, then weighted round robin across clients."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from tracker import clock, db, models
from tracker.clients import records
from tracker.dispatch import outbox
from tracker.domain import segments, status

Status = status.Status
HIGH = status.PRIORITY_ORDER[status.Priority.HIGH]
NORMAL = status.PRIORITY_ORDER[status.Priority.NORMAL]
LOW = status.PRIORITY_ORDER[status.Priority.LOW]
LEASE = dt.timedelta(seconds=60)
WINDOW = dt.timedelta(hours=23)


async def queue(
    database: db.Database,
    client: str,
    count: int,
    *,
    priority: int = NORMAL,
    due_ago: float = 60.0,
    weight: int | None = None,
    attempts: int = 0,
) -> list[str]:
    """``count`` queued messages of ``client``, due from ``due_ago`` seconds ago, one ms
    apart (oldest first); their ids as text."""
    now = clock.utcnow()
    rows = [
        models.Message(
            id=models.new_id(),
            client=client,
            sender_name="KIMISMS",
            contact="254712345678",
            body="hello",
            segments=1,
            encoding=segments.Encoding.GSM7.value,
            priority=priority,
            status=Status.QUEUED.value,
            rank=status.RANK[Status.QUEUED],
            attempts=attempts,
            next_attempt_at=now - dt.timedelta(seconds=due_ago) + dt.timedelta(milliseconds=i),
        )
        for i in range(count)
    ]
    async with database.write() as session:
        await records.ensure(session, client)
        if weight is not None:
            await records.update(session, client, weight=weight)
        session.add_all(rows)
    return [str(row.id) for row in rows]


async def claim_clients(database: db.Database, count: int) -> list[str]:
    """Claim ``count`` messages one at a time; the client of each, in order."""
    claimed: list[str] = []
    for _ in range(count):
        async with database.write() as session:
            got = await outbox.claim_due(
                session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
            )
            assert got is not None
            claimed.append(
                str(
                    await session.scalar(
                        select(models.Message.client).where(models.Message.id == got.id)
                    )
                )
            )
    return claimed


async def claim_ids(database: db.Database, count: int) -> list[str]:
    ids: list[str] = []
    for _ in range(count):
        async with database.write() as session:
            got = await outbox.claim_due(
                session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
            )
        assert got is not None
        ids.append(str(got.id))
    return ids


async def test_a_small_client_is_served_within_the_first_claims_behind_a_bulk_one(
    database: db.Database,
) -> None:
    """A has 100 due, B 10 due later: B's 10 are all claimed within the first 20 claims."""
    await queue(database, "a", 100, due_ago=120)
    await queue(database, "b", 10, due_ago=30)
    order = await claim_clients(database, 20)
    assert order.count("b") == 10
    assert order[:4] == ["a", "b", "a", "b"]


async def test_weights_two_to_one_give_shares_of_two_to_one(database: db.Database) -> None:
    """A of weight 2 and B of weight 1, both with plenty due: 30 claims split 20 to 10."""
    await queue(database, "a", 40, weight=2)
    await queue(database, "b", 40)
    order = await claim_clients(database, 30)
    assert (order.count("a"), order.count("b")) == (20, 10)


async def test_lanes_are_strict_a_high_of_any_client_goes_before_any_normal(
    database: db.Database,
) -> None:
    """Normals due long ago wait for every high, of any client; lows wait for the normals."""
    await queue(database, "bulk", 5, due_ago=600)
    await queue(database, "otp", 2, priority=HIGH, due_ago=1)
    await queue(database, "late", 1, priority=LOW, due_ago=900)
    await queue(database, "bulk", 1, priority=HIGH, due_ago=2)
    order = await claim_clients(database, 9)
    assert sorted(order[:3]) == ["bulk", "otp", "otp"]
    assert order[3:8] == ["bulk"] * 5
    assert order[8] == "late"


async def test_a_retry_due_now_is_claimed_among_first_attempts_by_its_due_time(
    database: db.Database,
) -> None:
    """A retry takes its turn by its due time: after older first attempts, before newer ones."""
    older = await queue(database, "app", 2, due_ago=30)
    retry = await queue(database, "app", 1, due_ago=20, attempts=1)
    newer = await queue(database, "app", 2, due_ago=10)
    assert await claim_ids(database, 5) == [*older, *retry, *newer]


async def test_a_client_back_from_idle_gets_the_next_turn_but_no_burst(
    database: db.Database,
) -> None:
    """B returns after A had the lane alone for 20 claims: B next, then they alternate."""
    await queue(database, "a", 60)
    assert await claim_clients(database, 20) == ["a"] * 20
    await queue(database, "b", 10, due_ago=1)
    assert await claim_clients(database, 6) == ["b", "a", "b", "a", "b", "a"]


async def test_the_round_robin_holds_across_a_restart(database_url: str) -> None:
    """The turns live in the database: a new Database (a restarted dispatcher) goes on in turn."""
    first = db.Database(database_url)
    try:
        await queue(first, "a", 10)
        await queue(first, "b", 10)
        assert await claim_clients(first, 3) == ["a", "b", "a"]
    finally:
        await first.dispose()
    second = db.Database(database_url)
    try:
        assert await claim_clients(second, 3) == ["b", "a", "b"]
    finally:
        await second.dispose()


async def test_messages_in_flight_are_left_out_of_the_turns(database: db.Database) -> None:
    """``exclude`` still works: a client whose only due message is in flight has no turn."""
    (busy,) = await queue(database, "a", 1, due_ago=120)
    (other,) = await queue(database, "b", 1)
    async with database.write() as session:
        got = await outbox.claim_due(
            session,
            now=clock.utcnow(),
            lease=LEASE,
            give_up_after=WINDOW,
            exclude=[uuid.UUID(busy)],
        )
    assert got is not None
    assert str(got.id) == other
