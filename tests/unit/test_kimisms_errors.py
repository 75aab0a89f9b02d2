"""How provider answers map to ProviderError (narrow tests with httpx.MockTransport)."""

from __future__ import annotations

import httpx
import pytest

from tracker import errors, kimisms


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
    """Retry-After may be a date; it becomes seconds from now."""
    response = answer(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert kimisms.retry_after_seconds(response) == 0


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
