"""Reading a ``Retry-After`` header: delta-seconds or any HTTP-date form, clamped.

Both the provider's answers (``dispatch.kimisms``) and the webhook receivers'
(``webhooks.schedule``) carry one; neither may raise past its caller nor park
work for longer than its own clamp.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

_DELTA_SECONDS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit also takes "²"


def seconds(value: str | None, now: dt.datetime, *, minimum: float, maximum: float) -> float | None:
    """The header as seconds from ``now``, clamped to ``minimum..maximum``; None when
    absent or unreadable (the caller's default applies)."""
    if value is None:
        return None
    value = value.strip()
    found: float | None
    if _DELTA_SECONDS.fullmatch(value):
        digits = value.lstrip("0") or "0"
        # A long run of digits is past the clamp anyway, and float() of it could overflow.
        found = float(digits) if len(digits) <= len(str(int(maximum))) else maximum
    else:
        found = _seconds_until(value, now)
    if found is None:
        return None
    return min(max(found, minimum), maximum)


def _seconds_until(http_date: str, now: dt.datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
        if when.tzinfo is None:  # "-0000" and asctime dates: HTTP dates are in UTC
            when = when.replace(tzinfo=dt.UTC)
        return (when - now).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):  # garbage: the default
        return None
