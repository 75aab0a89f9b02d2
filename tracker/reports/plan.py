"""Deciding a batch of delivery reports from the stored state of its messages.

Pure code: ``decide`` plans a batch of receipts (read by ``reading``) from what
the database holds for them, and ``statements`` runs the plan. A receipt
already stored is a duplicate and changes nothing; every other receipt is
stored raw, with its outcome, next to the status change it caused. Moves only
go forward (the rank), and the store repeats that guard in SQL. A report
claiming a provider message id that another message holds is a mismatch. One
capability URL cannot store without bound: past a cap of receipts per message,
only a report that moves the status is stored (a final report is never lost);
the others are answered ``ignored``. A pseudonymised message (its contact '')
cannot be compared by number; what a report about it stores (raw body, event,
description) has its numbers replaced by ``conceal``, so no number comes back.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tracker import clock, logs
from tracker.domain import status
from tracker.reports import reading

Status = status.Status  # fields and options named ``status`` shadow the module

log = logs.get_logger(__name__)
# Receipts stored per message (TRACKER_CALLBACK_REPORTS_PER_MESSAGE's default): past
# it, only a report that moves the status is stored; the rest are answered "ignored".
REPORTS_PER_MESSAGE = 50
Conceal = Callable[[str], str]  # a text with every number replaced (privacy.scrub.concealer)


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # moved the message's status
    INTERIM = "interim"  # a known non-final status: recorded, no move
    UNKNOWN_STATUS = "unknown_status"  # a word we do not know: recorded, no move
    STALE = "stale"  # final, but the message is already as far or further
    DUPLICATE = "duplicate"  # this exact body was received before
    MISMATCH = "mismatch"  # contradicts the stored message: recorded, refused
    MALFORMED = "malformed"  # not a report at all: recorded, refused
    UNKNOWN_MESSAGE = "unknown_message"  # no such message (e.g. restored database)
    IGNORED = "ignored"  # past the message's cap and moves nothing: counted, not stored


HTTP_STATUS = {Outcome.MISMATCH: 409, Outcome.MALFORMED: 400, Outcome.UNKNOWN_MESSAGE: 404}
_REFUSED = {outcome.value: outcome for outcome in HTTP_STATUS}  # as stored in receipts


@dataclass
class Snapshot:
    """What the batch knows of a message, kept current as the batch applies."""

    status: Status
    contact: str
    provider_message_id: str | None


@dataclass
class Stored:
    """What the database holds for a batch, read under its write lock; ``plan``
    keeps it current as the batch goes."""

    snapshots: dict[uuid.UUID, Snapshot] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # dedupe key -> its outcome
    owners: dict[str, uuid.UUID] = field(default_factory=dict)  # provider id -> message
    receipts: dict[uuid.UUID, int] = field(default_factory=dict)  # per message, to the cap


def provider_ids(receipts: list[reading.Receipt]) -> list[str]:
    """The provider message ids the batch's reports claim (for ``Stored.owners``)."""
    claimed = {r.report.provider_message_id for r in receipts if r.report is not None}
    return [pmid for pmid in claimed if pmid]


def _contradiction(
    report: reading.Report, message: Snapshot, owner: uuid.UUID | None, message_id: uuid.UUID
) -> str | None:
    # A pseudonymised message's contact is '': the capability URL vouches for the report.
    reported = report.contact
    if reported is not None and message.contact and reported.lstrip("+") != message.contact:
        return "contact differs from the message's"
    stored, reported = message.provider_message_id, report.provider_message_id
    if stored and reported and stored != reported:
        return "provider message id differs from the message's"
    if owner is not None and owner != message_id:  # uq_messages_provider_message_id
        return "provider message id belongs to another message"
    return None


class Move(NamedTuple):
    message_id: uuid.UUID
    rank: int
    status: str
    provider_status: str
    description: str | None
    provider_message_id: str | None


class ReceiptRow(NamedTuple):
    message_id: uuid.UUID
    dedupe_key: str
    body: str
    remote_addr: str | None
    outcome: str
    received_at: dt.datetime


class EventRow(NamedTuple):
    message_id: uuid.UUID
    from_status: str | None
    to_status: str | None
    detail: str | None
    payload: str  # JSON text
    created_at: dt.datetime


class Note(NamedTuple):
    """What a report tells about a message it does not move: the provider's id, and
    (while the message is not final) the provider's latest status words."""

    provider_message_id: str | None
    provider_status: str | None
    description: str | None


@dataclass
class Plan:
    """What a batch will write, decided from the snapshots."""

    now: dt.datetime
    outcomes: list[Outcome] = field(default_factory=list)
    moves: dict[uuid.UUID, Move] = field(default_factory=dict)  # the last move wins
    notes: dict[uuid.UUID, Note] = field(default_factory=dict)  # for messages not moved
    receipts: list[ReceiptRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)


Decision = tuple[Outcome, str | None, Status | None]
_IGNORED: Decision = (Outcome.IGNORED, None, None)


def _decide_one(
    plan: Plan, stored: Stored, receipt: reading.Receipt, message: Snapshot | None, *, capped: bool
) -> Decision:
    """(outcome, detail, new status) for one receipt; updates ``stored`` and the plan.
    Past the message's cap (``capped``) only a report that moves the status counts."""
    report = receipt.report
    refusal: Decision
    if report is None:
        refusal = Outcome.MALFORMED, "not a delivery report", None
    elif message is None:
        refusal = Outcome.UNKNOWN_MESSAGE, None, None
    elif contradiction := _contradiction(
        report, message, stored.owners.get(report.provider_message_id or ""), receipt.message_id
    ):
        refusal = Outcome.MISMATCH, f"refused: {contradiction}", None
    else:
        return _judge(plan, stored, receipt, report, message, capped=capped)
    return _IGNORED if capped else refusal


def _judge(
    plan: Plan,
    stored: Stored,
    receipt: reading.Receipt,
    report: reading.Report,
    message: Snapshot,
    *,
    capped: bool,
) -> Decision:
    """The decision for a report that does not contradict its message."""
    kind = status.classify_report(report.status)
    target = status.status_for_report(kind)
    if capped and (target is None or not status.can_move(message.status, target)):
        return _IGNORED
    if report.provider_message_id and message.provider_message_id is None:
        message.provider_message_id = report.provider_message_id
        stored.owners[report.provider_message_id] = receipt.message_id
        _note(plan, receipt.message_id, message, status_words=None)
    if target is None:
        if not status.is_final(message.status):  # a final status keeps its own words
            _note(plan, receipt.message_id, message, status_words=report)
        return _no_move(receipt, report, kind)
    if not status.can_move(message.status, target):
        return Outcome.STALE, f"{report.status!r} after {message.status}", None
    # The move carries the adopted provider id itself, so no message is the
    # target of two UPDATEs in one statement (PostgreSQL applies only one).
    plan.notes.pop(receipt.message_id, None)
    plan.moves[receipt.message_id] = Move(
        receipt.message_id,
        status.RANK[target],
        target.value,
        report.status,
        report.description,
        message.provider_message_id,
    )
    message.status = target
    return Outcome.APPLIED, f"provider reported {report.status!r}", target


def _note(
    plan: Plan, message_id: uuid.UUID, message: Snapshot, *, status_words: reading.Report | None
) -> None:
    """Record what a report tells without moving the message: in its move if the
    batch already moves it (one UPDATE per message per statement: PostgreSQL
    applies only one), else in a note that keeps earlier status words unless it
    brings its own."""
    move = plan.moves.get(message_id)
    if move is not None:
        plan.moves[message_id] = move._replace(provider_message_id=message.provider_message_id)
        return
    earlier = plan.notes.get(message_id)
    if status_words is not None:
        words: tuple[str | None, str | None] = (status_words.status, status_words.description)
    else:
        words = (earlier.provider_status, earlier.description) if earlier else (None, None)
    plan.notes[message_id] = Note(message.provider_message_id, *words)


def _no_move(receipt: reading.Receipt, report: reading.Report, kind: status.ReportKind) -> Decision:
    if kind is status.ReportKind.UNKNOWN:
        log.warning(
            "callback_unknown_status",
            message_id=str(receipt.message_id),
            provider_status=report.status,
        )
        return Outcome.UNKNOWN_STATUS, f"unknown status {report.status!r}", None
    return Outcome.INTERIM, f"interim status {report.status!r}", None


REFUSED_BY_DATABASE = "refused: the database refused this report"


def decide(
    receipts: list[reading.Receipt],
    stored: Stored,
    *,
    cap: int = REPORTS_PER_MESSAGE,
    refuse: Collection[str] = (),
    conceal: Conceal | None = None,
) -> Plan:
    """Decide a batch: one outcome per receipt, in order, and the rows to write.

    ``stored`` is updated as the batch goes, so a batch holding two reports for
    one message decides the second from the first. A message holding ``cap``
    receipts stores no more of them, except one that moves its status (a final
    report is never lost). ``refuse`` holds the dedupe keys of receipts the
    database refused on their own: they are recorded as mismatches and change
    nothing. ``conceal`` rewrites what is stored about pseudonymised messages.
    """
    result = Plan(now=clock.utcnow())
    for receipt in receipts:
        if receipt.dedupe_key in stored.seen:
            result.outcomes.append(_repeated(stored.seen[receipt.dedupe_key]))
            continue
        snapshot = stored.snapshots.get(receipt.message_id)
        before = snapshot.status if snapshot else None
        count = stored.receipts.get(receipt.message_id, 0)
        if receipt.dedupe_key in refuse:
            decision: Decision = (Outcome.MISMATCH, REFUSED_BY_DATABASE, None)
        else:
            decision = _decide_one(result, stored, receipt, snapshot, capped=count >= cap)
        outcome = decision[0]
        result.outcomes.append(outcome)
        if outcome is Outcome.IGNORED:
            continue
        stored.seen[receipt.dedupe_key] = outcome.value
        stored.receipts[receipt.message_id] = count + 1
        _add_rows(result, receipt, snapshot, decision, before=before, conceal=conceal)
    if conceal is not None:
        _conceal_words(result, stored, conceal)
    return result


def _add_rows(
    result: Plan,
    receipt: reading.Receipt,
    snapshot: Snapshot | None,
    decision: Decision,
    *,
    before: Status | None,
    conceal: Conceal | None,
) -> None:
    """The receipt's row and, for a known message, its event (numbers concealed
    for a pseudonymised message)."""
    outcome, detail, moved_to = decision
    hide = conceal if snapshot is not None and not snapshot.contact else None
    result.receipts.append(_receipt_row(receipt, outcome, hide))
    if snapshot is not None:
        event = _event_row(receipt, receipt.report, before, moved_to, detail, conceal=hide)
        result.events.append(event)


def _conceal_words(result: Plan, stored: Stored, conceal: Conceal) -> None:
    """The provider's words about pseudonymised messages, their numbers replaced."""
    hidden = {i for i, snapshot in stored.snapshots.items() if not snapshot.contact}
    for message_id in hidden:
        if (move := result.moves.get(message_id)) is not None:
            words = move.description and conceal(move.description)
            result.moves[message_id] = move._replace(description=words)
        if (note := result.notes.get(message_id)) is not None:
            result.notes[message_id] = note._replace(
                description=note.description and conceal(note.description)
            )


def _repeated(first_outcome: str) -> Outcome:
    """A body received before: refused again if it was refused (the sender learns the
    same thing twice), otherwise a duplicate that changes nothing."""
    return _REFUSED.get(first_outcome, Outcome.DUPLICATE)


REPORT_FIELDS = ("message_id", "contact", "status", "description")


def _known_fields(report: reading.Report) -> dict[str, Any]:
    """The event keeps the report's documented fields (strings, bounded); anything
    else the provider sent stays in the raw receipt."""
    return {key: report.payload[key] for key in REPORT_FIELDS if key in report.payload}


def _receipt_row(
    receipt: reading.Receipt, outcome: Outcome, conceal: Conceal | None = None
) -> ReceiptRow:
    body, dedupe = reading.storable_text(receipt.body), receipt.dedupe_key
    if conceal is not None:  # the key of a body that held the number would give it back
        body = conceal(body)
        arrival = f"{receipt.message_id}\n{body}\n{receipt.received_at.isoformat()}"
        dedupe = hashlib.sha256(arrival.encode()).hexdigest()
    return ReceiptRow(
        receipt.message_id,
        dedupe,
        body,
        receipt.remote_addr,
        outcome.value,
        clock.require_aware(receipt.received_at),
    )


def _event_row(
    receipt: reading.Receipt,
    report: reading.Report | None,
    before: Status | None,
    moved_to: Status | None,
    detail: str | None,
    *,
    conceal: Conceal | None = None,
) -> EventRow:
    payload = (
        _known_fields(report) if report else {"raw": reading.storable_text(receipt.body[:1000])}
    )
    text = json.dumps(payload)
    return EventRow(
        receipt.message_id,
        before.value if before else None,
        moved_to.value if moved_to else None,
        detail,
        text if conceal is None else conceal(text),
        clock.require_aware(receipt.received_at),
    )
