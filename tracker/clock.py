"""Time in the tracker: timezone-aware UTC only.

One place for the clock and for the rule that ``db.UTCDateTime`` applies to
every stored timestamp, so pure code (``reports.plan``) applies the same rule
without importing the database layer.
"""

from __future__ import annotations

import datetime as dt
from typing import overload

NAIVE_REFUSED = "naive datetime: the tracker stores aware UTC timestamps only"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the only kind the tracker uses)."""
    return dt.datetime.now(dt.UTC)


def require_aware(value: dt.datetime) -> dt.datetime:
    """``value`` as UTC; a naive one is refused (it would be read as local time)."""
    if value.tzinfo is None:
        raise ValueError(NAIVE_REFUSED)
    return value.astimezone(dt.UTC)


@overload
def to_utc(value: dt.datetime) -> dt.datetime: ...
@overload
def to_utc(value: dt.datetime | None) -> dt.datetime | None: ...
def to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """An aware time from a caller moved to UTC (None stays None); ValueError if out of range.

    A time near year 1 or 9999 with an offset has no UTC form: that is the caller's
    mistake, so it is a ValueError (a 400), not an OverflowError (a 500)."""
    if value is None:
        return None
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


@overload
def restore_utc(value: dt.datetime | str) -> dt.datetime: ...
@overload
def restore_utc(value: dt.datetime | str | None) -> dt.datetime | None: ...
def restore_utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """A stored timestamp read back: SQLite returns naive UTC (or text, from an
    aggregate, where the column type is lost), so tag it UTC."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
