"""A client's admission limits: counted in SQL in the intake's write transaction.

Three limits, each None for none (``records.Client``): ``rate_per_minute``
(messages accepted in any 60 s), ``daily_cap`` (messages accepted per calendar
day in Africa/Nairobi, UTC+3 all year) and ``high_per_minute`` (``high``
priority messages accepted in any 60 s). A request (a batch counts all of its
messages) is admitted whole or refused whole, with the seconds after which it
would fit (``Retry-After``).

The counts read ``messages`` through ``ix_messages_client_created`` (client,
created_at, id), and only for a client that has a limit. They are exact under
concurrency: on PostgreSQL the client's row is locked first, so a second
request of the same client counts after the first committed; SQLite's one
writer serialises them already. The lock is ``FOR NO KEY UPDATE``: it
serialises these checks without blocking what only holds the row as a foreign
key (inserting an unlimited client's messages, the dispatcher's turns).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, errors, models
from tracker.clients import records
from tracker.domain import status

NAIROBI = dt.timezone(dt.timedelta(hours=3), "Africa/Nairobi")  # EAT, no daylight saving
WINDOW = dt.timedelta(seconds=60)
WINDOW_SECONDS = 60
HIGH = status.PRIORITY_ORDER[status.Priority.HIGH]
MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
CLIENTS: Table = models.Client.__table__  # type: ignore[assignment]


class Limit(enum.StrEnum):
    RATE_PER_MINUTE = "rate_per_minute"
    DAILY_CAP = "daily_cap"
    HIGH_PER_MINUTE = "high_per_minute"


_COUNTED_AS = {
    Limit.RATE_PER_MINUTE: "accepted in the last 60 s",
    Limit.DAILY_CAP: "accepted today (Africa/Nairobi)",
    Limit.HIGH_PER_MINUTE: "high-priority accepted in the last 60 s",
}


@dataclass(frozen=True)
class Refusal:
    """One limit a request would exceed, and when it would fit."""

    limit: Limit
    value: int  # the limit
    used: int  # counted against it now
    requested: int  # this request's messages that count against it
    retry_after: int  # whole seconds, at least 1

    @property
    def never_fits(self) -> bool:
        return self.requested > self.value

    @property
    def detail(self) -> str:
        if self.never_fits:
            return (
                f"{self.limit} limit of {self.value} can never admit this request: "
                f"it has {self.requested}, more than the limit; send at most {self.value} at once"
            )
        return (
            f"{self.limit} limit of {self.value} reached: {self.used} {_COUNTED_AS[self.limit]}, "
            f"this request has {self.requested}"
        )


class QuotaExceeded(errors.TrackerError):
    """A request would take its client past a limit (the API answers 429)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


@dataclass(frozen=True)
class Counts:
    """A client's messages counted against its limits at one moment."""

    minute: int  # accepted in the last 60 s
    high_minute: int  # of which high priority
    day: int  # accepted since the last Nairobi midnight


# --- the arithmetic (pure) ---------------------------------------------------


def day_start(now: dt.datetime) -> dt.datetime:
    """The Nairobi midnight that began ``now``'s day there, in UTC."""
    local = now.astimezone(NAIROBI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def next_midnight(now: dt.datetime) -> dt.datetime:
    """The next Nairobi midnight after ``now``, in UTC (when the daily cap resets)."""
    return day_start(now) + dt.timedelta(days=1)


def seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    """Whole seconds from ``now`` until ``moment`` has passed; at least 1 (Retry-After)."""
    return max(1, math.ceil((moment - now).total_seconds()))


def window_retry_after(now: dt.datetime, leaving: dt.datetime | None) -> int:
    """Seconds until the message accepted at ``leaving`` is out of the 60 s window.

    A window counts what was accepted after ``now - 60 s``, so that message
    leaves it at ``leaving + 60 s``; None (nothing to wait for) is a whole window.
    """
    if leaving is None:
        return WINDOW_SECONDS
    return seconds_until(leaving + WINDOW, now)


def excess(limit: int, used: int, requested: int) -> int:
    """How many counted messages must leave the window before the request fits
    (0: it fits now; more than ``used``: it never fits)."""
    return max(0, used + requested - limit)


def over_limits(
    policy: records.Client, counts: Counts, requested: int, requested_high: int
) -> list[tuple[Limit, int, int, int]]:
    """Each limit the request would exceed: (limit, its value, used, requested)."""
    checks = (
        (Limit.RATE_PER_MINUTE, policy.rate_per_minute, counts.minute, requested),
        (Limit.DAILY_CAP, policy.daily_cap, counts.day, requested),
        (Limit.HIGH_PER_MINUTE, policy.high_per_minute, counts.high_minute, requested_high),
    )
    return [
        (limit, value, used, asked)
        for limit, value, used, asked in checks
        if value is not None and asked and excess(value, used, asked)
    ]


# --- the SQL -----------------------------------------------------------------


async def lock(session: AsyncSession, client: str) -> None:
    """Hold the client's row until the transaction ends (PostgreSQL; SQLite's
    single writer holds the whole database already)."""
    if db.is_sqlite(session):
        return
    query = select(CLIENTS.c.name).where(CLIENTS.c.name == client)
    await session.execute(query.with_for_update(key_share=True))  # FOR NO KEY UPDATE


async def count(
    session: AsyncSession, client: str, now: dt.datetime, *, with_day: bool = True
) -> Counts:
    """The client's messages accepted in the last 60 s (all, high) and today.

    Without ``with_day`` the scan stops at the 60 s window and ``day`` counts
    only that window (an admission check for a client without a daily cap).
    """
    m = MESSAGES.c
    minute_ago, today = now - WINDOW, day_start(now)
    since = min(minute_ago, today) if with_day else minute_ago
    row = (
        await session.execute(
            select(
                func.count().filter(m.created_at > minute_ago),
                func.count().filter(m.created_at > minute_ago, m.priority == HIGH),
                func.count().filter(m.created_at >= today),
            ).where(m.client == client, m.created_at >= since)
        )
    ).one()
    return Counts(minute=int(row[0]), high_minute=int(row[1]), day=int(row[2]))


async def _leaving(
    session: AsyncSession, client: str, now: dt.datetime, nth: int, *, high: bool
) -> dt.datetime | None:
    """When the ``nth`` oldest message in the 60 s window was accepted (1 = oldest)."""
    m = MESSAGES.c
    query = select(m.created_at).where(m.client == client, m.created_at > now - WINDOW)
    if high:
        query = query.where(m.priority == HIGH)
    query = query.order_by(m.created_at, m.id).offset(nth - 1).limit(1)
    found: dt.datetime | None = await session.scalar(query)
    return found


async def _refusal(
    session: AsyncSession,
    client: str,
    now: dt.datetime,
    over: tuple[Limit, int, int, int],
) -> Refusal:
    limit, value, used, requested = over
    if limit is Limit.DAILY_CAP:
        wait = seconds_until(next_midnight(now), now)
    elif requested > value:  # can never fit: the whole window, as good as any
        wait = WINDOW_SECONDS
    else:
        nth = excess(value, used, requested)
        leaving = await _leaving(session, client, now, nth, high=limit is Limit.HIGH_PER_MINUTE)
        wait = window_retry_after(now, leaving)
    return Refusal(limit, value, used, requested, wait)


async def admit(
    session: AsyncSession,
    policy: records.Client,
    rows: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> None:
    """Raise QuotaExceeded if storing ``rows`` would take the client past a limit.

    Call it in the write transaction that stores them, before they are
    inserted. Of several limits exceeded, the one that frees last is named.
    """
    if not policy.limited:
        return
    await lock(session, policy.name)
    counts = await count(session, policy.name, now, with_day=policy.daily_cap is not None)
    high = 0
    if policy.high_per_minute is not None:
        high = sum(1 for row in rows if row["priority"] == HIGH)
    over = over_limits(policy, counts, len(rows), high)
    if over:
        refusals = [await _refusal(session, policy.name, now, each) for each in over]
        raise QuotaExceeded(max(refusals, key=lambda refusal: refusal.retry_after))


@dataclass(frozen=True)
class Usage:
    """A client's counts against its limits, for ``/v1/stats``."""

    policy: records.Client
    counts: Counts
    resets_at: dt.datetime  # when the daily count starts again


async def usage(session: AsyncSession, policy: records.Client, now: dt.datetime) -> Usage:
    counts = await count(session, policy.name, now)
    return Usage(policy=policy, counts=counts, resets_at=next_midnight(now))
