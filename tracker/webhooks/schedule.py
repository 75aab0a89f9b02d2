"""When a webhook delivery's next attempt is due: the schedule, its jitter, Retry-After.

The schedule (``TRACKER_WEBHOOK_RETRY_SCHEDULE``, parsed and checked by
``settings.parse_retry_schedule``) holds one delay per attempt, each counted from the
previous attempt (the first from the event): the default tries at once, then after 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, about 3 days in all. After its last
entry the delivery is ``failed``.

Delays are jittered (±10 %) so that the deliveries an outage failed together do not
all come back in the same second; a delay of 0 stays 0. A receiver that answers 429
or 503 with a ``Retry-After`` longer than the jittered delay gets its wait, up to a day.

Pure: no I/O; the random source and the time are passed in.
"""

from __future__ import annotations

import datetime as dt
import math
from http import HTTPStatus
from typing import TYPE_CHECKING

from tracker import clock
from tracker.domain import retry_after

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

JITTER_FRACTION = 0.1
RETRY_AFTER_MAX_SECONDS = 86_400.0  # a receiver cannot park its deliveries for longer
RETRY_AFTER_STATUSES = frozenset({HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE})


def next_attempt_delay(
    schedule: Sequence[int],
    attempt: int,
    rng: random.Random,
    *,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until attempt ``attempt`` (0 for the first, so: the attempts made so far).

    None when the schedule has no such attempt: the delivery has failed. ``retry_after``
    (see ``honoured_retry_after``) wins when it is longer, clamped to a day.
    """
    if attempt < 0:
        raise ValueError("attempt counts from 0")
    if attempt >= len(schedule):
        return None
    delay = jittered(schedule[attempt], rng)
    if retry_after is not None and not math.isnan(retry_after):
        delay = max(delay, min(max(retry_after, 0.0), RETRY_AFTER_MAX_SECONDS))
    return delay


def jittered(seconds: float, rng: random.Random) -> float:
    """``seconds`` moved at random by up to ±10 %; never negative, and 0 stays 0."""
    if seconds <= 0:
        return 0.0
    return max(0.0, seconds * rng.uniform(1 - JITTER_FRACTION, 1 + JITTER_FRACTION))


def honoured_retry_after(status_code: int, value: str | None, now: dt.datetime) -> float | None:
    """A receiver's Retry-After in seconds, on 429 and 503 only; None otherwise.

    Delta-seconds or an HTTP-date, clamped to 0 s..1 day; an unreadable value is
    None (the schedule applies) and never raises.
    """
    if status_code not in RETRY_AFTER_STATUSES:
        return None
    return retry_after.seconds(
        value, clock.require_aware(now), minimum=0.0, maximum=RETRY_AFTER_MAX_SECONDS
    )
