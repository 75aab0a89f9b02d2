"""Request and response models: strict shapes, and errors in the API's words."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tracker import errors
from tracker.domain import status
from tracker.sending import schemas


def problems(data: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(errors.ValidationFailed) as caught:
        schemas.parse_send(data)
    return caught.value.errors


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "body"),
        (("to",), "to"),
        (("messages",), "messages"),
        (("messages", 3), "messages[3]"),
        (("messages", 3, "to"), "messages[3].to"),
        (("metadata", "a", 0), "metadata.a[0]"),
    ],
)
def test_error_locations_read_like_field_paths(loc: tuple[int | str, ...], path: str) -> None:
    """pydantic's location tuples become messages[3].to."""
    assert errors.field_path(loc) == path


def test_a_minimal_request_gets_the_defaults() -> None:
    """Only to and message are required; priority is normal."""
    request = schemas.parse_send({"to": "0712345678", "message": "hi"})
    assert request.priority is status.Priority.NORMAL
    assert (request.sender_name, request.valid_for, request.metadata) == (None, None, None)


def test_times_are_parsed_aware() -> None:
    """An ISO 8601 string with an offset becomes an aware datetime."""
    request = schemas.parse_send(
        {"to": "1", "message": "x", "send_at": "2030-01-01T12:00:00+03:00"}
    )
    assert request.send_at == dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize("when", [1767254400, "1767254400", "1767254400000", " 1.5e9 ", "nan"])
def test_a_time_given_as_a_number_is_refused_even_in_quotes(when: Any) -> None:
    """Unix seconds or milliseconds are a guess pydantic would make; we refuse to guess."""
    expected = {"send_at": ["must be an ISO 8601 date-time string"]}
    assert problems({"to": "1", "message": "x", "send_at": when}) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"message": "x"}, {"to": ["this field is required"]}),
        ({"to": 1, "message": "x"}, {"to": ["must be a string"]}),
        ({"to": "1", "message": "x", "valid_for": "1"}, {"valid_for": ["must be an integer"]}),
        ({"to": "1", "message": "x", "valid_for": False}, {"valid_for": ["must be an integer"]}),
        ({"to": "1", "message": "x", "metadata": []}, {"metadata": ["must be a JSON object"]}),
        ({"to": "1", "message": "x", "x": 1}, {"x": ["unknown field"]}),
        ({"to": "1", "message": ""}, {"message": ["must not be empty"]}),
        (
            {"to": "1", "message": "x", "reference": "r" * 129},
            {"reference": ["must be at most 128 characters"]},
        ),
    ],
)
def test_requests_are_strict_and_errors_are_short(
    data: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    """No coercion, no unknown fields; messages say what to fix."""
    assert problems(data) == expected


def test_a_batch_larger_than_allowed_is_refused_before_its_items_are_read() -> None:
    """The size check needs no item to be valid."""
    with pytest.raises(errors.ValidationFailed) as caught:
        schemas.parse_batch({"messages": ["junk"] * 3}, max_size=2)
    assert caught.value.errors == {"messages": ["at most 2 messages per batch (got 3)"]}


def test_an_unknown_pydantic_error_keeps_its_own_words() -> None:
    """Errors without a translation fall back to pydantic's message."""
    error = {"type": "something_new", "msg": "Value error, it broke", "loc": ("to",)}
    assert schemas.describe(error) == "it broke"


def test_a_context_message_without_its_context_falls_back() -> None:
    """A translation whose context is missing does not crash."""
    error = {"type": "greater_than", "msg": "Input should be greater than 0", "ctx": {}}
    assert schemas.describe(error) == "Input should be greater than 0"


def test_message_out_renders_every_field_of_the_model() -> None:
    """The dict the API sends is exactly a MessageOut."""
    now = dt.datetime.now(dt.UTC)
    row = {
        "id": uuid.uuid4(),
        "status": "queued",
        "contact": "254712345678",
        "sender_name": "KIMISMS",
        "segments": 1,
        "encoding": "gsm7",
        "priority": 0,
        "client": "app",
        "attempts": 0,
        "created_at": now,
        "metadata": {"a": 1},
    }
    out = schemas.message_out(row)
    assert set(out) == set(schemas.MessageOut.model_fields)
    model = schemas.MessageOut.model_validate(out)
    assert (model.to, model.priority, model.metadata) == (
        "254712345678",
        status.Priority.HIGH,
        {"a": 1},
    )


def test_event_out_renders_every_field_of_the_model() -> None:
    """Events render as EventOut."""
    row = {
        "from_status": None,
        "to_status": "queued",
        "source": "api",
        "detail": None,
        "payload": None,
        "created_at": dt.datetime.now(dt.UTC),
    }
    out = schemas.event_out(row)
    assert set(out) == set(schemas.EventOut.model_fields)
    schemas.EventOut.model_validate(out)
