"""The overview's charts: per-bucket counts, delivery rate and time to delivery, as JSON.

Buckets are hours (days for 7 d and 30 d), read from the per-hour counts
(``counts``), never from messages: time to delivery is estimated from their
delivery-time bins.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker import clock
from tracker.dashboard import access, counts, overview, pages
from tracker.domain import status
from tracker.services import services_of

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
DELIVERED = status.Status.DELIVERED.value
FAILED = status.Status.FAILED.value
Bucket = tuple[dt.datetime, str, str, int]  # (hour, kind, label, messages)


def bucket_size(window: dt.timedelta) -> dt.timedelta:
    return HOUR if window <= DAY else DAY


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


def series(buckets: list[Bucket], since: dt.datetime, now: dt.datetime) -> dict[str, list[Any]]:
    """uPlot's columns: bucket starts (Unix s), sent, delivered, failed, rate, p50, p95."""
    size = bucket_size(now - since)
    sent: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    waits: dict[dt.datetime, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for hour, kind, label, count in buckets:
        slot = bucket_of(hour, size)
        if kind == "status":
            sent[slot]["sent"] += count
            sent[slot][label] += count
        else:
            waits[slot][int(label)] += count
    out: dict[str, list[Any]] = {k: [] for k in ("t", "sent", "delivered", "failed", "rate")}
    out |= {"p50": [], "p95": []}
    for slot in _slots(since, now, size):
        got, histogram = sent.get(slot, {}), waits.get(slot, {})
        done, failed = got.get(DELIVERED, 0), got.get(FAILED, 0)
        out["t"].append(int(slot.timestamp()))
        out["sent"].append(got.get("sent", 0))
        out["delivered"].append(done)
        out["failed"].append(failed)
        out["rate"].append(done / (done + failed) if done + failed else None)
        out["p50"].append(counts.estimate(histogram, 0.5))
        out["p95"].append(counts.estimate(histogram, 0.95))
    return out


async def data(request: Request) -> Response:
    """``/dashboard/charts?window=24h``: the chart series of the overview's window."""
    viewer = await access.viewer(request)
    window = overview.WINDOWS.get(request.query_params.get("window", ""), overview.WINDOWS["24h"])
    client = access.visible_client(viewer, request.query_params.get("client"))
    now = clock.utcnow()
    async with services_of(request).database.read() as db_session:
        by_day = bucket_size(window) == DAY
        buckets = await counts.per_hour(db_session, now - window, client, by_day=by_day)
    response = JSONResponse(series(buckets, now - window, now))
    response.headers["Cache-Control"] = "no-store"
    return pages.secure(response)
