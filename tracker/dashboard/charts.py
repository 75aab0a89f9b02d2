"""The overview's charts: per-bucket counts, delivery rate and time to delivery, as JSON.

Buckets are hours (days for 7 d and 30 d). Counts come from the per-hour
counts (``counts``), never from messages; time to delivery reads the window's
delivered messages (newest first, at most ``SAMPLE_ROWS``, by the status index).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker import clock
from tracker.dashboard import access, counts, overview, pages
from tracker.domain import status
from tracker.ops import queries
from tracker.services import services_of

SAMPLE_ROWS = 200_000
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
DELIVERED = status.Status.DELIVERED.value
FAILED = status.Status.FAILED.value


def bucket_size(window: dt.timedelta) -> dt.timedelta:
    return HOUR if window <= dt.timedelta(days=1) else DAY


def bucket_of(moment: dt.datetime, size: dt.timedelta) -> dt.datetime:
    """The start of ``moment``'s bucket (UTC hours or days)."""
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if size == DAY else start


def _slots(since: dt.datetime, now: dt.datetime, size: dt.timedelta) -> list[dt.datetime]:
    slots, slot = [], bucket_of(since, size)
    while slot <= now:
        slots.append(slot)
        slot += size
    return slots


def series(
    buckets: list[tuple[dt.datetime, str, int]],
    delivered: list[Any],
    since: dt.datetime,
    now: dt.datetime,
) -> dict[str, list[Any]]:
    """uPlot's columns: bucket starts (Unix s), sent, delivered, failed, rate, p50, p95."""
    size = bucket_size(now - since)
    counts: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hour, state, count in buckets:
        slot = bucket_of(hour, size)
        counts[slot]["sent"] += count
        counts[slot][state] += count
    waits: dict[dt.datetime, list[float]] = defaultdict(list)
    for created, final in delivered:
        waits[bucket_of(created, size)].append((final - created).total_seconds())
    out: dict[str, list[Any]] = {k: [] for k in ("t", "sent", "delivered", "failed", "rate")}
    out |= {"p50": [], "p95": []}
    for slot in _slots(since, now, size):
        got = counts.get(slot, {})
        done, failed = got.get(DELIVERED, 0), got.get(FAILED, 0)
        ordered = sorted(waits.get(slot, []))
        out["t"].append(int(slot.timestamp()))
        out["sent"].append(got.get("sent", 0))
        out["delivered"].append(done)
        out["failed"].append(failed)
        out["rate"].append(done / (done + failed) if done + failed else None)
        out["p50"].append(queries.percentile(ordered, 0.5) if ordered else None)
        out["p95"].append(queries.percentile(ordered, 0.95) if ordered else None)
    return out


async def data(request: Request) -> Response:
    """``/dashboard/charts?window=24h``: the chart series of the overview's window."""
    viewer = await access.viewer(request)
    window = overview.WINDOWS.get(request.query_params.get("window", ""), overview.WINDOWS["24h"])
    client = access.visible_client(viewer, request.query_params.get("client"))
    now = clock.utcnow()
    since = now - window
    m = queries.MESSAGES.c
    scoped = [] if client is None else [m.client == client]
    delivered = (
        select(m.created_at, m.final_at)
        .where(m.status == DELIVERED, m.created_at >= since, m.final_at.is_not(None), *scoped)
        .order_by(m.created_at.desc())
        .limit(SAMPLE_ROWS)
    )
    async with services_of(request).database.read() as db_session:
        buckets = await counts.per_bucket(db_session, since, client)
        waits = list(await db_session.execute(delivered))
    response = JSONResponse(series(buckets, waits, since, now))
    response.headers["Cache-Control"] = "no-store"
    return pages.secure(response)
