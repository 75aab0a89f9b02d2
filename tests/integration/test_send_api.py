"""POST /v1/messages: one message, every rule of DESIGN.md "Internal API", on both databases."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory, running
from tests.factories import fetch_message
from tests.integration.send_support import (
    MAX_METADATA_BYTES,
    MESSAGE_FIELDS,
    Headers,
    api_settings,
    bearer,
    count,
    errors_of,
    events_of,
    iso,
    later,
    message,
    parse_time,
    send,
)
from tracker import db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.sending import schemas
from tracker.settings import Settings


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


async def test_a_message_is_stored_queued_and_answered_202(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The answer is the stored message: queued, normalised, counted, owned by the key."""
    response = await send(client, headers, to="0712 345 678")
    assert response.status_code == 202
    body = response.json()
    assert set(body) == MESSAGE_FIELDS
    schemas.MessageOut.model_validate(body)
    assert body["status"] == "queued"
    assert (body["to"], body["network"]) == ("254712345678", "Safaricom")
    assert (body["segments"], body["encoding"], body["priority"]) == (1, "gsm7", "normal")
    assert (body["sender_name"], body["client"], body["attempts"]) == ("KIMISMS", "app", 0)
    assert body["expires_at"] is None
    assert body["send_at"] is None
    row = await fetch_message(database, uuid.UUID(body["id"]))
    assert (row.status, row.rank, row.priority) == ("queued", 0, 1)
    assert row.body == "Your code is 123456"
    assert row.next_attempt_at == row.created_at == parse_time(body["created_at"])


async def test_the_message_is_stored_with_one_queued_event(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """History starts with the API's event: nothing -> queued."""
    response = await send(client, headers)
    events = await events_of(database, response.json()["id"])
    assert [(e.from_status, e.to_status, e.source) for e in events] == [(None, "queued", "api")]


@pytest.mark.parametrize(
    ("raw", "msisdn", "network"),
    [
        ("0712345678", "254712345678", "Safaricom"),
        ("712345678", "254712345678", "Safaricom"),
        ("+254712345678", "254712345678", "Safaricom"),
        ("254712345678", "254712345678", "Safaricom"),
        ("0712-345-678", "254712345678", "Safaricom"),
        ("+254 712 345 678", "254712345678", "Safaricom"),
        ("0112345678", "254112345678", "Safaricom"),
        ("112345678", "254112345678", "Safaricom"),
        ("0733123456", "254733123456", "Airtel"),
        ("0770123456", "254770123456", "Telkom"),
    ],
)
async def test_every_common_number_form_is_accepted_and_normalised(
    client: httpx.AsyncClient, headers: Headers, raw: str, msisdn: str, network: str
) -> None:
    """0712.., 712.., +254.., 254.., 011.., with spaces or dashes: one MSISDN, its network."""
    response = await send(client, headers, to=raw)
    assert response.status_code == 202
    assert (response.json()["to"], response.json()["network"]) == (msisdn, network)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0812345678", "'0812345678' is not a valid Kenyan mobile number"),
        ("0201234567", "'0201234567' is not a Kenyan mobile number"),
        ("+255712345678", "'+255712345678' is not a Kenyan number"),
        ("07123456789", "'07123456789' is not a valid Kenyan mobile number"),
        ("0712ABCDEF", "'0712ABCDEF' is not a phone number"),
        ("", "'' is not a phone number"),
    ],
)
async def test_an_invalid_number_is_400_saying_why(
    client: httpx.AsyncClient, headers: Headers, database: db.Database, raw: str, reason: str
) -> None:
    """Landlines, foreign, long, lettered and empty numbers are refused before storing."""
    response = await send(client, headers, to=raw)
    assert errors_of(response) == {"to": [reason]}
    assert await count(database, models.Message) == 0


@pytest.mark.parametrize(
    ("text", "segments", "encoding"),
    [
        ("Hello", 1, "gsm7"),
        ("x" * 160, 1, "gsm7"),
        ("x" * 161, 2, "gsm7"),
        ("€" * 80, 1, "gsm7"),
        ("€" * 81, 2, "gsm7"),
        ("Habari 😊", 1, "ucs2"),
        ("ж" * 71, 2, "ucs2"),
    ],
)
async def test_segments_and_encoding_are_returned(
    client: httpx.AsyncClient, headers: Headers, text: str, segments: int, encoding: str
) -> None:
    """GSM-7 (extension characters count double) or UCS-2, 160/153 and 70/67 per part."""
    response = await send(client, headers, message=text)
    assert response.status_code == 202
    assert (response.json()["segments"], response.json()["encoding"]) == (segments, encoding)


async def test_a_message_over_the_maximum_parts_is_400(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """TRACKER_MAX_SEGMENTS (3 here) bounds the parts a message may cost."""
    response = await send(client, headers, message="x" * (153 * 3 + 1))
    assert errors_of(response) == {"message": ["message needs 4 parts; the maximum is 3"]}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must not be empty"),
        ("   \n", "must not be blank"),
        ("a\x00b", "must not contain NUL characters"),
        ("a\ud800b", "must be valid Unicode text (it has a lone surrogate)"),
    ],
)
async def test_a_message_the_databases_cannot_store_is_400(
    client: httpx.AsyncClient, headers: Headers, text: str, reason: str
) -> None:
    """Empty, blank, NUL and lone-surrogate bodies are the caller's mistake, not a 500."""
    response = await send(client, headers, message=text)
    assert errors_of(response) == {"message": [reason]}


async def test_the_default_sender_is_the_first_allowed_name(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """Without sender_name (or with null) the first TRACKER_SENDER_NAMES entry is used."""
    assert (await send(client, headers)).json()["sender_name"] == "KIMISMS"
    assert (await send(client, headers, sender_name=None)).json()["sender_name"] == "KIMISMS"


async def test_another_allowed_sender_name_is_kept(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Any name on the allow-list may be chosen."""
    response = await send(client, headers, sender_name="ACME")
    assert response.json()["sender_name"] == "ACME"
    assert (await fetch_message(database, uuid.UUID(response.json()["id"]))).sender_name == "ACME"


async def test_a_sender_name_off_the_allow_list_is_400(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """The message names the refused sender and the allowed ones."""
    response = await send(client, headers, sender_name="NOPE")
    assert errors_of(response) == {
        "sender_name": ["'NOPE' is not an allowed sender name (allowed: KIMISMS, ACME)"]
    }


@pytest.mark.parametrize(
    ("given", "returned"),
    [({}, "normal"), ({"priority": "high"}, "high"), ({"priority": "low"}, "low")],
)
async def test_priority_defaults_to_normal_and_is_stored_as_its_order(
    client: httpx.AsyncClient,
    headers: Headers,
    database: db.Database,
    given: dict[str, Any],
    returned: str,
) -> None:
    """The answer names the priority; the row holds the integer the dispatcher sorts by."""
    response = await send(client, headers, **given)
    assert response.json()["priority"] == returned
    row = await fetch_message(database, uuid.UUID(response.json()["id"]))
    assert row.priority == status.PRIORITY_ORDER[status.Priority(returned)]


async def test_an_unknown_priority_is_400(client: httpx.AsyncClient, headers: Headers) -> None:
    """Only high, normal and low exist."""
    response = await send(client, headers, priority="urgent")
    assert errors_of(response) == {"priority": ["must be one of 'high', 'normal' or 'low'"]}


async def test_valid_for_sets_expires_at_from_now(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """valid_for seconds after acceptance the message expires."""
    body = (await send(client, headers, valid_for=3600)).json()
    lifetime = parse_time(body["expires_at"]) - parse_time(body["created_at"])
    assert lifetime == dt.timedelta(hours=1)


async def test_valid_for_counts_from_send_at(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A scheduled message is valid for valid_for seconds after its send_at, and due then."""
    send_at = later(7200).replace(microsecond=0)
    body = (await send(client, headers, send_at=iso(send_at), valid_for=600)).json()
    assert parse_time(body["send_at"]) == send_at
    assert parse_time(body["expires_at"]) == send_at + dt.timedelta(seconds=600)
    row = await fetch_message(database, uuid.UUID(body["id"]))
    assert row.next_attempt_at == send_at


async def test_expires_at_is_kept_and_answered_in_utc(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """Any UTC offset is accepted; the answer is the same instant in UTC (Z)."""
    nairobi = dt.timezone(dt.timedelta(hours=3))
    expires = later(3600).astimezone(nairobi).replace(microsecond=0)
    body = (await send(client, headers, expires_at=iso(expires))).json()
    assert body["expires_at"].endswith("Z")
    assert parse_time(body["expires_at"]) == expires


async def test_the_default_validity_applies_when_none_is_given(
    make_settings: SettingsFactory, database_url: str, headers: Headers
) -> None:
    """TRACKER_DEFAULT_VALIDITY_SECONDS gives messages without one an expiry."""
    settings = api_settings(make_settings, database_url, default_validity_seconds=900)
    async with running(create_app(settings)) as http:
        body = (await send(http, headers)).json()
    lifetime = parse_time(body["expires_at"]) - parse_time(body["created_at"])
    assert lifetime == dt.timedelta(seconds=900)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"valid_for": 60, "expires_at": iso(later(3600))},
            {"valid_for": ["give valid_for or expires_at, not both"]},
        ),
        ({"send_at": iso(later(-60))}, {"send_at": ["must be in the future"]}),
        ({"expires_at": iso(later(-60))}, {"expires_at": ["must be in the future"]}),
        (
            {"send_at": iso(later(7200)), "expires_at": iso(later(3600))},
            {"expires_at": ["must be after send_at"]},
        ),
        ({"valid_for": 0}, {"valid_for": ["must be greater than 0"]}),
        ({"valid_for": -5}, {"valid_for": ["must be greater than 0"]}),
        ({"valid_for": 10**12}, {"valid_for": [f"must be at most {366 * 86400}"]}),
        ({"send_at": "9999-12-31T23:59:59-05:00"}, {"send_at": ["is out of range once in UTC"]}),
        (
            {"expires_at": "0001-01-01T00:30:00+01:00"},
            {"expires_at": ["is out of range once in UTC"]},
        ),
    ],
)
async def test_contradictory_or_past_times_are_400(
    client: httpx.AsyncClient, headers: Headers, fields: dict[str, Any], expected: Any
) -> None:
    """Both validities, times already past, an expiry before the send time: each named."""
    assert errors_of(await send(client, headers, **fields)) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2030-01-01T09:00:00", "must include a UTC offset"),
        ("2030-01-01", "must include a UTC offset"),
        ("tomorrow", "must be an ISO 8601 date-time"),
        (1893456000, "must be an ISO 8601 date-time string"),
    ],
)
async def test_a_time_must_be_an_iso_date_time_with_an_offset(
    client: httpx.AsyncClient, headers: Headers, value: Any, reason: str
) -> None:
    """Naive times, bare dates, words and epoch numbers are ambiguous: 400 saying so."""
    problems = errors_of(await send(client, headers, send_at=value))
    assert problems.keys() == {"send_at"}
    assert problems["send_at"][0].startswith(reason)


async def test_metadata_and_reference_are_stored_and_returned(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The caller's own id and small JSON come back as given."""
    metadata = {"order": 42, "tags": ["otp", "login"], "nested": {"ok": True, "none": None}}
    body = (await send(client, headers, reference="order-42", metadata=metadata)).json()
    assert (body["reference"], body["metadata"]) == ("order-42", metadata)
    row = await fetch_message(database, uuid.UUID(body["id"]))
    assert (row.reference, row.meta) == ("order-42", metadata)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"blob": "x" * MAX_METADATA_BYTES}, f"must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        (["not", "an", "object"], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({"a": json.loads("[" * 40 + "]" * 40)}, "must be nested at most 32 levels deep"),
    ],
)
async def test_metadata_must_be_a_small_json_object(
    client: httpx.AsyncClient, headers: Headers, metadata: Any, reason: str
) -> None:
    """Too big, not an object, nested too deep or not storable as JSON: 400."""
    problems = errors_of(await send(client, headers, metadata=metadata))
    assert problems.keys() == {"metadata"}
    assert reason in problems["metadata"][0]


async def test_a_number_json_cannot_hold_in_metadata_is_400(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """1e400 reads as infinity, which no JSON column could store back."""
    content = json.dumps(message()).replace("}", ', "metadata": {"big": 1e400}}').encode()
    response = await client.post("/v1/messages", content=content, headers=headers)
    assert errors_of(response) == {"metadata": ["must not contain NaN or Infinity"]}


async def test_a_reference_over_128_characters_is_400(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """The caller's id is bounded like its column."""
    response = await send(client, headers, reference="r" * 129)
    assert errors_of(response) == {"reference": ["must be at most 128 characters"]}


async def test_unknown_fields_are_400(client: httpx.AsyncClient, headers: Headers) -> None:
    """A misspelt field is refused, not silently ignored."""
    response = await send(client, headers, recipient="0712345678", callback_url="x")
    assert errors_of(response) == {
        "recipient": ["unknown field"],
        "callback_url": ["unknown field"],
    }


async def test_missing_fields_are_400(client: httpx.AsyncClient, headers: Headers) -> None:
    """to and message are required."""
    response = await client.post("/v1/messages", json={}, headers=headers)
    assert errors_of(response) == {
        "to": ["this field is required"],
        "message": ["this field is required"],
    }


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("to", 712345678, "must be a string"),
        ("message", 42, "must be a string"),
        ("sender_name", ["ACME"], "must be a string"),
        ("priority", 1, "must be one of 'high', 'normal' or 'low'"),
        ("reference", 7, "must be a string"),
        ("valid_for", "60", "must be an integer"),
        ("valid_for", 1.5, "must be an integer"),
        ("valid_for", True, "must be an integer"),
    ],
)
async def test_wrong_types_are_400_and_never_coerced(
    client: httpx.AsyncClient, headers: Headers, field: str, value: Any, reason: str
) -> None:
    """A number for a string, a string for a number, a bool for an int: each refused."""
    assert errors_of(await send(client, headers, **{field: value})) == {field: [reason]}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "a JSON object is required"),
        (b"null", "a JSON object is required"),
        (b"[1]", "a JSON object is required"),
        (b'{"to": ', "invalid JSON"),
        (b'{"to": NaN}', "invalid JSON: NaN is not a JSON value"),
        (b"\xff", "invalid JSON"),
        (b'{"metadata": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid JSON"),
        (b'{"valid_for": 1' + b"0" * 5000 + b"}", "invalid JSON"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, headers: Headers, content: bytes, reason: str
) -> None:
    """Empty, non-object, malformed, NaN, deeply nested or absurd JSON: 400, never 500."""
    response = await client.post("/v1/messages", content=content, headers=headers)
    problems = errors_of(response)
    assert problems.keys() == {"body"}
    assert problems["body"][0].startswith(reason)


async def test_a_body_over_the_limit_is_413(
    client: httpx.AsyncClient, headers: Headers, settings: Settings
) -> None:
    """TRACKER_MAX_BODY_BYTES bounds one message's body."""
    response = await send(client, headers, message="x" * settings.max_body_bytes)
    assert response.status_code == 413
    assert str(settings.max_body_bytes) in response.json()["detail"]


async def test_sending_needs_the_send_scope(
    client: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A read-only key is 403, no key is 401, and neither stores anything."""
    reader = bearer(await make_key("reader", "read"))
    assert (await send(client, reader)).status_code == 403
    assert (await send(client, {})).status_code == 401
    assert await count(database, models.Message) == 0


async def test_an_accepted_message_is_logged_without_its_body_or_number(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """One message_queued event names the ids, the count and the client, nothing private."""
    with capture_logs() as captured:
        response = await send(client, headers, message="secret code 998877")
    queued = [event for event in captured if event["event"] == "message_queued"]
    assert len(queued) == 1
    assert queued[0]["message_ids"] == [response.json()["id"]]
    assert (queued[0]["count"], queued[0]["client"]) == (1, "app")
    assert "998877" not in repr(captured)
    assert "712345678" not in repr(captured)
