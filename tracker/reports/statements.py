"""The statements that apply a batch of receipts, per database.

A batch is a handful of set-based statements sent straight to the driver,
inside a transaction: the reads that ``plan.decide`` decides from, then the
writes it planned. Through SQLAlchemy the same batch cost several times more
(per-row bind processing, and on SQLite several trips to the driver's thread
per statement). Values are passed in the forms the models' column types store
(Uuid, UTCDateTime, JSON); tests read the rows back through the ORM to keep the
two in step. Parameters are named (``:now``, ``:move_rank``): sqlite3 binds
them from a dict, and ``db.Named`` numbers them once, at import, for asyncpg.

``apply_receipts`` runs a batch in an SQLAlchemy session (the replayer, the
CLI); ``writer`` runs the same statements on the ingester's own
connection.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db
from tracker.domain import status
from tracker.reports import plan, reading

Statement = tuple[str, dict[str, Any]]  # SQL with :name placeholders, and their values
# The highest rank that is not final: a report's status words are kept up to it.
_NOT_FINAL_RANK = status.RANK[status.Status.PENDING]


async def apply_receipts(
    session: AsyncSession,
    receipts: list[reading.Receipt],
    *,
    cap: int = plan.REPORTS_PER_MESSAGE,
    conceal: plan.Conceal | None = None,
) -> list[plan.Outcome]:
    """Apply a batch in the session's write transaction; one outcome per receipt.

    For the replayer and the CLI, which have no deadline (the ingester's own
    writer, ``writer``, has one).
    """
    connection = await session.connection()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:  # through SQLAlchemy, so that its driver adapter opens the transaction
        timeouts = POSTGRESQL_TIMEOUTS.arguments({"timeout_ms": timeout_ms(None)})
        await connection.exec_driver_sql(POSTGRESQL_TIMEOUTS.sql, tuple(timeouts))
    # (On SQLite, Database.write() has already begun it: BEGIN IMMEDIATE.)
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if not (driver.is_in_transaction() if postgresql else driver.in_transaction):
        # Statements outside a transaction would each commit on their own.
        raise RuntimeError("apply_receipts needs a session in a write transaction")
    if postgresql:
        return await apply_on_postgresql(driver, receipts, cap=cap, conceal=conceal)
    rows = await driver.execute_fetchall(*_SQLite.reads(receipts, cap))
    decided = plan.decide(receipts, _SQLite.decode_reads(rows), cap=cap, conceal=conceal)
    for statement in _SQLite.writes(decided):
        await driver.execute_fetchall(*statement)
    return decided.outcomes


def apply_on_sqlite(
    connection: sqlite3.Connection,
    receipts: list[reading.Receipt],
    *,
    cap: int = plan.REPORTS_PER_MESSAGE,
    refuse: Collection[str] = (),
    conceal: plan.Conceal | None = None,
) -> list[plan.Outcome]:
    """The batch on a plain sqlite3 connection, in the transaction the caller began
    (``cap``, ``refuse`` and ``conceal``: see ``plan.decide``)."""
    rows = connection.execute(*_SQLite.reads(receipts, cap)).fetchall()
    stored = _SQLite.decode_reads(rows)
    decided = plan.decide(receipts, stored, cap=cap, refuse=refuse, conceal=conceal)
    for statement in _SQLite.writes(decided):
        connection.execute(*statement)
    return decided.outcomes


async def apply_on_postgresql(
    driver: Any,
    receipts: list[reading.Receipt],
    *,
    cap: int = plan.REPORTS_PER_MESSAGE,
    refuse: Collection[str] = (),
    conceal: plan.Conceal | None = None,
) -> list[plan.Outcome]:
    """The batch on an asyncpg connection, in the transaction the caller began."""
    ids = list({r.message_id for r in receipts})
    rows = await _PostgreSQL.SNAPSHOTS.fetch(driver, {"ids": ids})
    stored = plan.Stored(snapshots={uuid.UUID(int=row[0].int): _snapshot(row) for row in rows})
    # Read after the locks: a concurrent batch holding one of these messages (the
    # replayer's) has committed by now, so its receipts count as duplicates here.
    keys = list({r.dedupe_key for r in receipts})
    claimed = plan.provider_ids(receipts)
    known = {"keys": keys, "claimed": claimed, "ids": ids, "cap": cap}
    for kind, key, value in await _PostgreSQL.KNOWN.fetch(driver, known):
        _decode_known(stored, kind, key, value)
    decided = plan.decide(receipts, stored, cap=cap, refuse=refuse, conceal=conceal)
    await _PostgreSQL.WRITE.execute(driver, _PostgreSQL.write_values(decided))
    return decided.outcomes


# Per transaction (SET LOCAL): the deadline, and custom plans, because a generic
# plan cached while a table was small (a seq scan) would be kept until the next
# ANALYZE and make every batch slower than the last.
POSTGRESQL_TIMEOUTS = db.Named(
    "SELECT set_config('statement_timeout', :timeout_ms, true),"
    " set_config('lock_timeout', :timeout_ms, true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)


def timeout_ms(deadline_seconds: float | None) -> str:
    """POSTGRESQL_TIMEOUTS's parameter."""
    return str(int(deadline_seconds * 1000)) if deadline_seconds else "0"  # 0: no limit


def _snapshot(row: Any) -> plan.Snapshot:
    return plan.Snapshot(status.Status(row[1]), row[2], row[3])


class _SQLite:
    """One statement per table, the whole batch in one JSON parameter (json_each).

    The driver releases the GIL around each step of a statement and must take
    it back after every one; executemany steps once per row, so a batch would
    hand the GIL back and forth hundreds of times. The batch's writer holds
    the write lock (BEGIN IMMEDIATE) before it reads, so one read serves for
    the messages and the receipts already stored. Ids are stored as 32 hex
    digits (SQLAlchemy's Uuid on SQLite). Needs SQLite 3.33 (UPDATE ... FROM)
    with JSON1, as every supported Python build has.
    """

    # Also: which messages hold the provider ids the reports claim (the unique
    # index would refuse a second one), and how many receipts each message has
    # stored, counted no further than the cap.
    READS = """
        SELECT 'message', id, status, contact, provider_message_id FROM messages
        WHERE id IN (SELECT value FROM json_each(:ids))
        UNION ALL
        SELECT 'receipt', dedupe_key, outcome, NULL, NULL FROM callback_receipts
        WHERE dedupe_key IN (SELECT value FROM json_each(:keys))
        UNION ALL
        SELECT 'owner', provider_message_id, id, NULL, NULL FROM messages
        WHERE provider_message_id IN (SELECT value FROM json_each(:claimed))
        UNION ALL
        SELECT 'count', m.value, (SELECT count(*) FROM (SELECT 1 FROM callback_receipts AS r
            WHERE r.message_id = m.value LIMIT :cap)), NULL, NULL
        FROM json_each(:ids) AS m
    """
    # Each JSON row [a, b, ...] is read back with json_extract(value, '$[n]').
    # coalesce() rather than "AND provider_message_id IS NULL": with that term
    # the planner walks every message without a provider id (all queued ones).
    # Status words are kept only while the message is not final (the rank guard
    # repeats the planner's check).
    NOTE = """
        UPDATE messages SET
            provider_message_id = coalesce(messages.provider_message_id, n.pmid),
            provider_status = CASE WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                THEN n.status ELSE messages.provider_status END,
            provider_description = CASE
                WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                THEN n.description ELSE messages.provider_description END,
            updated_at = CASE WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                THEN :now ELSE messages.updated_at END
        FROM (
            SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS pmid,
                json_extract(value, '$[2]') AS status, json_extract(value, '$[3]') AS description
            FROM json_each(:notes)
        ) AS n
        WHERE messages.id = n.id
    """
    # The rank guard repeats the decision made from the snapshot: never backwards.
    MOVE = """
        UPDATE messages SET status = m.status, rank = m.rank,
            provider_status = m.provider_status, provider_description = m.description,
            provider_message_id = coalesce(messages.provider_message_id, m.pmid),
            lease_until = NULL, final_at = :now, updated_at = :now
        FROM (
            SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS rank,
                json_extract(value, '$[2]') AS status,
                json_extract(value, '$[3]') AS provider_status,
                json_extract(value, '$[4]') AS description, json_extract(value, '$[5]') AS pmid
            FROM json_each(:moves)
        ) AS m
        WHERE messages.id = m.id AND messages.rank < m.rank
    """
    RECEIPTS = """
        INSERT INTO callback_receipts (message_id, dedupe_key, body, remote_addr, outcome,
                                       received_at, applied_at)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]'), json_extract(value, '$[3]'),
            json_extract(value, '$[4]'), json_extract(value, '$[5]'), :now
        FROM json_each(:receipts)
        WHERE true  -- SQLite's parser needs a WHERE before ON CONFLICT here
        ON CONFLICT DO NOTHING
    """
    EVENTS = """
        INSERT INTO message_events (message_id, from_status, to_status, source, detail,
                                    payload, created_at)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]'), 'callback', json_extract(value, '$[3]'),
            json_extract(value, '$[4]'), json_extract(value, '$[5]')
        FROM json_each(:events)
    """

    @classmethod
    def reads(cls, receipts: list[reading.Receipt], cap: int) -> Statement:
        ids = list({r.message_id.hex for r in receipts})
        keys = list({r.dedupe_key for r in receipts})
        claimed = plan.provider_ids(receipts)
        return cls.READS, {
            "ids": db.json_rows(ids),
            "keys": db.json_rows(keys),
            "claimed": db.json_rows(claimed),
            "cap": cap,
        }

    @staticmethod
    def decode_reads(rows: Iterable[Any]) -> plan.Stored:
        """What READS found."""
        stored = plan.Stored()
        for kind, key, *values in rows:
            if kind == "message":
                snapshot = plan.Snapshot(status.Status(values[0]), *values[1:])
                stored.snapshots[uuid.UUID(hex=key)] = snapshot
            else:
                _decode_known(stored, kind, key, values[0])
        return stored

    @classmethod
    def writes(cls, decided: plan.Plan) -> list[Statement]:
        now = db.sqlite_time(decided.now)
        statements: list[Statement] = []
        if decided.notes:
            notes = [[i.hex, *note] for i, note in decided.notes.items()]
            values = {"not_final_rank": _NOT_FINAL_RANK, "now": now, "notes": db.json_rows(notes)}
            statements.append((cls.NOTE, values))
        if decided.moves:
            moves = [[m.message_id.hex, *m[1:]] for m in decided.moves.values()]
            statements.append((cls.MOVE, {"now": now, "moves": db.json_rows(moves)}))
        if decided.receipts:
            rows = [
                [r.message_id.hex, *r[1:5], db.sqlite_time(r.received_at)] for r in decided.receipts
            ]
            statements.append((cls.RECEIPTS, {"now": now, "receipts": db.json_rows(rows)}))
        if decided.events:
            rows = [
                [e.message_id.hex, *e[1:5], db.sqlite_time(e.created_at)] for e in decided.events
            ]
            statements.append((cls.EVENTS, {"events": db.json_rows(rows)}))
        return statements


class _PostgreSQL:
    """A server round trip per statement, so the writes are one statement (CTEs
    over unnest() of array parameters) whatever the batch size."""

    # FOR UPDATE in id order: concurrent batches cannot deadlock, and the
    # snapshot stays true until commit, so decisions made from it hold.
    SNAPSHOTS = db.Named(
        "SELECT id, status, contact, provider_message_id FROM messages"
        " WHERE id = ANY(:ids::uuid[]) ORDER BY id FOR UPDATE"
    )
    # As _SQLite.READS, but the locked snapshots come first (SNAPSHOTS).
    KNOWN = db.Named("""
        SELECT 'receipt', dedupe_key, outcome FROM callback_receipts
        WHERE dedupe_key = ANY(:keys::text[])
        UNION ALL
        SELECT 'owner', provider_message_id, id::text FROM messages
        WHERE provider_message_id = ANY(:claimed::text[])
        UNION ALL
        SELECT 'count', m.id::text, (SELECT count(*) FROM (SELECT 1 FROM callback_receipts AS r
            WHERE r.message_id = m.id LIMIT :cap) AS c)::text
        FROM unnest(:ids::uuid[]) AS m (id)
    """)
    # The array parameters are named after the plan's rows: prefix_field (``_columns``).
    WRITE = db.Named("""
        WITH noted AS (
            UPDATE messages SET
                provider_message_id = coalesce(messages.provider_message_id, n.pmid),
                provider_status = CASE
                    WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                    THEN n.status ELSE messages.provider_status END,
                provider_description = CASE
                    WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                    THEN n.description ELSE messages.provider_description END,
                updated_at = CASE
                    WHEN n.status IS NOT NULL AND messages.rank <= :not_final_rank
                    THEN :now ELSE messages.updated_at END
            FROM unnest(:note_message_id::uuid[], :note_provider_message_id::text[],
                        :note_provider_status::text[], :note_description::text[])
                AS n (id, pmid, status, description)
            WHERE messages.id = n.id
        ), moved AS (
            UPDATE messages SET status = m.status, rank = m.rank,
                provider_status = m.provider_status, provider_description = m.description,
                provider_message_id = coalesce(messages.provider_message_id, m.pmid),
                lease_until = NULL, final_at = :now, updated_at = :now
            FROM unnest(:move_message_id::uuid[], :move_rank::smallint[], :move_status::text[],
                        :move_provider_status::text[], :move_description::text[],
                        :move_provider_message_id::text[])
                AS m (id, rank, status, provider_status, description, pmid)
            WHERE messages.id = m.id AND messages.rank < m.rank
        ), receipts AS (
            INSERT INTO callback_receipts (message_id, dedupe_key, body, remote_addr, outcome,
                                           received_at, applied_at)
            SELECT r.*, :now FROM unnest(:receipt_message_id::uuid[], :receipt_dedupe_key::text[],
                                         :receipt_body::text[], :receipt_remote_addr::text[],
                                         :receipt_outcome::text[],
                                         :receipt_received_at::timestamptz[]) AS r
            ON CONFLICT DO NOTHING
        )
        INSERT INTO message_events (message_id, from_status, to_status, source, detail,
                                    payload, created_at)
        SELECT e.id, e.from_status, e.to_status, 'callback', e.detail, e.payload::json, e.at
        FROM unnest(:event_message_id::uuid[], :event_from_status::text[],
                    :event_to_status::text[], :event_detail::text[], :event_payload::text[],
                    :event_created_at::timestamptz[])
            AS e (id, from_status, to_status, detail, payload, at)
    """)

    @staticmethod
    def write_values(decided: plan.Plan) -> dict[str, Any]:
        """WRITE's parameters, by name."""
        notes = [(message_id, *note) for message_id, note in decided.notes.items()]
        # In key order: two batches inserting the same keys (for no known message,
        # so no row lock orders them) wait for each other in one order, never in a cycle.
        receipts = sorted(decided.receipts, key=_by_key)
        return {
            "now": decided.now,
            "not_final_rank": _NOT_FINAL_RANK,
            **_columns("note", ("message_id", *plan.Note._fields), notes),
            **_columns("move", plan.Move._fields, list(decided.moves.values())),
            **_columns("receipt", plan.ReceiptRow._fields, receipts),
            **_columns("event", plan.EventRow._fields, decided.events),
        }


def _decode_known(stored: plan.Stored, kind: str, key: str, value: Any) -> None:
    """A row of the reads both databases share: a stored receipt's outcome, the
    message holding a provider id, or a message's receipt count."""
    if kind == "receipt":
        stored.seen[key] = value
    elif kind == "owner":
        stored.owners[key] = uuid.UUID(value)
    else:
        stored.receipts[uuid.UUID(key)] = int(value)


def _by_key(row: plan.ReceiptRow) -> str:
    return row.dedupe_key


def _columns(prefix: str, fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Rows to one list per column, named ``prefix_field``: the arrays of an unnest()."""
    columns = zip(*rows, strict=True) if rows else [()] * len(fields)
    return {f"{prefix}_{name}": list(column) for name, column in zip(fields, columns, strict=True)}
