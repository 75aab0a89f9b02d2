"""What the sandbox remembers: every API call, every accepted send, every callback.

This is the evidence the contract tests (and the tracker's own tests) read
through ``/sandbox/*``: how many sends went out per Idempotency-Key, and how
each receiver answered each callback. It lives in memory; the sandbox's
messages are fake, so bodies are kept for inspection (they are never logged).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from tracker.sandbox import units
from tracker.sandbox.faults import Fault, Report


def isoformat(epoch_seconds: float) -> str:
    """Timestamps in answers: ISO 8601, UTC, with the offset spelled out."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


@dataclass
class CallbackAttempt:
    """One callback POST and how the receiver answered (or why it did not)."""

    report: Report
    sent_at: float
    http_status: int | None = None
    latency_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.http_status == HTTPStatus.OK  # the documented "answer 200"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.report.status,
            "description": self.report.description,
            "sent_at": isoformat(self.sent_at),
            "http_status": self.http_status,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "ok": self.ok,
        }


@dataclass
class SentMessage:
    """An accepted send: the sandbox's equivalent of an SMS handed to the network."""

    message_id: str
    client_id: str
    idempotency_key: str | None
    sender_name: str
    contact: str
    message: str
    callback_url: str | None
    accepted_at: float
    final: Report
    faults: frozenset[Fault]
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    callback_dropped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "idempotency_key": self.idempotency_key,
            "sender_name": self.sender_name,
            "contact": self.contact,
            "message": self.message,
            "message_length": len(self.message),
            "parts": units.parts(self.message),
            "callback_url": self.callback_url,
            "accepted_at": isoformat(self.accepted_at),
            "final_status": self.final.status,
            "faults": sorted(fault.value for fault in self.faults),
            "callback_dropped": self.callback_dropped,
            "callbacks": [attempt.to_json() for attempt in self.callbacks],
        }


@dataclass(frozen=True)
class ApiCall:
    """One call to the provider API and the status it was answered with."""

    at: float
    method: str
    path: str
    status_code: int
    idempotency_key: str | None = None
    replay: bool = False
    body_mismatch: bool = False
    message_id: str | None = None
    # True when the sliding window refused the call (the client outpaced the
    # limit), as opposed to an injected 429 burst.
    over_limit: bool = False
    answer: dict[str, Any] | str | None = None  # the body sent back (tokens masked)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": isoformat(self.at),
            "over_limit": self.over_limit,
            "answer": self.answer,
            "method": self.method,
            "path": self.path,
            "status_code": self.status_code,
            "idempotency_key": self.idempotency_key,
            "replay": self.replay,
            "body_mismatch": self.body_mismatch,
            "message_id": self.message_id,
        }


@dataclass
class Records:
    """All the evidence, in arrival order."""

    calls: list[ApiCall] = field(default_factory=list)
    messages: dict[str, SentMessage] = field(default_factory=dict)

    def clear(self) -> None:
        self.calls.clear()
        self.messages.clear()

    def stats(self) -> dict[str, Any]:
        """Counts that prove the invariants: one send per key, callbacks answered 200."""
        statuses = Counter(call.status_code for call in self.calls)
        per_key = Counter(m.idempotency_key for m in self.messages.values() if m.idempotency_key)
        attempts = [a for m in self.messages.values() for a in m.callbacks]
        return {
            "calls": len(self.calls),
            "calls_by_status": {str(code): n for code, n in sorted(statuses.items())},
            "token_calls": sum(call.path == "/api/generate-token" for call in self.calls),
            "send_calls": sum(call.path == "/api/send-sms" for call in self.calls),
            "replays": sum(call.replay for call in self.calls),
            "throttled": statuses[429],
            "throttled_by_limit": sum(call.over_limit for call in self.calls),
            "server_errors": statuses[500],
            "accepted_sends": len(self.messages),
            "sends_without_key": sum(m.idempotency_key is None for m in self.messages.values()),
            "distinct_idempotency_keys": len(per_key),
            "max_sends_per_key": max(per_key.values(), default=0),
            "callbacks_ok": sum(a.ok for a in attempts),
            "callbacks_failed": sum(not a.ok for a in attempts),
            "callbacks_dropped": sum(m.callback_dropped for m in self.messages.values()),
        }
