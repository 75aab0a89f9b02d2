"""Deleted messages still count (#17): /v1/stats and the dashboard's per-hour counts."""

from __future__ import annotations

import datetime as dt

from tests.conftest import SettingsFactory
from tests.integration import retention_support as rs
from tracker import db
from tracker.dashboard import counts
from tracker.ops import queries
from tracker.privacy import retention

Status = rs.Status


async def _stats(
    database: db.Database, days: int, client: str | None = None
) -> tuple[dict[str, int], int]:
    async with database.read() as session:
        found = await queries.stats(
            session, window=dt.timedelta(days=days), now=rs.NOW,
            overdue_after=dt.timedelta(days=1), rate_per_minute=60, client=client,
        )  # fmt: skip
    return {k: v for k, v in found.counts.items() if v}, found.units_billed


async def _dashboard(database: db.Database) -> dict[tuple[str, str], tuple[int, int]]:
    async with database.read() as session:
        facts = await counts.window(session, rs.NOW - dt.timedelta(days=60))
    return {(c, label): tuple(v) for (c, kind, label), v in facts.rows.items() if kind == "status"}  # type: ignore[misc]


async def test_stats_count_deleted_messages_by_their_day(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """The same counts and units before and after deletion, per client; a window past the day
    counts none of them."""
    settings = make_settings(database_url=database.url, retention_message="30d")
    for state in (Status.DELIVERED, Status.DELIVERED, Status.FAILED):
        await rs.add(database, final_days_ago=40, created_days_ago=40.2, state=state)
    await rs.add(database, final_days_ago=40, created_days_ago=40.2, client="other")
    await rs.add(database, final_days_ago=1)
    before = await _stats(database, 60), await _stats(database, 60, "app")
    assert before[1] == ({"delivered": 3, "failed": 1}, 8)
    result = await retention.run(database, settings, now=rs.NOW)
    assert result.deleted.messages == 4
    assert (await _stats(database, 60), await _stats(database, 60, "app")) == before
    assert await _stats(database, 30, "app") == ({"delivered": 1}, 2)  # the kept one only
    assert await _stats(database, 60, "nobody") == ({}, 0)


async def test_the_dashboard_counts_keep_deleted_messages(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """The per-hour counts are written on insert and update only: a delete leaves them."""
    settings = make_settings(database_url=database.url, retention_message="30d")
    for state in (Status.DELIVERED, Status.FAILED):
        await rs.add(database, final_days_ago=40, created_days_ago=40.2, state=state)
    await counts.fold(database)
    before = await _dashboard(database)
    assert before == {("app", "delivered"): (1, 2), ("app", "failed"): (1, 2)}
    assert (await retention.run(database, settings, now=rs.NOW)).deleted.messages == 2
    assert await _dashboard(database) == before
    await counts.fold(database)
    assert await _dashboard(database) == before
