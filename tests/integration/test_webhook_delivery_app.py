"""The deliverer inside the app (``serve``): woken by the in-process doorbell, stopped cleanly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import standardwebhooks

from tests.conftest import SettingsFactory, running
from tests.integration import webhook_receiver as hooks
from tracker import db
from tracker.app import create_app
from tracker.webhooks import deliverer


async def test_a_cancel_through_the_api_is_delivered_at_once(
    database: db.Database,
    make_settings: SettingsFactory,
    database_url: str,
    make_key: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fallback poll a minute away, the cancel's doorbell alone brings the POST."""
    monkeypatch.setattr(deliverer, "FALLBACK_POLL_SECONDS", 60.0)
    settings = make_settings(database_url=database_url, webhook_allowed_networks=hooks.ALLOWED)
    headers = {"Authorization": f"Bearer {await make_key('app', 'send,read')}"}
    async with hooks.receiving() as receiver:
        await hooks.add_endpoint(database, receiver.url(), events=("message.cancelled",))
        async with running(create_app(settings, run_deliverer=True)) as client:
            sent = await client.post(
                "/v1/messages", json={"to": "0712345678", "message": "hi"}, headers=headers
            )
            assert sent.status_code == 202
            message_id = sent.json()["id"]
            cancelled = await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
            assert cancelled.status_code == 200
            (request,) = await receiver.wait_for(1, within=10)
    payload = standardwebhooks.Webhook(hooks.SECRET).verify(request.body, request.headers)
    assert payload["type"] == "message.cancelled"
    assert payload["data"]["id"] == message_id
    assert payload["data"]["previous_status"] == "queued"


async def test_the_app_without_run_deliverer_delivers_nothing(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """The default app (tests, tools) has no deliverer: a due delivery stays pending."""
    settings = make_settings(database_url=database_url, webhook_allowed_networks=hooks.ALLOWED)
    async with hooks.receiving() as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with running(create_app(settings)) as client:
            assert (await client.get("/healthz")).status_code == 200
    assert receiver.requests == []
    assert (await hooks.delivery(database, delivery_id)).status == "pending"
