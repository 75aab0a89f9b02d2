"""One running sandbox: its config, clock, randomness and every piece of state.

The provider API and the inspection API both work on this object, so a reset
clears everything in one place and tests can reach the state in-process.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tracker.sandbox.callbacks import Courier
from tracker.sandbox.config import SandboxConfig
from tracker.sandbox.faults import Fault
from tracker.sandbox.idempotency import IdempotencyCache
from tracker.sandbox.ratelimit import RateLimiter
from tracker.sandbox.records import Records

Clock = Callable[[], float]


@dataclass
class Sandbox:
    """The state shared by the provider routes and the inspection routes."""

    config: SandboxConfig
    clock: Clock
    rng: random.Random
    limiter: RateLimiter
    cache: IdempotencyCache
    courier: Courier
    records: Records = field(default_factory=Records)
    fired: set[tuple[Fault, str]] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        config: SandboxConfig,
        *,
        clock: Clock,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> Sandbox:
        """Wire the parts from the config; one seeded generator drives every draw."""
        rng = random.Random(config.seed)
        limiter = RateLimiter(
            config.rate_limit_per_minute,
            burst_rate=config.rate_429_burst_rate,
            burst_length=config.burst_length,
            rng=rng,
        )
        courier = Courier(
            timeout_seconds=config.callback_timeout_seconds,
            clock=clock,
            transport=callback_transport,
        )
        cache = IdempotencyCache(config.idempotency_ttl_seconds)
        return cls(config, clock, rng, limiter, cache, courier)

    def new_message_id(self) -> str:
        """A UUID4 from the sandbox's generator, so a seed reproduces the ids too."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def first_time(self, fault: Fault, key: str | None) -> bool:
        """Whether a once-per-key fault fires now; without a key it always does."""
        if key is None:
            return True
        if (fault, key) in self.fired:
            return False
        self.fired.add((fault, key))
        return True

    def stats(self) -> dict[str, Any]:
        return {**self.records.stats(), "callbacks_pending": self.courier.pending}

    async def reset(self) -> None:
        """Forget every call, send, key, window and scheduled callback."""
        await self.courier.cancel_pending()
        self.records.clear()
        self.cache.clear()
        self.limiter.reset()
        self.fired.clear()
