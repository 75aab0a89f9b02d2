"""SandboxConfig: documented defaults, and bad values refused when the sandbox is built."""

from __future__ import annotations

import pydantic
import pytest

from tracker.sandbox import SandboxConfig


def test_the_defaults_follow_the_provider_documentation() -> None:
    """30-day tokens, 60/min, 24-hour keys, 5-second callbacks, and no random faults."""
    config = SandboxConfig()

    assert config.token_lifetime_seconds == 30 * 24 * 3600
    assert config.rate_limit_per_minute == 60
    assert config.idempotency_ttl_seconds == 24 * 3600
    assert config.callback_timeout_seconds == 5.0
    assert config.sender_names == ("KIMISMS",)
    assert config.error_500_rate == config.dropped_callback_rate == 0.0


def test_each_process_signs_with_its_own_key_and_never_shows_it() -> None:
    """The JWT key is random per config and kept out of repr, like the client secret."""
    first, second = SandboxConfig(), SandboxConfig()

    assert first.jwt_secret != second.jwt_secret
    assert first.jwt_secret not in repr(first)
    assert first.client_secret not in repr(first)


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_ratio": 1.5},
        {"error_500_rate": -0.1},
        {"callback_timeout_seconds": 0},
        {"rate_limit_per_minute": -1},
        {"jwt_secret": "short"},
        {"sender_names": ()},
        {"burst_length": 0},
        {"no_such_setting": 1},
    ],
)
def test_bad_values_are_refused(bad: dict[str, object]) -> None:
    """Rates outside 0..1, non-positive timeouts, short keys and typos fail loudly."""
    with pytest.raises(pydantic.ValidationError):
        SandboxConfig.model_validate(bad)


def test_the_config_is_frozen() -> None:
    """A running sandbox's settings cannot change under it."""
    config = SandboxConfig()

    with pytest.raises(pydantic.ValidationError):
        config.rate_limit_per_minute = 1  # type: ignore[misc]
