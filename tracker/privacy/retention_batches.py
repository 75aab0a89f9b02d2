"""The retention job's SQL: find a client's rows a rule is due on, and apply it to them.

Each rule finds its rows through its own partial index of migration 0007, on
(client, final_at): the conditions below repeat the indexes' own, so both
planners use them, oldest first, and a done row has left the first two. Rows
that are not final (queued, sending, pending: ``final_at`` is NULL) are never
found. Every function works in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    TextualSelect,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, models
from tracker.privacy import scrub

MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]
RECEIPTS: Table = models.CallbackReceipt.__table__  # type: ignore[assignment]
DELIVERIES: Table = models.WebhookDelivery.__table__  # type: ignore[assignment]
ATTEMPTS: Table = models.WebhookAttempt.__table__  # type: ignore[assignment]
DELETED: Table = models.DeletedMessageCount.__table__  # type: ignore[assignment]
PENDING_DELIVERY = "pending"  # webhooks.recovery's word for a delivery still to make
# 00:00 UTC of created_at, as migration 0005's per-day counts take it.
DAY = {
    "sqlite": "substr(messages.created_at, 1, 10) || ' 00:00:00.000000'",
    "postgresql": "date_trunc('day', messages.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
}


class Rule(enum.StrEnum):
    """What a retention period ends: the body, the readable number, the message."""

    BODY = "body"
    CONTACT = "contact"
    MESSAGE = "message"


@dataclass(frozen=True)
class Deleted:
    """Rows deleted with their messages, per table (webhook attempts cascade)."""

    messages: int = 0
    events: int = 0
    receipts: int = 0
    webhook_deliveries: int = 0

    def __add__(self, other: Deleted) -> Deleted:
        pairs = zip(vars(self).values(), vars(other).values(), strict=True)
        return Deleted(*(a + b for a, b in pairs))


def _due(rule: Rule, client: str, cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    """The rule's index condition (word for word), its client, and final before ``cutoff``."""
    m = MESSAGES.c
    conditions = [m.final_at.is_not(None), m.client == client, m.final_at < cutoff]
    if rule is Rule.BODY:
        conditions.append(m.body.is_not(None))
    elif rule is Rule.CONTACT:
        conditions.append(m.pseudonymised_at.is_(None))
    else:  # a delivery still to make keeps its message until it is made or given up
        pending = DELIVERIES.c
        conditions.append(
            ~exists().where(pending.message_id == m.id, pending.status == PENDING_DELIVERY)
        )
    return conditions


INDEXES = {  # each rule's partial index (tracker.models.RETENTION_INDEXES)
    Rule.BODY: "redaction_due",
    Rule.CONTACT: "pseudonymisation_due",
    Rule.MESSAGE: "final",
}
# SQLite's planner takes the first index that fits, and ix_messages_final fits every rule:
# it would read every row already done on each batch. INDEXED BY names the rule's own.
_SQLITE_DUE = """
    SELECT id FROM messages INDEXED BY ix_messages_{index}
    WHERE {condition} AND client = :client AND final_at < :cutoff{unless}
    ORDER BY final_at LIMIT :limit
"""
_SQLITE_UNLESS_PENDING = """
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d
                        WHERE d.message_id = messages.id AND d.status = :pending)"""


def due_query(
    rule: Rule,
    client: str,
    cutoff: dt.datetime,
    limit: int,
    *,
    sqlite: bool = False,
    locked: bool = True,
) -> Select[Any] | TextualSelect:
    """Up to ``limit`` of the client's oldest rows the rule is due on; on PostgreSQL,
    ``locked``, held until commit, skipping rows a callback holds (the next batch finds
    them). A plan read before its write transaction (``scrub.plan``) takes no lock."""
    m = MESSAGES.c
    if sqlite:
        index = INDEXES[rule]
        sql = _SQLITE_DUE.format(
            index=index,
            condition=models.RETENTION_INDEXES[index],
            unless=_SQLITE_UNLESS_PENDING if rule is Rule.MESSAGE else "",
        )
        values = {"client": client, "limit": limit}
        if rule is Rule.MESSAGE:
            values["pending"] = PENDING_DELIVERY
        # Only this module's constants are formatted in; the values are parameters.
        statement = text(sql).bindparams(bindparam("cutoff", cutoff, type_=db.UTCDateTime()))
        return statement.bindparams(**values).columns(id=Uuid())
    query = select(m.id).where(*_due(rule, client, cutoff)).order_by(m.final_at).limit(limit)
    return query.with_for_update(skip_locked=True) if locked else query


async def due_ids(
    session: AsyncSession,
    rule: Rule,
    client: str,
    cutoff: dt.datetime,
    limit: int,
    *,
    locked: bool = True,
) -> list[uuid.UUID]:
    query = due_query(rule, client, cutoff, limit, sqlite=db.is_sqlite(session), locked=locked)
    return list((await session.scalars(query)).all())


async def count_due(session: AsyncSession, rule: Rule, client: str, cutoff: dt.datetime) -> int:
    """How many of the client's rows the rule is due on (a dry run)."""
    query = select(func.count()).select_from(MESSAGES).where(*_due(rule, client, cutoff))
    return int(await session.scalar(query) or 0)


async def keep_counts(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Add these messages to ``deleted_message_counts`` (per client, day, status), billed
    units as ``ops.queries`` counts them, before they are deleted."""
    m = MESSAGES.c
    day: ColumnElement[Any] = literal_column(DAY[session.get_bind().dialect.name])
    taken = (m.accepted_at.is_not(None)) | (m.provider_message_id.is_not(None))
    units = func.coalesce(func.sum(case((taken, m.segments), else_=0)), 0)
    insert = db.upsert(session, DELETED)
    for part in scrub.chunks(ids):
        rows = (
            select(m.client, day, m.status, func.count(), units)
            .where(m.id.in_(part))
            .group_by(m.client, day, m.status)
        )
        added = insert.from_select(["client", "day", "status", "messages", "units"], rows)
        await session.execute(
            added.on_conflict_do_update(
                index_elements=["client", "day", "status"],
                set_={
                    "messages": DELETED.c.messages + added.excluded.messages,
                    "units": DELETED.c.units + added.excluded.units,
                },
            )
        )


async def delete_messages(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Deleted:
    """Delete these messages with their events, receipts and webhook deliveries (whose
    attempts cascade), after ``keep_counts``. No trigger fires on a delete, so the
    dashboard's per-hour counts keep them."""
    owners = (EVENTS.c.message_id, RECEIPTS.c.message_id, DELIVERIES.c.message_id, MESSAGES.c.id)
    total = Deleted()
    for part in scrub.chunks(ids):
        events, receipts, deliveries, messages = [
            await _delete(session, column, part) for column in owners
        ]
        total += Deleted(messages, events, receipts, deliveries)
    return total


async def _delete(session: AsyncSession, owner: Any, ids: Sequence[Any]) -> int:
    done = await session.execute(delete(owner.table).where(owner.in_(ids)))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def old_attempt_ids(session: AsyncSession, cutoff: dt.datetime, limit: int) -> list[int]:
    """Up to ``limit`` webhook attempts made before ``cutoff``, in id order (ids grow with
    time, so the scan of the primary key finds the old ones first)."""
    a = ATTEMPTS.c
    query = select(a.id).where(a.attempted_at < cutoff).order_by(a.id).limit(limit)
    return list((await session.scalars(query)).all())


async def count_old_attempts(session: AsyncSession, cutoff: dt.datetime) -> int:
    query = select(func.count()).select_from(ATTEMPTS).where(ATTEMPTS.c.attempted_at < cutoff)
    return int(await session.scalar(query) or 0)


async def delete_attempts(session: AsyncSession, ids: Sequence[int], cutoff: dt.datetime) -> int:
    """Delete these attempts (still older than ``cutoff``)."""
    a = ATTEMPTS.c
    deleted = 0
    for part in scrub.chunks(ids):
        done = await session.execute(
            delete(ATTEMPTS).where(and_(a.id.in_(part), a.attempted_at < cutoff))
        )
        deleted += int(done.rowcount)  # type: ignore[attr-defined]
    return deleted
