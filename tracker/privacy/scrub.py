"""Redacting bodies and pseudonymising numbers in every table that holds them.

The retention job and erasures both come here, with the messages they chose.
A pseudonymised message keeps the keyed hash of its number
(``contact_pseudonym``) and loses the number itself (``contact`` becomes '');
every number in the text it left behind (its receipts' raw bodies, its events'
payloads, its webhook deliveries' data and attempts, its metadata and error)
is replaced by its hash too, whichever number it is and however it is written.
Each call works on the ids given, in the caller's transaction; callers keep
batches small (a few hundred to a thousand messages). ``idempotency_answers``
is the one that goes by number instead: a stored answer is not tied to a
message row, and a batch's answer names other people's numbers, which it keeps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import logs, models
from tracker.privacy import pseudonyms

MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]
RECEIPTS: Table = models.CallbackReceipt.__table__  # type: ignore[assignment]
DELIVERIES: Table = models.WebhookDelivery.__table__  # type: ignore[assignment]
ATTEMPTS: Table = models.WebhookAttempt.__table__  # type: ignore[assignment]
IDEMPOTENCY_KEYS: Table = models.IdempotencyKey.__table__  # type: ignore[assignment]
CHUNK = 500  # ids per IN (...): well inside every driver's parameter limit


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


async def pseudonymise(
    session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes, now: dt.datetime
) -> Pseudonymised:
    """Replace the numbers of these messages, and every number their rows hold."""
    total = Pseudonymised()
    for part in chunks(ids):
        total += Pseudonymised(
            messages=await _messages(session, part, key, now),
            events=await _rewrite(
                session, EVENTS, ("payload",), owner=EVENTS.c.message_id, ids=part, key=key
            ),
            receipts=await _receipts(session, part, key),
            webhook_deliveries=await _rewrite(
                session,
                DELIVERIES,
                ("data", "last_error"),
                owner=DELIVERIES.c.message_id,
                ids=part,
                key=key,
            ),
            webhook_attempts=await _attempts(session, part, key),
        )
    return total


async def _messages(
    session: AsyncSession, ids: Sequence[uuid.UUID], key: bytes, now: dt.datetime
) -> int:
    m = MESSAGES.c
    rows = await session.execute(
        select(m.id, m.contact, m["metadata"], m.error, m.provider_description).where(
            m.id.in_(ids), m.pseudonymised_at.is_(None)
        )
    )
    changes = [
        {
            "b_id": row.id,
            "b_pseudonym": pseudonyms.of(row.contact, key) if row.contact else None,
            "b_meta": document(row.metadata, key),
            "b_error": text(row.error, key),
            "b_description": text(row.provider_description, key),
        }
        for row in rows
    ]
    if changes:
        await session.execute(
            update(MESSAGES)
            .where(m.id == bindparam("b_id"))
            .values(
                {
                    "contact": "",
                    "contact_pseudonym": bindparam("b_pseudonym"),
                    "metadata": bindparam("b_meta"),
                    "error": bindparam("b_error"),
                    "provider_description": bindparam("b_description"),
                    "pseudonymised_at": now,
                }
            ),
            changes,
        )
    return len(changes)


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
    Kenyan numbers. The new key is unique to the row, so a repeat of that report is
    stored again (within the per-message cap) and changes nothing."""
    r = RECEIPTS.c
    rows = await session.execute(select(r.id, r.message_id, r.body).where(r.message_id.in_(ids)))
    changes = []
    for row in rows:
        body = text(row.body, key) or ""
        if body != row.body:
            dedupe = hashlib.sha256(f"{row.message_id}\n{body}\n{row.id}".encode()).hexdigest()
            changes.append({"b_id": row.id, "b_body": body, "b_dedupe": dedupe})
    if changes:
        await session.execute(
            update(RECEIPTS)
            .where(r.id == bindparam("b_id"))
            .values(body=bindparam("b_body"), dedupe_key=bindparam("b_dedupe")),
            changes,
        )
    return len(changes)


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
