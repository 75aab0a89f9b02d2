"""The README's webhook receiver works as written against the tracker's signatures."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from typing import Any

import httpx
import pytest

from tracker import clock
from tracker.webhooks import events, signing

README = pathlib.Path(__file__).parents[2] / "README.md"
RECEIVER = re.compile(r"\*\*A receiver\*\*.*?```python\n(.*?)```", re.DOTALL)


def receiver(monkeypatch: pytest.MonkeyPatch, secret: str) -> dict[str, Any]:
    """The README's receiver module run with ``secret``: its globals (app, newest...)."""
    found = RECEIVER.search(README.read_text(encoding="utf-8"))
    assert found is not None, "the README has no receiver example"
    monkeypatch.setenv("TRACKER_WEBHOOK_SECRET", secret)
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(found[1], "README receiver", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def signed(
    secrets: list[str], sequence: int, status: str, *, msg_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A message event as the tracker signs it."""
    now = clock.utcnow()
    data = {"id": "m-1", "status": status, "previous_status": "pending", "sequence": sequence}
    body = events.body(events.EventType.MESSAGE_DELIVERED, now, data)
    return body, signing.headers(msg_id or signing.new_message_id(), now, body, secrets)


async def post(app: Any, body: bytes, headers: dict[str, str]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as http:
        response = await http.post("/hooks/sms", content=body, headers=headers)
    return response.status_code


async def test_the_receiver_accepts_ours_and_drops_stale_and_forged_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signed event is applied; an older sequence is dropped; a forged one is a 400."""
    secret = signing.new_secret()
    module = receiver(monkeypatch, secret)
    app = module["app"]
    assert await post(app, *signed([secret], 7, "delivered")) == 204
    assert await post(app, *signed([secret], 5, "pending")) == 204
    assert module["newest"] == {"m-1": 7}
    forged = signed([signing.new_secret()], 9, "failed")
    assert await post(app, *forged) == 400
    assert module["newest"] == {"m-1": 7}


async def test_a_receiver_with_either_secret_accepts_during_rotation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both secrets sign in the grace: receivers holding the old or the new one accept."""
    old, new = signing.new_secret(), signing.new_secret()
    until = clock.utcnow() + dt.timedelta(hours=1)
    both = signing.active_secrets(new, old, until, clock.utcnow())
    for held in (old, new):
        app = receiver(monkeypatch, held)["app"]
        assert await post(app, *signed(both, 1, "delivered")) == 204


async def test_the_receiver_handles_a_retry_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same webhook-id twice is handled once (the second is answered 204 unread)."""
    secret = signing.new_secret()
    module = receiver(monkeypatch, secret)
    first = signed([secret], 3, "delivered", msg_id="msg_same")
    assert await post(module["app"], *first) == 204
    assert await post(module["app"], *signed([secret], 4, "failed", msg_id="msg_same")) == 204
    assert module["newest"] == {"m-1": 3}
    assert module["handled"] == {"msg_same"}
