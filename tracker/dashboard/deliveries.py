"""A message's webhook deliveries and their attempts (#15's tables), for its timeline.

Read-only: the timeline links each to its page in ``webhook_pages`` (attempts, retry).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models


async def of_message(session: AsyncSession, message_id: uuid.UUID) -> list[dict[str, Any]]:
    """Each delivery (oldest first) with its attempts; never a secret, a URL or a body."""
    d, a = models.WebhookDelivery, models.WebhookAttempt
    found = list(await session.scalars(select(d).where(d.message_id == message_id).order_by(d.id)))
    attempts: dict[int, list[dict[str, Any]]] = {row.id: [] for row in found}
    if found:
        rows = await session.scalars(
            select(a).where(a.delivery_id.in_(list(attempts))).order_by(a.id)
        )
        for attempt in rows:
            attempts[attempt.delivery_id].append(
                {
                    "attempted_at": attempt.attempted_at,
                    "status_code": attempt.status_code,
                    "latency_ms": attempt.latency_ms,
                    "error": attempt.error,
                }
            )
    return [
        {
            "id": row.id,
            "event_type": row.event_type,
            "endpoint_id": row.endpoint_id,
            "status": row.status,
            "occurred_at": row.occurred_at,
            "attempts": attempts[row.id],
        }
        for row in found
    ]
