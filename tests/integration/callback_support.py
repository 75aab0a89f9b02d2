"""Posting a delivery report to a message's capability URL, as KIMISMS does."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tracker.reports import capability
from tracker.settings import Settings


async def post_report(
    http: httpx.AsyncClient, settings: Settings, message_id: uuid.UUID, body: dict[str, Any]
) -> httpx.Response:
    url = capability.callback_url(settings.public_url, settings.callback_keys(), message_id)
    return await http.post(url.removeprefix(settings.public_url), content=json.dumps(body))
