"""Per-hour counts (migration 0005): folding the triggers' deltas, and reading a window.

A window's facts are those of its whole hours (counts plus deltas not yet
folded, summed in one statement, so one snapshot) and, for its first partial
hour only, the same facts read from messages and events themselves. Counts and
units then equal /v1/stats' scan exactly, at the cost of one hour's rows.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Subquery, Table, and_, case, func, literal, or_, select, text, union_all
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, models
from tracker.domain import status
from tracker.ops import queries

COUNTS: Table = models.MessageCount.__table__  # type: ignore[assignment]
DELTAS: Table = models.MessageCountDelta.__table__  # type: ignore[assignment]
HOUR = dt.timedelta(hours=1)
# Migration 0005's bins (seconds): bin i is [EDGES[i], EDGES[i + 1]), the last one open.
DELIVERY_EDGES = (
    0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 180, 240,
    300, 400, 500, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 43200,
    86400,
)  # fmt: skip
NONE_LABEL = "(none)"
FOLD_LOCK = 160_016  # pg advisory lock: one folder at a time (#16)
KEY = ("client", "span", "starts_at", "kind", "label")
# PostgreSQL: one statement, so a delta committed meanwhile is either moved or left.
_UPSERT = """ON CONFLICT (client, span, starts_at, kind, label) DO UPDATE
SET messages = message_counts.messages + excluded.messages,
    units = message_counts.units + excluded.units"""
POSTGRESQL_FOLD = text(
    """
WITH moved AS (
    DELETE FROM message_count_deltas RETURNING client, hour, kind, label, messages, units
), hourly AS (
    INSERT INTO message_counts (client, span, starts_at, kind, label, messages, units)
    SELECT client, 'hour', hour, kind, label, sum(messages), sum(units) FROM moved
    GROUP BY client, hour, kind, label
    UPSERT
)
INSERT INTO message_counts (client, span, starts_at, kind, label, messages, units)
SELECT client, 'day', date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', kind, label,
    sum(messages), sum(units)
FROM moved GROUP BY 1, 3, 4, 5
UPSERT
""".replace("UPSERT", _UPSERT)
)

Fact = tuple[str, str, str]  # (client, kind, label)


@dataclass(frozen=True)
class Facts:
    """A window's facts: (client, kind, label) -> [messages, units]."""

    rows: dict[Fact, list[int]]

    def labels(self, kind: str) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for (_client, each, label), (count, _units) in self.rows.items():
            if each == kind:
                found[label] += count
        return dict(found)

    def by_status(self) -> dict[str, int]:
        return dict.fromkeys((s.value for s in status.Status), 0) | self.labels("status")

    def units(self) -> int:
        return sum(u for (_c, kind, _l), (_n, u) in self.rows.items() if kind == "status")

    def per_client(self) -> list[tuple[str, dict[str, int]]]:
        found: dict[str, dict[str, int]] = {}
        for (client, kind, label), (count, _units) in sorted(self.rows.items()):
            if kind == "status":
                found.setdefault(client, dict.fromkeys((s.value for s in status.Status), 0))
                found[client][label] = count
        return list(found.items())

    def top(self, kind: str, limit: int) -> list[tuple[str, int]]:
        ranked = sorted(self.labels(kind).items(), key=lambda item: (-item[1], item[0]))
        return [item for item in ranked if item[1]][:limit]


def delivery_bin(seconds: float) -> int:
    """The migration's CASE, in Python: the partial hour's deliveries."""
    return bisect.bisect_right(DELIVERY_EDGES, seconds) - 1


def estimate(histogram: dict[int, int], fraction: float) -> float | None:
    """A percentile from binned counts, linear inside its bin (the last bin: its start)."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted, seen = fraction * total, 0
    for index in sorted(histogram):
        count = histogram[index]
        if count and seen + count >= wanted:
            low = DELIVERY_EDGES[index]
            if index + 1 >= len(DELIVERY_EDGES):
                return float(low)
            return low + (DELIVERY_EDGES[index + 1] - low) * (wanted - seen) / count
        seen += count
    return float(DELIVERY_EDGES[max(histogram)])


def next_hour(moment: dt.datetime) -> dt.datetime:
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start if start == moment else start + HOUR


async def fold(database: db.Database) -> None:
    """Add the deltas into the counts (cheap when few; readers are right either way)."""
    async with database.write() as session:
        if not db.is_sqlite(session):
            locked = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({FOLD_LOCK})"))
            if locked:
                await session.execute(POSTGRESQL_FOLD)
            return
        upper = await session.scalar(select(func.max(DELTAS.c.id)))
        if upper is not None:
            await _fold_sqlite(session, upper)


async def _fold_sqlite(session: AsyncSession, upper: int) -> None:
    """SQLite has one writer: the deltas up to ``upper`` are added (hours, days), then removed."""
    d = DELTAS.c
    day = func.substr(d.hour, 1, 10).concat(" 00:00:00.000000")
    for span, start in (("hour", d.hour), ("day", day)):
        grouped = (
            select(d.client, literal(span), start, d.kind, d.label,
                   func.sum(d.messages), func.sum(d.units))
            .where(d.id <= upper)
            .group_by(d.client, start, d.kind, d.label)
        )  # fmt: skip
        insert = sqlite.insert(COUNTS).from_select([*KEY, "messages", "units"], grouped)
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=list(KEY),
                set_={
                    "messages": COUNTS.c.messages + insert.excluded.messages,
                    "units": COUNTS.c.units + insert.excluded.units,
                },
            )
        )
    await session.execute(DELTAS.delete().where(d.id <= upper))


def next_day(moment: dt.datetime) -> dt.datetime:
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start if start == moment else start + dt.timedelta(days=1)


def buckets(
    hours_from: dt.datetime, days_from: dt.datetime, client: str | None, kinds: Iterable[str] = ()
) -> Subquery:
    """Hour rows in [hours_from, days_from), day rows from days_from, and every unfolded
    delta from hours_from: as one row source (one statement, one snapshot)."""
    c, d = COUNTS.c, DELTAS.c
    spans = [
        and_(c.span == "hour", c.starts_at >= hours_from, c.starts_at < days_from),
        and_(c.span == "day", c.starts_at >= days_from),
    ]
    parts = []
    for where in spans:
        scoped = [where, *([] if client is None else [c.client == client])]
        scoped += [c.kind.in_(list(kinds))] if kinds else []
        parts.append(select(c.client, c.starts_at, c.kind, c.label, c.messages, c.units)
                     .where(*scoped))  # fmt: skip
    scoped = [d.hour >= hours_from, *([] if client is None else [d.client == client])]
    scoped += [d.kind.in_(list(kinds))] if kinds else []
    parts.append(select(d.client, d.hour, d.kind, d.label, d.messages, d.units).where(*scoped))
    return union_all(*parts).subquery("buckets")


async def window(session: AsyncSession, since: dt.datetime, client: str | None = None) -> Facts:
    """Every fact of messages created (attempts made) since ``since``: /v1/stats' numbers."""
    first_full = next_hour(since)
    b = buckets(first_full, next_day(first_full), client).c
    whole = await session.execute(
        select(b.client, b.kind, b.label, func.sum(b.messages), func.sum(b.units)).group_by(
            b.client, b.kind, b.label
        )
    )
    rows: dict[Fact, list[int]] = defaultdict(lambda: [0, 0])
    for name, kind, label, count, units in whole:
        rows[(name, kind, label)][0] += int(count or 0)
        rows[(name, kind, label)][1] += int(units or 0)
    for fact, count, units in await _partial(session, since, first_full, client):
        rows[fact][0] += count
        rows[fact][1] += units
    return Facts({fact: value for fact, value in rows.items() if value[0] or value[1]})


async def _partial(
    session: AsyncSession, since: dt.datetime, until: dt.datetime, client: str | None
) -> list[tuple[Fact, int, int]]:
    """The facts of the window's first partial hour, from messages and events."""
    m, e = queries.MESSAGES.c, queries.EVENTS.c
    billed = or_(m.accepted_at.is_not(None), m.provider_message_id.is_not(None))
    scoped = [m.created_at >= since, m.created_at < until]
    scoped += [] if client is None else [m.client == client]
    found: list[tuple[Fact, int, int]] = []
    rows = await session.execute(
        select(m.client, m.status, m.provider_description, m.network, m.created_at, m.final_at,
               case((billed, m.segments), else_=0)).where(*scoped)
    )  # fmt: skip
    for name, state, description, network, created, final, units in rows:
        found.append(((name, "status", state), 1, int(units)))
        if state == status.Status.DELIVERED.value and final is not None:
            label = str(delivery_bin((final - created).total_seconds()))
            found.append(((name, "ttd", label), 1, 0))
        if state == status.Status.FAILED.value:
            found.append(((name, "failed_description", description or NONE_LABEL), 1, 0))
            found.append(((name, "failed_network", network or NONE_LABEL), 1, 0))
    trouble = (
        select(m.client, e.outcome, func.count())
        .join_from(queries.EVENTS, queries.MESSAGES, e.message_id == m.id)
        .where(e.created_at >= since, e.created_at < until, e.outcome.is_not(None))
        .where(*([] if client is None else [m.client == client]))
        .group_by(m.client, e.outcome)
    )
    for name, outcome, count in await session.execute(trouble):
        if outcome == queries.RATE_LIMITED or outcome in queries.ERROR_OUTCOMES:
            label = "rate_limited" if outcome == queries.RATE_LIMITED else "error"
            found.append(((name, "provider", label), int(count), 0))
    return found


async def per_hour(
    session: AsyncSession, since: dt.datetime, client: str | None, *, by_day: bool = False
) -> list[tuple[dt.datetime, str, str, int]]:
    """(start, kind, label, messages) of statuses and delivery bins from ``since``'s hour
    on: hour rows, or with ``by_day`` day rows from ``since``'s day on (and deltas by hour)."""
    kinds = ("status", "ttd")
    if by_day:
        start = since.replace(hour=0, minute=0, second=0, microsecond=0)
        b = buckets(start, start, client, kinds).c
    else:
        start = since.replace(minute=0, second=0, microsecond=0)
        b = buckets(start, start + dt.timedelta(days=400), client, kinds).c
    found = await session.execute(
        select(b.starts_at, b.kind, b.label, func.sum(b.messages))
        .group_by(b.starts_at, b.kind, b.label)
        .order_by(b.starts_at)
    )
    return [(db_hour(hour), kind, label, int(n)) for hour, kind, label, n in found if n]


def db_hour(value: object) -> dt.datetime:
    """A union loses the column type on SQLite: text comes back, made UTC here."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
