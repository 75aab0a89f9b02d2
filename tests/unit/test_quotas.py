"""The quota arithmetic without a database: window edges, Nairobi midnight, Retry-After."""

from __future__ import annotations

import datetime as dt

import pytest

from tracker.clients import quotas, records

Limit = quotas.Limit
NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)  # 15:00 in Nairobi


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def test_the_nairobi_day_starts_at_21_00_utc_the_evening_before() -> None:
    """Africa/Nairobi is UTC+3 all year: its midnight is 21:00 UTC."""
    assert quotas.day_start(NOW) == dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC)
    assert quotas.next_midnight(NOW) == dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


def test_the_last_second_of_a_nairobi_day_belongs_to_it_and_midnight_to_the_next() -> None:
    """23:59:59.999999 in Nairobi is still today; 00:00:00 there starts a new day."""
    midnight = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)
    last = midnight - dt.timedelta(microseconds=1)
    assert quotas.day_start(last) == midnight - dt.timedelta(days=1)
    assert quotas.next_midnight(last) == midnight
    assert quotas.day_start(midnight) == midnight
    assert quotas.next_midnight(midnight) == midnight + dt.timedelta(days=1)


def test_the_nairobi_day_is_the_same_for_any_offset_of_the_same_moment() -> None:
    """A moment given in another zone is the same moment: the same Nairobi day."""
    elsewhere = NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert quotas.day_start(elsewhere) == quotas.day_start(NOW)


def test_the_daily_cap_retries_after_the_next_nairobi_midnight_in_whole_seconds() -> None:
    """From 20:59:59.5 UTC the cap resets in half a second: Retry-After 1, never 0."""
    now = dt.datetime(2026, 12, 1, 20, 59, 59, 500_000, tzinfo=dt.UTC)
    assert quotas.seconds_until(quotas.next_midnight(now), now) == 1
    assert quotas.seconds_until(quotas.next_midnight(NOW), NOW) == 9 * 3600


@pytest.mark.parametrize(
    ("ahead", "expected"),
    [(0.2, 1), (1.0, 1), (1.000001, 2), (59.01, 60), (0.0, 1), (-3.0, 1)],
)
def test_retry_after_rounds_up_to_whole_seconds_and_is_at_least_one(
    ahead: float, expected: int
) -> None:
    """A client that waits Retry-After seconds is past the moment; a moment passed is 1."""
    assert quotas.seconds_until(NOW + seconds(ahead), NOW) == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0.0, 60), (0.5, 60), (30.2, 30), (59.0, 1), (59.999, 1)],
)
def test_a_message_leaves_the_window_60_s_after_it_was_accepted(age: float, expected: int) -> None:
    """Accepted ``age`` seconds ago: out of the window in 60 - age, rounded up."""
    assert quotas.window_retry_after(NOW, NOW - seconds(age)) == expected


def test_nothing_to_wait_for_in_the_window_is_a_whole_window() -> None:
    """No message to leave the window (it can never fit): Retry-After is 60."""
    assert quotas.window_retry_after(NOW, None) == quotas.WINDOW_SECONDS


@pytest.mark.parametrize(
    ("limit", "used", "requested", "expected"),
    [(100, 98, 2, 0), (100, 98, 5, 3), (100, 0, 101, 1), (5, 5, 1, 1), (0, 0, 1, 1)],
)
def test_the_excess_is_how_many_counted_messages_must_leave(
    limit: int, used: int, requested: int, expected: int
) -> None:
    """used + requested - limit must age out before the request fits (0: it fits)."""
    assert quotas.excess(limit, used, requested) == expected


def test_only_limits_that_are_set_and_crossed_refuse() -> None:
    """A None limit never refuses; a request exactly filling a limit is admitted."""
    policy = records.Client("billing", rate_per_minute=10, daily_cap=None, high_per_minute=2)
    counts = quotas.Counts(minute=8, high_minute=2, day=10_000)
    assert quotas.over_limits(policy, counts, requested=2, requested_high=0) == []
    assert quotas.over_limits(policy, counts, requested=3, requested_high=1) == [
        (Limit.RATE_PER_MINUTE, 10, 8, 3),
        (Limit.HIGH_PER_MINUTE, 2, 2, 1),
    ]


def test_the_high_cap_ignores_a_request_without_high_messages() -> None:
    """A full high lane still admits normal messages."""
    policy = records.Client("billing", high_per_minute=1)
    counts = quotas.Counts(minute=50, high_minute=1, day=50)
    assert quotas.over_limits(policy, counts, requested=5, requested_high=0) == []


def test_the_detail_names_the_limit_its_value_the_count_and_the_request() -> None:
    """The 429's detail says which limit, how much was used, and this request's size."""
    refusal = quotas.Refusal(Limit.RATE_PER_MINUTE, 100, used=98, requested=5, retry_after=7)
    assert refusal.detail == (
        "rate_per_minute limit of 100 reached: 98 accepted in the last 60 s, this request has 5"
    )
    daily = quotas.Refusal(Limit.DAILY_CAP, 5000, used=4999, requested=2, retry_after=60)
    assert daily.detail.startswith("daily_cap limit of 5000 reached: 4999 accepted today")


def test_a_request_larger_than_the_limit_is_told_it_can_never_fit() -> None:
    """More messages than the limit itself: the detail says no wait will do."""
    refusal = quotas.Refusal(Limit.HIGH_PER_MINUTE, 10, used=0, requested=11, retry_after=60)
    assert refusal.never_fits
    assert refusal.detail == (
        "high_per_minute limit of 10 can never admit this request: it has 11, more than the "
        "limit; send at most 10 at once"
    )
