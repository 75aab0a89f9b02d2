"""Redacting bodies and pseudonymising numbers in every table that holds them.

The retention job and erasures both come here, with the messages they chose.
A pseudonymised message keeps the keyed hash of its number
(``contact_pseudonym``) and loses the number itself (``contact`` becomes '');
every number in the text it left behind (its receipts' raw bodies, its events'
payloads, its webhook deliveries' data and attempts, its metadata and error)
is replaced by its hash too, whichever number it is and however it is written.
Each call works on the ids given, in the caller's transaction; callers keep
batches small (a few hundred to a thousand messages). Pseudonymising comes in
two halves, ``plan`` (the reads and the rewriting of text, the most of its
time) and ``apply`` (the writes), so that retention can plan without the write
lock and hold it only to write; ``pseudonymise`` does both in one transaction.
``idempotency_answers``
is the one that goes by number instead: a stored answer is not tied to a
message row, and a batch's answer names other people's numbers, which it keeps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, String, Table, bindparam, cast, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import logs, models
from tracker.privacy import pseudonyms, scrub_statements

MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]
RECEIPTS: Table = models.CallbackReceipt.__table__  # type: ignore[assignment]
DELIVERIES: Table = models.WebhookDelivery.__table__  # type: ignore[assignment]
ATTEMPTS: Table = models.WebhookAttempt.__table__  # type: ignore[assignment]
IDEMPOTENCY_KEYS: Table = models.IdempotencyKey.__table__  # type: ignore[assignment]
CHUNK = 500  # ids per IN (...): well inside every driver's parameter limit
# A rewritten receipt's dedupe key: the row's own id, never a hash a caller's key could be
# (those are 64 hex digits). In id order, a batch's new keys sit together in the unique
# index, so writing them dirties a few pages instead of one each (a third of a batch's).
REWRITTEN_KEY = "pseudonymised:"


@dataclass(frozen=True)
class Pseudonymised:
    """Rows changed, per table."""

    messages: int = 0
    events: int = 0
    receipts: int = 0
    webhook_deliveries: int = 0
    webhook_attempts: int = 0

    def __add__(self, other: Pseudonymised) -> Pseudonymised:
        return Pseudonymised(
            *(a + b for a, b in zip(self.counts().values(), other.counts().values(), strict=True))
        )

    def counts(self) -> dict[str, int]:
        return dict(vars(self))


def chunks(ids: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def text(value: str | None, key: bytes) -> str | None:
    """``value`` with every number in it replaced by its pseudonym."""
    if value is None:
        return None
    return logs.replace_phone_numbers(value, lambda msisdn: pseudonyms.of(msisdn, key))


def concealer(key: bytes) -> Callable[[str], str]:
    """``text`` under one key, for code that must not know keys (``reports.plan``)."""

    def conceal(value: str) -> str:
        return logs.replace_phone_numbers(value, lambda msisdn: pseudonyms.of(msisdn, key))

    return conceal


_NOT_DIGIT = re.compile(r"\D")


def one_number(value: str, msisdn: str, key: bytes) -> str:
    """``value`` with this number (in any written form) replaced by its pseudonym, and
    every other number left exactly as written."""
    pseudonym = pseudonyms.of(msisdn, key)

    def replace(match: re.Match[str]) -> str:
        found = "254" + _NOT_DIGIT.sub("", match["prefixed"] or match["bare"])
        return pseudonym if found == msisdn else match[0]

    return logs.PHONE_PATTERN.sub(replace, value)


def document(value: Any, key: bytes) -> Any:
    """A JSON value with every number in its strings (keys too) replaced."""
    if value is None:
        return None
    return json.loads(text(json.dumps(value), key) or "null")


async def redact(session: AsyncSession, ids: Sequence[uuid.UUID], now: dt.datetime) -> int:
    """Remove the bodies of these messages (those not removed already)."""
    m = MESSAGES.c
    redacted = 0
    for part in chunks(ids):
        done = await session.execute(
            update(MESSAGES)
            .where(m.id.in_(part), m.body.is_not(None))
            .values(body=None, redacted_at=now)
        )
        redacted += int(done.rowcount)  # type: ignore[attr-defined]
    return redacted


@dataclass(frozen=True)
class Plan:
    """One batch's new values, worked out from a read (``plan``) for ``apply`` to write:
    in the same transaction, or (retention) in a write transaction after it."""

    key: bytes
    messages: list[scrub_statements.MessageRow] = field(default_factory=list)
    events: dict[uuid.UUID, list[tuple[int, str]]] = field(default_factory=dict)
    receipts: dict[uuid.UUID, list[tuple[int, str, str]]] = field(default_factory=dict)
    # Events and receipts read per message, changed or not: more at write time means
    # rows came in since the plan.
    held: dict[uuid.UUID, list[int]] = field(default_factory=dict)


async def pseudonymise(
    session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes, now: dt.datetime
) -> Pseudonymised:
    """Replace the numbers of these messages, and every number their rows hold."""
    return await apply(session, await plan(session, ids, key), now)


async def plan(session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes) -> Plan:
    """Read these messages (those not pseudonymised yet), their events and receipts,
    and work out their new text. Changes nothing."""
    m, e, r = MESSAGES.c, EVENTS.c, RECEIPTS.c
    planned = Plan(key)
    for part in chunks(ids):
        rows = await session.execute(
            select(m.id, cast(m.updated_at, String), m.contact, cast(m["metadata"], String),
                   m.error, m.provider_description)
            .where(m.id.in_(part), m.pseudonymised_at.is_(None))
        )  # fmt: skip
        for id_, updated_at, contact, meta, error, description in rows:
            pseudonym = pseudonyms.of(contact, key) if contact else None
            rewritten = (text(meta, key), text(error, key), text(description, key))
            planned.messages.append((id_, updated_at, pseudonym, *rewritten))
            planned.held[id_] = [0, 0]
        events = await session.execute(
            select(e.id, e.message_id, cast(e.payload, String)).where(e.message_id.in_(part))
        )
        for id_, owner, payload in events:
            if owner in planned.held:
                planned.held[owner][0] += 1
                new_payload = text(payload, key)
                if new_payload != payload and new_payload is not None:
                    planned.events.setdefault(owner, []).append((id_, new_payload))
        receipts = await session.execute(
            select(r.id, r.message_id, r.body).where(r.message_id.in_(part))
        )
        for id_, owner, body in receipts:
            if owner in planned.held:
                planned.held[owner][1] += 1
                if (new := _new_receipt(id_, body, key)) is not None:
                    planned.receipts.setdefault(owner, []).append((id_, *new))
    return planned


async def apply(session: AsyncSession, planned: Plan, now: dt.datetime) -> Pseudonymised:
    """Write a plan: the messages still as they were read (a message changed since
    keeps its number until a later batch), their events and receipts, and their
    webhook deliveries and attempts (read and rewritten here: a delivery's row
    changes while it is retried)."""
    written = await scrub_statements.messages(session, planned.messages, now)
    if not written:
        return Pseudonymised()
    events = [row for owner in written for row in planned.events.get(owner, ())]
    receipts = [row for owner in written for row in planned.receipts.get(owner, ())]
    held = [sum(planned.held[owner][i] for owner in written) for i in (0, 1)]
    if list(await scrub_statements.held(session, written)) == held:
        await scrub_statements.events(session, events)
        await scrub_statements.receipts(session, receipts)
        changed = (len(events), len(receipts))
    else:  # a report came in since the plan: read them all again, in this transaction
        changed = (
            await _rewrite(session, EVENTS, ("payload",), owner=EVENTS.c.message_id,
                           ids=written, key=planned.key),
            await _receipts(session, written, planned.key),
        )  # fmt: skip
    return Pseudonymised(
        messages=len(written),
        events=changed[0],
        receipts=changed[1],
        webhook_deliveries=await _rewrite(
            session,
            DELIVERIES,
            ("data", "last_error"),
            owner=DELIVERIES.c.message_id,
            ids=written,
            key=planned.key,
        ),
        webhook_attempts=await _attempts(session, written, planned.key),
    )


async def _rewrite(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    *,
    owner: Any,
    ids: Sequence[Any] | Select[Any],
    key: bytes,
) -> int:
    """Rewrite ``columns`` (text or JSON) of the rows whose ``owner`` is in ``ids``;
    only rows that held a number are written."""
    rows = await session.execute(
        select(table.c.id, *(table.c[c] for c in columns)).where(owner.in_(ids))
    )
    changes = []
    for row in rows:
        old = {name: getattr(row, name) for name in columns}
        new = {
            name: text(value, key) if isinstance(value, str) else document(value, key)
            for name, value in old.items()
        }
        if new != old:
            changes.append({"b_id": row.id, **{f"b_{name}": value for name, value in new.items()}})
    if changes:
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in columns}),
            changes,
        )
    return len(changes)


async def _receipts(session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes) -> int:
    """Receipts' raw bodies, and their dedupe keys: a key hashed from a body that held
    the number (sha256, unkeyed) would give the number back to a search of the ~10^9
    Kenyan numbers. The new key is unique to the row (``REWRITTEN_KEY``), so a repeat
    of that report is stored again (within the per-message cap) and changes nothing."""
    r = RECEIPTS.c
    rows = await session.execute(select(r.id, r.message_id, r.body).where(r.message_id.in_(ids)))
    changes = [
        {"b_id": row.id, "b_body": new[0], "b_dedupe": new[1]}
        for row in rows
        if (new := _new_receipt(row.id, row.body, key)) is not None
    ]
    if changes:
        await session.execute(
            update(RECEIPTS)
            .where(r.id == bindparam("b_id"))
            .values(body=bindparam("b_body"), dedupe_key=bindparam("b_dedupe")),
            changes,
        )
    return len(changes)


def _new_receipt(receipt_id: int, body: str, key: bytes) -> tuple[str, str] | None:
    """A receipt's new body and dedupe key (``_receipts`` says why), or None: no number."""
    new = text(body, key) or ""
    if new == body:
        return None
    return new, f"{REWRITTEN_KEY}{receipt_id:020d}"


async def _attempts(session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes) -> int:
    """The attempts of these messages' webhook deliveries: errors and response excerpts."""
    deliveries = select(DELIVERIES.c.id).where(DELIVERIES.c.message_id.in_(ids))
    return await _rewrite(
        session,
        ATTEMPTS,
        ("error", "response_excerpt"),
        owner=ATTEMPTS.c.delivery_id,
        ids=deliveries,
        key=key,
    )


async def idempotency_answers(
    session: AsyncSession, msisdn: str, key: bytes, *, after: int = 0, limit: int = 1000
) -> tuple[int, int | None]:
    """Replace the number in the stored answers of callers' Idempotency-Keys, from
    row id ``after`` on, at most ``limit`` rows; (rows changed, the last id read or None
    when no row is left). A replay then shows the pseudonym where the number was.

    An answer names a message's number normalised (``"to": "2547..."``), so the rows
    are found by its digits; other forms of it beside that are replaced too.
    """
    k = IDEMPOTENCY_KEYS.c
    rows = (
        await session.execute(
            select(k.id, k.response_body)
            .where(k.id > after, k.response_body.contains(msisdn[3:], autoescape=True))
            .order_by(k.id)
            .limit(limit)
        )
    ).all()
    changes = []
    for row in rows:
        new = one_number(row.response_body, msisdn, key)
        if new != row.response_body:
            changes.append({"b_id": row.id, "b_body": new})
    if changes:
        await session.execute(
            update(IDEMPOTENCY_KEYS)
            .where(k.id == bindparam("b_id"))
            .values(response_body=bindparam("b_body")),
            changes,
        )
    return len(changes), (rows[-1].id if rows else None)
