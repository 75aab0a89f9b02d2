"""Reading a receipt: the delivery report a callback's raw body holds.

Pure code: ``Receipt`` is one callback as it arrived (its dedupe key, and its
body read once as a ``Report``); ``parse_report`` reads a body, refusing what no
column could store; ``storable_text`` is the raw body as it is stored. Deciding
what a batch of receipts does is ``plan``'s.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tracker import errors

MAX_STATUS_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 255


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

    @functools.cached_property
    def report(self) -> Report | None:
        """The body read as a report (once: the batch's reads need its provider id)."""
        return parse_report(self.body)

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


def parse_report(body: str) -> Report | None:
    """The report in a callback body, or None if it is not one.

    Malformed bodies are recorded and refused with 400 like any other (the
    provider gets a clear answer; we keep the evidence): that includes strings
    holding unstorable text, and nesting too deep to parse.
    """
    try:
        data = json.loads(body, parse_constant=errors.refuse_json_constant)  # strict: no NaN
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
