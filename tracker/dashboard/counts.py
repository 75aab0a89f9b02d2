"""Per-hour message counts (migration 0005): folding the triggers' deltas, and reading them.

A window's numbers are the counts of its whole hours (counts plus deltas not
yet folded, summed in one statement, so one snapshot) and, for the window's
first partial hour only, a count of those messages themselves. The result is
exactly what /v1/stats' scan of the window gives, at the cost of one hour's rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Subquery,
    Table,
    case,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, models
from tracker.domain import status
from tracker.ops import queries

COUNTS: Table = models.MessageCount.__table__  # type: ignore[assignment]
DELTAS: Table = models.MessageCountDelta.__table__  # type: ignore[assignment]
HOUR = dt.timedelta(hours=1)
FOLD_LOCK = 160_016  # pg advisory lock: one folder at a time (#16)
# PostgreSQL: one statement, so a delta committed meanwhile is either moved or left.
POSTGRESQL_FOLD = text("""
WITH moved AS (DELETE FROM message_count_deltas RETURNING client, hour, status, messages, units)
INSERT INTO message_counts (client, hour, status, messages, units)
SELECT client, hour, status, sum(messages), sum(units) FROM moved GROUP BY client, hour, status
ON CONFLICT (client, hour, status) DO UPDATE
SET messages = message_counts.messages + excluded.messages,
    units = message_counts.units + excluded.units
""")


@dataclass(frozen=True)
class Counted:
    """Messages created in a window by (client, status), and their billed units by client."""

    messages: dict[tuple[str, str], int]
    units: dict[str, int]

    def by_status(self) -> dict[str, int]:
        found = dict.fromkeys((s.value for s in status.Status), 0)
        for (_client, state), count in self.messages.items():
            found[state] = found.get(state, 0) + count
        return found


def next_hour(moment: dt.datetime) -> dt.datetime:
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start if start == moment else start + HOUR


async def fold(database: db.Database) -> None:
    """Add the deltas into the counts (cheap when few; readers are right either way)."""
    async with database.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            locked = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({FOLD_LOCK})"))
            if locked:
                await session.execute(POSTGRESQL_FOLD)
            return
        upper = await session.scalar(select(func.max(DELTAS.c.id)))
        if upper is None:
            return
        d = DELTAS.c
        grouped = (
            select(d.client, d.hour, d.status, func.sum(d.messages), func.sum(d.units))
            .where(d.id <= upper)
            .group_by(d.client, d.hour, d.status)
        )
        insert = sqlite.insert(COUNTS).from_select(
            ["client", "hour", "status", "messages", "units"], grouped
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["client", "hour", "status"],
                set_={
                    "messages": COUNTS.c.messages + insert.excluded.messages,
                    "units": COUNTS.c.units + insert.excluded.units,
                },
            )
        )
        await session.execute(DELTAS.delete().where(d.id <= upper))


def _buckets(since: dt.datetime, client: str | None) -> Subquery:
    """Counts and unfolded deltas of hours from ``since`` on, as one row source."""
    parts = []
    for table in (COUNTS, DELTAS):
        c = table.c
        scoped: list[ColumnElement[bool]] = [] if client is None else [c.client == client]
        parts.append(
            select(c.client, c.hour, c.status, c.messages, c.units).where(c.hour >= since, *scoped)
        )
    return union_all(*parts).subquery("buckets")


async def window(session: AsyncSession, since: dt.datetime, client: str | None = None) -> Counted:
    """Messages created since ``since`` by (client, status), and units: /v1/stats' numbers."""
    first_full = next_hour(since)
    rows = _buckets(first_full, client)
    b = rows.c
    whole = await session.execute(
        select(b.client, b.status, func.sum(b.messages), func.sum(b.units)).group_by(
            b.client, b.status
        )
    )
    m = queries.MESSAGES.c
    billed = or_(m.accepted_at.is_not(None), m.provider_message_id.is_not(None))
    scoped = [] if client is None else [m.client == client]
    partial = await session.execute(
        select(m.client, m.status, func.count(), func.sum(case((billed, m.segments), else_=0)))
        .where(m.created_at >= since, m.created_at < first_full, *scoped)
        .group_by(m.client, m.status)
    )
    messages: dict[tuple[str, str], int] = defaultdict(int)
    units: dict[str, int] = defaultdict(int)
    for name, state, count, segments in [*whole, *partial]:
        messages[(name, state)] += int(count or 0)
        units[name] += int(segments or 0)
    return Counted({k: v for k, v in messages.items() if v}, dict(units))


async def per_bucket(
    session: AsyncSession, since: dt.datetime, client: str | None
) -> list[tuple[dt.datetime, str, int]]:
    """(hour, status, messages) of every hour from ``since``'s own hour on."""
    rows = _buckets(since.replace(minute=0, second=0, microsecond=0), client)
    b = rows.c
    found = await session.execute(
        select(b.hour, b.status, func.sum(b.messages))
        .group_by(b.hour, b.status)
        .having(func.sum(b.messages) != literal(0))
        .order_by(b.hour)
    )
    return [(db_hour(hour), state, int(count)) for hour, state, count in found]


def db_hour(value: object) -> dt.datetime:
    """A union loses the column type on SQLite: text comes back, made UTC here."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
