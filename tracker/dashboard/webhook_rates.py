"""What the webhook pages need that ``tracker.webhooks.recovery`` lacks: success rates.

An endpoint's success rate is over its deliveries *completed* in the window (the
last 24 h on the list page): succeeded / (succeeded + failed). Pending ones are
its backlog, which ``recovery.overview`` counts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models
from tracker.webhooks import recovery

WINDOW = dt.timedelta(hours=24)
WINDOW_LABEL = "24 h"


@dataclass(frozen=True)
class Rate:
    succeeded: int
    failed: int

    @property
    def share(self) -> float | None:
        """Succeeded / completed, or None when nothing completed."""
        done = self.succeeded + self.failed
        return None if done == 0 else self.succeeded / done


async def success_rates(
    session: AsyncSession, endpoint_ids: Sequence[uuid.UUID], since: dt.datetime
) -> dict[uuid.UUID, Rate]:
    """Per endpoint, its deliveries completed since ``since`` by outcome (one query)."""
    found = {endpoint_id: Rate(0, 0) for endpoint_id in endpoint_ids}
    if not endpoint_ids:
        return found
    d = models.WebhookDelivery
    rows = await session.execute(
        select(d.endpoint_id, d.status, func.count())
        .where(
            d.endpoint_id.in_(list(endpoint_ids)),
            d.status.in_((recovery.SUCCEEDED, recovery.FAILED)),
            d.completed_at >= since,
        )
        .group_by(d.endpoint_id, d.status)
    )
    tallies: dict[uuid.UUID, dict[str, int]] = {}
    for endpoint_id, outcome, count in rows:
        tallies.setdefault(endpoint_id, {})[outcome] = count
    for endpoint_id, tally in tallies.items():
        found[endpoint_id] = Rate(tally.get(recovery.SUCCEEDED, 0), tally.get(recovery.FAILED, 0))
    return found
