"""A KIMISMS stand-in that answers each message from a script, for the real dispatcher.

``httpx.MockTransport`` behind the dispatcher's own provider client: every
message id (the Idempotency-Key) has a list of answers, given in turn; a
``Timeout`` entry raises a read timeout instead of answering.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from tests.factories import fetch_message
from tracker import db, dispatcher, messages, models
from tracker.settings import Settings

TIMEOUT: Final = "timeout"
Answer = int | str  # an HTTP status, or TIMEOUT


class ScriptedProvider:
    def __init__(self, scripts: Mapping[uuid.UUID, list[Answer]]) -> None:
        self.scripts = {str(k): list(v) for k, v in scripts.items()}
        self.tokens_issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/generate-token":
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        key = request.headers["idempotency-key"]
        answer = self.scripts[key].pop(0)
        if answer == TIMEOUT:
            raise httpx.ReadTimeout("scripted timeout", request=request)
        assert isinstance(answer, int)
        if answer == 200:
            body: dict[str, Any] = {"message_id": f"p-{key}", "status": "Pending"}
            return httpx.Response(200, json=body)
        if answer == 400:
            return httpx.Response(400, json={"sender_name": ["Sender ID not found"]})
        return httpx.Response(answer, headers={"Retry-After": "0"}, json={})


SETTINGS_FOR_SCRIPTS: Final[dict[str, Any]] = {
    "rate_limit_per_minute": 60_000,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.02,
    "rate_limit_pause_seconds": 0.01,
    "max_attempts": 3,
}


async def dispatch_until(
    settings: Settings,
    database: db.Database,
    provider: ScriptedProvider,
    ids: list[uuid.UUID],
    done: Callable[[models.Message], bool],
    *,
    within: float = 20,
) -> list[models.Message]:
    """Run the real dispatcher against ``provider`` until every message is ``done``."""
    transport = httpx.MockTransport(provider)
    async with httpx.AsyncClient(transport=transport, base_url=settings.kimisms_base_url) as http:
        sender = dispatcher.create(settings, database, http)
        task = asyncio.create_task(sender.run())
        deadline = time.monotonic() + within
        try:
            while True:
                rows = [await fetch_message(database, i) for i in ids]
                if all(done(row) for row in rows) or time.monotonic() > deadline:
                    return rows
                await asyncio.sleep(0.02)
        finally:
            sender.stop()
            await asyncio.wait_for(task, 30)


def settled(row: models.Message) -> bool:
    """Accepted or final: nothing more will be sent."""
    return row.status in {messages.Status.PENDING, *messages.FINAL}
