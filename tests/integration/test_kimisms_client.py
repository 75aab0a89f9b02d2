"""The provider client's handling of rate limiting (a scripted transport, a real database)."""

from __future__ import annotations

import httpx
import pytest

from tracker import db, errors, ids, kimisms
from tracker.pacing import Pacer


def rate_limited_provider(request: httpx.Request) -> httpx.Response:
    """Issues tokens, then refuses every send with a 429 that carries no Retry-After."""
    if request.url.path == "/api/generate-token":
        token = {"token_type": "Bearer", "access_token": "t", "expires_in": 3600}
        return httpx.Response(200, json=token)
    return httpx.Response(429, json={"detail": "Too many requests"})


async def test_a_429_without_retry_after_pauses_every_call_for_the_configured_time(
    database: db.Database,
) -> None:
    """The provider may omit Retry-After: all sending still stops for the default pause."""
    transport = httpx.MockTransport(rate_limited_provider)
    async with httpx.AsyncClient(transport=transport, base_url="https://kimisms.test") as http:
        client = kimisms.KimismsClient(
            http,
            database,
            client_id="id",
            client_secret="secret",
            pacer=Pacer(6000),
            rate_limit_pause_seconds=42,
        )
        with pytest.raises(errors.ProviderError) as raised:
            await client.send_sms(
                message_id=ids.uuid7(),
                sender_name="KIMISMS",
                contact="254712345678",
                message="hi",
                callback_url="https://tracker.test/cb",
            )
    assert raised.value.status_code == 429
    assert not raised.value.permanent
    assert 41 < client.pacer.paused_for <= 42
