"""The read side for operators: message lists and statistics. All of its SQL lives here.

Lists are newest first with keyset pagination on ``(created_at, id)``: the
cursor is the last key of a page (base64url), so a page costs the same however
deep it is, and rows that arrive between pages never shift a row into a page
already read or out of one still to come.

*Overdue* is computed, not a status: a ``pending`` message whose provider
acceptance (or, lacking one, its submission or creation) is older than
``TRACKER_DLR_OVERDUE_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, literal, not_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, errors, models
from tracker.domain import durations, status
from tracker.ops import numbers

Status = status.Status
Row = Mapping[Any, Any]  # column name -> value (SQLAlchemy's RowMapping fits)
MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]
DELETED: Table = models.DeletedMessageCount.__table__  # type: ignore[assignment]
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The list never returns bodies: they are the callers' data, not the operators'.
LISTED_COLUMNS = tuple(column for column in MESSAGES.c if column.name != "body")
MAX_WINDOW = dt.timedelta(days=400)
# On SQLite the time-to-delivery percentiles are computed in Python over the
# most recent delivered messages of the window, at most this many.
DELIVERY_SAMPLE_SIZE = 50_000
PERCENTILES = (0.5, 0.95, 0.99)

# Each dispatch attempt's event carries its outcome (outbox); other events have none.
RATE_LIMITED = status.Outcome.RATE_LIMITED.value
ERROR_OUTCOMES = sorted(o.value for o in status.ERROR_OUTCOMES)


# --- cursors -----------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The key of the last row of a page: the next page starts strictly after it."""

    created_at: dt.datetime
    id: uuid.UUID


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{cursor.created_at.astimezone(dt.UTC).isoformat()}|{cursor.id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor a page handed out; anything else is a 400 on ``cursor``."""
    refused = errors.ValidationFailed({"cursor": ["is not a cursor this API handed out"]})
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp, _, key = raw.partition("|")
        created_at = dt.datetime.fromisoformat(stamp)
        cursor = Cursor(created_at=created_at.astimezone(dt.UTC), id=uuid.UUID(hex=key))
    except (ValueError, binascii.Error, OverflowError):
        raise refused from None
    if created_at.tzinfo is None:
        raise refused
    return cursor


# --- lists -------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFilter:
    """Every condition is ANDed; ``contact`` is already normalised (2547...); with
    ``contact_pseudonym`` (its keyed hash) pseudonymised messages match it too."""

    statuses: tuple[Status, ...] = ()
    contact: str | None = None
    contact_pseudonym: str | None = None
    reference: str | None = None
    sender_name: str | None = None
    client: str | None = None
    provider_message_id: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    overdue: bool | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def overdue_condition(cutoff: dt.datetime) -> ColumnElement[bool]:
    """``pending`` and waiting for its report since before ``cutoff``."""
    m = MESSAGES.c
    waiting_since = func.coalesce(m.accepted_at, m.submitted_at, m.created_at)
    return and_(m.status == Status.PENDING.value, waiting_since < cutoff)


def is_overdue(row: Row, cutoff: dt.datetime) -> bool:
    """The same rule as ``overdue_condition``, for a row already read."""
    if row["status"] != Status.PENDING.value:
        return False
    since = row.get("accepted_at") or row.get("submitted_at") or row["created_at"]
    return bool(since < cutoff)


def _conditions(wanted: MessageFilter, cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    m = MESSAGES.c
    found: list[ColumnElement[bool]] = []
    if wanted.statuses:
        found.append(m.status.in_(sorted({s.value for s in wanted.statuses})))
    # The contact (and its pseudonym) are matched by numbers.newest_first.
    equal = {
        m.reference: wanted.reference,
        m.sender_name: wanted.sender_name,
        m.client: wanted.client,
        m.provider_message_id: wanted.provider_message_id,
    }
    found.extend(column == value for column, value in equal.items() if value is not None)
    if wanted.created_after is not None:
        found.append(m.created_at > wanted.created_after)
    if wanted.created_before is not None:
        found.append(m.created_at < wanted.created_before)
    if wanted.overdue is not None:
        overdue = overdue_condition(cutoff)
        found.append(overdue if wanted.overdue else not_(overdue))
    return found


def _after(cursor: Cursor) -> ColumnElement[bool]:
    """Strictly older than the cursor in (created_at, id) order, descending.

    A row-value comparison: with the (..., created_at, id) indexes both
    databases start the page at the key, even inside a batch's single timestamp.
    """
    m = MESSAGES.c
    key = tuple_(literal(cursor.created_at, m.created_at.type), literal(cursor.id, m.id.type))
    return tuple_(m.created_at, m.id) < key


async def list_messages(
    session: AsyncSession,
    wanted: MessageFilter,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: Cursor | None = None,
    overdue_cutoff: dt.datetime,
) -> Page:
    """One page, newest first; ``next_cursor`` is None on the last page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.ValidationFailed({"limit": [f"must be between 1 and {MAX_LIMIT}"]})
    conditions = _conditions(wanted, overdue_cutoff)
    if cursor is not None:
        conditions.append(_after(cursor))
    query = numbers.newest_first(
        LISTED_COLUMNS, conditions, wanted.contact, wanted.contact_pseudonym, limit + 1
    )
    rows: list[Row] = list((await session.execute(query)).mappings())
    if len(rows) <= limit:
        return Page(rows=rows, next_cursor=None)
    last = rows[limit - 1]
    return Page(
        rows=rows[:limit], next_cursor=encode_cursor(Cursor(last["created_at"], last["id"]))
    )


# --- statistics --------------------------------------------------------------


def parse_window(text: str) -> dt.timedelta:
    """``15m``, ``24h``, ``7d``, ``90s`` or plain seconds; a 400 on ``window`` otherwise."""
    try:
        window = durations.parse(text)
    except ValueError as exc:
        raise errors.ValidationFailed({"window": [str(exc)]}) from None
    if not dt.timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise errors.ValidationFailed({"window": [f"must be 1s to {MAX_WINDOW.days}d"]})
    return window


@dataclass(frozen=True)
class Queue:
    """What waits for the dispatcher now (not windowed)."""

    depth: int  # queued or retrying, and due now
    scheduled: int  # queued with a send_at still ahead
    oldest_queued_age_seconds: float | None
    drain_seconds: float  # depth at the configured rate


@dataclass(frozen=True)
class Percentiles:
    count: int  # delivered messages measured
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class Stats:
    since: dt.datetime
    until: dt.datetime
    client: str | None
    counts: dict[str, int]  # messages created in the window, by status
    units_billed: int  # segments of those the provider accepted
    time_to_delivery: Percentiles
    overdue: int  # now, not windowed
    queue: Queue
    provider_rate_limited: int  # 429s in the window
    provider_errors: int  # other failed calls in the window (5xx, timeouts, ...)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def delivery_rate(self) -> float | None:
        """delivered / (delivered + failed); None before any message is final either way."""
        delivered, failed = self.counts[Status.DELIVERED.value], self.counts[Status.FAILED.value]
        return delivered / (delivered + failed) if delivered + failed else None


def _scoped(client: str | None) -> list[ColumnElement[bool]]:
    return [] if client is None else [MESSAGES.c.client == client]


async def _counts(
    session: AsyncSession, since: dt.datetime, client: str | None
) -> tuple[dict[str, int], int]:
    """(messages created since ``since`` by status, units billed for them), with those
    retention deleted counted by their day of creation: a day that overlaps the window."""
    m = MESSAGES.c
    # Billed once the provider took it: its answer was recorded, or a report
    # gave us its id even though the send-sms answer was lost.
    taken = or_(m.accepted_at.is_not(None), m.provider_message_id.is_not(None))
    billed = func.sum(m.segments).filter(taken)
    kept = select(m.status, func.count(), billed).where(m.created_at >= since, *_scoped(client))
    d = DELETED.c
    deleted = select(d.status, func.sum(d.messages), func.sum(d.units)).where(
        d.day > since - dt.timedelta(days=1), *([] if client is None else [d.client == client])
    )
    counts = dict.fromkeys((s.value for s in Status), 0)
    units = 0
    for query in (kept.group_by(m.status), deleted.group_by(d.status)):
        for name, count, segments in await session.execute(query):
            counts[name] = counts.get(name, 0) + int(count)
            units += int(segments or 0)
    return counts, units


async def queue_snapshot(
    session: AsyncSession, now: dt.datetime, rate_per_minute: int, client: str | None = None
) -> Queue:
    """Depth (due now), scheduled, the oldest due queued message's wait, drain time."""
    m = MESSAGES.c
    due = and_(
        m.status.in_(status.DUE_STATUSES),
        m.next_attempt_at <= now,
        or_(m.expires_at.is_(None), m.expires_at > now),
    )
    queued = m.status == Status.QUEUED.value
    # Scheduled: a send_at ahead, never handed over yet (not a retry's wait, not a claim).
    ahead = and_(m.next_attempt_at > now, m.submitted_at.is_(None), m.lease_until.is_(None))
    row = (
        await session.execute(
            select(
                func.count().filter(due),
                func.count().filter(queued, ahead),
                func.min(m.next_attempt_at).filter(due, queued),
            ).where(m.status.in_(status.DUE_STATUSES), *_scoped(client))
        )
    ).one()
    depth, scheduled, oldest = row
    oldest = clock.restore_utc(oldest)  # an aggregate loses the column type on SQLite
    return Queue(
        depth=depth,
        scheduled=scheduled,
        oldest_queued_age_seconds=(now - oldest).total_seconds() if oldest else None,
        drain_seconds=depth * 60 / rate_per_minute,
    )


async def overdue_count(session: AsyncSession, cutoff: dt.datetime, client: str | None) -> int:
    query = select(func.count()).where(overdue_condition(cutoff), *_scoped(client))
    return int(await session.scalar(query) or 0)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def time_to_delivery(
    session: AsyncSession, since: dt.datetime, client: str | None
) -> Percentiles:
    """Seconds from creation to the delivery report, of messages created in the window."""
    m = MESSAGES.c
    delivered = [m.status == Status.DELIVERED.value, m.created_at >= since, *_scoped(client)]
    if not db.is_sqlite(session):
        seconds = func.extract("epoch", m.final_at - m.created_at)
        row = (
            await session.execute(
                select(
                    func.count(m.final_at),
                    *(func.percentile_cont(p).within_group(seconds) for p in PERCENTILES),
                ).where(*delivered, m.final_at.is_not(None))
            )
        ).one()
        count, *values = row
        return Percentiles(count, *(None if v is None else float(v) for v in values))
    rows = await session.execute(
        select(m.created_at, m.final_at)
        .where(*delivered, m.final_at.is_not(None))
        .order_by(m.created_at.desc())
        .limit(DELIVERY_SAMPLE_SIZE)
    )
    ordered = sorted((final - created).total_seconds() for created, final in rows)
    if not ordered:
        return Percentiles(0, None, None, None)
    return Percentiles(len(ordered), *(percentile(ordered, p) for p in PERCENTILES))


async def provider_trouble(
    session: AsyncSession, since: dt.datetime, client: str | None
) -> tuple[int, int]:
    """(429s, other failed calls) the dispatcher recorded since ``since``."""
    e = EVENTS.c
    query = select(
        func.count().filter(e.outcome == RATE_LIMITED),
        func.count().filter(e.outcome.in_(ERROR_OUTCOMES)),
    ).where(e.created_at >= since, e.outcome.is_not(None))
    if client is not None:
        query = query.join_from(EVENTS, MESSAGES, e.message_id == MESSAGES.c.id).where(
            MESSAGES.c.client == client
        )
    limited, failed = (await session.execute(query)).one()
    return int(limited), int(failed)


async def stats(
    session: AsyncSession,
    *,
    window: dt.timedelta,
    now: dt.datetime,
    overdue_after: dt.timedelta,
    rate_per_minute: int,
    client: str | None = None,
) -> Stats:
    """Everything ``GET /v1/stats`` reports, for one client or (None) all of them."""
    since = now - window
    counts, units = await _counts(session, since, client)
    limited, failed = await provider_trouble(session, since, client)
    return Stats(
        since=since,
        until=now,
        client=client,
        counts=counts,
        units_billed=units,
        time_to_delivery=await time_to_delivery(session, since, client),
        overdue=await overdue_count(session, now - overdue_after, client),
        queue=await queue_snapshot(session, now, rate_per_minute, client),
        provider_rate_limited=limited,
        provider_errors=failed,
    )


async def status_totals(session: AsyncSession) -> dict[str, int]:
    """Every message by status, all time (the Prometheus gauge)."""
    m = MESSAGES.c
    rows = await session.execute(select(m.status, func.count()).group_by(m.status))
    totals = dict.fromkeys((s.value for s in Status), 0)
    for name, count in rows:
        totals[name] = count
    return totals
