"""Statuses and the way they move, dispatch outcomes, priorities, report words.

Pure code with no I/O, so the API, the dispatcher, the callback receiver and
the SQL layer all share one definition of which way a status may move.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

# --- statuses ---------------------------------------------------------------


class Status(enum.StrEnum):
    """Where a message is in its life; stored as text in the database."""

    QUEUED = "queued"
    SENDING = "sending"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Status only moves forward, and SQL enforces it with
# `UPDATE ... WHERE rank < :new_rank`, so duplicate, older and out-of-order
# reports change nothing. A `Delivered` report that arrives after `failed`
# wins (late delivery is real), so delivered outranks failed; the reverse
# never happens. Rejected, expired and cancelled are decided by us or by the
# provider's refusal and are never overridden by a later report.
RANK: Mapping[Status, int] = MappingProxyType(
    {
        Status.QUEUED: 0,
        Status.SENDING: 1,
        Status.PENDING: 2,
        Status.FAILED: 3,
        Status.DELIVERED: 4,
        Status.REJECTED: 5,
        Status.EXPIRED: 5,
        Status.CANCELLED: 5,
    }
)

FINAL: frozenset[Status] = frozenset(
    {Status.DELIVERED, Status.FAILED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED}
)


class Outcome(enum.StrEnum):
    """What one dispatch attempt came to (stored on its event; ``/v1/stats`` counts it)."""

    ACCEPTED = "accepted"  # 200 with a provider message id
    REJECTED = "rejected"  # 400: the message itself is refused
    RATE_LIMITED = "rate_limited"  # 429: not taken
    ACCOUNT_UNAVAILABLE = "account_unavailable"  # credentials or URL refused: not taken
    PROVIDER_ERROR = "provider_error"  # a 5xx or another answer: it may have it
    NO_ANSWER = "no_answer"  # timeout, lost connection, a 200 without an id: it may have it


@dataclass(frozen=True)
class Acceptance:
    """KIMISMS accepted a message (HTTP 200): what the outbox records of it."""

    provider_message_id: str
    provider_name: str | None
    status: str | None
    description: str | None


# Calls refused before the provider took the message: they do not count as attempts.
UNSENT_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.RATE_LIMITED, Outcome.ACCOUNT_UNAVAILABLE})
# Failed calls that are neither the message's fault nor a 429 (``/v1/stats`` errors).
ERROR_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.ACCOUNT_UNAVAILABLE, Outcome.PROVIDER_ERROR, Outcome.NO_ANSWER}
)


# Statuses whose row is still the dispatcher's job: waiting for its turn, or in
# flight (a lease that may expire). The claim, the expiry sweep and the queue
# depth all start from these.
DUE_STATUSES = (Status.QUEUED.value, Status.SENDING.value)


def can_move(current: Status, new: Status) -> bool:
    """Whether a message at ``current`` may take ``new``: only strictly forward."""
    return RANK[new] > RANK[current]


def is_final(status: Status) -> bool:
    """Whether no further sending happens (a late delivery may still upgrade failed)."""
    return status in FINAL


def ended(target: Status, now: dt.datetime) -> dict[str, object]:
    """The column values of a message that ends at ``target`` now: no more turns, no lease."""
    return {
        "status": target.value,
        "rank": RANK[target],
        "next_attempt_at": None,
        "lease_until": None,
        "final_at": now,
        "updated_at": now,
    }


# --- priorities -------------------------------------------------------------


class Priority(enum.StrEnum):
    """How urgently a caller wants a message sent under the shared rate limit."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Lower is dispatched first; an integer sorts in SQL where the text would not.
PRIORITY_ORDER: Mapping[Priority, int] = MappingProxyType(
    {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
)


# --- provider delivery reports ----------------------------------------------


class ReportKind(enum.StrEnum):
    """What a provider status word means for us; the raw word is kept separately."""

    DELIVERED = "delivered"
    FAILED = "failed"
    INTERIM = "interim"  # a progress word: not final, changes nothing
    UNKNOWN = "unknown"  # a word we have never seen: record it, change nothing


# Keys are lower case with spaces, underscores and dashes removed. The provider
# documents only Pending and Delivered, so the rest is the industry's usual
# vocabulary; anything else is UNKNOWN rather than guessed.
_REPORT_WORDS: Mapping[str, ReportKind] = MappingProxyType(
    {
        **dict.fromkeys(("delivered", "deliveredtoterminal", "success"), ReportKind.DELIVERED),
        **dict.fromkeys(
            (
                "failed",
                "rejected",
                "undelivered",
                "undeliverable",
                "expired",
                "blacklisted",
                "error",
                "deliveryfailed",
                "cancelled",
            ),
            ReportKind.FAILED,
        ),
        **dict.fromkeys(
            (
                "pending",
                "sent",
                "submitted",
                "buffered",
                "queued",
                "accepted",
                "initiated",
                "enroute",
                "processing",
            ),
            ReportKind.INTERIM,
        ),
    }
)
_REPORT_NOISE = re.compile(r"[\s_\-]")


def classify_report(raw_status: str) -> ReportKind:
    """Read a provider status word regardless of case, spacing or separators."""
    key = _REPORT_NOISE.sub("", raw_status).casefold()
    return _REPORT_WORDS.get(key, ReportKind.UNKNOWN)


def status_for_report(kind: ReportKind) -> Status | None:
    """The status a report moves a message to; None when it must not move it."""
    if kind is ReportKind.DELIVERED:
        return Status.DELIVERED
    if kind is ReportKind.FAILED:
        return Status.FAILED
    return None
