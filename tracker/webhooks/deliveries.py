"""The deliveries' SQL: claim the due ones, record each attempt's outcome, disable endpoints.

Claim and record are short transactions of their own; the POST happens between them
with none open. A claim sets ``lease_until`` (longer than an attempt can take); every
outcome write is guarded by that very lease, so a delivery retaken after its lease ran
out is never recorded twice. On PostgreSQL the claim locks with ``SKIP LOCKED``: several
processes deliver at once, with no leader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models
from tracker.webhooks import signing

D = models.WebhookDelivery
E = models.WebhookEndpoint
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
ENDPOINT_DISABLED = "endpoint disabled"  # the trigger's words too (migration 0004)
CLAIMED_COLUMNS = (
    D.id, D.endpoint_id, D.event_id, D.event_type, D.message_id, D.sequence, D.data,
    D.occurred_at, D.attempts, D.next_attempt_at,
)  # fmt: skip
SCAN_FACTOR = 4  # candidates locked per wanted row, so busy endpoints' rows leave room
SETTLE_CHUNK = 250  # outcomes per UPDATE: three parameters each, within every driver's limit


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A delivery this process may attempt until ``lease_until``, with its endpoint."""

    id: int
    endpoint_id: uuid.UUID
    url: str
    secrets: list[str]
    event_id: str
    event_type: str
    message_id: uuid.UUID | None
    sequence: int | None
    data: dict[str, Any]
    occurred_at: dt.datetime
    attempts: int
    lease_until: dt.datetime


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt of a claimed delivery came to."""

    claimed: Claimed
    attempted_at: dt.datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    excerpt: str | None
    succeeded: bool
    retry_in: float | None  # when not succeeded: None means the schedule is exhausted
    gone: bool  # 410: the endpoint asked to be disabled


def _room(partly_busy: int, ranked: Any) -> Any:
    """How many more rows each endpoint may have (its limit less its attempts in flight)."""
    room = sa.bindparam("per_endpoint", type_=sa.Integer())
    if not partly_busy:
        return room
    whens = [
        (ranked.c.endpoint_id == sa.bindparam(f"busy_{n}", type_=D.endpoint_id.type),
         sa.bindparam(f"room_{n}", type_=sa.Integer()))
        for n in range(partly_busy)
    ]  # fmt: skip
    return sa.case(*whens, else_=room)


# Built once per shape (how many endpoints are busy, whether some are full), with every
# value a parameter: the claim runs at every wake-up, and building and compiling this
# statement cost several times its execution.
@functools.lru_cache(maxsize=128)
def _claim_statement(partly_busy: int, some_full: bool) -> Any:
    now = sa.bindparam("now", type_=D.next_attempt_at.type)
    full = sa.bindparam("full", expanding=True, type_=D.endpoint_id.type)
    candidates = (
        sa.select(D.id, D.endpoint_id, D.next_attempt_at)
        .join(E, E.id == D.endpoint_id)
        .where(D.status == PENDING, D.next_attempt_at <= now, E.disabled_at.is_(None))
        .where(sa.or_(D.lease_until.is_(None), D.lease_until < now))
        .where(D.endpoint_id.not_in(full) if some_full else sa.true())
        .order_by(D.next_attempt_at, D.id)
        .limit(sa.bindparam("scan", type_=sa.Integer()))
        .with_for_update(skip_locked=True, of=D)
        .cte("candidates")
    )
    order = (candidates.c.next_attempt_at, candidates.c.id)
    rank = sa.func.row_number().over(partition_by=candidates.c.endpoint_id, order_by=order)
    ranked = sa.select(*candidates.c, rank.label("rank")).cte("ranked")
    chosen = (
        sa.select(ranked.c.id)
        .where(ranked.c.rank <= _room(partly_busy, ranked))
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    return (
        sa.update(D)
        .where(D.id.in_(chosen))
        .values(lease_until=sa.bindparam("lease_until", type_=D.lease_until.type))
        .returning(*CLAIMED_COLUMNS)
        .execution_options(synchronize_session=False)
    )


def _claim_parameters(
    now: dt.datetime,
    lease_until: dt.datetime,
    limit: int,
    per_endpoint: int,
    busy: Mapping[uuid.UUID, int],
) -> tuple[Any, dict[str, Any]]:
    full = [endpoint for endpoint, n in busy.items() if n >= per_endpoint]
    partly = [(endpoint, n) for endpoint, n in busy.items() if n < per_endpoint]
    values: dict[str, Any] = {
        "now": now,
        "lease_until": lease_until,
        "scan": limit * SCAN_FACTOR,
        "limit": limit,
        "per_endpoint": per_endpoint,
    }
    if full:
        values["full"] = full
    for n, (endpoint, in_flight) in enumerate(partly):
        values[f"busy_{n}"] = endpoint
        values[f"room_{n}"] = per_endpoint - in_flight
    return _claim_statement(len(partly), bool(full)), values


async def any_due(session: AsyncSession, now: dt.datetime) -> bool:
    """Whether a claim would find anything (a read: no write lock while idle)."""
    found = await session.scalar(
        sa.select(D.id)
        .join(E, E.id == D.endpoint_id)
        .where(D.status == PENDING, D.next_attempt_at <= now, E.disabled_at.is_(None))
        .where(sa.or_(D.lease_until.is_(None), D.lease_until < now))
        .limit(1)
    )
    return found is not None


async def claim_due(
    session: AsyncSession,
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
    limit: int,
    per_endpoint: int,
    busy: Mapping[uuid.UUID, int],
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries of enabled endpoints, oldest due first.

    ``busy``: this process's deliveries in flight per endpoint; none gets past
    ``per_endpoint`` in all.
    """
    statement, values = _claim_parameters(now, lease_until, limit, per_endpoint, busy)
    rows = (await session.execute(statement, values)).all()
    if not rows:
        return []
    endpoints = await _endpoints(session, {row.endpoint_id for row in rows}, now)
    return [
        Claimed(
            id=row.id,
            endpoint_id=row.endpoint_id,
            url=endpoints[row.endpoint_id][0],
            secrets=endpoints[row.endpoint_id][1],
            event_id=row.event_id,
            event_type=row.event_type,
            message_id=row.message_id,
            sequence=row.sequence,
            data=row.data,
            occurred_at=row.occurred_at,
            attempts=row.attempts,
            lease_until=lease_until,
        )
        for row in sorted(rows, key=lambda row: (row.next_attempt_at, row.id))
    ]


async def _endpoints(
    session: AsyncSession, ids: set[uuid.UUID], now: dt.datetime
) -> dict[uuid.UUID, tuple[str, list[str]]]:
    """Each endpoint's URL and the secrets that sign now (two while one rotates)."""
    found = await session.execute(
        sa.select(E.id, E.url, E.secret, E.previous_secret, E.previous_secret_until).where(
            E.id.in_(ids)
        )
    )
    return {
        row.id: (
            row.url,
            signing.active_secrets(row.secret, row.previous_secret, row.previous_secret_until, now),
        )
        for row in found
    }


async def record(
    session: AsyncSession, outcomes: Sequence[Outcome], *, now: dt.datetime, disable_after: float
) -> list[tuple[uuid.UUID, str]]:
    """Record a batch of attempts in one transaction; returns the endpoints it disabled.

    An outcome whose lease no longer holds (retaken, or its endpoint disabled
    meanwhile) is left out: its attempt is someone else's to record.
    """
    attempts: list[dict[str, Any]] = []
    disabled: list[tuple[uuid.UUID, str]] = []
    working: set[uuid.UUID] = set()
    held = await _settle(session, outcomes, now)
    for outcome in outcomes:
        if outcome.claimed.id not in held:
            continue
        held.remove(outcome.claimed.id)  # one outcome per delivery and lease: the first
        attempts.append(_attempt_row(outcome))
        if outcome.succeeded:
            working.add(outcome.claimed.endpoint_id)
            continue
        working.discard(outcome.claimed.endpoint_id)
        reason = await _failing(session, outcome, now, disable_after)
        if reason is not None and await disable(session, outcome.claimed.endpoint_id, reason, now):
            disabled.append((outcome.claimed.endpoint_id, reason))
    if working:  # once a batch: a success ends its endpoint's failing run
        await session.execute(
            sa.update(E)
            .where(E.id.in_(working), E.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if attempts:
        await session.execute(sa.insert(models.WebhookAttempt), attempts)
    return disabled


def _attempt_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "delivery_id": outcome.claimed.id,
        "attempted_at": outcome.attempted_at,
        "status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "response_excerpt": outcome.excerpt,
    }


async def _settle(session: AsyncSession, outcomes: Sequence[Outcome], now: dt.datetime) -> set[int]:
    """Move each delivery on (succeeded, pending later, failed) if its lease still holds;
    the ids that moved. One UPDATE per kind of outcome, not one per delivery: on SQLite
    the batch holds the one write lock, which callbacks wait for, as briefly as it can."""
    kinds: dict[str, list[Outcome]] = {}
    firsts = {o.claimed.id: o for o in reversed(outcomes)}  # a repeat counts once
    for outcome in firsts.values():
        retrying = outcome.retry_in is not None
        kind = SUCCEEDED if outcome.succeeded else PENDING if retrying else FAILED
        kinds.setdefault(kind, []).append(outcome)
    held: set[int] = set()
    for kind, group in kinds.items():
        for part in _chunks(group):
            held.update(await _settle_kind(session, kind, part, now))
    return held


def _chunks(group: Sequence[Outcome]) -> list[Sequence[Outcome]]:
    return [group[i : i + SETTLE_CHUNK] for i in range(0, len(group), SETTLE_CHUNK)]


async def _settle_kind(
    session: AsyncSession, kind: str, group: Sequence[Outcome], now: dt.datetime
) -> list[int]:
    def per_row(column: Any, value: Callable[[Outcome], Any]) -> Any:
        """A CASE giving each delivery its own value, typed as ``column`` is stored."""
        whens = {o.claimed.id: sa.literal(value(o), column.type) for o in group}
        return sa.case(whens, value=D.id, else_=column)

    values: dict[Any, Any] = {
        D.attempts: D.attempts + 1,  # the lease guarantees no other attempt counted meanwhile
        D.lease_until: None,
        D.last_attempt_at: per_row(D.last_attempt_at, lambda o: o.attempted_at),
        D.last_status_code: per_row(D.last_status_code, lambda o: o.status_code),
        D.last_error: per_row(D.last_error, lambda o: o.error),
        D.status: kind,
    }
    if kind == PENDING:
        later = per_row(D.next_attempt_at, lambda o: now + dt.timedelta(seconds=o.retry_in or 0))
        values[D.next_attempt_at] = later
    else:
        values |= {D.next_attempt_at: None, D.completed_at: now}
    result = await session.execute(
        sa.update(D)
        .where(
            D.id.in_([o.claimed.id for o in group]),
            D.status == PENDING,
            D.lease_until == per_row(D.lease_until, lambda o: o.claimed.lease_until),
        )
        .values(values)
        .returning(D.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


async def _failing(
    session: AsyncSession, outcome: Outcome, now: dt.datetime, disable_after: float
) -> str | None:
    """Start (or go on with) the endpoint's failing run; the reason to disable it, if any."""
    endpoint = outcome.claimed.endpoint_id
    if outcome.gone:
        return "the endpoint answered 410 Gone"
    await session.execute(
        sa.update(E).where(E.id == endpoint, E.failing_since.is_(None)).values(failing_since=now)
    )
    since = await session.scalar(sa.select(E.failing_since).where(E.id == endpoint))
    if since is not None and (now - since).total_seconds() >= disable_after:
        return f"failing since {since.isoformat()} (TRACKER_WEBHOOK_DISABLE_AFTER)"
    return None


async def disable(
    session: AsyncSession, endpoint: uuid.UUID, reason: str, now: dt.datetime
) -> bool:
    """Disable an enabled endpoint; its pending deliveries become failed (for ``recover``)."""
    result = await session.execute(
        sa.update(E)
        .where(E.id == endpoint, E.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason, updated_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await session.execute(
        sa.update(D)
        .where(D.endpoint_id == endpoint, D.status == PENDING)
        .values(
            status=FAILED,
            next_attempt_at=None,
            lease_until=None,
            last_error=ENDPOINT_DISABLED,
            completed_at=now,
        )
    )
    return True


async def backlog(session: AsyncSession) -> int:
    """Pending deliveries (due or waiting for a retry)."""
    count = await session.scalar(sa.select(sa.func.count()).where(D.status == PENDING))
    return int(count or 0)


async def disabled_endpoints(session: AsyncSession) -> int:
    count = await session.scalar(sa.select(sa.func.count()).where(E.disabled_at.is_not(None)))
    return int(count or 0)
