"""The per-hour counts (migration 0005) stay equal to the messages themselves, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import case, func, or_, select

from tests.conftest import SettingsFactory
from tests.provider_loop import dispatching, is_final, loop, sandbox_config, wait_for
from tracker import clock, db, models
from tracker.dashboard import counts, overview
from tracker.domain import status
from tracker.ops import queries

Status = status.Status
# The sandbox's magic numbers: delivered, failed, rejected, expired, 500 then sent.
NUMBERS = ("0700000500", "0700000510", "0700000511", "0700000513", "0700000502")


async def truth(database: db.Database) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """What the counts must say, read from messages: by (client, status), units by client."""
    m = models.Message
    billed = or_(m.accepted_at.is_not(None), m.provider_message_id.is_not(None))
    async with database.read() as session:
        rows = await session.execute(
            select(
                m.client, m.status, func.count(), func.sum(case((billed, m.segments), else_=0))
            ).group_by(m.client, m.status)
        )
    found: dict[tuple[str, str], int] = {}
    units: dict[str, int] = {}
    for client, state, count, segments in rows:
        found[(client, state)] = count
        units[client] = units.get(client, 0) + int(segments or 0)
    return found, units


async def counted(database: db.Database) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """The counts' view of the same: statuses by client, and units by client."""
    async with database.read() as session:
        facts = await counts.window(session, clock.utcnow() - dt.timedelta(days=2))
    statuses = {
        (c, label): n for (c, kind, label), (n, _u) in facts.rows.items() if kind == "status"
    }
    units: dict[str, int] = {}
    for (client, kind, _label), (_n, segments) in facts.rows.items():
        if kind == "status":
            units[client] = units.get(client, 0) + segments
    return statuses, units


async def other_facts(database: db.Database) -> dict[str, dict[str, int]]:
    """Failures by description, deliveries by bin and attempts by outcome, from the counts."""
    async with database.read() as session:
        facts = await counts.window(session, clock.utcnow() - dt.timedelta(days=2))
    kinds = ("failed_description", "failed_network", "ttd", "provider")
    return {kind: facts.labels(kind) for kind in kinds}


async def other_truth(database: db.Database) -> dict[str, dict[str, int]]:
    """The same facts read from messages and events."""
    m, e = models.Message, models.MessageEvent
    found: dict[str, dict[str, int]] = {"failed_description": {}, "failed_network": {},
                                        "ttd": {}, "provider": {}}  # fmt: skip
    async with database.read() as session:
        for row in await session.scalars(select(m)):
            if row.status == "failed":
                for kind, value in (("failed_description", row.provider_description),
                                    ("failed_network", row.network)):  # fmt: skip
                    label = value or counts.NONE_LABEL
                    found[kind][label] = found[kind].get(label, 0) + 1
            if row.status == "delivered" and row.final_at is not None:
                label = str(counts.delivery_bin((row.final_at - row.created_at).total_seconds()))
                found["ttd"][label] = found["ttd"].get(label, 0) + 1
        for outcome in await session.scalars(select(e.outcome).where(e.outcome.is_not(None))):
            label = "rate_limited" if outcome == "rate_limited" else "error"
            if outcome == "rate_limited" or outcome in queries.ERROR_OUTCOMES:
                found["provider"][label] = found["provider"].get(label, 0) + 1
    return found


async def test_counts_follow_every_status_change_of_the_real_loop(
    make_settings: SettingsFactory,
    database_url: str,
    database: db.Database,
    make_key: Callable[..., Any],
) -> None:
    """Sends, cancels, dispatch, reports: counts equal messages before and after a fold."""
    key = await make_key("app", "send,read")
    headers = {"Authorization": f"Bearer {key}"}
    with loop(make_settings, database_url, sandbox_config(failure_ratio=0.0)) as (settings, _):
        async with httpx.AsyncClient(base_url=settings.public_url, headers=headers) as client:
            ids = []
            for number in NUMBERS * 2:
                answer = await client.post("/v1/messages", json={"to": number, "message": "hi"})
                ids.append(uuid.UUID(answer.json()["id"]))
            for message_id in ids[:2]:
                assert (await client.post(f"/v1/messages/{message_id}/cancel")).status_code == 200
        async with dispatching(settings, database):
            rows = await wait_for(database, ids, is_final)
        assert all(is_final(row) for row in rows)
    expected, units = await truth(database)
    assert {s for _c, s in expected} >= {"delivered", "failed", "cancelled"}
    assert await counted(database) == (expected, units)
    others = await other_truth(database)
    assert others["provider"]["error"] >= 2  # the 500-once numbers
    assert await other_facts(database) == others
    await counts.fold(database)
    assert await counted(database) == (expected, units)
    assert await other_facts(database) == others
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(counts.DELTAS)) == 0


async def test_a_window_starting_mid_hour_counts_exactly_its_messages(
    database: db.Database,
) -> None:
    """The partial first hour is read from messages: created 30 min before the start is out."""
    now = clock.utcnow()
    start = now - dt.timedelta(hours=3)
    async with database.write() as session:
        session.add(models.Client(name="app"))
    for minutes in (-30, 1, 59, 61, 170):
        created = start + dt.timedelta(minutes=minutes)
        async with database.write() as session:
            session.add(_message(created, Status.DELIVERED))
    await counts.fold(database)
    async with database.read() as session:
        found = await counts.window(session, start, "app")
    assert found.by_status()["delivered"] == 4
    assert found.units() == 4


def _message(created: dt.datetime, state: Status) -> models.Message:
    return models.Message(
        id=models.new_id(), client="app", sender_name="KIMISMS", contact="254712345678",
        body="hi", segments=1, encoding="gsm7", priority=1, status=state.value,
        rank=status.RANK[state], provider_message_id=uuid.uuid4().hex, next_attempt_at=created,
        created_at=created, updated_at=created, accepted_at=created,
    )  # fmt: skip


async def test_the_overview_numbers_agree_with_v1_stats(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """For every window, the counts-based overview equals /v1/stats' scan, folded or not."""
    now = clock.utcnow()
    async with database.write() as session:
        session.add(models.Client(name="app"))
    ages = (0.2, 5.5, 30, 100, 400, 23.99)
    states = (Status.DELIVERED, Status.FAILED, Status.DELIVERED, Status.REJECTED, Status.EXPIRED,
              Status.QUEUED)  # fmt: skip
    for hours, state in zip(ages, states, strict=True):
        async with database.write() as session:
            session.add(_message(now - dt.timedelta(hours=hours), state))
    settings = make_settings(database_url=database_url)
    folded = [(name, window, False) for name, window in overview.WINDOWS.items()]
    for name, window, fold in [*folded, *((n, w, True) for n, w, _ in folded)]:
        if fold:  # the second time round, from the hour and day rows
            await counts.fold(database)
        async with database.read() as session:
            ours, _facts = await overview.stats(session, settings, window, None)
            theirs = await queries.stats(
                session, window=window, now=ours.until, overdue_after=dt.timedelta(days=1),
                rate_per_minute=settings.rate_limit_per_minute,
            )  # fmt: skip
        assert (ours.counts, ours.units_billed) == (theirs.counts, theirs.units_billed), name
        assert ours.time_to_delivery.count == theirs.time_to_delivery.count
        assert (ours.provider_rate_limited, ours.provider_errors) == (
            theirs.provider_rate_limited,
            theirs.provider_errors,
        )
