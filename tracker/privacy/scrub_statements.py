"""The writes of a planned pseudonymisation (``scrub.Plan``): one statement per table
for the whole batch, per database.

The new values are worked out before the write transaction (``scrub.plan``), so
on SQLite the write lock covers these statements only. ``executemany`` would
step once per row, handing the GIL to the server's loop and back each time;
a set-based statement (``json_each`` on SQLite, ``unnest`` of arrays on
PostgreSQL) runs the batch in one go, as ``reports.statements`` does.
Values are passed as the columns store them (Uuid as 32 hex digits on SQLite,
JSON as its text), and read back as the planner read them (``updated_at`` as
text), so an unchanged row compares equal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, Uuid, text
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db

# Guarded: a message changed since it was planned (a late report, a retry, another
# pseudonymisation) keeps its values; the batch goes on without it.
_SQLITE_MESSAGES = """
    UPDATE messages SET contact = '', contact_pseudonym = r.pseudonym, metadata = r.meta,
        error = r.error, provider_description = r.description, pseudonymised_at = :now
    FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS updated_at,
            json_extract(value, '$[2]') AS pseudonym, json_extract(value, '$[3]') AS meta,
            json_extract(value, '$[4]') AS error, json_extract(value, '$[5]') AS description
          FROM json_each(:rows)) AS r
    WHERE messages.id = r.id AND messages.pseudonymised_at IS NULL
        AND messages.updated_at = r.updated_at
    RETURNING messages.id
"""
_SQLITE_EVENTS = """
    UPDATE message_events SET payload = r.payload
    FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS payload
          FROM json_each(:rows)) AS r
    WHERE message_events.id = r.id
"""
_SQLITE_RECEIPTS = """
    UPDATE callback_receipts SET body = r.body, dedupe_key = r.dedupe_key
    FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS body,
            json_extract(value, '$[2]') AS dedupe_key FROM json_each(:rows)) AS r
    WHERE callback_receipts.id = r.id
"""
_SQLITE_HELD = """
    SELECT (SELECT count(*) FROM message_events
            WHERE message_id IN (SELECT value FROM json_each(:ids))),
        (SELECT count(*) FROM callback_receipts
            WHERE message_id IN (SELECT value FROM json_each(:ids)))
"""
# Row locks in id order first, as the callback writer takes them: the two never deadlock.
_POSTGRESQL_LOCK = """
    SELECT id FROM messages WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
"""
_POSTGRESQL_MESSAGES = """
    UPDATE messages SET contact = '', contact_pseudonym = r.pseudonym,
        metadata = CAST(r.meta AS json), error = r.error, provider_description = r.description,
        pseudonymised_at = CAST(:now AS timestamptz)
    FROM unnest(CAST(:id AS uuid[]), CAST(:updated_at AS text[]),
                CAST(:pseudonym AS text[]), CAST(:meta AS text[]), CAST(:error AS text[]),
                CAST(:description AS text[]))
        AS r (id, updated_at, pseudonym, meta, error, description)
    WHERE messages.id = r.id AND messages.pseudonymised_at IS NULL
        AND messages.updated_at = CAST(r.updated_at AS timestamptz)
    RETURNING messages.id
"""
_POSTGRESQL_EVENTS = """
    UPDATE message_events SET payload = CAST(r.payload AS json)
    FROM unnest(CAST(:id AS bigint[]), CAST(:payload AS text[])) AS r (id, payload)
    WHERE message_events.id = r.id
"""
_POSTGRESQL_RECEIPTS = """
    UPDATE callback_receipts SET body = r.body, dedupe_key = r.dedupe_key
    FROM unnest(CAST(:id AS bigint[]), CAST(:body AS text[]), CAST(:dedupe_key AS text[]))
        AS r (id, body, dedupe_key)
    WHERE callback_receipts.id = r.id
"""
_POSTGRESQL_HELD = """
    SELECT (SELECT count(*) FROM message_events WHERE message_id = ANY(CAST(:ids AS uuid[]))),
        (SELECT count(*) FROM callback_receipts WHERE message_id = ANY(CAST(:ids AS uuid[])))
"""
MessageRow = tuple[uuid.UUID, str, str | None, str | None, str | None, str | None]
MESSAGE_FIELDS = ("id", "updated_at", "pseudonym", "meta", "error", "description")


def _columns(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """PostgreSQL's array parameters: one list per field."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


async def messages(
    session: AsyncSession, rows: Sequence[MessageRow], now: dt.datetime
) -> list[uuid.UUID]:
    """Write the planned messages still as planned; the ids written."""
    if not rows:
        return []
    statement: TextClause
    if db.is_sqlite(session):
        values: dict[str, Any] = {"rows": db.json_rows(rows), "now": db.sqlite_time(now)}
        statement = text(_SQLITE_MESSAGES).bindparams(**values)
    else:
        ids = sorted(row[0] for row in rows)
        await session.execute(text(_POSTGRESQL_LOCK), {"ids": ids})
        values = _columns(MESSAGE_FIELDS, rows)
        statement = text(_POSTGRESQL_MESSAGES).bindparams(now=now, **values)
    written = await session.execute(statement.columns(id=Uuid()))
    return list(written.scalars())


async def events(session: AsyncSession, rows: Sequence[tuple[int, str]]) -> None:
    """Payloads by event id."""
    if rows:
        if db.is_sqlite(session):
            await session.execute(text(_SQLITE_EVENTS), {"rows": db.json_rows(rows)})
        else:
            await session.execute(text(_POSTGRESQL_EVENTS), _columns(("id", "payload"), rows))


async def receipts(session: AsyncSession, rows: Sequence[tuple[int, str, str]]) -> None:
    """Bodies and dedupe keys by receipt id."""
    if rows:
        if db.is_sqlite(session):
            await session.execute(text(_SQLITE_RECEIPTS), {"rows": db.json_rows(rows)})
        else:
            fields = ("id", "body", "dedupe_key")
            await session.execute(text(_POSTGRESQL_RECEIPTS), _columns(fields, rows))


async def held(session: AsyncSession, ids: Sequence[uuid.UUID]) -> tuple[int, int]:
    """How many events and receipts these messages have now."""
    if db.is_sqlite(session):
        found = await session.execute(text(_SQLITE_HELD), {"ids": db.json_rows(ids)})
    else:
        found = await session.execute(text(_POSTGRESQL_HELD), {"ids": list(ids)})
    events_held, receipts_held = found.one()
    return int(events_held), int(receipts_held)
