"""The overview's numbers (from the per-hour counts and /v1/stats' own queries) and tiles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock
from tracker.dashboard import counts
from tracker.domain import status
from tracker.ops import queries
from tracker.settings import Settings

Status = status.Status
WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7),
           "30d": dt.timedelta(days=30)}  # fmt: skip
DEFAULT_WINDOW = "24h"
# A window whose failed share of final messages passes this is flagged.
FAILURE_RATE_THRESHOLD = 0.05
BREAKDOWN_ROWS = 10
MESSAGES_PATH = "/dashboard/messages"
NONE = "\N{EN DASH}"  # a tile with nothing to show yet


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    href: str
    name: str  # stable, for tests and styling


@dataclass(frozen=True)
class Overview:
    window: str
    stats: queries.Stats
    tiles: list[Tile]
    failure_rate: float | None
    flagged: bool
    by_description: list[tuple[str, int]]
    by_network: list[tuple[str, int]]
    by_client: list[tuple[str, dict[str, int]]]  # admin over every client only


def messages_link(**filters: Any) -> str:
    """The message list filtered so; lists (status) repeat their parameter."""
    pairs: list[tuple[str, str]] = []
    for name, value in filters.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, str(v)) for v in values if v is not None)
    return f"{MESSAGES_PATH}?{urlencode(pairs)}"


def _seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 120:  # noqa: PLR2004 - under two minutes reads best in seconds
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"  # noqa: PLR2004


def _percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def tiles(found: queries.Stats, client: str | None) -> list[Tile]:
    """The tiles in the issue's order, each linking to the rows behind it."""
    since = found.since.isoformat()
    window = {"created_after": since, "client": client}
    counts = found.counts
    made = [Tile("Accepted", str(found.total), messages_link(**window), "accepted")]
    for name in (Status.DELIVERED, Status.FAILED, Status.REJECTED, Status.EXPIRED):
        href = messages_link(status=name.value, **window)
        made.append(Tile(name.value.capitalize(), str(counts[name.value]), href, name.value))
    final = messages_link(status=[Status.DELIVERED.value, Status.FAILED.value], **window)
    queue, queued = found.queue, messages_link(status=list(status.DUE_STATUSES), client=client)
    overdue = messages_link(overdue="true", client=client)
    provider = messages_link(status=[Status.QUEUED.value, Status.SENDING.value], client=client)
    made += [
        Tile("Delivery rate", _percent(found.delivery_rate), final, "delivery_rate"),
        Tile("Units billed", str(found.units_billed), messages_link(**window), "units_billed"),
        Tile("Queue depth", str(queue.depth), queued, "queue_depth"),
        Tile("Drain time", _seconds(queue.drain_seconds), queued, "drain_time"),
        Tile("Oldest queued", _seconds(queue.oldest_queued_age_seconds), queued, "oldest"),
        Tile("Overdue", str(found.overdue), overdue, "overdue"),
        Tile("Provider 429s", str(found.provider_rate_limited), provider, "rate_limited"),
        Tile("Provider errors", str(found.provider_errors), provider, "provider_errors"),
    ]
    return made


def failure_rate(found: queries.Stats) -> float | None:
    """failed / (delivered + failed): the complement of the delivery rate."""
    rate = found.delivery_rate
    return None if rate is None else 1 - rate


def time_to_delivery(facts: counts.Facts) -> queries.Percentiles:
    """p50/p95/p99 estimated from the delivery-time bins (each exact to its bin's width)."""
    histogram = {int(label): n for label, n in facts.labels("ttd").items()}
    p50, p95, p99 = (counts.estimate(histogram, p) for p in queries.PERCENTILES)
    return queries.Percentiles(sum(histogram.values()), p50, p95, p99)


async def stats(
    session: AsyncSession, settings: Settings, window: dt.timedelta, client: str | None
) -> tuple[queries.Stats, counts.Facts]:
    """/v1/stats' numbers: the windowed ones from the per-hour counts, the rest as it reads them."""
    now = clock.utcnow()
    since = now - window
    facts = await counts.window(session, since, client)
    trouble = facts.labels("provider")
    overdue_cutoff = now - dt.timedelta(seconds=settings.dlr_overdue_seconds)
    found = queries.Stats(
        since=since,
        until=now,
        client=client,
        counts=facts.by_status(),
        units_billed=facts.units(),
        time_to_delivery=time_to_delivery(facts),
        overdue=await queries.overdue_count(session, overdue_cutoff, client),
        queue=await queries.queue_snapshot(session, now, settings.rate_limit_per_minute, client),
        provider_rate_limited=trouble.get("rate_limited", 0),
        provider_errors=trouble.get("error", 0),
    )
    return found, facts


async def build(
    session: AsyncSession, settings: Settings, window: str, client: str | None, *, admin: bool
) -> Overview:
    """Everything the overview shows for one client (or every one, for admin)."""
    found, facts = await stats(session, settings, WINDOWS[window], client)
    rate = failure_rate(found)
    return Overview(
        window=window,
        stats=found,
        tiles=tiles(found, client),
        failure_rate=rate,
        flagged=rate is not None and rate > FAILURE_RATE_THRESHOLD,
        by_description=facts.top("failed_description", BREAKDOWN_ROWS),
        by_network=facts.top("failed_network", BREAKDOWN_ROWS),
        by_client=facts.per_client() if admin and client is None else [],
    )
