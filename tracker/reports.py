"""Applying delivery reports (callbacks) to messages: all their SQL lives here.

A batch of receipts is applied in one transaction (group commit): receipts
already stored are duplicates and change nothing; every other receipt is stored
raw, with its outcome, next to the status change it caused. Status moves are
conditional UPDATEs (``WHERE rank < :new_rank``), so a stale or out-of-order
report can never move a message backwards, whatever else runs concurrently.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import logs, messages

log = logs.get_logger(__name__)
MAX_STATUS_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 255


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # moved the message's status
    INTERIM = "interim"  # a known non-final status: recorded, no move
    UNKNOWN_STATUS = "unknown_status"  # a word we do not know: recorded, no move
    STALE = "stale"  # final, but the message is already as far or further
    DUPLICATE = "duplicate"  # this exact body was received before
    MISMATCH = "mismatch"  # contradicts the stored message: recorded, refused
    MALFORMED = "malformed"  # not a report at all: recorded, refused
    UNKNOWN_MESSAGE = "unknown_message"  # no such message (e.g. restored database)


HTTP_STATUS = {Outcome.MISMATCH: 409, Outcome.MALFORMED: 400, Outcome.UNKNOWN_MESSAGE: 404}
_REFUSED = {outcome.value: outcome for outcome in HTTP_STATUS}  # as stored in receipts


@dataclass(frozen=True)
class Receipt:
    """One callback as it arrived: the raw body is what we keep."""

    message_id: uuid.UUID
    body: str
    remote_addr: str | None
    received_at: dt.datetime

    @functools.cached_property
    def dedupe_key(self) -> str:
        return hashlib.sha256(f"{self.message_id}\n{self.body}".encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "body": self.body,
            "remote_addr": self.remote_addr,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            message_id=uuid.UUID(data["message_id"]),
            body=data["body"],
            remote_addr=data.get("remote_addr"),
            received_at=dt.datetime.fromisoformat(data["received_at"]),
        )


@dataclass(frozen=True)
class Report:
    """The fields of a well-formed KIMISMS delivery callback."""

    status: str
    provider_message_id: str | None
    contact: str | None
    description: str | None
    payload: dict[str, Any]


def _optional_text(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(key)
    return value


# Text no column can hold: PostgreSQL refuses NUL (U+0000) in text, and no UTF-8
# text holds a lone surrogate (JSON can spell both: "\u0000", "\ud800"). One of
# them in a report would fail its whole group commit (tripping the breaker), then
# fail every replay of the spool the same way, so such a report is malformed.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _holds_unstorable_text(data: Any) -> bool:
    """Whether any key or string in parsed JSON holds unstorable text (iterative:
    json.loads accepts deeper nesting than a recursive walk could follow)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _refuse_constant(name: str) -> None:
    """Python's json reads NaN and Infinity; JSON (RFC 8259) has neither."""
    raise ValueError(f"{name} is not a JSON value")


def parse_report(body: str) -> Report | None:
    """The report in a callback body, or None if it is not one.

    Malformed bodies are recorded and refused with 400 like any other (the
    provider gets a clear answer; we keep the evidence): that includes strings
    holding unstorable text, and nesting too deep to parse.
    """
    try:
        data = json.loads(body, parse_constant=_refuse_constant)  # strict: no NaN
    except (ValueError, RecursionError):  # JSONDecodeError, or "[[[[..." past the stack
        return None
    # Only a JSON escape can put such text in a parsed string (a raw NUL byte is
    # already invalid JSON), so bodies without a backslash-u skip the walk.
    if not isinstance(data, dict) or ("\\u" in body and _holds_unstorable_text(data)):
        return None
    try:
        status = _optional_text(data, "status", MAX_STATUS_LENGTH)
        if not status or not status.strip():
            return None
        return Report(
            status=status.strip(),
            provider_message_id=_optional_text(data, "message_id", 64),
            contact=_optional_text(data, "contact", 32),
            description=_optional_text(data, "description", MAX_DESCRIPTION_LENGTH),
            payload=data,
        )
    except ValueError:  # our own field errors
        return None


def storable_text(raw: str) -> str:
    """A raw body as PostgreSQL text can hold it: NUL written as JSON writes it.

    The body is kept as evidence, so it must be stored even when it is
    malformed; the dedupe key is still taken from the body as received.
    """
    return raw.replace("\x00", "\\u0000") if "\x00" in raw else raw


# SQLSTATE classes that blame the database or the session, not the data sent:
# 08 connection, 28 authorization, 3D no such database, 40 rollback (deadlock,
# serialization), 42 syntax or access (a missing table: an unmigrated schema),
# 53 resources, 55 lock not available, 57 operator intervention (statement
# timeout, shutdown), 58 system error, XX internal error.
_SYSTEMIC_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "40", "42", "53", "55", "57", "58", "XX"})


def failure_is_systemic(error: BaseException) -> bool:
    """Whether applying receipts failed because of the database (try again later)
    rather than because of what one receipt holds (it will fail the same way).

    Takes SQLAlchemy's errors and the drivers' own (the batch statements run on
    the driver connection).
    """
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True  # SQLAlchemy's names for the driver errors below
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig or error
    if isinstance(error, _SYSTEMIC_ERRORS):
        return True  # unreachable, too slow, locked (SQLite), connection lost
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _SYSTEMIC_SQLSTATE_CLASSES


_SYSTEMIC_ERRORS = (
    OSError,
    TimeoutError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    asyncpg.InterfaceError,
)


@dataclass
class _Snapshot:
    """What the batch knows of a message, kept current as the batch applies."""

    status: messages.Status
    contact: str
    provider_message_id: str | None


def _contradiction(report: Report, message: _Snapshot) -> str | None:
    if report.contact is not None and report.contact.lstrip("+") != message.contact:
        return "contact differs from the message's"
    stored, reported = message.provider_message_id, report.provider_message_id
    if stored and reported and stored != reported:
        return "provider message id differs from the message's"
    return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Move(NamedTuple):
    message_id: uuid.UUID
    rank: int
    status: str
    provider_status: str
    description: str | None
    provider_message_id: str | None


class _ReceiptRow(NamedTuple):
    message_id: uuid.UUID
    dedupe_key: str
    body: str
    remote_addr: str | None
    outcome: str
    received_at: dt.datetime


class _EventRow(NamedTuple):
    message_id: uuid.UUID
    from_status: str | None
    to_status: str | None
    detail: str | None
    payload: str  # JSON text
    created_at: dt.datetime


@dataclass
class _Plan:
    """What a batch will write, decided from the snapshots."""

    now: dt.datetime
    outcomes: list[Outcome] = field(default_factory=list)
    moves: dict[uuid.UUID, _Move] = field(default_factory=dict)  # the last move wins
    adoptions: dict[uuid.UUID, str] = field(default_factory=dict)  # for messages not moved
    receipts: list[_ReceiptRow] = field(default_factory=list)
    events: list[_EventRow] = field(default_factory=list)


Decision = tuple[Outcome, str | None, messages.Status | None]


def _decide(
    plan: _Plan, receipt: Receipt, report: Report | None, message: _Snapshot | None
) -> Decision:
    """(outcome, detail, new status) for one receipt; updates the snapshot and plan."""
    if report is None:
        return Outcome.MALFORMED, "not a delivery report", None
    if message is None:
        return Outcome.UNKNOWN_MESSAGE, None, None
    contradiction = _contradiction(report, message)
    if contradiction:
        return Outcome.MISMATCH, f"refused: {contradiction}", None
    if report.provider_message_id and message.provider_message_id is None:
        message.provider_message_id = report.provider_message_id
        _adopt(plan, receipt.message_id, report.provider_message_id)
    kind = messages.classify_report(report.status)
    target = messages.status_for_report(kind)
    if target is None:
        return _no_move(receipt, report, kind)
    if not messages.can_move(message.status, target):
        return Outcome.STALE, f"{report.status!r} after {message.status}", None
    # The move carries the adopted provider id itself, so no message is the
    # target of two UPDATEs in one statement (PostgreSQL applies only one).
    plan.adoptions.pop(receipt.message_id, None)
    plan.moves[receipt.message_id] = _Move(
        receipt.message_id,
        messages.RANK[target],
        target.value,
        report.status,
        report.description,
        message.provider_message_id,
    )
    message.status = target
    return Outcome.APPLIED, f"provider reported {report.status!r}", target


def _adopt(plan: _Plan, message_id: uuid.UUID, provider_message_id: str) -> None:
    """Record the provider's id on the message: in its move if the batch already
    moves it (one UPDATE per message per statement: PostgreSQL applies only one)."""
    move = plan.moves.get(message_id)
    if move is None:
        plan.adoptions[message_id] = provider_message_id
    else:
        plan.moves[message_id] = move._replace(provider_message_id=provider_message_id)


def _no_move(receipt: Receipt, report: Report, kind: messages.ReportKind) -> Decision:
    if kind is messages.ReportKind.UNKNOWN:
        log.warning(
            "callback_unknown_status",
            message_id=str(receipt.message_id),
            provider_status=report.status,
        )
        return Outcome.UNKNOWN_STATUS, f"unknown status {report.status!r}", None
    return Outcome.INTERIM, f"interim status {report.status!r}", None


async def apply_receipts(
    session: AsyncSession, receipts: list[Receipt], *, deadline_seconds: float | None = None
) -> list[Outcome]:
    """Apply a batch in the caller's transaction; one outcome per receipt, in order.

    With ``deadline_seconds``, no statement waits longer than that for a lock or
    to finish (PostgreSQL; SQLite's busy_timeout covers the write lock).
    """
    sql: _SQLite | _PostgreSQL
    sql, driver = await _begin(session, deadline_seconds)
    snapshots = await sql.snapshots(driver, {r.message_id for r in receipts})
    # Read after the locks: a concurrent batch holding one of these messages (the
    # replayer's) has committed by now, so its receipts count as duplicates here.
    seen = await sql.known_dedupe_keys(driver, {r.dedupe_key for r in receipts})
    plan = _Plan(now=_utcnow())
    for receipt in receipts:
        if receipt.dedupe_key in seen:
            plan.outcomes.append(_repeated(seen[receipt.dedupe_key]))
            continue
        report = parse_report(receipt.body)
        snapshot = snapshots.get(receipt.message_id)
        before = snapshot.status if snapshot else None
        outcome, detail, moved_to = _decide(plan, receipt, report, snapshot)
        seen[receipt.dedupe_key] = outcome.value
        plan.outcomes.append(outcome)
        plan.receipts.append(_receipt_row(receipt, outcome))
        if snapshot is not None:
            plan.events.append(_event_row(receipt, report, before, moved_to, detail))
    await sql.write(driver, plan)
    return plan.outcomes


def _repeated(first_outcome: str) -> Outcome:
    """A body received before: refused again if it was refused (the sender learns the
    same thing twice), otherwise a duplicate that changes nothing."""
    return _REFUSED.get(first_outcome, Outcome.DUPLICATE)


REPORT_FIELDS = ("message_id", "contact", "status", "description")


def _known_fields(report: Report) -> dict[str, Any]:
    """The event keeps the report's documented fields (strings, bounded); anything
    else the provider sent stays in the raw receipt."""
    return {key: report.payload[key] for key in REPORT_FIELDS if key in report.payload}


def _receipt_row(receipt: Receipt, outcome: Outcome) -> _ReceiptRow:
    return _ReceiptRow(
        receipt.message_id,
        receipt.dedupe_key,
        storable_text(receipt.body),
        receipt.remote_addr,
        outcome.value,
        _aware(receipt.received_at),
    )


def _event_row(
    receipt: Receipt,
    report: Report | None,
    before: messages.Status | None,
    moved_to: messages.Status | None,
    detail: str | None,
) -> _EventRow:
    payload = _known_fields(report) if report else {"raw": storable_text(receipt.body[:1000])}
    return _EventRow(
        receipt.message_id,
        before.value if before else None,
        moved_to.value if moved_to else None,
        detail,
        json.dumps(payload),
        _aware(receipt.received_at),
    )


# --- the statements, per database ---------------------------------------------
#
# A batch is a handful of set-based statements sent straight to the driver of
# the session's connection, inside the transaction SQLAlchemy opened and will
# commit or roll back. Through SQLAlchemy the same batch cost several times
# more: per-row bind processing, and on SQLite three or four trips to the
# driver's thread per statement where the driver needs one. Values are passed
# in the forms the models' column types store (Uuid, UTCDateTime, JSON); tests
# read the rows back through the ORM to keep the two in step.


async def _begin(
    session: AsyncSession, deadline_seconds: float | None
) -> tuple[_SQLite | _PostgreSQL, Any]:
    """The statements for the session's database, and its driver connection in an
    open transaction."""
    connection = await session.connection()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:  # through SQLAlchemy, so that its driver adapter opens the transaction
        await connection.exec_driver_sql(_PostgreSQL.BEGIN, (_timeout_ms(deadline_seconds),))
    # (On SQLite, Database.write() has already begun it: BEGIN IMMEDIATE.)
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if not (driver.is_in_transaction() if postgresql else driver.in_transaction):
        # Statements outside a transaction would each commit on their own.
        raise RuntimeError("apply_receipts needs a session in a write transaction")
    return (_POSTGRESQL if postgresql else _SQLITE), driver


def _timeout_ms(deadline_seconds: float | None) -> str:
    return str(int(deadline_seconds * 1000)) if deadline_seconds else "0"  # 0: no limit


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:  # the rule of db.UTCDateTime
        raise ValueError("naive datetime: the tracker stores aware UTC timestamps only")
    return value


def _sqlite_time(value: dt.datetime) -> str:
    """UTCDateTime's text on SQLite: naive UTC, always with microseconds."""
    return _aware(value).astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _snapshot(row: Any) -> _Snapshot:
    return _Snapshot(messages.Status(row[1]), row[2], row[3])


def _json_dumps(value: Any) -> str:
    # Raw UTF-8, not \u escapes: no surrogate pairs for SQLite's JSON reader.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _SQLite:
    """One statement per table, the whole batch in one JSON parameter (json_each).

    The driver releases the GIL around each step of a statement and must take
    it back from the event loop's thread after every one; executemany steps once
    per row, so a batch would hand the GIL back and forth hundreds of times.
    Ids are stored as 32 hex digits (SQLAlchemy's Uuid on SQLite). Needs SQLite
    3.33 (UPDATE ... FROM) with JSON1, as every supported Python build has.
    """

    SNAPSHOTS = (
        "SELECT id, status, contact, provider_message_id FROM messages"
        " WHERE id IN (SELECT value FROM json_each(?))"
    )
    KNOWN = (
        "SELECT dedupe_key, outcome FROM callback_receipts"
        " WHERE dedupe_key IN (SELECT value FROM json_each(?))"
    )
    # Each JSON row [a, b, ...] is read back with json_extract(value, '$[n]').
    # coalesce() rather than "AND provider_message_id IS NULL": with that term
    # the planner walks every message without a provider id (all queued ones).
    ADOPT = """
        UPDATE messages SET provider_message_id = coalesce(messages.provider_message_id, a.pmid)
        FROM (
            SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS pmid
            FROM json_each(?)
        ) AS a
        WHERE messages.id = a.id
    """
    # The rank guard repeats the decision made from the snapshot: never backwards.
    MOVE = """
        UPDATE messages SET status = m.status, rank = m.rank,
            provider_status = m.provider_status, provider_description = m.description,
            provider_message_id = coalesce(messages.provider_message_id, m.pmid),
            lease_until = NULL, final_at = ?, updated_at = ?
        FROM (
            SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS rank,
                json_extract(value, '$[2]') AS status,
                json_extract(value, '$[3]') AS provider_status,
                json_extract(value, '$[4]') AS description, json_extract(value, '$[5]') AS pmid
            FROM json_each(?)
        ) AS m
        WHERE messages.id = m.id AND messages.rank < m.rank
    """
    RECEIPTS = """
        INSERT INTO callback_receipts (message_id, dedupe_key, body, remote_addr, outcome,
                                       received_at, applied_at)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]'), json_extract(value, '$[3]'),
            json_extract(value, '$[4]'), json_extract(value, '$[5]'), ?
        FROM json_each(?)
        WHERE true  -- SQLite's parser needs a WHERE before ON CONFLICT here
        ON CONFLICT DO NOTHING
    """
    EVENTS = """
        INSERT INTO message_events (message_id, from_status, to_status, source, detail,
                                    payload, created_at)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
            json_extract(value, '$[2]'), 'callback', json_extract(value, '$[3]'),
            json_extract(value, '$[4]'), json_extract(value, '$[5]')
        FROM json_each(?)
    """

    async def snapshots(self, driver: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, _Snapshot]:
        by_hex = {i.hex: i for i in ids}
        rows = await driver.execute_fetchall(self.SNAPSHOTS, (_json_dumps(list(by_hex)),))
        return {by_hex[row[0]]: _snapshot(row) for row in rows}

    async def known_dedupe_keys(self, driver: Any, keys: set[str]) -> dict[str, str]:
        """Receipts already stored: dedupe key -> the outcome recorded for it."""
        rows = await driver.execute_fetchall(self.KNOWN, (_json_dumps(list(keys)),))
        return {row[0]: row[1] for row in rows}

    async def write(self, driver: Any, plan: _Plan) -> None:
        now = _sqlite_time(plan.now)
        run = driver.execute_fetchall  # one trip to the driver's thread per statement
        if plan.adoptions:
            adoptions = [[i.hex, pmid] for i, pmid in plan.adoptions.items()]
            await run(self.ADOPT, (_json_dumps(adoptions),))
        if plan.moves:
            moves = [[m.message_id.hex, *m[1:]] for m in plan.moves.values()]
            await run(self.MOVE, (now, now, _json_dumps(moves)))
        if plan.receipts:
            receipts = [
                [r.message_id.hex, *r[1:5], _sqlite_time(r.received_at)] for r in plan.receipts
            ]
            await run(self.RECEIPTS, (now, _json_dumps(receipts)))
        if plan.events:
            events = [[e.message_id.hex, *e[1:5], _sqlite_time(e.created_at)] for e in plan.events]
            await run(self.EVENTS, (_json_dumps(events),))


class _PostgreSQL:
    """A server round trip per statement, so the writes are one statement (CTEs
    over unnest() of array parameters) whatever the batch size."""

    # Per transaction (SET LOCAL): the deadline, and custom plans, because a
    # generic plan cached while a table was small (a seq scan) would be kept
    # until the next ANALYZE and make every batch slower than the last.
    BEGIN = (
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true),"
        " set_config('plan_cache_mode', 'force_custom_plan', true)"
    )
    # FOR UPDATE in id order: concurrent batches cannot deadlock, and the
    # snapshot stays true until commit, so decisions made from it hold.
    SNAPSHOTS = (
        "SELECT id, status, contact, provider_message_id FROM messages"
        " WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
    )
    KNOWN = "SELECT dedupe_key, outcome FROM callback_receipts WHERE dedupe_key = ANY($1::text[])"
    WRITE = """
        WITH adopted AS (
            UPDATE messages SET provider_message_id = a.pmid
            FROM unnest($1::uuid[], $2::text[]) AS a (id, pmid)
            WHERE messages.id = a.id AND messages.provider_message_id IS NULL
        ), moved AS (
            UPDATE messages SET status = m.status, rank = m.rank,
                provider_status = m.provider_status, provider_description = m.description,
                provider_message_id = coalesce(messages.provider_message_id, m.pmid),
                lease_until = NULL, final_at = $9, updated_at = $9
            FROM unnest($3::uuid[], $4::smallint[], $5::text[], $6::text[], $7::text[],
                        $8::text[]) AS m (id, rank, status, provider_status, description, pmid)
            WHERE messages.id = m.id AND messages.rank < m.rank
        ), receipts AS (
            INSERT INTO callback_receipts (message_id, dedupe_key, body, remote_addr, outcome,
                                           received_at, applied_at)
            SELECT r.*, $9 FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[],
                                       $14::text[], $15::timestamptz[]) AS r
            ON CONFLICT DO NOTHING
        )
        INSERT INTO message_events (message_id, from_status, to_status, source, detail,
                                    payload, created_at)
        SELECT e.id, e.from_status, e.to_status, 'callback', e.detail, e.payload::json, e.at
        FROM unnest($16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[],
                    $21::timestamptz[]) AS e (id, from_status, to_status, detail, payload, at)
    """

    async def snapshots(self, driver: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, _Snapshot]:
        rows = await driver.fetch(self.SNAPSHOTS, list(ids))
        return {uuid.UUID(int=row[0].int): _snapshot(row) for row in rows}

    async def known_dedupe_keys(self, driver: Any, keys: set[str]) -> dict[str, str]:
        """Receipts already stored: dedupe key -> the outcome recorded for it."""
        return {row[0]: row[1] for row in await driver.fetch(self.KNOWN, list(keys))}

    async def write(self, driver: Any, plan: _Plan) -> None:
        await driver.execute(
            self.WRITE,
            list(plan.adoptions),
            list(plan.adoptions.values()),
            *_columns(list(plan.moves.values()), len(_Move._fields)),
            plan.now,
            *_columns(plan.receipts, len(_ReceiptRow._fields)),
            *_columns(plan.events, len(_EventRow._fields)),
        )


def _columns(rows: list[Any], width: int) -> list[list[Any]]:
    """Rows to one list per column: the array parameters of an unnest()."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


_SQLITE = _SQLite()
_POSTGRESQL = _PostgreSQL()
