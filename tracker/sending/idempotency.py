"""``Idempotency-Key``: a retried request gets the first answer and creates nothing.

Keys belong to the API key that sent them (two callers may use the same key
independently). A key's record holds a hash of the request (route and
canonical JSON body) and the exact answer given. The same key with the same
request replays that answer; with another request it is 409. Records live
``idempotency_ttl_seconds``; an expired one is ignored and overwritten.

The record is written in the transaction that creates the messages, under a
unique ``(client, key)``. Of two concurrent requests with one key, the second
to insert it gets a unique violation: its transaction (messages included) is
rolled back and it replays the first one's answer instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from tracker import clock, db, errors
from tracker.domain import headers
from tracker.sending import store

HEADER = headers.IDEMPOTENCY_KEY
MAX_KEY_CHARS = headers.IDEMPOTENCY_KEY_MAX_CHARS
_VALID_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_CHARS}}}")


@dataclass(frozen=True)
class Claim:
    """A request that carries a key: whose, which, and what was asked."""

    client: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes


def claim_of(request: Request, client: str, route: str, body: Any) -> Claim | None:
    """The request's claim on its Idempotency-Key; None without the header."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID_KEY.fullmatch(key):
        raise errors.ValidationFailed(
            {HEADER: [f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters"]}
        )
    return Claim(client=client, key=key, request_hash=request_hash(route, body))


def request_hash(route: str, body: Any) -> str:
    """SHA-256 of the route and the body's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


async def previous_answer(database: db.Database, claim: Claim, now: dt.datetime) -> Answer | None:
    """The answer already given for this key, or None if it is new (or expired).

    Raises Conflict when the key was used for a different request.
    """
    async with database.read() as session:
        record = await store.find_idempotency_key(session, claim.client, claim.key)
    if record is None or record.expires_at <= now:
        return None
    if record.request_hash != claim.request_hash:
        raise errors.Conflict(f"this {HEADER} was already used for a different request")
    return Answer(status_code=record.status_code, body=record.response_body.encode())


async def remember(
    session: AsyncSession, claim: Claim, answer: Answer, now: dt.datetime, ttl_seconds: int
) -> None:
    """Store the answer in the transaction that makes it true.

    Raises IdempotencyKeyTaken if a concurrent request stored the key first.
    """
    await store.save_idempotency_key(
        session,
        client=claim.client,
        key=claim.key,
        request_hash=claim.request_hash,
        status_code=answer.status_code,
        response_body=answer.body.decode(),
        now=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )


async def answer_of_winner(database: db.Database, claim: Claim) -> Answer:
    """After losing a race for the key: the winner's answer (or Conflict)."""
    answer = await previous_answer(database, claim, clock.utcnow())
    if answer is None:  # the winner committed, so its record exists and is fresh
        raise RuntimeError("the record of a concurrent Idempotency-Key has vanished")
    return answer
