"""The bodies of the internal API: requests in, messages out (pydantic v2).

The models only describe shapes and types; the rules that need settings or
the clock (sender allow-list, parts, validity) live in ``intake``. Requests are
strict: a wrong type is an error, never coerced, and unknown fields are
refused. ``field_errors`` turns pydantic's errors into the DESIGN.md shape
``{"field": ["message"]}`` with short messages keyed like ``messages[3].to``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from tracker import clock, errors
from tracker.domain import segments, status

# The models have fields named ``status`` and ``segments``, which shadow the modules.
Status = status.Status
Priority = status.Priority
Encoding = segments.Encoding

MAX_REFERENCE_CHARS = 128
MAX_VALID_FOR_SECONDS = 366 * 86_400  # a year: beyond it a validity means nothing here
DATETIME_EXAMPLE = "2026-01-01T09:00:00+03:00"


def _date_time_text(value: Any) -> Any:
    """Date-times arrive as ISO 8601 strings; a number is ambiguous, so refused.

    Pydantic would read ``"1767254400"`` as Unix seconds (or milliseconds,
    depending on its size): a number in quotes is refused like a bare one.
    """
    if isinstance(value, dt.datetime) or (isinstance(value, str) and not _is_number(value)):
        return value
    raise PydanticCustomError("date_time_type", "must be an ISO 8601 date-time string")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _in_utc(value: dt.datetime) -> dt.datetime:
    """Stored in UTC; an offset that pushes the instant past year 1..9999 is refused."""
    try:
        return clock.to_utc(value)
    except ValueError:
        raise PydanticCustomError("date_time_range", "is out of range once in UTC") from None


# Lax only to parse the string; the BeforeValidator keeps numbers out.
Timestamp = Annotated[
    AwareDatetime, Field(strict=False), BeforeValidator(_date_time_text), AfterValidator(_in_utc)
]
PriorityName = Annotated[Priority, Field(strict=False)]


class SendRequest(BaseModel):
    """One message to send: ``POST /v1/messages``, and each item of a batch."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    to: str = Field(
        description="Kenyan mobile number: 0712345678, 712345678, +254712345678 or 254712345678",
        examples=["0712345678"],
    )
    message: str = Field(min_length=1, description="The text; its length decides the parts")
    sender_name: str | None = Field(
        default=None, description="A sender id on the allow-list; default: the first one"
    )
    priority: PriorityName = Priority.NORMAL
    reference: str | None = Field(
        default=None, max_length=MAX_REFERENCE_CHARS, description="The caller's own id"
    )
    valid_for: int | None = Field(
        default=None,
        gt=0,
        le=MAX_VALID_FOR_SECONDS,
        description="Seconds the message may wait to be sent, from send_at or now",
    )
    expires_at: Timestamp | None = Field(default=None, description="Not sent after this")
    send_at: Timestamp | None = Field(default=None, description="Not sent before this")
    metadata: dict[str, Any] | None = Field(
        default=None, description="A small JSON object, returned as given"
    )


class BatchRequest(BaseModel):
    """``POST /v1/messages/batch``: all accepted in one transaction, or none."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    messages: list[SendRequest] = Field(min_length=1)


class EventOut(BaseModel):
    """One entry of a message's history."""

    from_status: Status | None
    to_status: Status | None
    source: str
    detail: str | None
    payload: dict[str, Any] | None
    created_at: dt.datetime


class MessageOut(BaseModel):
    """A message as the API returns it."""

    id: uuid.UUID
    status: Status
    to: str | None = Field(
        description="The normalised number, e.g. 254712345678; null once pseudonymised"
    )
    to_pseudonym: str | None = Field(
        description="The number's keyed hash once pseudonymised (retention or erasure)"
    )
    network: str | None
    sender_name: str
    segments: int
    encoding: Encoding
    priority: Priority
    reference: str | None
    metadata: dict[str, Any] | None
    client: str = Field(description="The name of the API key that sent it")
    provider_message_id: str | None
    provider_status: str | None
    provider_description: str | None
    attempts: int
    error: str | None
    created_at: dt.datetime
    send_at: dt.datetime | None
    expires_at: dt.datetime | None
    submitted_at: dt.datetime | None
    accepted_at: dt.datetime | None
    final_at: dt.datetime | None
    redacted_at: dt.datetime | None = Field(description="When its body was removed")
    pseudonymised_at: dt.datetime | None = Field(description="When its number was replaced")


class MessageDetail(MessageOut):
    """``GET /v1/messages/{id}``: the message and its history, oldest first."""

    events: list[EventOut]
    body: str | None = Field(
        default=None,
        description="Only with ?include=body (audited): the text, null once redacted",
    )


class MessageQuery(BaseModel):
    """``GET /v1/messages/{id}`` options."""

    model_config = ConfigDict(extra="forbid")

    include: Literal["body"] | None = Field(
        default=None,
        description="body: show the text too (owning client's read keys, admins); audited",
    )


class BatchAccepted(BaseModel):
    """The answer to a batch: every message, in the order they were given."""

    count: int
    messages: list[MessageOut]


class ValidationErrors(BaseModel):
    """400: what is wrong, by field."""

    errors: dict[str, list[str]]


class ErrorDetail(BaseModel):
    """Every other error."""

    detail: str


# --- requests in -------------------------------------------------------------


def parse_send(data: dict[str, Any]) -> SendRequest:
    """The request in a JSON object, or ValidationFailed saying what is wrong."""
    try:
        return SendRequest.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(field_errors(exc)) from None


@dataclass(frozen=True)
class Batch:
    """A batch as far as its shapes go. An item that broke them has its errors in
    ``problems`` (keyed ``messages[3].to``) and, in ``messages``, a stand-in holding its
    well-formed fields (None if none can be had), so the rules can still check those:
    one answer names every bad item and field. ``unchecked`` lists, per such item, the
    fields the rules must not report on (broken, or filled in for the stand-in)."""

    messages: Sequence[SendRequest | None]
    problems: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    unchecked: dict[int, frozenset[str]] = field(default_factory=dict)


WHOLE_ITEM = ""  # an item that is not an object at all
# Valid values for required fields an item lacks or got wrong, so its stand-in exists.
STAND_IN_VALUES = {"to": "0712345678", "message": "-"}


def parse_batch(data: dict[str, Any], max_size: int) -> Batch:
    """The batch in a JSON object; its size is checked before any item is read.

    Errors outside the items (no list, an unknown top-level field) are raised at
    once; errors inside items are returned, for the rules to add theirs.
    """
    items = data.get("messages")
    if isinstance(items, list) and len(items) > max_size:
        raise errors.ValidationFailed(
            {"messages": [f"at most {max_size} messages per batch (got {len(items)})"]}
        )
    try:
        return Batch(BatchRequest.model_validate(data).messages)
    except ValidationError as exc:
        found = exc.errors(include_url=False, include_input=False)
        if not isinstance(items, list) or not all(_item_of(e["loc"]) is not None for e in found):
            raise errors.ValidationFailed(field_errors(exc)) from None
        return _partial_batch(items, found)


def _item_of(loc: tuple[int | str, ...]) -> int | None:
    """The index of the item an error is in (``("messages", 3, ...)``), if any."""
    inside = len(loc) > 1 and loc[0] == "messages" and isinstance(loc[1], int)
    return int(loc[1]) if inside else None


def _partial_batch(items: list[Any], found: list[ErrorDetails]) -> Batch:
    broken: dict[int, set[str]] = {}
    problems: dict[int, dict[str, list[str]]] = {}
    for error in found:
        loc = error["loc"]
        index = int(loc[1])
        path = errors.field_path(loc)
        problems.setdefault(index, {}).setdefault(path, []).append(describe(error))
        broken.setdefault(index, set()).add(str(loc[2]) if len(loc) > 2 else WHOLE_ITEM)  # noqa: PLR2004
    requests: list[SendRequest | None] = []
    unchecked: dict[int, frozenset[str]] = {}
    for index, item in enumerate(items):
        if index in broken:
            stand_in, unchecked[index] = _stand_in(item, broken[index])
            requests.append(stand_in)
        else:
            requests.append(SendRequest.model_validate(item))
    return Batch(requests, problems, unchecked)


def _stand_in(item: Any, broken: set[str]) -> tuple[SendRequest | None, frozenset[str]]:
    """The item's well-formed fields, with valid values where required ones broke."""
    if not isinstance(item, dict) or WHOLE_ITEM in broken:
        return None, frozenset()
    kept = {name: value for name, value in item.items() if name not in broken}
    filled = {name: value for name, value in STAND_IN_VALUES.items() if name not in kept}
    try:
        return SendRequest.model_validate(kept | filled), frozenset(broken | filled.keys())
    except ValidationError:  # fields that fail only together: the shape errors suffice
        return None, frozenset()


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """pydantic's errors as ``{"messages[3].to": ["must be a string"]}``."""
    found: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        found.setdefault(errors.field_path(error["loc"]), []).append(describe(error))
    return found


_MESSAGES = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text (it has a lone surrogate)",
    "int_type": "must be an integer",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a list",
    "timezone_aware": (
        f"must include a UTC offset, e.g. {DATETIME_EXAMPLE} or 2026-01-01T06:00:00Z"
    ),
    "datetime_parsing": f"must be an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}",
    "datetime_from_date_parsing": f"must be an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}",
}


# Messages that quote the constraint from the error's context.
_WITH_CONTEXT = {
    "enum": "must be one of {expected}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must hold at least {min_length} item(s)",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
}


def describe(error: Mapping[str, Any]) -> str:
    """A short message for one pydantic error, in the words the API uses."""
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in _WITH_CONTEXT:
        try:
            return _WITH_CONTEXT[kind].format_map(error.get("ctx") or {})
        except KeyError:  # a pydantic release without that context: its own words
            pass
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


# --- messages out ------------------------------------------------------------

_PRIORITY_NAMES = {order: priority.value for priority, order in status.PRIORITY_ORDER.items()}


def message_out(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A ``MessageOut`` from a message's column values (``metadata`` keyed by column).

    Plain dicts, not models: a batch answer holds thousands, and pydantic_core
    serialises dicts of datetimes and UUIDs just as well.
    """
    get = row.get
    return {
        "id": row["id"],
        "status": row["status"],
        "to": row["contact"] or None,  # '' once pseudonymised
        "to_pseudonym": get("contact_pseudonym"),
        "network": get("network"),
        "sender_name": row["sender_name"],
        "segments": row["segments"],
        "encoding": row["encoding"],
        "priority": _PRIORITY_NAMES[row["priority"]],
        "reference": get("reference"),
        "metadata": get("metadata"),
        "client": row["client"],
        "provider_message_id": get("provider_message_id"),
        "provider_status": get("provider_status"),
        "provider_description": get("provider_description"),
        "attempts": row["attempts"],
        "error": get("error"),
        "created_at": row["created_at"],
        "send_at": get("send_at"),
        "expires_at": get("expires_at"),
        "submitted_at": get("submitted_at"),
        "accepted_at": get("accepted_at"),
        "final_at": get("final_at"),
        "redacted_at": get("redacted_at"),
        "pseudonymised_at": get("pseudonymised_at"),
    }


def event_out(row: Mapping[Any, Any]) -> dict[str, Any]:
    """An ``EventOut`` from an event's column values."""
    return {
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "source": row["source"],
        "detail": row["detail"],
        "payload": row["payload"],
        "created_at": row["created_at"],
    }
