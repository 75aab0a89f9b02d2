"""The expiry sweep: messages whose validity or key window ran out are never sent (again).

Set-based and bounded: one call finishes at most ``limit`` messages in a few
statements (one UPDATE per kind of move, one multi-row INSERT of their events),
so the write lock is held for milliseconds and other writers (callbacks, the
API) get in between batches. The caller runs batches until one comes back short.

A message under a live lease is never touched: its dispatcher re-checks
validity itself right before the call (``outbox.confirm_send``). A message no
call could have reached the provider with (``attempts`` 0: never sent, or only
refused unsent by a 429 or an unavailable account) is expired when its validity
runs out; one that may have reached it (a timeout, a 5xx) is failed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import messages, models, outbox

Status = messages.Status
BATCH_SIZE = 250  # messages per transaction: a few milliseconds of the write lock


@dataclass(frozen=True)
class Batch:
    """What one transaction of the sweep did."""

    expired: int
    failed: int
    full: bool  # the batch was full: more may be waiting

    @property
    def finished(self) -> int:
        return self.expired + self.failed


def _idle(now: dt.datetime) -> Any:
    """Queued or sending, and under no live lease."""
    m = models.Message
    return m.status.in_(outbox.DUE_STATUSES) & or_(m.lease_until.is_(None), m.lease_until <= now)


async def expire_batch(
    session: AsyncSession,
    now: dt.datetime,
    give_up_after: dt.timedelta,
    *,
    limit: int = BATCH_SIZE,
) -> Batch:
    """Finish up to ``limit`` messages whose validity or retry window ran out."""
    m = models.Message
    condition = _idle(now) & outbox.lapsed(now, give_up_after)
    rows = (
        await session.execute(
            select(m.id, m.status, m.attempts, m.expires_at)
            .where(condition)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    groups: dict[tuple[str, Status], list[uuid.UUID]] = {}
    for row in rows:
        unsent = row.attempts == 0 and row.expires_at is not None and row.expires_at <= now
        target = Status.EXPIRED if unsent else Status.FAILED
        groups.setdefault((row.status, target), []).append(row.id)
    counts = {Status.EXPIRED: 0, Status.FAILED: 0}
    events: list[dict[str, Any]] = []
    for (from_status, target), ids in groups.items():
        moved = await _finish(
            session, ids, from_status=from_status, target=target, condition=condition, now=now
        )
        counts[target] += len(moved)
        events += [_event(i, from_status, target, now) for i in moved]
    if events:
        await session.execute(insert(models.MessageEvent), events)
    return Batch(counts[Status.EXPIRED], counts[Status.FAILED], full=len(rows) == limit)


async def _finish(
    session: AsyncSession,
    ids: list[uuid.UUID],
    *,
    from_status: str,
    target: Status,
    condition: Any,
    now: dt.datetime,
) -> list[uuid.UUID]:
    """One UPDATE for the group, guarded by what was read; the ids it moved."""
    m = models.Message
    reason = outbox.VALIDITY_RAN_OUT if target == Status.EXPIRED else outbox.WINDOW_RAN_OUT
    result = await session.execute(
        update(m)
        .where(m.id.in_(ids), m.status == from_status, condition)
        .values(
            status=target.value,
            rank=messages.RANK[target],
            final_at=now,
            updated_at=now,
            lease_until=None,
            error=reason,
        )
        .returning(m.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


def _event(
    message_id: uuid.UUID, from_status: str, target: Status, now: dt.datetime
) -> dict[str, Any]:
    reason = outbox.VALIDITY_RAN_OUT if target == Status.EXPIRED else outbox.WINDOW_RAN_OUT
    return {
        "message_id": message_id,
        "from_status": from_status,
        "to_status": target.value,
        "source": outbox.SOURCE,
        "detail": f"sweep: {reason}",
        "outcome": None,
        "payload": None,
        "created_at": now,
    }
