"""Migration 0005 with data: the per-hour counts' backfill counts the rows already there.

On both databases: a schema at 0004 gets messages of two clients over three days
(every status, billed and unbilled, delivered with a delivery time, failures with a
description and network) and dispatch events (429s and provider errors); 0005 runs.
Its ``message_counts`` then hold every row, and after the later migrations the
dashboard's numbers (read from those counts) equal ``/v1/stats``' scan of the rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tests import conftest
from tracker import auth, clock, db, migrate
from tracker.app import create_app
from tracker.dashboard import overview
from tracker.settings import Settings

T = TypeVar("T")
BEFORE = "0004"
# Whole hours back from now, so no row falls in a 7-day window's first partial hour.
NOW = clock.utcnow().replace(minute=0, second=0, microsecond=0)

CLIENTS = sa.table(
    "clients",
    sa.column("name", sa.String()),
    sa.column("weight", sa.SmallInteger()),
    sa.column("created_at", db.UTCDateTime()),
    sa.column("updated_at", db.UTCDateTime()),
)
OLD_MESSAGES = sa.table(
    "messages",
    *(sa.column(name) for name in ("client", "sender_name", "contact", "body", "encoding")),
    *(sa.column(name) for name in ("status", "segments", "priority", "rank", "attempts")),
    *(sa.column(name) for name in ("network", "provider_description", "provider_message_id")),
    sa.column("id", sa.Uuid()),
    *(
        sa.column(name, db.UTCDateTime())
        for name in ("created_at", "updated_at", "accepted_at", "final_at")
    ),
)
OLD_EVENTS = sa.table(
    "message_events",
    *(sa.column(name) for name in ("from_status", "to_status", "source", "detail", "outcome")),
    sa.column("message_id", sa.Uuid()),
    sa.column("created_at", db.UTCDateTime()),
)
# (client, status, segments, billed, hours ago); delivered ones took 42 s.
ROWS = [
    ("otp", "delivered", 1, True, 3),
    ("otp", "delivered", 2, True, 30),
    ("otp", "delivered", 1, True, 70),
    ("otp", "failed", 1, True, 5),
    ("otp", "rejected", 1, False, 6),
    ("otp", "queued", 1, False, 1),
    ("billing", "delivered", 3, True, 2),
    ("billing", "failed", 2, True, 50),
    ("billing", "expired", 1, False, 20),
    ("billing", "pending", 1, True, 10),
    ("billing", "cancelled", 1, False, 4),
]
OUTCOMES = ["rate_limited", "rate_limited", "provider_error", "no_answer", None]


@pytest.fixture
async def url_at_0004(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """An empty database of the test's backend, migrated to 0004."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await asyncio.to_thread(migrate.upgrade, url, BEFORE)
        yield url
        return
    request.getfixturevalue("postgres_template")  # fails or skips if the server is down
    name = f"tracker_m5_{uuid.uuid4().hex[:10]}"
    await conftest._admin(f'CREATE DATABASE "{name}"')
    try:
        url = conftest.db_async_url(conftest.postgres_url(name))
        await asyncio.to_thread(migrate.upgrade, url, BEFORE)
        yield url
    finally:
        await conftest._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def using(url: str, work: Callable[[db.Database], Awaitable[T]]) -> T:
    database = db.Database(url)
    try:
        return await work(database)
    finally:
        await database.dispose()


def _message(client: str, state: str, segments: int, billed: bool, hours: int) -> dict[str, Any]:
    created = NOW - dt.timedelta(hours=hours, minutes=-10)
    final = state in {"delivered", "failed", "rejected", "expired", "cancelled"}
    return {
        "id": uuid.uuid4(), "client": client, "sender_name": "KIMISMS",
        "contact": "254712345678", "body": "hello", "encoding": "gsm7", "status": state,
        "segments": segments, "priority": 1, "rank": 0, "attempts": 1,
        "network": "Safaricom" if state == "failed" else None,
        "provider_description": "Absent subscriber" if state == "failed" else None,
        "provider_message_id": f"p-{uuid.uuid4().hex}" if billed else None,
        "created_at": created, "updated_at": created,
        "accepted_at": created + dt.timedelta(seconds=1) if billed else None,
        "final_at": created + dt.timedelta(seconds=42) if final else None,
    }  # fmt: skip


async def seed(database: db.Database) -> None:
    """Both clients, every row of ROWS, and OUTCOMES' events on the first message."""
    async with database.engine.begin() as connection:
        for name in ("billing", "otp"):
            await connection.execute(
                sa.insert(CLIENTS).values(name=name, weight=1, created_at=NOW, updated_at=NOW)
            )
        messages = [_message(*row) for row in ROWS]
        await connection.execute(sa.insert(OLD_MESSAGES), messages)
        first = messages[0]
        await connection.execute(
            sa.insert(OLD_EVENTS),
            [
                {
                    "message_id": first["id"],
                    "from_status": "queued",
                    "to_status": None,
                    "source": "dispatcher",
                    "detail": "attempt",
                    "outcome": outcome,
                    "created_at": first["created_at"] + dt.timedelta(seconds=n),
                }
                for n, outcome in enumerate(OUTCOMES)
            ],
        )


async def backfilled(database: db.Database) -> dict[str, dict[str, int]]:
    """At 0005: per span, the status counts ``message_counts`` holds (all clients)."""
    async with database.engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT span, label, sum(messages) FROM message_counts "
                "WHERE kind = 'status' GROUP BY span, label"
            )
        )
        found: dict[str, dict[str, int]] = {}
        for span, label, count in rows:
            found.setdefault(span, {})[label] = int(count)
    return found


async def compare(url: str, settings: Settings) -> tuple[dict[str, Any], overview.Overview]:
    """At head: /v1/stats over 7 days for an admin key, and the dashboard's overview."""
    key = await using(url, lambda d: auth.create_key(d, "ops", auth.parse_scopes("admin")))
    async with conftest.running(create_app(settings)) as client:
        answer = await client.get("/v1/stats?window=7d", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text

    async def built(database: db.Database) -> overview.Overview:
        async with database.read() as session:
            return await overview.build(session, settings, "7d", None, admin=True)

    return answer.json(), await using(url, built)


def test_the_backfill_counts_every_row_already_there(
    url_at_0004: str, make_settings: conftest.SettingsFactory
) -> None:
    """After 0005 the counts hold each status of the old rows (hours and days alike); at
    head the dashboard's tiles and breakdowns from them equal /v1/stats."""
    asyncio.run(using(url_at_0004, seed))
    migrate.upgrade(url_at_0004, "0005")
    expected = dict(Counter(state for _client, state, *_ in ROWS))
    counted = asyncio.run(using(url_at_0004, backfilled))
    assert counted == {"hour": expected, "day": expected}
    migrate.upgrade(url_at_0004)
    stats, shown = asyncio.run(compare(url_at_0004, make_settings(database_url=url_at_0004)))
    assert stats["total"] == len(ROWS)
    assert {k: v for k, v in stats["counts"].items() if v} == expected
    assert shown.stats.counts == stats["counts"]
    billed = sum(segments for _c, _s, segments, billed, _h in ROWS if billed)
    assert stats["units_billed"] == shown.stats.units_billed == billed
    assert stats["provider"]["rate_limited"] == shown.stats.provider_rate_limited == 2
    assert stats["provider"]["errors"] == shown.stats.provider_errors == 2
    assert stats["time_to_delivery_seconds"]["count"] == shown.stats.time_to_delivery.count == 4
    assert shown.by_description == [("Absent subscriber", 2)]
    assert dict(shown.by_client).keys() == {"billing", "otp"}
