"""The overview's charts: per-bucket counts, delivery rate and time to delivery, as JSON.

Buckets are hours (days for 7 d and 30 d). This reads the window's messages
(newest first, at most ``SAMPLE_ROWS``); a per-bucket count table kept by a
trigger, so that 30-day charts never read messages, is the next step (#16).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker import clock
from tracker.dashboard import access, overview, pages
from tracker.domain import status
from tracker.ops import queries
from tracker.services import services_of

SAMPLE_ROWS = 200_000
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def bucket_size(window: dt.timedelta) -> dt.timedelta:
    return HOUR if window <= dt.timedelta(days=1) else DAY


def bucket_of(moment: dt.datetime, size: dt.timedelta) -> dt.datetime:
    """The start of ``moment``'s bucket (UTC hours or days)."""
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if size == DAY else start


def series(rows: list[Any], since: dt.datetime, now: dt.datetime) -> dict[str, list[Any]]:
    """uPlot's columns: bucket starts (Unix s), created, delivered, failed, rate, p50, p95."""
    size = bucket_size(now - since)
    counts: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    waits: dict[dt.datetime, list[float]] = defaultdict(list)
    for created, state, final in rows:
        slot = bucket_of(created, size)
        counts[slot]["created"] += 1
        counts[slot][state] += 1
        if state == status.Status.DELIVERED.value and final is not None:
            waits[slot].append((final - created).total_seconds())
    slots, slot = [], bucket_of(since, size)
    while slot <= now:
        slots.append(slot)
        slot += size
    out: dict[str, list[Any]] = {k: [] for k in ("t", "sent", "delivered", "failed", "rate")}
    out |= {"p50": [], "p95": []}
    for slot in slots:
        got = counts.get(slot, {})
        delivered, failed = got.get("delivered", 0), got.get("failed", 0)
        ordered = sorted(waits.get(slot, []))
        out["t"].append(int(slot.timestamp()))
        out["sent"].append(got.get("created", 0))
        out["delivered"].append(delivered)
        out["failed"].append(failed)
        out["rate"].append(delivered / (delivered + failed) if delivered + failed else None)
        out["p50"].append(queries.percentile(ordered, 0.5) if ordered else None)
        out["p95"].append(queries.percentile(ordered, 0.95) if ordered else None)
    return out


async def data(request: Request) -> Response:
    """``/dashboard/charts?window=24h``: the chart series of the overview's window."""
    viewer = await access.viewer(request)
    window = overview.WINDOWS.get(request.query_params.get("window", ""), overview.WINDOWS["24h"])
    client = access.visible_client(viewer, request.query_params.get("client"))
    now = clock.utcnow()
    m = queries.MESSAGES.c
    scoped = [] if client is None else [m.client == client]
    query = (
        select(m.created_at, m.status, m.final_at)
        .where(m.created_at >= now - window, *scoped)
        .order_by(m.created_at.desc())
        .limit(SAMPLE_ROWS)
    )
    async with services_of(request).database.read() as db_session:
        rows = list(await db_session.execute(query))
    response = JSONResponse(series(rows, now - window, now))
    response.headers["Cache-Control"] = "no-store"
    return pages.secure(response)
