"""The webhook retry schedule: its settings, the jitter, the end, and Retry-After."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SettingsFactory
from tracker import errors, settings
from tracker.webhooks import schedule

NOW = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)
DAY = 86_400.0

schedules = st.lists(st.integers(0, settings.WEBHOOK_RETRY_DELAY_MAX_SECONDS), min_size=1).map(
    lambda delays: tuple(sorted(delays))
)


def test_the_webhook_settings_have_the_documented_defaults(make_settings: SettingsFactory) -> None:
    """About 3 days of retries, disabled after 5 days of failure, 15 s per attempt."""
    loaded = make_settings()
    assert loaded.webhook_retry_schedule == (
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        50400,
        72000,
        86400,
    )
    assert 3 * DAY < sum(loaded.webhook_retry_schedule) < 4 * DAY
    assert loaded.webhook_disable_after == 432_000
    assert loaded.webhook_timeout_seconds == 15


def test_the_webhook_settings_are_read_from_the_environment(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comma-separated seconds, spaces allowed; the other two are plain numbers."""
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE", " 0, 1 ,1,60")
    monkeypatch.setenv("TRACKER_WEBHOOK_DISABLE_AFTER", "3600")
    monkeypatch.setenv("TRACKER_WEBHOOK_TIMEOUT_SECONDS", "2.5")
    loaded = make_settings()
    assert loaded.webhook_retry_schedule == (0, 1, 1, 60)
    assert loaded.webhook_disable_after == 3600
    assert loaded.webhook_timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "at least one delay"),
        ("0,,5", "whole seconds separated by commas"),
        ("0,5.5", "whole seconds separated by commas"),
        ("0,-5", "whole seconds separated by commas"),
        ("0,+5", "whole seconds separated by commas"),
        ("0,²", "whole seconds separated by commas"),
        ("0,5,1", "must not decrease"),
        ("0,2592001", "0 to 2592000 seconds"),
        ("9" * 5000, "0 to 2592000 seconds"),
    ],
)
def test_a_bad_retry_schedule_names_its_variable(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, raw: str, problem: str
) -> None:
    """Every kind of bad schedule stops the start with the variable and what is wrong."""
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE", raw)
    with pytest.raises(
        errors.ConfigurationError, match=f"TRACKER_WEBHOOK_RETRY_SCHEDULE: .*{problem}"
    ):
        make_settings()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TRACKER_WEBHOOK_DISABLE_AFTER", "0"),
        ("TRACKER_WEBHOOK_DISABLE_AFTER", "five days"),
        ("TRACKER_WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("TRACKER_WEBHOOK_TIMEOUT_SECONDS", "301"),
    ],
)
def test_a_bad_webhook_time_names_its_variable(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    """The failure window and the timeout are checked at start too."""
    monkeypatch.setenv(variable, raw)
    with pytest.raises(errors.ConfigurationError, match=variable):
        make_settings()


def test_a_schedule_given_as_numbers_is_checked_the_same(make_settings: SettingsFactory) -> None:
    """Settings built in code (tests, tools) obey the same rules as the environment."""
    assert make_settings(webhook_retry_schedule=[0, 5]).webhook_retry_schedule == (0, 5)
    with pytest.raises(errors.ConfigurationError, match="must not decrease"):
        make_settings(webhook_retry_schedule=(5, 0))
    with pytest.raises(errors.ConfigurationError, match="whole seconds"):
        make_settings(webhook_retry_schedule=(0, 1.5))


@given(schedules)
def test_a_written_schedule_reads_back(delays: tuple[int, ...]) -> None:
    """Any valid schedule, written as the variable, parses to itself."""
    assert settings.parse_retry_schedule(",".join(map(str, delays))) == delays


def test_the_first_attempt_of_the_default_is_immediate() -> None:
    """A 0 is not jittered into a wait: a new event goes out at once."""
    rng = random.Random(1)
    assert schedule.next_attempt_delay(settings.WEBHOOK_RETRY_SCHEDULE, 0, rng) == 0


def test_after_the_last_entry_the_delivery_has_failed() -> None:
    """Ten entries, ten attempts: asking for an eleventh gets None."""
    rng = random.Random(1)
    default = settings.WEBHOOK_RETRY_SCHEDULE
    assert schedule.next_attempt_delay(default, 9, rng) is not None
    assert schedule.next_attempt_delay(default, 10, rng) is None
    assert schedule.next_attempt_delay(default, 10, rng, retry_after=60) is None


def test_a_negative_attempt_is_a_mistake() -> None:
    """Attempts count from 0; a negative one is refused rather than read from the end."""
    with pytest.raises(ValueError, match="from 0"):
        schedule.next_attempt_delay((0, 5), -1, random.Random(1))


def test_the_jitter_spreads_one_delay_over_both_sides() -> None:
    """Deliveries failed together do not all come back in the same second."""
    rng = random.Random(7)
    delays = [schedule.next_attempt_delay((300,), 0, rng) or 0.0 for _ in range(200)]
    assert min(delays) < 290
    assert max(delays) > 310


@given(schedules, st.data(), st.randoms(use_true_random=False))
def test_a_delay_stays_within_ten_percent_of_its_entry(
    delays: tuple[int, ...], data: st.DataObject, rng: random.Random
) -> None:
    """Jitter is at most ±10 %, never negative, and an entry of 0 stays 0."""
    attempt = data.draw(st.integers(0, len(delays) - 1))
    delay = schedule.next_attempt_delay(delays, attempt, rng)
    assert delay is not None
    assert 0.9 * delays[attempt] <= delay <= 1.1 * delays[attempt]
    if delays[attempt] == 0:
        assert delay == 0


@given(
    st.integers(0, 100_000),
    st.floats(allow_nan=True, allow_infinity=True) | st.none(),
    st.randoms(use_true_random=False),
)
def test_retry_after_wins_only_when_longer_and_never_past_a_day(
    entry: int, retry_after: float | None, rng: random.Random
) -> None:
    """The longer of the jittered entry and the clamped Retry-After; at most a day more."""
    delay = schedule.next_attempt_delay((entry,), 0, rng, retry_after=retry_after)
    assert delay is not None
    assert 0.9 * entry <= delay <= max(1.1 * entry, DAY)
    if retry_after is not None and not math.isnan(retry_after):
        assert delay >= min(retry_after, DAY)


@pytest.mark.parametrize("code", [HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE])
def test_retry_after_is_read_on_429_and_503(code: HTTPStatus) -> None:
    """Delta-seconds and HTTP-dates both count."""
    later = email.utils.format_datetime(NOW + dt.timedelta(minutes=10), usegmt=True)
    assert schedule.honoured_retry_after(code, "120", NOW) == 120
    assert schedule.honoured_retry_after(code, later, NOW) == 600


@pytest.mark.parametrize(
    "code",
    [HTTPStatus.OK, HTTPStatus.GONE, HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.BAD_GATEWAY],
)
def test_retry_after_is_ignored_on_other_answers(code: HTTPStatus) -> None:
    """Only 429 and 503 may stretch the schedule."""
    assert schedule.honoured_retry_after(code, "120", NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("0", 0),
        (" 0030 ", 30),
        ("999999999999999999999999", DAY),
        ("172800", DAY),
        ("Wed, 02 Dec 2026 01:00:00 GMT", 0),
    ],
)
def test_retry_after_is_clamped_and_garbage_is_none(
    value: str | None, seconds: float | None
) -> None:
    """A day at most, nothing below 0, and an unreadable header leaves the schedule alone."""
    assert schedule.honoured_retry_after(HTTPStatus.SERVICE_UNAVAILABLE, value, NOW) == seconds


@given(st.text())
def test_no_retry_after_header_raises(value: str) -> None:
    """Whatever a receiver sends, the answer is None or 0 s..1 day."""
    seconds = schedule.honoured_retry_after(HTTPStatus.TOO_MANY_REQUESTS, value, NOW)
    assert seconds is None or 0 <= seconds <= DAY
