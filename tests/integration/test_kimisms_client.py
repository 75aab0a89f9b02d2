"""The provider client's handling of rate limiting (a scripted transport, a real database)."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.factories import add_message
from tests.provider_loop import wait_for
from tracker import clock, db, errors, ids
from tracker.dispatch import dispatcher, kimisms
from tracker.dispatch.pacing import Pacer
from tracker.domain import status


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


@pytest.mark.parametrize(
    "retry_after", ["Tue, 01 Dec 2026 12:00:30 -0000", "99999999999999", "in a while"]
)
async def test_item_3_a_bad_retry_after_is_a_retry_not_a_message_left_sending(
    make_settings: SettingsFactory, database_url: str, database: db.Database, retry_after: str
) -> None:
    """Item 3: a 429 whose Retry-After is odd or huge is recorded as a retry within an hour."""

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/generate-token":
            return rate_limited_provider(request)
        return httpx.Response(429, json={"detail": "slow"}, headers={"Retry-After": retry_after})

    message_id = await add_message(database, status=status.Status.QUEUED)
    settings = make_settings(database_url=database_url, rate_limit_pause_seconds=42)
    transport = httpx.MockTransport(provider)
    async with httpx.AsyncClient(transport=transport, base_url="https://kimisms.test") as http:
        client = kimisms.KimismsClient(
            http, database, client_id="id", client_secret="secret", pacer=Pacer(6000)
        )
        sender = dispatcher.Dispatcher(settings, database, client)
        task = asyncio.create_task(sender.run())
        [row] = await wait_for(database, [message_id], lambda r: r.error is not None, within=10)
        sender.stop()
        await asyncio.wait_for(task, 10)
    assert row.error is not None
    assert "rate limited" in row.error
    assert row.lease_until is None
    assert row.next_attempt_at is not None
    assert row.next_attempt_at <= clock.utcnow() + dt.timedelta(hours=1)
    assert 0 < client.pacer.paused_for <= kimisms.RETRY_AFTER_MAX_SECONDS
