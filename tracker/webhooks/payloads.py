"""The body of a webhook delivery, from the row the outbox trigger wrote.

A message event's ``data`` is the message as ``GET /v1/messages/{id}`` shows it
(``sending.schemas.message_out``), from the columns the trigger captured at the change,
plus ``previous_status`` and ``sequence``. The trigger's JSON differs by database:
SQLite gives times as naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``) and ids as 32 hex,
PostgreSQL ISO text with an offset and dashed uuids; both are read back to Python values
so the body reads the same on either. A delivery without a message (``webhook.test``)
sends its stored ``data`` as is.

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from tracker import clock
from tracker.sending import schemas
from tracker.webhooks import events

if TYPE_CHECKING:
    from collections.abc import Mapping

# The snapshot's time columns (migration 0004's SNAPSHOT_COLUMNS), stored as text.
TIME_COLUMNS = ("created_at", "send_at", "expires_at", "submitted_at", "accepted_at", "final_at")


def message_data(snapshot: Mapping[str, Any], sequence: int | None) -> dict[str, Any]:
    """A message event's ``data``: the message then, ``previous_status`` and ``sequence``."""
    row = dict(snapshot)
    row["id"] = uuid.UUID(str(row["id"]))
    for column in TIME_COLUMNS:
        row[column] = _time(row.get(column))
    data = schemas.message_out(row)
    data["previous_status"] = row.get("previous_status")
    data["sequence"] = sequence
    return data


def _time(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return clock.restore_utc(value)
    return clock.restore_utc(str(value))


def body(
    event_type: str,
    occurred_at: dt.datetime,
    data: Mapping[str, Any],
    *,
    message_id: uuid.UUID | None,
    sequence: int | None,
) -> bytes:
    """The signed body of one delivery (``events.body``), the same on every attempt."""
    payload = message_data(data, sequence) if message_id is not None else data
    return events.body(events.EventType(event_type), occurred_at, payload)
