"""A delivery's body from the trigger's snapshot, in either database's JSON forms."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from tracker.webhooks import payloads

MESSAGE_ID = uuid.UUID("0190f5e2-7c1a-7b3e-9d4f-123456789abc")
COMMON: dict[str, Any] = {
    "client": "app",
    "sender_name": "KIMISMS",
    "contact": "254712345678",
    "network": "Safaricom",
    "segments": 1,
    "encoding": "GSM-7",
    "priority": 1,
    "reference": "order-7",
    "status": "delivered",
    "provider_message_id": "p-1",
    "provider_name": None,
    "provider_status": "Delivered",
    "provider_description": None,
    "attempts": 1,
    "error": None,
    "send_at": None,
    "expires_at": None,
    "metadata": {"order": 7},
    "previous_status": "pending",
}
SQLITE = {
    **COMMON,
    "id": MESSAGE_ID.hex,
    "created_at": "2026-12-02 07:19:08.123456",
    "submitted_at": "2026-12-02 07:19:09.000000",
    "accepted_at": "2026-12-02 07:19:09.500000",
    "final_at": "2026-12-02 07:20:00.000001",
}
POSTGRESQL = {
    **COMMON,
    "id": str(MESSAGE_ID),
    "created_at": "2026-12-02T07:19:08.123456+00:00",
    "submitted_at": "2026-12-02T10:19:09+03:00",  # a session in another time zone
    "accepted_at": "2026-12-02T07:19:09.5+00:00",
    "final_at": "2026-12-02T07:20:00.000001+00:00",
}
OCCURRED = dt.datetime(2026, 12, 2, 7, 20, tzinfo=dt.UTC)


def test_both_databases_snapshots_give_the_same_data() -> None:
    """SQLite's naive text and 32-hex id read back to the values PostgreSQL's ISO forms give."""
    assert payloads.message_data(SQLITE, 42) == payloads.message_data(POSTGRESQL, 42)


def test_the_data_is_the_message_as_the_api_shows_it() -> None:
    """Python values (uuid, aware UTC times), API names (to, priority), and the two additions."""
    data = payloads.message_data(SQLITE, 42)
    assert data["id"] == MESSAGE_ID
    assert data["created_at"] == dt.datetime(2026, 12, 2, 7, 19, 8, 123456, tzinfo=dt.UTC)
    assert data["submitted_at"] == dt.datetime(2026, 12, 2, 7, 19, 9, tzinfo=dt.UTC)
    assert data["send_at"] is None
    assert (data["to"], data["priority"]) == ("254712345678", "normal")
    assert (data["previous_status"], data["sequence"]) == ("pending", 42)
    assert "contact" not in data
    assert "provider_name" not in data


def test_the_body_is_standard_webhooks_json_with_z_times() -> None:
    """type, timestamp, data in that order; times in ISO 8601 with Z, the id dashed."""
    body = payloads.body(
        "message.delivered", OCCURRED, POSTGRESQL, message_id=MESSAGE_ID, sequence=42
    )
    document = json.loads(body)
    assert list(document) == ["type", "timestamp", "data"]
    assert document["type"] == "message.delivered"
    assert document["timestamp"] == "2026-12-02T07:20:00Z"
    assert document["data"]["id"] == str(MESSAGE_ID)
    assert document["data"]["created_at"] == "2026-12-02T07:19:08.123456Z"
    assert document["data"]["metadata"] == {"order": 7}


def test_a_delivery_without_a_message_sends_its_data_as_is() -> None:
    """webhook.test: the stored data is the data, no message fields added."""
    body = payloads.body(
        "webhook.test", OCCURRED, {"hello": "world"}, message_id=None, sequence=None
    )
    assert json.loads(body)["data"] == {"hello": "world"}
