"""Idempotency-Key: the request hash and the key's format (storage is in integration)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from tracker import errors
from tracker.sending import idempotency


def request_with(key: bytes | None) -> Request:
    headers = [(b"idempotency-key", key)] if key is not None else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


def test_the_hash_ignores_key_order_and_spacing() -> None:
    """Canonical JSON: the same request written differently hashes the same."""
    first = idempotency.request_hash("/v1/messages", {"to": "1", "meta": {"a": 1, "b": 2}})
    second = idempotency.request_hash("/v1/messages", {"meta": {"b": 2, "a": 1}, "to": "1"})
    assert first == second


def test_the_hash_depends_on_the_route_and_every_value() -> None:
    """Another route or another value is another request."""
    base = idempotency.request_hash("/v1/messages", {"to": "1"})
    assert idempotency.request_hash("/v1/messages/batch", {"to": "1"}) != base
    assert idempotency.request_hash("/v1/messages", {"to": "2"}) != base


def test_no_header_is_no_claim() -> None:
    """Without the header the request is not idempotent."""
    assert idempotency.claim_of(request_with(None), "app", "/r", {}) is None


def test_a_claim_carries_the_client_key_and_hash() -> None:
    """The claim is scoped to the API key's client."""
    claim = idempotency.claim_of(request_with(b"order-1"), "app", "/r", {"a": 1})
    assert claim == idempotency.Claim("app", "order-1", idempotency.request_hash("/r", {"a": 1}))


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"caf\xe9", b"a\x01b"])
def test_a_key_that_is_not_1_to_255_printable_characters_is_refused(key: bytes) -> None:
    """Empty, too long, non-ASCII and control characters are a 400."""
    with pytest.raises(errors.ValidationFailed):
        idempotency.claim_of(request_with(key), "app", "/r", {})
