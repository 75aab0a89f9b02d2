"""The dispatcher's queries: claim due messages, confirm a send, record what KIMISMS said.

The message row is the job. A claim leases a due row (``lease_until``, its due
time pushed to the end of the lease) and leaves its status alone; right before
the provider call, ``confirm_send`` checks the claim still holds and the
message is still valid, and only then makes it ``sending`` (handed to KIMISMS,
outcome unknown). If the dispatcher dies, the row is due again when the lease
runs out and is retried with the same Idempotency-Key.

Every outcome write names the state it expects (``sending``, at this attempt)
and reports whether it found it: a write that lost a race changes nothing. A
retry moves ``sending`` back to ``queued`` with ``attempts`` kept: the one
deliberate move backwards in rank, made only here.
"""

# Over 400 lines, on purpose: the claim, the confirmation and every recorded
# outcome share the guards (``_sending``, ``_move``, ``_event``) that make each
# write conditional on the status and attempt it expects; one module keeps that
# rule in one place.

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import logs, models
from tracker.dispatch import turns
from tracker.domain import status

Status = status.Status
SOURCE = "dispatcher"
VALIDITY_RAN_OUT = "validity ran out before it could be sent"
WINDOW_RAN_OUT = "retries stopped: the validity or the provider's 24 h idempotency window ran out"
ERASED = "its number and body were erased on request"
log = logs.get_logger(__name__)


Outcome = status.Outcome


@dataclass(frozen=True)
class Claimed:
    """A message leased to this dispatcher until ``lease_until`` (which names the claim)."""

    id: uuid.UUID
    sender_name: str
    contact: str
    body: str
    lease_until: dt.datetime
    attempts: int  # calls made so far; after confirm_send, this call's number
    first_attempt_at: dt.datetime | None  # the first call (the key window starts there)


def _due(now: dt.datetime, give_up_after: dt.timedelta) -> Any:
    """Due, valid, and (once first sent) still inside the provider's key window:
    a retry after the window could send the message a second time."""
    m = models.Message
    return (
        m.status.in_(status.DUE_STATUSES)
        & (m.next_attempt_at <= now)
        & or_(m.expires_at.is_(None), m.expires_at > now)
        & or_(m.submitted_at.is_(None), m.submitted_at > now - give_up_after)
    )


async def any_due(session: AsyncSession, now: dt.datetime, give_up_after: dt.timedelta) -> bool:
    """A cheap read before taking the write lock to claim."""
    return bool(await session.scalar(select(exists().where(_due(now, give_up_after)))))


def _lease_oldest(where: Any, now: dt.datetime, until: dt.datetime) -> Any:
    """One statement: lease the oldest due row ``where`` picks (SKIP LOCKED on
    PostgreSQL) and return what the send needs."""
    m = models.Message
    oldest = (
        select(m.id)
        .where(where)
        .order_by(m.priority, m.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(m)
        .where(m.id == oldest, m.status.in_(status.DUE_STATUSES))
        .values(lease_until=until, next_attempt_at=until, updated_at=now)
        .returning(m.id, m.sender_name, m.contact, m.body, m.attempts, m.submitted_at)
        .execution_options(synchronize_session=False)
    )


# Over 40 lines: whose turn, then that client's oldest due message (SKIP LOCKED on
# PostgreSQL), in the one short transaction that must hold both.
async def claim_due(
    session: AsyncSession,
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    give_up_after: dt.timedelta,
    exclude: Sequence[uuid.UUID] = (),
) -> Claimed | None:
    """Lease the next due message: the highest lane, the client whose turn it is
    there (``turns``), that client's oldest due time (a retry waits like any other).

    ``exclude``: ids the caller is still sending (never claimed twice at once).
    """
    m = models.Message
    due = _due(now, give_up_after)
    if exclude:
        due &= m.id.not_in(exclude)
    turn = await turns.next_turn(session, due)
    if turn is None:  # every message has a client row: nothing is due
        return None
    until = now + lease
    mine = due & (m.client == turn.client) & (m.priority == turn.priority)
    row = (await session.execute(_lease_oldest(mine, now, until))).one_or_none()
    if row is not None:
        await turns.advance(session, turn)
    else:  # its rows are locked by another writer (the sweep): the plain order, no turn
        row = (await session.execute(_lease_oldest(due, now, until))).one_or_none()
    if row is None:
        return None
    return Claimed(
        id=row.id,
        sender_name=row.sender_name,
        contact=row.contact,
        body=row.body or "",
        lease_until=until,
        attempts=row.attempts,
        first_attempt_at=row.submitted_at,
    )


# Over 40 lines: the check and its two endings (send, or finish as the sweep
# would) must read as one decision in one transaction.
async def confirm_send(
    session: AsyncSession,
    claimed: Claimed,
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    give_up_after: dt.timedelta,
) -> Claimed | None:
    """Right before the provider call: ``sending`` with a fresh lease, or None (do not send).

    None when the claim no longer holds (cancelled, reported, taken over) or the
    validity or key window ran out while the claim waited for its turn; then the
    message is finished here as the sweep would: expired if no call could have
    reached the provider yet, else failed.
    """
    m = models.Message
    row = (
        await session.execute(
            select(m.status, m.attempts, m.expires_at, m.submitted_at, m.lease_until,
                   m.contact, m.body.is_(None).label("redacted"))
            .where(m.id == claimed.id)
            .with_for_update()
        )
    ).one_or_none()  # fmt: skip
    if (
        row is None
        or row.status not in status.DUE_STATUSES
        or row.lease_until != claimed.lease_until
    ):
        log.warning("send_claim_lost", message_id=str(claimed.id), status=row and row.status)
        return None
    ours = (m.id == claimed.id) & (m.lease_until == claimed.lease_until) & (m.status == row.status)
    current = Status(row.status)
    ending = _not_to_send(row, now, give_up_after)
    if ending is not None:
        target, reason = ending
        values = {"error": reason, "final_at": now, "lease_until": None}  # final: no lease
        await _move(session, ours, target, now=now, values=values)
        await _event(session, claimed.id, current, target, detail=f"not sent: {reason}", now=now)
        return None
    attempt = row.attempts + 1
    until = now + lease
    await _move(
        session,
        ours,
        Status.SENDING,
        now=now,
        values={
            "attempts": attempt,
            "lease_until": until,
            "next_attempt_at": until,
            "submitted_at": func.coalesce(m.submitted_at, now),
        },
    )
    moved = None if current == Status.SENDING else Status.SENDING  # taken over after a crash
    await _event(session, claimed.id, current, moved, detail=f"attempt {attempt}: sending", now=now)
    first = row.submitted_at or now
    return dataclasses.replace(claimed, lease_until=until, attempts=attempt, first_attempt_at=first)


def _not_to_send(
    row: Any, now: dt.datetime, give_up_after: dt.timedelta
) -> tuple[Status, str] | None:
    """Why a claimed message must end here instead of being sent, and how; None: send it."""
    if not row.contact or row.redacted:  # erased while a send was in flight: nothing to send
        return Status.FAILED, ERASED
    expired = row.expires_at is not None and row.expires_at <= now
    if expired or (row.submitted_at is not None and row.submitted_at <= now - give_up_after):
        target = Status.EXPIRED if expired and row.attempts == 0 else Status.FAILED
        return target, VALIDITY_RAN_OUT if target == Status.EXPIRED else WINDOW_RAN_OUT
    return None


async def _move(
    session: AsyncSession, where: Any, target: Status, *, now: dt.datetime, values: dict[str, Any]
) -> bool:
    """Set ``target`` (and ``values``) on the row ``where`` names; whether it was there."""
    fields: dict[str, Any] = {"lease_until": None, "updated_at": now, **values}
    result = await session.execute(
        update(models.Message)
        .where(where)
        .values(status=target.value, rank=status.RANK[target], **fields)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _sending(message_id: uuid.UUID, attempt: int) -> Any:
    """The row as this attempt left it: ``sending``, at this attempt."""
    m = models.Message
    return (m.id == message_id) & (m.status == Status.SENDING.value) & (m.attempts == attempt)


async def _event(
    session: AsyncSession,
    message_id: uuid.UUID,
    from_status: Status | None,
    to_status: Status | None,
    *,
    detail: str,
    now: dt.datetime,
    outcome: Outcome | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        insert(models.MessageEvent).values(
            message_id=message_id,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value if to_status else None,
            source=SOURCE,
            detail=detail,
            outcome=outcome.value if outcome else None,
            payload=payload,
            created_at=now,
        )
    )


def _lost(message_id: uuid.UUID, attempt: int, write: str) -> None:
    """Another writer moved the row first (the sweep, a report, a failover): nothing done."""
    log.warning("send_outcome_lost_race", message_id=str(message_id), attempt=attempt, write=write)


# Over 40 lines: the guarded UPDATE and its fallback for a report that came
# first are one rule (a status never moves back); apart, they would not read as one.
async def record_acceptance(
    session: AsyncSession,
    message_id: uuid.UUID,
    accepted: status.Acceptance,
    *,
    attempt: int,
    now: dt.datetime,
) -> bool:
    """KIMISMS said 200: ``pending``. A report of the same provider message that got
    here first keeps its status; the answer's facts are added. Anything else: nothing."""
    m = models.Message
    ours = _sending(message_id, attempt)
    reported = (m.id == message_id) & (m.provider_message_id == accepted.provider_message_id)
    result = await session.execute(
        update(m)
        .where(or_(ours, reported))
        .values(
            provider_message_id=func.coalesce(m.provider_message_id, accepted.provider_message_id),
            provider_name=accepted.provider_name,
            accepted_at=func.coalesce(m.accepted_at, now),
            lease_until=None,
            # A report that already made it final keeps whatever it recorded.
            error=case((m.rank <= status.RANK[Status.PENDING], None), else_=m.error),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    known = bool(getattr(result, "rowcount", 0))
    moved = known and await _move(
        session, ours, Status.PENDING, now=now, values=_provider_words(accepted)
    )
    if not known:
        _lost(message_id, attempt, "accepted")
    note = "" if moved else (" (already further)" if known else " (not recorded: not ours)")
    await _event(
        session,
        message_id,
        Status.SENDING,
        Status.PENDING if moved else None,
        detail=f"attempt {attempt}: accepted by KIMISMS{note}",
        outcome=Outcome.ACCEPTED,
        payload={
            "provider_message_id": accepted.provider_message_id,
            "status": accepted.status,
            "description": accepted.description,
        },
        now=now,
    )
    return moved


def _provider_words(accepted: status.Acceptance) -> dict[str, Any]:
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
    attempt: int,
    reason: str,
    detail: str,
    outcome: Outcome,
    payload: dict[str, Any] | None = None,
    now: dt.datetime,
) -> bool:
    """End this attempt's ``sending`` message as ``target`` with its reason, and record why."""
    values = {"error": reason, "final_at": now}
    moved = await _move(session, _sending(message_id, attempt), target, now=now, values=values)
    if not moved:
        _lost(message_id, attempt, target.value)
    await _event(
        session,
        message_id,
        Status.SENDING,
        target if moved else None,
        detail=detail,
        outcome=outcome,
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
        attempt=attempt,
        reason=reason,
        detail=f"attempt {attempt}: {reason}",
        outcome=Outcome.REJECTED,
        payload={"errors": field_errors},
        now=now,
    )


async def record_failure(
    session: AsyncSession,
    message_id: uuid.UUID,
    reason: str,
    *,
    attempt: int,
    outcome: Outcome,
    now: dt.datetime,
) -> bool:
    """Give up after this attempt: ``failed`` with the reason (a late Delivered can win)."""
    return await _give_up(
        session,
        message_id,
        Status.FAILED,
        attempt=attempt,
        reason=reason,
        detail=f"attempt {attempt}: gave up: {reason}",
        outcome=outcome,
        now=now,
    )


async def schedule_retry(
    session: AsyncSession,
    message_id: uuid.UUID,
    reason: str,
    *,
    at: dt.datetime,
    attempt: int,
    outcome: Outcome,
    now: dt.datetime,
) -> bool:
    """Back to ``queued`` until ``at``, same key. A refusal that took nothing (429, the
    account) does not count as an attempt: the message still never reached a phone."""
    m = models.Message
    counted = outcome not in status.UNSENT_OUTCOMES
    values = {"next_attempt_at": at, "error": reason}
    if not counted:
        values["attempts"] = m.attempts - 1
    moved = await _move(
        session, _sending(message_id, attempt), Status.QUEUED, now=now, values=values
    )
    if not moved:
        _lost(message_id, attempt, "retry")
    await _event(
        session,
        message_id,
        Status.SENDING,
        Status.QUEUED if moved else None,
        detail=f"attempt {attempt}: {reason}; retry at {at.isoformat(timespec='seconds')}",
        outcome=outcome,
        now=now,
    )
    return moved


async def release(session: AsyncSession, claims: Sequence[Claimed], now: dt.datetime) -> None:
    """Make claimed messages due at once (shutdown before their send was recorded).

    A claim still waiting for its turn is only unleased; one whose call went out
    goes back to ``queued`` like a retry (its outcome unknown, the same key next).
    """
    m = models.Message
    for claimed in claims:
        ours = (m.id == claimed.id) & (m.lease_until == claimed.lease_until)
        values = {"next_attempt_at": now, "lease_until": None, "updated_at": now}
        sent = await _move(
            session,
            ours & (m.status == Status.SENDING.value),
            Status.QUEUED,
            now=now,
            values=values,
        )
        if sent:
            detail = f"attempt {claimed.attempts}: shut down before the answer was recorded"
            await _event(session, claimed.id, Status.SENDING, Status.QUEUED, detail=detail, now=now)
            continue
        await session.execute(
            update(m)
            .where(ours, m.status == Status.QUEUED.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
