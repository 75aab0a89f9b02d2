"""Erasure on request: every trace of one number, across every client and table.

An erasure first cancels what is still queued to the number (nothing more will
be sent to it), then redacts the body and pseudonymises the number of every
other message to it (in flight or final), with their events, receipts and
webhook logs (``scrub``), and the answers stored for callers' Idempotency-Keys.
It goes in bounded batches, each its own short write transaction, so SQLite's
one writer is never held for long and callbacks keep being answered. A message
is found by its number or, once pseudonymised (by retention or an earlier
erasure), by the number's pseudonym: asking again finds the same messages and
changes only what appeared since (a delivery report stored after the first).

Messages in flight stay in flight: their delivery report still finds them by
the id in the callback URL, and is stored with the number replaced.

One audit event records who asked and the counts; never the number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, models
from tracker.domain import status
from tracker.privacy import audit, cancelling, pseudonyms, scrub

MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
BATCH = 250  # messages per transaction: with their events and receipts ~1,000 rows, ~40 ms
CANCELLED_DETAIL = "cancelled: the number asked to be erased"
CLI_ACTOR = "cli"


@dataclass(frozen=True)
class Erased:
    """What one erasure changed, per table (rows found, and rows changed)."""

    messages_found: int = 0
    messages_cancelled: int = 0
    messages_redacted: int = 0
    changed: scrub.Pseudonymised = field(default_factory=scrub.Pseudonymised)
    idempotency_keys: int = 0

    def counts(self) -> dict[str, int]:
        """Flat, as the API answers and the audit event keeps them."""
        changed = self.changed.counts()
        return {
            "messages_found": self.messages_found,
            "messages_cancelled": self.messages_cancelled,
            "messages_redacted": self.messages_redacted,
            "messages_pseudonymised": changed.pop("messages"),
            **changed,
            "idempotency_keys": self.idempotency_keys,
        }


async def erase(
    database: db.Database, msisdn: str, key: bytes, actor: str, *, batch: int = BATCH
) -> Erased:
    """Erase a normalised number (``254712345678``); the counts, also in the audit log."""
    pseudonym = pseudonyms.of(msisdn, key)
    async with database.write() as session:
        cancelled = await cancelling.queued_to(
            session, msisdn, None, clock.utcnow(), reason=CANCELLED_DETAIL
        )
    found = redacted = 0
    changed = scrub.Pseudonymised()
    after: uuid.UUID | None = None
    while True:
        async with database.write() as session:
            ids = await _next_messages(session, msisdn, pseudonym, after, batch)
            if not ids:
                break
            now = clock.utcnow()
            redacted += await scrub.redact(session, ids, now)
            changed += await scrub.pseudonymise(session, ids, key, now)
        found, after = found + len(ids), ids[-1]
    answers = await _answers(database, msisdn, key, batch)
    erased = Erased(found, cancelled, redacted, changed, answers)
    async with database.write() as session:
        await audit.record(session, audit.Action.ERASURE, actor, detail=erased.counts())
    return erased


async def _next_messages(
    session: AsyncSession, msisdn: str, pseudonym: str, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """The next ids (in id order) of messages to the number that are not queued.

    A message queued after the cancellation is a new request: it keeps its number
    until it is final (retention, or another erasure, then reaches it).
    """
    m = MESSAGES.c
    query = (
        select(m.id)
        .where(
            or_(m.contact == msisdn, m.contact_pseudonym == pseudonym),
            m.status != status.Status.QUEUED.value,
        )
        .order_by(m.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(m.id > after)
    return list((await session.scalars(query)).all())


async def _answers(database: db.Database, msisdn: str, key: bytes, batch: int) -> int:
    """The stored Idempotency-Key answers that named the number, batch by batch."""
    changed, after = 0, 0
    while True:
        async with database.write() as session:
            done, last = await scrub.idempotency_answers(
                session, msisdn, key, after=after, limit=batch
            )
        changed += done
        if last is None:
            return changed
        after = last
