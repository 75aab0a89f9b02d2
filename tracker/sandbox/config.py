"""The sandbox's knobs: credentials, limits, timings and fault rates.

One frozen model, passed explicitly to ``create_sandbox_app``; nothing is read
from the environment here (the CLI builds it from its options). Every rate is
a probability in 0..1 and defaults to 0, so a default sandbox behaves like the
documented provider and only the magic numbers in ``faults`` inject faults.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]

THIRTY_DAYS_SECONDS = 30 * 24 * 3600
ONE_DAY_SECONDS = 24 * 3600


def _random_jwt_secret() -> str:
    """A fresh signing key per process, so tokens never outlive the sandbox."""
    return secrets.token_urlsafe(32)


class SandboxConfig(BaseModel):
    """Everything the sandbox can be told; defaults follow ``kimisms-api.md``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Credentials and tokens.
    client_id: str = "sandbox-client"
    client_secret: str = Field(default="sandbox-secret", repr=False)
    # HS256 wants a key of at least 32 bytes (PyJWT warns on shorter ones).
    jwt_secret: str = Field(default_factory=_random_jwt_secret, min_length=32, repr=False)
    token_lifetime_seconds: Annotated[int, Field(ge=1)] = THIRTY_DAYS_SECONDS
    sender_names: tuple[str, ...] = Field(default=("KIMISMS",), min_length=1)

    # Limits and caches. A rate limit of 0 disables the window (bursts still apply).
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 60
    idempotency_ttl_seconds: Seconds = ONE_DAY_SECONDS

    # Delivery reports.
    callback_delay_seconds: Seconds = 1.0
    failure_ratio: Rate = 0.1
    callback_timeout_seconds: Annotated[float, Field(gt=0.0)] = 5.0
    late_callback_seconds: Seconds = 30.0

    # Faults drawn at random (per call or per accepted message).
    latency_seconds: Seconds = 0.0
    error_500_rate: Rate = 0.0
    accept_then_hang_rate: Rate = 0.0
    hang_seconds: Seconds = 30.0
    rate_429_burst_rate: Rate = 0.0
    burst_length: Annotated[int, Field(ge=1)] = 3
    duplicate_callback_rate: Rate = 0.0
    stale_callback_rate: Rate = 0.0
    early_callback_rate: Rate = 0.0
    dropped_callback_rate: Rate = 0.0

    # Timing of the deterministic "slow response" magic number.
    slow_response_seconds: Seconds = 2.0

    # A seed makes message ids and every random draw reproducible.
    seed: int | None = None
