"""The dispatcher's queries: claim due messages and record what KIMISMS said.

The message row is the job. A claimed message is ``sending`` with its due time
pushed to the end of its lease: if the dispatcher dies mid-send, the row
becomes due again when the lease runs out and is retried with the same
Idempotency-Key. A message waiting for a retry stays ``sending`` (the provider
may have it: the outcome is unknown), so no status ever moves backwards.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import messages, models
from tracker.kimisms import Acceptance

Status = messages.Status
SOURCE = "dispatcher"
DUE_STATUSES = (Status.QUEUED.value, Status.SENDING.value)
VALIDITY_RAN_OUT = "validity ran out before it could be sent"


@dataclass(frozen=True)
class Claimed:
    """A message handed to this dispatcher until ``lease_until``."""

    id: uuid.UUID
    sender_name: str
    contact: str
    body: str
    attempts: int
    first_attempt_at: dt.datetime


def _due(now: dt.datetime, give_up_after: dt.timedelta) -> Any:
    """Due, valid, and (once first sent) still inside the provider's key window:
    a retry after the window could send the message a second time."""
    m = models.Message
    return (
        m.status.in_(DUE_STATUSES)
        & (m.next_attempt_at <= now)
        & or_(m.expires_at.is_(None), m.expires_at > now)
        & or_(m.submitted_at.is_(None), m.submitted_at > now - give_up_after)
    )


async def any_due(session: AsyncSession, now: dt.datetime, give_up_after: dt.timedelta) -> bool:
    """A cheap read before taking the write lock to claim."""
    return bool(await session.scalar(select(exists().where(_due(now, give_up_after)))))


async def claim_due(
    session: AsyncSession,
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    give_up_after: dt.timedelta,
    limit: int = 1,
    exclude: Sequence[uuid.UUID] = (),
) -> list[Claimed]:
    """Claim the most urgent due messages: priority first, then oldest due time.

    ``exclude``: ids the caller is still sending (never claimed twice at once).
    """
    m = models.Message
    due = _due(now, give_up_after)
    if exclude:
        due &= m.id.not_in(exclude)
    rows = (
        await session.execute(
            select(m.id, m.sender_name, m.contact, m.body, m.attempts, m.submitted_at)
            .where(due)
            .order_by(m.priority, m.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return []
    await session.execute(
        update(m)
        .where(m.id.in_([row.id for row in rows]), m.status.in_(DUE_STATUSES))
        .values(
            status=Status.SENDING.value,
            rank=messages.RANK[Status.SENDING],
            attempts=m.attempts + 1,
            lease_until=now + lease,
            next_attempt_at=now + lease,
            submitted_at=func.coalesce(m.submitted_at, now),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        Claimed(
            id=row.id,
            sender_name=row.sender_name,
            contact=row.contact,
            body=row.body or "",
            attempts=row.attempts + 1,
            first_attempt_at=row.submitted_at or now,
        )
        for row in rows
    ]


async def _event(
    session: AsyncSession,
    message_id: uuid.UUID,
    *,
    from_status: Status | None,
    to_status: Status | None,
    detail: str,
    payload: dict[str, Any] | None = None,
    now: dt.datetime,
) -> None:
    await session.execute(
        insert(models.MessageEvent).values(
            message_id=message_id,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value if to_status else None,
            source=SOURCE,
            detail=detail,
            payload=payload,
            created_at=now,
        )
    )


async def _finish(
    session: AsyncSession,
    message_id: uuid.UUID,
    target: Status,
    *,
    now: dt.datetime,
    values: dict[str, Any],
) -> bool:
    """Move a ``sending`` message on; False if something else moved it first."""
    m = models.Message
    result = await session.execute(
        update(m)
        .where(m.id == message_id, m.status == Status.SENDING.value, m.rank < messages.RANK[target])
        .values(
            status=target.value,
            rank=messages.RANK[target],
            lease_until=None,
            updated_at=now,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def record_acceptance(
    session: AsyncSession,
    message_id: uuid.UUID,
    accepted: Acceptance,
    *,
    attempt: int,
    now: dt.datetime,
) -> bool:
    """KIMISMS said 200: ``pending``, unless a callback already moved it further."""
    m = models.Message
    await session.execute(
        update(m)
        .where(m.id == message_id)
        .values(
            provider_message_id=func.coalesce(m.provider_message_id, accepted.provider_message_id),
            provider_name=accepted.provider_name,
            accepted_at=func.coalesce(m.accepted_at, now),
            lease_until=None,
            # A report that already made it final keeps whatever it recorded.
            error=case((m.rank <= messages.RANK[Status.PENDING], None), else_=m.error),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    moved = await _finish(
        session,
        message_id,
        Status.PENDING,
        now=now,
        values=_provider_words(accepted),
    )
    await _event(
        session,
        message_id,
        from_status=Status.SENDING,
        to_status=Status.PENDING if moved else None,
        detail=f"attempt {attempt}: accepted by KIMISMS" + ("" if moved else " (already further)"),
        payload={
            "provider_message_id": accepted.provider_message_id,
            "status": accepted.status,
            "description": accepted.description,
        },
        now=now,
    )
    return moved


def _provider_words(accepted: Acceptance) -> dict[str, Any]:
    """The send answer's status words, unless an interim report that beat the answer
    already left the provider's later words on the message."""
    m = models.Message
    unset = m.provider_status.is_(None)
    return {
        "provider_status": case((unset, accepted.status), else_=m.provider_status),
        "provider_description": case((unset, accepted.description), else_=m.provider_description),
    }


async def _give_up(
    session: AsyncSession,
    message_id: uuid.UUID,
    target: Status,
    *,
    reason: str,
    detail: str,
    payload: dict[str, Any] | None = None,
    now: dt.datetime,
) -> bool:
    """End a ``sending`` message as ``target`` with its reason, and record why."""
    moved = await _finish(
        session, message_id, target, now=now, values={"error": reason, "final_at": now}
    )
    await _event(
        session,
        message_id,
        from_status=Status.SENDING,
        to_status=target if moved else None,
        detail=detail,
        payload=payload,
        now=now,
    )
    return moved


async def record_rejection(
    session: AsyncSession,
    message_id: uuid.UUID,
    reason: str,
    field_errors: dict[str, list[str]],
    *,
    attempt: int,
    now: dt.datetime,
) -> bool:
    """KIMISMS said 400: the message itself is refused; never retried."""
    return await _give_up(
        session,
        message_id,
        Status.REJECTED,
        reason=reason,
        detail=f"attempt {attempt}: {reason}",
        payload={"errors": field_errors},
        now=now,
    )


async def record_failure(
    session: AsyncSession, message_id: uuid.UUID, reason: str, *, attempt: int, now: dt.datetime
) -> bool:
    """Give up: ``failed`` with the reason (a late Delivered report can still win)."""
    return await _give_up(
        session,
        message_id,
        Status.FAILED,
        reason=reason,
        detail=f"attempt {attempt}: gave up: {reason}",
        now=now,
    )


async def schedule_retry(
    session: AsyncSession,
    message_id: uuid.UUID,
    reason: str,
    *,
    at: dt.datetime,
    attempt: int,
    count_attempt: bool,
    now: dt.datetime,
) -> None:
    """Try again at ``at`` with the same key; the message stays ``sending``."""
    m = models.Message
    await session.execute(
        update(m)
        .where(m.id == message_id, m.status == Status.SENDING.value)
        .values(
            next_attempt_at=at,
            lease_until=None,
            error=reason,
            updated_at=now,
            attempts=m.attempts if count_attempt else m.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    await _event(
        session,
        message_id,
        from_status=Status.SENDING,
        to_status=None,
        detail=f"attempt {attempt}: {reason}; retry at {at.isoformat(timespec='seconds')}",
        now=now,
    )


async def release(session: AsyncSession, ids: Sequence[uuid.UUID], now: dt.datetime) -> None:
    """Make claimed messages due at once (shutdown before their send finished)."""
    m = models.Message
    await session.execute(
        update(m)
        .where(m.id.in_(ids), m.status == Status.SENDING.value)
        .values(next_attempt_at=now, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def expire_overdue(
    session: AsyncSession, now: dt.datetime, give_up_after: dt.timedelta
) -> int:
    """Messages whose validity or retry window ran out: never sent (again).

    A message still ``sending`` whose every try was refused unsent (429, an
    unavailable account: attempts left at 0) never reached a phone, so when its
    validity runs out it is expired like a queued one; one that may have
    reached the provider (a timeout, a 5xx) is failed.
    """
    m = models.Message
    expired = (
        await session.scalars(
            select(m.id).where(m.status == Status.QUEUED.value, m.expires_at <= now)
        )
    ).all()
    stale = (
        await session.execute(
            select(m.id, m.attempts, m.expires_at).where(
                m.status == Status.SENDING.value,
                m.next_attempt_at <= now,
                or_(m.submitted_at <= now - give_up_after, m.expires_at <= now),
            )
        )
    ).all()
    unsent = [(message_id, Status.QUEUED) for message_id in expired]
    tried: list[uuid.UUID] = []
    for row in stale:
        if row.attempts == 0 and row.expires_at is not None and row.expires_at <= now:
            unsent.append((row.id, Status.SENDING))
        else:
            tried.append(row.id)
    for message_id, from_status in unsent:
        if await _finish_unsent(session, message_id, from_status, now):
            await _event(
                session,
                message_id,
                from_status=from_status,
                to_status=Status.EXPIRED,
                detail=VALIDITY_RAN_OUT,
                now=now,
            )
    for message_id in tried:
        await record_failure(
            session,
            message_id,
            "retries stopped: the validity or the provider's 24 h idempotency window ran out",
            attempt=0,
            now=now,
        )
    return len(expired) + len(stale)


async def _finish_unsent(
    session: AsyncSession, message_id: uuid.UUID, from_status: Status, now: dt.datetime
) -> bool:
    m = models.Message
    result = await session.execute(
        update(m)
        .where(m.id == message_id, m.status == from_status.value)
        .values(
            status=Status.EXPIRED.value,
            rank=messages.RANK[Status.EXPIRED],
            final_at=now,
            updated_at=now,
            lease_until=None,
            error=VALIDITY_RAN_OUT,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
