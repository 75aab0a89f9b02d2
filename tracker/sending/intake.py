"""From a well-formed send request to a queued message row.

``schemas`` checks shapes and types; this module applies the rules that need
the settings, the client or the clock: a Kenyan mobile recipient, a body
within the allowed parts, a sender the client may use (its own list within
``TRACKER_SENDER_NAMES``; with none given, its default), times that still lie
ahead, a small metadata object. Every problem of a message is reported at once, keyed by
field; a batch prefixes them with the item's place (``messages[3].to``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from tracker import errors, models
from tracker.clients import records
from tracker.domain import recipients, segments, status
from tracker.sending import schemas
from tracker.settings import Settings

MAX_METADATA_DEPTH = 32  # levels of nested objects and lists
YIELD_EVERY = 500  # messages checked between two turns of the event loop
Problems = dict[str, list[str]]


@dataclass
class Intake:
    """The rules for one API request: who sends, under which settings, at what time."""

    settings: Settings
    client: str
    now: dt.datetime
    # The client's settings (the key's principal.policy); None: every sender allowed.
    policy: records.Client | None = None
    # A batch often repeats recipients; each distinct number is checked once
    # (a refused one is remembered by the reason it was refused).
    _recipients: dict[str, recipients.Recipient | str] = field(default_factory=dict)
    # The client's senders and default, worked out once per request, not per message.
    _senders: tuple[str, ...] = field(init=False)
    _default_sender: str | None = field(init=False)

    def __post_init__(self) -> None:
        self._senders, self._default_sender = allowed_senders(self.settings, self.policy)

    def row(self, request: schemas.SendRequest) -> dict[str, Any]:
        """The ``messages`` row for a request (column names), or ValidationFailed."""
        problems: Problems = {}
        recipient = self._recipient(request.to, problems)
        parts = _segmentation(request.message, self.settings.max_segments, problems)
        sender = self._sender(request.sender_name, problems)
        _check_text("reference", request.reference, problems)
        _check_metadata(request.metadata, self.settings.max_metadata_bytes, problems)
        send_at, expires_at = self._times(request, problems)
        if problems or recipient is None or parts is None:
            raise errors.ValidationFailed(problems)
        return {
            "id": models.new_id(),
            "client": self.client,
            "sender_name": sender,
            "contact": recipient.msisdn,
            "network": recipient.network,
            "body": request.message,
            "segments": parts.segments,
            "encoding": parts.encoding.value,
            "priority": status.PRIORITY_ORDER[request.priority],
            "reference": request.reference,
            "metadata": request.metadata,
            "status": status.Status.QUEUED.value,
            "rank": status.RANK[status.Status.QUEUED],
            "attempts": 0,
            "next_attempt_at": send_at or self.now,
            "send_at": send_at,
            "expires_at": expires_at,
            "created_at": self.now,
            "updated_at": self.now,
        }

    async def rows(self, batch: schemas.Batch) -> list[dict[str, Any]]:
        """Rows for a whole batch, or one ValidationFailed naming every bad item and
        field: the batch's shape errors and the rules' problems together.

        Checking 10,000 messages takes a few hundred milliseconds of CPU; the
        event loop gets a turn every ``YIELD_EVERY`` messages, so callbacks and
        other requests are not held up behind a big batch.
        """
        rows: list[dict[str, Any]] = []
        problems: Problems = {}
        for index, request in enumerate(batch.messages):
            if index and not index % YIELD_EVERY:
                await asyncio.sleep(0)
            if index in batch.problems:
                problems.update(batch.problems[index])
            if request is None:
                continue
            try:
                rows.append(self.row(request))
            except errors.ValidationFailed as exc:
                skip = batch.unchecked.get(index, frozenset())
                for name, found in exc.errors.items():
                    if name not in skip:
                        problems[f"messages[{index}].{name}"] = found
        if problems:
            raise errors.ValidationFailed(problems)
        return rows

    def _recipient(self, raw: str, problems: Problems) -> recipients.Recipient | None:
        known = self._recipients.get(raw)
        if known is None:
            try:
                known = recipients.normalise_recipient(raw)
            except errors.InvalidRecipient as exc:
                known = str(exc)
            self._recipients[raw] = known
        if isinstance(known, str):
            problems["to"] = [known]
            return None
        return known

    def _sender(self, name: str | None, problems: Problems) -> str:
        allowed = self._senders
        if name is None:
            if self._default_sender is None:
                problems["sender_name"] = [f"client {self.client!r} has no allowed sender name"]
                return ""
            return self._default_sender
        if name not in allowed:
            names = ", ".join(allowed) or "none"
            problems["sender_name"] = [
                f"{errors.echo(name)} is not an allowed sender name (allowed: {names})"
            ]
        return name

    def _times(
        self, request: schemas.SendRequest, problems: Problems
    ) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(send_at, expires_at) in UTC; validity counts from send_at when there is one."""
        send_at, expires_at = request.send_at, request.expires_at  # UTC already (schemas)
        if send_at is not None and send_at <= self.now:
            problems["send_at"] = ["must be in the future"]
        if expires_at is not None and expires_at <= self.now:
            problems["expires_at"] = ["must be in the future"]
        elif expires_at is not None and send_at is not None and expires_at <= send_at:
            problems["expires_at"] = ["must be after send_at"]
        if request.valid_for is not None and expires_at is not None:
            problems["valid_for"] = ["give valid_for or expires_at, not both"]
        seconds = request.valid_for or self.settings.default_validity_seconds
        if expires_at is None and seconds is not None:
            try:
                expires_at = (send_at or self.now) + dt.timedelta(seconds=seconds)
            except OverflowError:
                problems["valid_for"] = ["runs past the year 9999"]
        return send_at, expires_at


def allowed_senders(
    settings: Settings, policy: records.Client | None
) -> tuple[tuple[str, ...], str | None]:
    """(the sender names a client may use, its default: None when it may use none).

    A client's own list is kept within ``TRACKER_SENDER_NAMES`` (a name dropped
    from the setting is no longer allowed to anyone). Its default is its
    ``default_sender`` if that is still allowed, else the first allowed name.
    """
    everyone = tuple(settings.sender_names)
    if policy is None or policy.sender_names is None:
        allowed = everyone
    else:
        allowed = tuple(name for name in policy.sender_names if name in everyone)
    chosen = policy.default_sender if policy is not None else None
    if chosen is not None and chosen in allowed:
        return allowed, chosen
    return allowed, allowed[0] if allowed else None  # the setting's first, without a list


def _segmentation(text: str, max_segments: int, problems: Problems) -> segments.Segmentation | None:
    if not _check_text("message", text, problems):
        return None
    if not text.strip():
        problems["message"] = ["must not be blank"]
        return None
    try:
        return segments.check_length(text, max_segments)
    except errors.MessageTooLong as exc:
        problems["message"] = [str(exc)]
        return None


def _check_text(name: str, text: str | None, problems: Problems) -> bool:
    """Text the databases can store: PostgreSQL refuses NUL characters.

    (Lone surrogates never get this far: the schema refuses them.)
    """
    if text is not None and "\x00" in text:
        problems[name] = ["must not contain NUL characters"]
        return False
    return True


def _check_metadata(metadata: dict[str, Any] | None, limit: int, problems: Problems) -> None:
    if metadata is None:
        return
    if _depth(metadata) > MAX_METADATA_DEPTH:
        problems["metadata"] = [f"must be nested at most {MAX_METADATA_DEPTH} levels deep"]
        return
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode())
    except UnicodeEncodeError:
        problems["metadata"] = ["must be valid Unicode text (it has a lone surrogate)"]
        return
    except ValueError:  # 1e400 reads as infinity, which JSON cannot hold
        problems["metadata"] = ["must not contain NaN or Infinity"]
        return
    if size > limit:
        problems["metadata"] = [f"must be at most {limit} bytes as JSON (this is {size})"]


def _depth(value: Any) -> int:
    """How deeply objects and lists nest, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if level <= MAX_METADATA_DEPTH:  # deeper than that is already too deep
            stack.extend((child, level + 1) for child in item)
    return deepest
