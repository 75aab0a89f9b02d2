"""Pacing calls to KIMISMS under its 60-per-minute limit.

The provider does not say whether its window is fixed or sliding, so the pacer
satisfies the stricter one: calls are spaced evenly (``60 / limit`` seconds
apart, a token bucket of depth one) *and* no more than ``limit`` calls start
in any window of 60 s plus a margin for network jitter. Every call counts,
token requests too. A 429 pauses every caller until its Retry-After passes.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

WINDOW_SECONDS = 60.0
# Arrival times at the provider jitter by a few milliseconds; this margin keeps
# the provider's own count of any 60 s window at or under the limit.
JITTER_MARGIN_SECONDS = 0.5

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    def __init__(
        self,
        per_minute: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.interval = WINDOW_SECONDS / per_minute
        self._clock = clock
        self._sleep = sleep
        self._recent: collections.deque[float] = collections.deque(maxlen=per_minute)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _earliest_start(self) -> float:
        earliest = self._paused_until
        if self._recent:
            earliest = max(earliest, self._recent[-1] + self.interval)
        if len(self._recent) == self.per_minute:
            earliest = max(earliest, self._recent[0] + WINDOW_SECONDS + JITTER_MARGIN_SECONDS)
        return earliest

    async def acquire(self) -> None:
        """Wait for this call's turn, then count it as started."""
        async with self._lock:  # turns are handed out in arrival order
            while (wait := self._earliest_start() - self._clock()) > 0:
                await self._sleep(wait)
            self._recent.append(self._clock())

    async def wait_ready(self, ahead: float = 0.0) -> None:
        """Wait until a call could start within ``ahead`` seconds, without taking
        the turn (a caller prepares its call meanwhile, then ``acquire()``s)."""
        while (wait := self._earliest_start() - ahead - self._clock()) > 0:
            await self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every call for ``seconds`` (the provider said 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())
