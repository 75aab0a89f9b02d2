"""POST /api/send-sms: the documented answer and every validation error."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.sandbox.support import CONTACT, SENDER, InProcess, MakeInProcess

REQUIRED = ["This field is required."]
INVALID_CONTACT = ["Enter a valid phone number (9-13 digits)."]
INVALID_URL = ["Enter a valid HTTPS URL."]


async def post(provider: InProcess, body: Any) -> tuple[int, Any]:
    """Send ``body`` as JSON with a valid token; the status and the parsed answer."""
    token = await provider.token()
    response = await provider.client.post(
        "/api/send-sms", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


def valid_body(**changes: Any) -> dict[str, Any]:
    return {"sender_name": SENDER, "contact": CONTACT, "message": "Hello", **changes}


async def test_an_accepted_send_gets_the_documented_answer(provider: InProcess) -> None:
    """A valid send is 200 with exactly the documented fields and a UUID4 id."""
    status, body = await post(provider, valid_body())

    assert status == 200
    assert set(body) == {"message_id", "contact", "status", "description", "provider"}
    assert uuid.UUID(body["message_id"]).version == 4
    assert body["contact"] == CONTACT
    assert (body["status"], body["description"], body["provider"]) == (
        "Pending",
        "Initiated",
        "Swift",
    )


async def test_it_lists_every_missing_field(provider: InProcess) -> None:
    """An empty object names sender_name, contact and message; callback_url is optional."""
    status, body = await post(provider, {})

    assert status == 400
    assert body == {"sender_name": REQUIRED, "contact": REQUIRED, "message": REQUIRED}


async def test_an_unknown_sender_is_the_documented_error(provider: InProcess) -> None:
    """A Sender ID not on the account gets exactly the documented body."""
    status, body = await post(provider, valid_body(sender_name="NOTOURS"))

    assert status == 400
    assert body == {"sender_name": ["Sender ID not found"]}


async def test_any_configured_sender_is_accepted(make_in_process: MakeInProcess) -> None:
    """Every name in sender_names is an approved Sender ID."""
    provider = await make_in_process(sender_names=("KIMISMS", "ACME"))

    status, _ = await post(provider, valid_body(sender_name="ACME"))

    assert status == 200


@pytest.mark.parametrize(
    "contact",
    ["+254712345678", "12345678", "12345678901234", "2547123456a8", "254 712 345 678", "٢٥٤٧١٢٣٤٥"],
)
async def test_a_contact_that_is_not_9_to_13_digits_is_refused(
    provider: InProcess, contact: str
) -> None:
    """Contacts must be 9-13 ASCII digits with no plus sign or spaces."""
    status, body = await post(provider, valid_body(contact=contact))

    assert status == 400
    assert body == {"contact": INVALID_CONTACT}


@pytest.mark.parametrize("contact", ["712345678", "2547123456789"])
async def test_contacts_of_9_and_13_digits_are_accepted(provider: InProcess, contact: str) -> None:
    """Both ends of the documented 9-13 digit range are valid."""
    status, body = await post(provider, valid_body(contact=contact))

    assert status == 200
    assert body["contact"] == contact


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("message", "", "This field may not be blank."),
        ("message", "   ", "This field may not be blank."),
        ("message", 42, "Not a valid string."),
        ("sender_name", "", "This field may not be blank."),
        ("contact", 254712345678, "Not a valid string."),
    ],
)
async def test_blank_or_non_string_fields_are_refused(
    provider: InProcess, field: str, value: object, error: str
) -> None:
    """Fields must be non-blank strings, with DRF's wording for each problem."""
    status, body = await post(provider, valid_body(**{field: value}))

    assert status == 400
    assert body == {field: [error]}


@pytest.mark.parametrize(
    "url",
    [
        "https://tracker.example.com/v1/callbacks/kimisms/1/abc",
        "http://127.0.0.1:8000/cb",
        "http://127.5.6.7/cb",
        "http://localhost:8000/cb",
        "http://[::1]:8000/cb",
    ],
)
async def test_https_or_loopback_http_callback_urls_are_accepted(
    provider: InProcess, url: str
) -> None:
    """Callbacks go to https URLs; plain http only to loopback hosts."""
    status, _ = await post(provider, valid_body(callback_url=url))

    assert status == 200


@pytest.mark.parametrize(
    "url",
    ["http://tracker.example.com/cb", "ftp://example.com/cb", "not a url", "https://", 7, ""],
)
async def test_other_callback_urls_are_refused(provider: InProcess, url: object) -> None:
    """Plain http to a public host, other schemes and non-URLs are a field error."""
    status, body = await post(provider, valid_body(callback_url=url))

    assert status == 400
    assert body == {"callback_url": INVALID_URL}


async def test_a_null_callback_url_means_no_callback(provider: InProcess) -> None:
    """callback_url is optional, and null counts as absent."""
    status, _ = await post(provider, valid_body(callback_url=None))

    assert status == 200
    assert (await provider.messages())[0]["callback_url"] is None


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null"])
async def test_a_body_that_is_not_a_json_object_is_a_400_detail(
    provider: InProcess, raw: bytes
) -> None:
    """Malformed JSON and non-object bodies get a 400 with a detail string."""
    token = await provider.token()
    response = await provider.client.post(
        "/api/send-sms",
        content=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


async def test_authentication_is_checked_before_the_body(provider: InProcess) -> None:
    """A bad body without a token is a 401, as the provider authenticates first."""
    response = await provider.client.post("/api/send-sms", content=b"{")

    assert response.status_code == 401


async def test_only_post_is_allowed(provider: InProcess) -> None:
    """GET on the provider's endpoints is 405, not a send."""
    response = await provider.client.get("/api/send-sms")

    assert response.status_code == 405
