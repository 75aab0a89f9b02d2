"""Helpers shared by the webhooks API tests (fixtures stay in each test module)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette

from tests.integration.send_support import Headers
from tracker import clock, db, models
from tracker.services import Services
from tracker.webhooks import signing

GRACE_SECONDS = 3600
HOOK = "http://127.0.0.1:9/hooks/sms"  # loopback, which the tests' settings allow


async def create(http: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    """POST /v1/webhooks to HOOK with ``body``, which must be created."""
    response = await http.post("/v1/webhooks", json={"url": HOOK, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def add_delivery(
    database: db.Database,
    endpoint_id: str,
    status: str,
    *,
    created_at: dt.datetime | None = None,
    attempts: int = 0,
) -> int:
    """A delivery row of ``status`` with ``attempts`` recorded attempts (as the deliverer
    leaves them), written straight to the table."""
    now = created_at or clock.utcnow()
    async with database.write() as session:
        delivery = models.WebhookDelivery(
            endpoint_id=uuid.UUID(endpoint_id),
            event_id=signing.new_message_id(),
            event_type="message.delivered",
            data={"status": "delivered"},
            occurred_at=now,
            status=status,
            attempts=attempts,
            next_attempt_at=now if status == "pending" else None,
            last_status_code=None if status == "pending" else 500,
            last_error=None if status == "pending" else "HTTP 500",
            completed_at=None if status == "pending" else now,
            created_at=now,
        )
        session.add(delivery)
        await session.flush()
        for number in range(attempts):
            session.add(
                models.WebhookAttempt(
                    delivery_id=delivery.id,
                    attempted_at=now + dt.timedelta(seconds=number),
                    status_code=500,
                    latency_ms=12.5,
                    error="HTTP 500",
                    response_excerpt="oops",
                )
            )
    return delivery.id


async def delivery_row(database: db.Database, delivery_id: int) -> models.WebhookDelivery:
    async with database.read() as session:
        found = await session.get(models.WebhookDelivery, delivery_id)
        assert found is not None
        return found


async def endpoint_row(database: db.Database, endpoint_id: str) -> models.WebhookEndpoint:
    async with database.read() as session:
        found = await session.get(models.WebhookEndpoint, uuid.UUID(endpoint_id))
        assert found is not None
        return found


def doorbell_of(app: Starlette) -> Any:
    services: Services = app.state.services
    return services.webhook_doorbell
