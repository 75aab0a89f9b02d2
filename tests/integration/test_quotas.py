"""Per-client limits and senders at admission, and their counts in /v1/stats (both databases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory
from tests.integration.send_support import (
    Headers,
    api_settings,
    bearer,
    count,
    errors_of,
    message,
    post_json,
    send,
)
from tests.integration.test_send_api_batch import numbered, statements
from tracker import clock, db, models
from tracker.clients import quotas, records
from tracker.domain import segments, status
from tracker.settings import Settings

BATCH = "/v1/messages/batch"
HIGH = status.PRIORITY_ORDER[status.Priority.HIGH]
NORMAL = status.PRIORITY_ORDER[status.Priority.NORMAL]


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


async def limit(database: db.Database, name: str = "app", **changes: Any) -> None:
    """Set a client's limits or senders as an operator would (PATCH, H1's CLI)."""
    async with database.write() as session:
        await records.update(session, name, **changes)


async def seed(
    database: db.Database, created_at: dt.datetime, n: int = 1, *, priority: int = NORMAL
) -> None:
    """``n`` of app's messages accepted at ``created_at`` (in the past)."""
    async with database.write() as session:
        for i in range(n):
            session.add(
                models.Message(
                    id=models.new_id(),
                    client="app",
                    sender_name="KIMISMS",
                    contact=f"2547{10_000_000 + i:08d}",
                    network="Safaricom",
                    body="Earlier",
                    segments=1,
                    encoding=segments.Encoding.GSM7.value,
                    priority=priority,
                    status=status.Status.QUEUED.value,
                    rank=status.RANK[status.Status.QUEUED],
                    next_attempt_at=created_at,
                    created_at=created_at,
                    updated_at=created_at,
                )
            )


def refused(response: httpx.Response) -> tuple[str, int]:
    """A 429's (detail, Retry-After)."""
    assert response.status_code == 429, response.text
    assert set(response.json()) == {"detail"}
    return response.json()["detail"], int(response.headers["Retry-After"])


async def test_a_send_past_rate_per_minute_is_429_with_retry_after_and_the_limit_named(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The fourth message in a minute under rate_per_minute=3 is refused and not stored."""
    await limit(database, rate_per_minute=3)
    for _ in range(3):
        assert (await send(client, headers)).status_code == 202
    detail, retry_after = refused(await send(client, headers))
    assert detail == (
        "rate_per_minute limit of 3 reached: 3 accepted in the last 60 s, this request has 1"
    )
    assert 1 <= retry_after <= 60
    assert await count(database, models.Message) == 3


async def test_retry_after_is_when_enough_of_the_window_has_passed(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Two accepted 50 s ago fill rate_per_minute=2: the request fits in 10 s, not 60."""
    started = clock.utcnow()
    await seed(database, started - dt.timedelta(seconds=50), 2)
    await limit(database, rate_per_minute=2)
    _detail, retry_after = refused(await send(client, headers))
    elapsed = (clock.utcnow() - started).total_seconds()
    assert max(1, math.ceil(10 - elapsed)) <= retry_after <= 10


async def test_messages_accepted_over_60_s_ago_no_longer_count(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The window slides: five from 61 s ago leave rate_per_minute=2 untouched."""
    await seed(database, clock.utcnow() - dt.timedelta(seconds=61), 5)
    await limit(database, rate_per_minute=2)
    for _ in range(2):
        assert (await send(client, headers)).status_code == 202


async def test_a_batch_that_would_cross_the_limit_is_refused_whole(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A batch counts all its messages: all or nothing, and the one that fits is accepted."""
    await limit(database, rate_per_minute=5)
    assert (await post_json(client, BATCH, {"messages": numbered(3)}, headers)).status_code == 202
    response = await post_json(client, BATCH, {"messages": numbered(3)}, headers)
    detail, _retry_after = refused(response)
    assert detail.endswith("3 accepted in the last 60 s, this request has 3")
    assert await count(database, models.Message) == 3
    assert await count(database, models.MessageEvent) == 3
    assert (await post_json(client, BATCH, {"messages": numbered(2)}, headers)).status_code == 202


async def test_a_request_larger_than_the_limit_is_told_it_can_never_fit(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Four messages against rate_per_minute=3 can never be admitted: still 429, saying so."""
    await limit(database, rate_per_minute=3)
    detail, retry_after = refused(
        await post_json(client, BATCH, {"messages": numbered(4)}, headers)
    )
    assert detail.startswith("rate_per_minute limit of 3 can never admit this request: it has 4")
    assert retry_after >= 1
    assert await count(database, models.Message) == 0


async def test_the_daily_cap_counts_the_nairobi_day_and_resets_at_its_midnight(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Yesterday in Nairobi does not count; past the cap, Retry-After runs to its midnight."""
    started = clock.utcnow()
    today = quotas.day_start(started)
    await seed(database, today - dt.timedelta(seconds=1))  # 23:59:59 yesterday, Nairobi
    await seed(database, today)
    await limit(database, daily_cap=2)
    assert (await send(client, headers)).status_code == 202
    detail, retry_after = refused(await send(client, headers))
    finished = clock.utcnow()
    assert detail == (
        "daily_cap limit of 2 reached: 2 accepted today (Africa/Nairobi), this request has 1"
    )
    midnight = quotas.next_midnight(started)
    assert quotas.seconds_until(midnight, finished) <= retry_after
    assert retry_after <= quotas.seconds_until(midnight, started)


async def test_the_high_cap_refuses_high_but_still_accepts_normal(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """high_per_minute=1: a second high message is 429, a normal one is still 202."""
    await limit(database, high_per_minute=1)
    assert (await send(client, headers, priority="high")).status_code == 202
    detail, retry_after = refused(await send(client, headers, priority="high"))
    assert detail == (
        "high_per_minute limit of 1 reached: 1 high-priority accepted in the last 60 s, "
        "this request has 1"
    )
    assert 1 <= retry_after <= 60
    mixed = [message(priority="normal"), message(priority="high")]
    refused(await post_json(client, BATCH, {"messages": mixed}, headers))
    assert (await send(client, headers, priority="normal")).status_code == 202
    assert await count(database, models.Message) == 2


async def test_an_unlimited_client_is_never_refused_and_counts_nothing(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Without limits no count or lock runs; with one, the count runs in the send."""
    with statements() as seen:
        for _ in range(3):
            response = await post_json(client, BATCH, {"messages": numbered(20)}, headers)
            assert response.status_code == 202
    assert not [sql for sql in seen if "FILTER" in sql and "messages.client" in sql]
    await limit(database, daily_cap=1000)
    with statements() as seen:
        assert (await send(client, headers)).status_code == 202
    assert [sql for sql in seen if "FILTER" in sql and "messages.client" in sql]


async def test_a_replay_is_answered_as_before_even_past_the_limit(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """An Idempotency-Key replay gets its 202 again, never a 429, and stores nothing."""
    await limit(database, rate_per_minute=1)
    keyed = {**headers, "Idempotency-Key": "order-1"}
    first = await send(client, keyed)
    assert first.status_code == 202
    again = await send(client, keyed)
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    refused(await send(client, {**headers, "Idempotency-Key": "order-2"}))
    assert await count(database, models.Message) == 1


async def test_concurrent_requests_admit_exactly_the_limit(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Twelve sends at once under rate_per_minute=5: exactly five are stored, seven refused."""
    await limit(database, rate_per_minute=5)
    answers = await asyncio.gather(*(send(client, headers) for _ in range(12)))
    codes = sorted(response.status_code for response in answers)
    assert codes == [202] * 5 + [429] * 7
    assert await count(database, models.Message) == 5


async def test_concurrent_requests_with_one_key_are_one_message_and_replays(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Racing retries of one request under a full limit all get its 202, never a 429."""
    await limit(database, rate_per_minute=1)
    keyed = {**headers, "Idempotency-Key": "race"}
    answers = await asyncio.gather(*(send(client, keyed) for _ in range(6)))
    assert [response.status_code for response in answers] == [202] * 6
    assert len({response.json()["id"] for response in answers}) == 1
    assert await count(database, models.Message) == 1


async def test_a_changed_limit_applies_to_the_next_request(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Limits are read with the key: raising or removing one takes effect at once."""
    await limit(database, rate_per_minute=1)
    assert (await send(client, headers)).status_code == 202
    refused(await send(client, headers))
    await limit(database, rate_per_minute=2)
    assert (await send(client, headers)).status_code == 202
    await limit(database, rate_per_minute=None)
    assert (await send(client, headers)).status_code == 202


async def test_a_refusal_is_counted_and_logged_without_numbers_or_bodies(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """tracker_quota_refusals_total{limit} rises; send_refused_quota names client and limit."""
    await limit(database, daily_cap=1)
    assert (await send(client, headers)).status_code == 202
    labels = {"limit": "daily_cap"}
    before = REGISTRY.get_sample_value("tracker_quota_refusals_total", labels) or 0.0
    with capture_logs() as logs:
        refused(await send(client, headers))
    after = REGISTRY.get_sample_value("tracker_quota_refusals_total", labels)
    assert after == before + 1
    [line] = [entry for entry in logs if entry["event"] == "send_refused_quota"]
    assert (line["client"], line["limit"], line["limit_value"]) == ("app", "daily_cap", 1)
    assert "0712345678" not in repr(line)
    assert "Your code" not in repr(line)


# --- senders -------------------------------------------------------------------


async def test_a_client_sends_from_its_own_list_with_its_default(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """sender_names=[ACME]: no sender_name means ACME, and KIMISMS is a 400 on sender_name."""
    await limit(database, sender_names=["ACME"])
    response = await send(client, headers)
    assert (response.status_code, response.json()["sender_name"]) == (202, "ACME")
    assert errors_of(await send(client, headers, sender_name="KIMISMS")) == {
        "sender_name": ["'KIMISMS' is not an allowed sender name (allowed: ACME)"]
    }
    items = [message(), message(sender_name="KIMISMS")]
    assert errors_of(await post_json(client, BATCH, {"messages": items}, headers)) == {
        "messages[1].sender_name": ["'KIMISMS' is not an allowed sender name (allowed: ACME)"]
    }


async def test_a_clients_default_sender_replaces_the_settings_first(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """default_sender=ACME without a list: the default is ACME, and KIMISMS is still allowed."""
    await limit(database, default_sender="ACME")
    assert (await send(client, headers)).json()["sender_name"] == "ACME"
    assert (await send(client, headers, sender_name="KIMISMS")).json()["sender_name"] == "KIMISMS"


# --- /v1/stats -----------------------------------------------------------------


async def test_stats_show_the_counts_against_the_limits(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """quota: each limit (null when unset) with its count now, and the daily reset."""
    earlier = clock.utcnow() - dt.timedelta(seconds=120)  # out of the minute, in the day
    await seed(database, earlier, priority=HIGH)
    await limit(database, rate_per_minute=10, daily_cap=100)
    await post_json(client, BATCH, {"messages": numbered(2)}, headers)
    await send(client, headers, priority="high")
    stats = (await client.get("/v1/stats", headers=headers)).json()
    until = dt.datetime.fromisoformat(stats["until"])
    today = 3 + (earlier >= quotas.day_start(until))  # unless Nairobi's midnight fell between
    assert stats["quota"] == {
        "client": "app",
        "rate_per_minute": {"limit": 10, "used": 3},
        "daily_cap": {
            "limit": 100,
            "used": today,
            "resets_at": quotas.next_midnight(until).isoformat().replace("+00:00", "Z"),
        },
        "high_per_minute": {"limit": None, "used": 1},
    }


async def test_an_admin_sees_a_named_clients_quota_and_none_over_every_client(
    client: httpx.AsyncClient,
    headers: Headers,
    database: db.Database,
    make_key: Callable[..., Any],
) -> None:
    """?client=app shows app's limits to an admin; without it the stats span clients."""
    admin = bearer(await make_key("ops", "admin"))
    await limit(database, high_per_minute=4)
    await send(client, headers, priority="high")
    named = (await client.get("/v1/stats?client=app", headers=admin)).json()["quota"]
    assert (named["client"], named["high_per_minute"]) == ("app", {"limit": 4, "used": 1})
    assert (await client.get("/v1/stats", headers=admin)).json()["quota"] is None
    assert (await client.get("/v1/stats?client=nobody", headers=admin)).json()["quota"] is None
