"""How provider answers map to ProviderError (narrow tests with httpx.MockTransport)."""

from __future__ import annotations

import datetime as dt
import email.utils

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker import errors
from tracker.dispatch import kimisms

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
# Bounded and repeatable in CI: the same examples every run, no example database.
PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None)


def answer(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_a_400_is_permanent_and_keeps_the_field_messages() -> None:
    """Validation errors will not change on retry; their messages are kept."""
    error = kimisms.error_for(answer(400, {"sender_name": ["Sender ID not found"]}))
    assert error.permanent
    assert error.field_errors == {"sender_name": ["Sender ID not found"]}
    assert "Sender ID not found" in str(error)


def test_a_429_is_transient_with_its_retry_after() -> None:
    """Rate limiting is retried after the provider's Retry-After."""
    error = kimisms.error_for(answer(429, {"detail": "slow down"}, {"Retry-After": "7"}))
    assert not error.permanent
    assert error.retry_after == 7


def test_retry_after_as_an_http_date_is_understood() -> None:
    """Retry-After may be a date; it becomes seconds from now (a past one: the 1 s floor)."""
    response = answer(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert kimisms.retry_after_seconds(response) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("Tue, 01 Dec 2026 12:00:30 GMT", 30),  # IMF-fixdate
        ("Tuesday, 01-Dec-26 12:00:30 GMT", 30),  # RFC 850
        ("Tue Dec  1 12:00:30 2026", 30),  # asctime: no zone, UTC by rule
        ("Tue, 01 Dec 2026 12:00:30 -0000", 30),  # parsedate_to_datetime: naive
        ("Tue, 01 Dec 2026 15:00:30 +0300", 30),
        (" 30 ", 30),
        ("0", 1),
        ("99999999999999", 3600),  # overflowed timedelta before item 3
        ("9" * 5000, 3600),  # past int()'s digit limit
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600),
    ],
)
def test_item_3_retry_after_reads_every_form_clamped_to_one_hour(header: str, seconds: int) -> None:
    """Item 3: delta-seconds and every HTTP-date form parse, clamped to 1 s..1 h."""
    assert kimisms.parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    "header", ["", "soon", "-5", "1.5", "²", "١٢", "Tue, 99 Dec 2026 12:00:30 GMT", "5, 5"]
)
def test_item_3_unreadable_retry_after_falls_back_to_the_default_pause(header: str) -> None:
    """Item 3: garbage (also non-ASCII digits and fractions) means "no value": the default."""
    assert kimisms.parse_retry_after(header, NOW) is None


def _in_clamp_or_default(value: float | None) -> bool:
    return value is None or (
        kimisms.RETRY_AFTER_MIN_SECONDS <= value <= kimisms.RETRY_AFTER_MAX_SECONDS
    )


@PROPERTY
@given(st.text())
def test_item_3_any_retry_after_text_parses_within_the_clamp(header: str) -> None:
    """Item 3 (property): for any text, parsing never raises and stays within 1 s..1 h."""
    assert _in_clamp_or_default(kimisms.parse_retry_after(header, NOW))


def _http_date(when: dt.datetime, zone: str) -> str:
    return email.utils.format_datetime(when).rsplit(" ", 1)[0] + " " + zone


@PROPERTY
@given(
    st.datetimes(),  # naive, years 1 to 9999
    st.sampled_from(["GMT", "UTC", "-0000", "+0000", "+1400", "-1400", "+0300", "", "XYZ"]),
    st.text(alphabet=" ,-:0123456789", max_size=3),
)
def test_item_3_any_http_date_parses_within_the_clamp(
    when: dt.datetime, zone: str, noise: str
) -> None:
    """Item 3 (property): dates of any year and zone, also with noise, stay within the clamp."""
    assert _in_clamp_or_default(kimisms.parse_retry_after(_http_date(when, zone) + noise, NOW))


@PROPERTY
@given(st.text(alphabet="0123456789", min_size=1, max_size=40))
def test_item_3_any_delta_seconds_parses_within_the_clamp(digits: str) -> None:
    """Item 3 (property): any run of digits is a number of seconds, clamped."""
    value = kimisms.parse_retry_after(digits, NOW)
    assert value == min(max(int(digits), 1), 3600)


def test_item_3_a_429_with_a_bad_retry_after_is_a_provider_error() -> None:
    """Item 3: the mapping of a 429 never raises, whatever its Retry-After holds."""
    for header in ["Tue, 01 Dec 2026 12:00:30 -0000", "99999999999999", "garbage"]:
        error = kimisms.error_for(answer(429, headers={"Retry-After": header}))
        assert isinstance(error, errors.ProviderError)
        assert _in_clamp_or_default(error.retry_after)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    """5xx may succeed on retry with the same Idempotency-Key."""
    error = kimisms.error_for(answer(status, {"detail": "oops"}))
    assert not error.permanent
    assert error.status_code == status


@pytest.mark.parametrize("status", [401, 403, 404])
def test_account_level_failures_pause_instead_of_failing_the_message(status: int) -> None:
    """Credentials or URL problems are the account's, so no message is failed for them."""
    error = kimisms.error_for(answer(status, {"detail": "Authentication credentials"}))
    assert isinstance(error, kimisms.ProviderUnavailable)
    assert not error.permanent


def test_a_non_json_400_is_still_permanent() -> None:
    """An HTML error page on 400 does not break the mapping."""
    error = kimisms.error_for(httpx.Response(400, text="<html>bad</html>"))
    assert error.permanent
    assert error.field_errors == {}


def test_field_errors_accept_strings_as_well_as_lists() -> None:
    """Providers are not always consistent about list-or-string."""
    assert kimisms.field_errors({"contact": "Invalid"}) == {"contact": ["Invalid"]}
    assert kimisms.field_errors(["x"]) == {}


def test_provider_errors_are_tracker_errors() -> None:
    """One hierarchy: callers catch TrackerError, never httpx types."""
    assert issubclass(kimisms.ProviderUnavailable, errors.TrackerError)
