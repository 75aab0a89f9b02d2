"""The provider's request limit: a sliding 60-second window plus 429 bursts.

The documentation says only "60 requests per minute"; the sandbox takes the
strictest reading the tracker must survive: a *sliding* window that counts
every API call (generate-token too, and calls that end in 4xx or 500), shared
by the whole account. Calls answered 429 are not counted, so a client that
backs off as told gets through. A burst (a fault) answers the next few calls
429 with ``Retry-After: 1`` whatever the window says.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
BURST_RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Throttled:
    """A refusal, and how long the caller should wait (whole seconds, at least 1)."""

    retry_after_seconds: int
    burst: bool = False  # an injected fault, not the window's verdict


@dataclass(frozen=True)
class Slot:
    """An admitted call's place in the window, returned if it ends up answered 429."""

    at: float


class RateLimiter:
    """Decides, per call, whether the account is over its limit."""

    def __init__(
        self, per_minute: int, *, burst_rate: float, burst_length: int, rng: random.Random
    ) -> None:
        self._per_minute = per_minute
        self._burst_rate = burst_rate
        self._burst_length = burst_length
        self._rng = rng
        self._window: deque[float] = deque()
        self._burst_remaining = 0

    def admit(self, now: float) -> Slot | Throttled:
        """Take a slot in the window, or say how long to wait."""
        if self._burst_remaining > 0:
            self._burst_remaining -= 1
            return Throttled(BURST_RETRY_AFTER_SECONDS, burst=True)
        if self._burst_rate > 0 and self._rng.random() < self._burst_rate:
            return self.start_burst()
        while self._window and self._window[0] <= now - WINDOW_SECONDS:
            self._window.popleft()
        if self._per_minute and len(self._window) >= self._per_minute:
            wait = self._window[0] + WINDOW_SECONDS - now
            return Throttled(max(1, math.ceil(wait)))
        self._window.append(now)
        return Slot(now)

    def release(self, slot: Slot) -> None:
        """Give back a slot whose call was answered 429 after all (a fault)."""
        try:
            self._window.remove(slot.at)
        except ValueError:
            return

    def start_burst(self) -> Throttled:
        """Refuse this call and the next ``burst_length - 1`` calls."""
        self._burst_remaining = self._burst_length - 1
        return Throttled(BURST_RETRY_AFTER_SECONDS, burst=True)

    def reset(self) -> None:
        """Forget every call (the inspection API's reset)."""
        self._window.clear()
        self._burst_remaining = 0
