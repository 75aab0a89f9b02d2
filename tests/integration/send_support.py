"""Helpers shared by the send API tests (fixtures stay in each test module)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.conftest import SettingsFactory
from tracker import clock, db, models
from tracker.settings import Settings

Headers = dict[str, str]
SENDERS = "KIMISMS,ACME"
MAX_BATCH = 20
MAX_SEGMENTS = 3
MAX_METADATA_BYTES = 256
MESSAGE_FIELDS = {
    "id",
    "status",
    "to",
    "network",
    "sender_name",
    "segments",
    "encoding",
    "priority",
    "reference",
    "metadata",
    "client",
    "provider_message_id",
    "provider_status",
    "provider_description",
    "attempts",
    "error",
    "created_at",
    "send_at",
    "expires_at",
    "submitted_at",
    "accepted_at",
    "final_at",
    "to_pseudonym",
    "redacted_at",
    "pseudonymised_at",
}


def api_settings(make_settings: SettingsFactory, database_url: str, **overrides: Any) -> Settings:
    """Two allowed senders and small limits, so each limit is cheap to reach."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "sender_names": SENDERS,
        "max_batch_size": MAX_BATCH,
        "max_segments": MAX_SEGMENTS,
        "max_metadata_bytes": MAX_METADATA_BYTES,
    }
    values.update(overrides)
    return make_settings(**values)


def bearer(key: str) -> Headers:
    return {"Authorization": f"Bearer {key}"}


def message(**fields: Any) -> dict[str, Any]:
    """A valid message body, with ``fields`` added or replaced."""
    return {"to": "0712345678", "message": "Your code is 123456", **fields}


async def send(http: httpx.AsyncClient, headers: Headers, **fields: Any) -> httpx.Response:
    return await post_json(http, "/v1/messages", message(**fields), headers)


async def post_json(
    http: httpx.AsyncClient, path: str, body: Any, headers: Headers
) -> httpx.Response:
    """POST ``body`` as ASCII JSON (escapes survive, lone surrogates included)."""
    content = json.dumps(body).encode()
    return await http.post(
        path, content=content, headers={**headers, "Content-Type": "application/json"}
    )


def later(seconds: float) -> dt.datetime:
    return clock.utcnow() + dt.timedelta(seconds=seconds)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def errors_of(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 400, response.text
    found: dict[str, list[str]] = response.json()["errors"]
    return found


async def count(database: db.Database, model: type[models.Base]) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def events_of(database: db.Database, message_id: str) -> list[models.MessageEvent]:
    async with database.read() as session:
        rows = await session.scalars(
            select(models.MessageEvent)
            .where(models.MessageEvent.message_id == uuid.UUID(message_id))
            .order_by(models.MessageEvent.id)
        )
        return list(rows)
