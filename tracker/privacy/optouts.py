"""Opt-outs: numbers a client (or, ``client`` None, every client) must not message.

A send checks them in its storing transaction, and a new opt-out cancels what is
still queued to the number in its own. On PostgreSQL a send holds ``opt_outs`` in
SHARE mode while it checks and stores, and adding an opt-out needs ROW EXCLUSIVE:
the two never overlap, so no message queued at the same moment slips past
the cancellation. SQLite has one writer at a time, which gives the same.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, models
from tracker.privacy import cancelling, pseudonyms

OPT_OUTS: Table = models.OptOut.__table__  # type: ignore[assignment]
CHUNK = 500  # pseudonyms per IN (...): well inside every driver's parameter limit
CANCELLED_DETAIL = "cancelled: the number opted out"


@dataclass(frozen=True)
class OptOut:
    id: uuid.UUID
    client: str | None  # None: every client
    created_by: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Added:
    opt_out: OptOut
    created: bool  # False: it was there already
    cancelled: int  # queued messages to the number cancelled now


def _scope(client: str | None) -> ColumnElement[bool]:
    """The rows of one scope: the client's own, or the global ones."""
    column = OPT_OUTS.c.client
    return column.is_(None) if client is None else column == client


def _applying_to(client: str) -> ColumnElement[bool]:
    """The rows that bind a client: its own and the global ones."""
    return or_(OPT_OUTS.c.client.is_(None), OPT_OUTS.c.client == client)


async def add(session: AsyncSession, msisdn: str, client: str | None, by: str, key: bytes) -> Added:
    """Opt ``msisdn`` out for ``client`` (None: every client); cancel what is queued to it."""
    now = dt.datetime.now(dt.UTC)
    pseudonym = pseudonyms.of(msisdn, key)
    statement = db.upsert(session, OPT_OUTS).values(
        id=models.new_id(), client=client, contact_pseudonym=pseudonym, created_by=by,
        created_at=now,
    )  # fmt: skip
    if client is None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["contact_pseudonym"], index_where=text("client IS NULL")
        )
    else:
        statement = statement.on_conflict_do_nothing(
            index_elements=["client", "contact_pseudonym"], index_where=text("client IS NOT NULL")
        )
    created = bool(getattr(await session.execute(statement), "rowcount", 0))
    row = (
        await session.execute(
            _columns().where(_scope(client), OPT_OUTS.c.contact_pseudonym == pseudonym)
        )
    ).one()
    cancelled = await cancelling.queued_to(session, msisdn, client, now, reason=CANCELLED_DETAIL)
    return Added(_opt_out(row), created, cancelled)


async def remove(session: AsyncSession, opt_out_id: uuid.UUID, client: str | None) -> bool:
    """Delete one opt-out (``client``: only if it is that client's own); whether it was there."""
    condition = [OPT_OUTS.c.id == opt_out_id]
    if client is not None:
        condition.append(OPT_OUTS.c.client == client)
    result = await session.execute(delete(OPT_OUTS).where(*condition))
    return bool(getattr(result, "rowcount", 0))


async def list_for(
    session: AsyncSession, client: str | None, pseudonym: str | None = None
) -> list[OptOut]:
    """The opt-outs binding ``client`` (its own and the global ones; None: all), newest first."""
    query = _columns().order_by(OPT_OUTS.c.created_at.desc(), OPT_OUTS.c.id.desc())
    if client is not None:
        query = query.where(_applying_to(client))
    if pseudonym is not None:
        query = query.where(OPT_OUTS.c.contact_pseudonym == pseudonym)
    return [_opt_out(row) for row in (await session.execute(query)).all()]


async def refused(
    session: AsyncSession, msisdns: Sequence[str], client: str, key: bytes
) -> set[str]:
    """Which of these numbers ``client`` must not message; call it in the storing transaction."""
    if not db.is_sqlite(session):
        await session.execute(text("LOCK TABLE opt_outs IN SHARE MODE"))
    binding = await session.scalar(select(OPT_OUTS.c.id).where(_applying_to(client)).limit(1))
    if binding is None:  # the usual case: nothing to hash, nothing to look up
        return set()
    by_pseudonym = {pseudonyms.of(msisdn, key): msisdn for msisdn in set(msisdns)}
    found: set[str] = set()
    wanted = list(by_pseudonym)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        rows = await session.scalars(
            select(OPT_OUTS.c.contact_pseudonym).where(
                _applying_to(client), OPT_OUTS.c.contact_pseudonym.in_(chunk)
            )
        )
        found.update(by_pseudonym[pseudonym] for pseudonym in rows)
    return found


def _columns() -> Select[tuple[uuid.UUID, str | None, str, dt.datetime]]:
    return select(OPT_OUTS.c.id, OPT_OUTS.c.client, OPT_OUTS.c.created_by, OPT_OUTS.c.created_at)


def _opt_out(row: Sequence[Any]) -> OptOut:
    return OptOut(row[0], row[1], row[2], row[3])
