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
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import logs, messages, models

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


def parse_report(body: str) -> Report | None:
    """The report in a callback body, or None if it is not one."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            return None
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
    except ValueError:  # JSONDecodeError and our own field errors
        return None


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


def _insert_ignoring_duplicates(session: AsyncSession, table: Table) -> Any:
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    return dialect.insert(table).on_conflict_do_nothing()


async def _known_dedupe_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    rows = await session.scalars(
        select(models.CallbackReceipt.dedupe_key).where(models.CallbackReceipt.dedupe_key.in_(keys))
    )
    return set(rows)


async def _snapshots(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, _Snapshot]:
    """The messages' current state, locked for this transaction.

    SQLite: the write transaction already excludes every other writer.
    PostgreSQL: FOR UPDATE (in id order, so concurrent batches cannot deadlock)
    keeps the snapshot true until commit, so decisions made from it hold.
    """
    m = models.Message
    rows = await session.execute(
        select(m.id, m.status, m.contact, m.provider_message_id)
        .where(m.id.in_(ids))
        .order_by(m.id)
        .with_for_update()
    )
    return {
        row.id: _Snapshot(messages.Status(row.status), row.contact, row.provider_message_id)
        for row in rows
    }


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Core tables, not ORM entities: the ORM's bulk paths cost more per row here.
_TABLE = cast("Table", models.Message.__table__)
_RECEIPTS = cast("Table", models.CallbackReceipt.__table__)
_EVENTS = cast("Table", models.MessageEvent.__table__)
# One statement for every move in a batch (executemany). The rank guard repeats
# the decision made from the locked snapshot, so a move can never go backwards.
_MOVE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("m_id"), _TABLE.c.rank < bindparam("m_rank"))
    .values(
        status=bindparam("m_status"),
        rank=bindparam("m_rank"),
        provider_status=bindparam("m_provider_status"),
        provider_description=bindparam("m_description"),
        provider_message_id=func.coalesce(_TABLE.c.provider_message_id, bindparam("m_pmid")),
        lease_until=None,
        final_at=bindparam("m_now"),
        updated_at=bindparam("m_now"),
    )
)
_ADOPT = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("m_id"), _TABLE.c.provider_message_id.is_(None))
    .values(provider_message_id=bindparam("m_pmid"))
)


@dataclass
class _Plan:
    """What a batch will write, decided from the snapshots."""

    outcomes: list[Outcome] = field(default_factory=list)
    moves: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    adoptions: dict[uuid.UUID, str] = field(default_factory=dict)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


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
        plan.adoptions[receipt.message_id] = report.provider_message_id
        message.provider_message_id = report.provider_message_id
    kind = messages.classify_report(report.status)
    target = messages.status_for_report(kind)
    if target is None:
        return _no_move(receipt, report, kind)
    if not messages.can_move(message.status, target):
        return Outcome.STALE, f"{report.status!r} after {message.status}", None
    plan.moves[receipt.message_id] = {
        "m_id": receipt.message_id,
        "m_rank": messages.RANK[target],
        "m_status": target.value,
        "m_provider_status": report.status,
        "m_description": report.description,
        "m_pmid": report.provider_message_id,
        "m_now": _utcnow(),
    }
    message.status = target
    return Outcome.APPLIED, f"provider reported {report.status!r}", target


def _no_move(receipt: Receipt, report: Report, kind: messages.ReportKind) -> Decision:
    if kind is messages.ReportKind.UNKNOWN:
        log.warning(
            "callback_unknown_status",
            message_id=str(receipt.message_id),
            provider_status=report.status,
        )
        return Outcome.UNKNOWN_STATUS, f"unknown status {report.status!r}", None
    return Outcome.INTERIM, f"interim status {report.status!r}", None


async def apply_receipts(session: AsyncSession, receipts: list[Receipt]) -> list[Outcome]:
    """Apply a batch in the caller's transaction; one outcome per receipt, in order."""
    seen = await _known_dedupe_keys(session, [r.dedupe_key for r in receipts])
    snapshots = await _snapshots(session, {r.message_id for r in receipts})
    plan = _Plan()
    for receipt in receipts:
        if receipt.dedupe_key in seen:
            plan.outcomes.append(Outcome.DUPLICATE)
            continue
        seen.add(receipt.dedupe_key)
        report = parse_report(receipt.body)
        snapshot = snapshots.get(receipt.message_id)
        before = snapshot.status if snapshot else None
        outcome, detail, moved_to = _decide(plan, receipt, report, snapshot)
        plan.outcomes.append(outcome)
        plan.receipts.append(_receipt_row(receipt, outcome))
        if snapshot is not None:
            plan.events.append(_event_row(receipt, report, before, moved_to, detail))
    await _write(session, plan)
    return plan.outcomes


async def _write(session: AsyncSession, plan: _Plan) -> None:
    if plan.adoptions:
        rows = [{"m_id": k, "m_pmid": v} for k, v in plan.adoptions.items()]
        await session.execute(_ADOPT, rows)
    if plan.moves:
        await session.execute(_MOVE, list(plan.moves.values()))
    if plan.receipts:
        await session.execute(_insert_ignoring_duplicates(session, _RECEIPTS), plan.receipts)
    if plan.events:
        await session.execute(insert(_EVENTS), plan.events)


REPORT_FIELDS = ("message_id", "contact", "status", "description")


def _known_fields(report: Report) -> dict[str, Any]:
    """The event keeps the report's documented fields (strings, bounded); anything
    else the provider sent stays in the raw receipt."""
    return {key: report.payload[key] for key in REPORT_FIELDS if key in report.payload}


def _receipt_row(receipt: Receipt, outcome: Outcome) -> dict[str, Any]:
    return {
        "message_id": receipt.message_id,
        "dedupe_key": receipt.dedupe_key,
        "body": receipt.body,
        "remote_addr": receipt.remote_addr,
        "outcome": outcome.value,
        "received_at": receipt.received_at,
        "applied_at": _utcnow(),
    }


def _event_row(
    receipt: Receipt,
    report: Report | None,
    before: messages.Status | None,
    moved_to: messages.Status | None,
    detail: str | None,
) -> dict[str, Any]:
    return {
        "message_id": receipt.message_id,
        "from_status": before.value if before else None,
        "to_status": moved_to.value if moved_to else None,
        "source": "callback",
        "detail": detail,
        "payload": _known_fields(report) if report else {"raw": receipt.body[:1000]},
        "created_at": receipt.received_at,
    }
