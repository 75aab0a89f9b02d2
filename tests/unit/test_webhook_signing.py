"""Our webhook headers verify with the official ``standardwebhooks`` package, and only as sent."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
import standardwebhooks

from tracker import clock
from tracker.webhooks import signing

BODY = (
    b'{"type":"message.delivered","timestamp":"2026-12-02T01:00:00Z","data":{"to":"caf\xc3\xa9"}}'
)


def _receiver(secret: str) -> standardwebhooks.Webhook:
    return standardwebhooks.Webhook(secret)


def _signed(*secrets: str, at: dt.datetime | None = None) -> dict[str, str]:
    when = at or clock.utcnow()
    return signing.headers(signing.new_message_id(), when, BODY, secrets)


def test_a_receiver_with_the_secret_accepts_our_delivery() -> None:
    """One secret: the library verifies our headers and hands back the body it signed."""
    secret = signing.new_secret()
    assert _receiver(secret).verify(BODY, _signed(secret)) == {
        "type": "message.delivered",
        "timestamp": "2026-12-02T01:00:00Z",
        "data": {"to": "café"},
    }


def test_the_headers_are_the_three_of_the_specification_and_json() -> None:
    """webhook-id, an integer webhook-timestamp, one v1 entry per secret, a JSON body."""
    at = dt.datetime(2026, 12, 2, 1, 2, 3, 900_000, tzinfo=dt.UTC)
    sent = signing.headers("msg_abc", at, BODY, [signing.new_secret()])
    assert sent["webhook-id"] == "msg_abc"
    assert sent["webhook-timestamp"] == str(int(at.timestamp()))
    assert sent["webhook-signature"].startswith("v1,")
    assert " " not in sent["webhook-signature"]
    assert sent["content-type"] == "application/json"


def test_during_rotation_a_receiver_with_either_secret_accepts() -> None:
    """Two secrets sign: a receiver holding only the old or only the new one verifies."""
    new, old = signing.new_secret(), signing.new_secret()
    sent = _signed(new, old)
    assert len(sent["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        _receiver(secret).verify(BODY, sent)


def test_a_receiver_with_another_secret_refuses() -> None:
    """A secret that did not sign finds no matching signature."""
    sent = _signed(signing.new_secret())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        _receiver(signing.new_secret()).verify(BODY, sent)


def test_a_tampered_body_fails_verification() -> None:
    """The body is signed: one changed byte is refused."""
    secret = signing.new_secret()
    sent = _signed(secret)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        _receiver(secret).verify(BODY.replace(b"delivered", b"failed"), sent)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp"])
def test_a_tampered_id_or_timestamp_fails_verification(header: str) -> None:
    """The id and the timestamp are signed too: changing either is refused."""
    secret = signing.new_secret()
    sent = _signed(secret)
    sent[header] = "msg_other" if header == "webhook-id" else str(int(sent[header]) - 1)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        _receiver(secret).verify(BODY, sent)


def test_a_stale_timestamp_fails_in_the_library() -> None:
    """Signed ten minutes ago, a delivery is refused as a replay: ours carry the real time."""
    secret = signing.new_secret()
    sent = _signed(secret, at=clock.utcnow() - dt.timedelta(minutes=10))
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        _receiver(secret).verify(BODY, sent)


def test_a_new_secret_holds_32_random_bytes() -> None:
    """whsec_ and base64 of 32 bytes, different each time, readable by the library."""
    first, second = signing.new_secret(), signing.new_secret()
    assert first.startswith("whsec_")
    assert len(signing.secret_key(first)) == 32
    assert first != second
    standardwebhooks.Webhook(first)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "start with 'whsec_'"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"s" * 16).decode(), "24 to 64 bytes, not 16"),
        ("whsec_" + base64.b64encode(b"s" * 65).decode(), "24 to 64 bytes, not 65"),
    ],
)
def test_a_bad_secret_is_refused_without_showing_it(secret: str, problem: str) -> None:
    """Parsing names what is wrong with a secret, never its value."""
    with pytest.raises(ValueError, match=problem) as refused:
        signing.secret_key(secret)
    assert secret.removeprefix("whsec_") not in str(refused.value)


def test_the_shortest_and_longest_keys_of_the_specification_are_accepted() -> None:
    """24 and 64 bytes are the bounds, both included."""
    for size in (24, 64):
        key = bytes(range(size))
        assert signing.secret_key("whsec_" + base64.b64encode(key).decode()) == key


def test_the_message_id_is_stable_per_event() -> None:
    """The same event gives the same webhook-id, on every retry; another event another."""
    event = uuid.uuid4()
    assert signing.message_id(event) == signing.message_id(event) == f"msg_{event.hex}"
    fresh = signing.new_message_id()
    assert fresh.startswith("msg_")
    assert "." not in fresh
    assert fresh != signing.new_message_id()


def test_signing_refuses_no_secret_an_id_with_a_full_stop_and_a_naive_time() -> None:
    """Nothing is signed that a receiver could not verify or would misread."""
    secret = signing.new_secret()
    now = clock.utcnow()
    with pytest.raises(ValueError, match="at least one"):
        signing.sign([], "msg_a", now, BODY)
    with pytest.raises(ValueError, match=r"no '\.'"):
        signing.sign([secret], "msg_a.b", now, BODY)
    with pytest.raises(ValueError, match="naive"):
        signing.sign([secret], "msg_a", now.replace(tzinfo=None), BODY)


def test_a_previous_secret_signs_only_in_its_grace_period() -> None:
    """During rotation both secrets sign; once the grace period ends only the new one does."""
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    later = now + dt.timedelta(hours=1)
    assert signing.active_secrets("new", None, None, now) == ["new"]
    assert signing.active_secrets("new", "old", later, now) == ["new", "old"]
    assert signing.active_secrets("new", "old", later, later) == ["new"]
