"""GET /metrics: the exposition names every metric, and the values move with events."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SettingsFactory, running
from tests.factories import add_message
from tests.provider_loop import dispatching, loop, sandbox_config, settled, wait_for
from tracker import clock, db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.ops import gauges

Status = status.Status
METRIC_NAMES = (
    "tracker_messages",
    "tracker_queue_depth",
    "tracker_oldest_queued_age_seconds",
    "tracker_messages_overdue",
    "tracker_metrics_database_up",
    "tracker_metrics_database_age_seconds",
    "tracker_database_unavailable",
    "tracker_sends",
    "tracker_provider_request_seconds",
    "tracker_provider_rate_limited",
    "tracker_provider_token_refreshes",
    "tracker_callbacks",
    "tracker_callback_ack_seconds",
    "tracker_callback_batch_size",
    "tracker_callback_spool_backlog",
)


@pytest.fixture
async def http(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url=database_url, dlr_overdue_seconds=3600)
    async with running(create_app(settings)) as client:
        yield client


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(name: str, **labels: str) -> float:
    """A sample of this process's registry (what the next scrape shows); 0 if absent."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_exposition_names_every_metric_without_a_key(http: httpx.AsyncClient) -> None:
    """No API key is needed; every metric family is declared in Prometheus text format."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert set(METRIC_NAMES) <= families


async def test_database_gauges_follow_the_messages_at_each_refresh(
    http: httpx.AsyncClient, database: db.Database, make_settings: SettingsFactory
) -> None:
    """Messages by status, queue depth and overdue are read from the database per refresh."""
    settings = make_settings(database_url=database.url, dlr_overdue_seconds=3600)
    for _ in range(2):
        await add_message(database, status=Status.QUEUED)
    overdue = await add_message(database, status=Status.PENDING)
    async with database.write() as session:
        row = await session.get(models.Message, overdue)
        assert row is not None
        row.accepted_at = clock.utcnow() - dt.timedelta(hours=2)
    assert await gauges.refresh_database_gauges(database, settings)
    first = await scrape(http)
    assert first["tracker_messages", (("status", "queued"),)] == 2
    assert first["tracker_messages", (("status", "pending"),)] == 1
    assert first["tracker_messages", (("status", "delivered"),)] == 0
    assert (first["tracker_queue_depth", ()], first["tracker_messages_overdue", ()]) == (2, 1)
    assert first["tracker_metrics_database_up", ()] == 1
    for _ in range(3):
        await add_message(database, status=Status.QUEUED)
    assert await gauges.refresh_database_gauges(database, settings)
    second = await scrape(http)
    assert second["tracker_messages", (("status", "queued"),)] == 5
    assert second["tracker_queue_depth", ()] == 5
    assert (
        second["tracker_oldest_queued_age_seconds", ()]
        >= first["tracker_oldest_queued_age_seconds", ()]
    )


async def test_sends_429s_latency_and_token_refreshes_move_with_the_dispatcher(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """The sandbox's 429, then acceptance: counted by outcome, the 429 counted, calls timed."""
    message_id = await add_message(database, status=Status.QUEUED, contact="254700000505")
    names = ("accepted", "rate_limited")
    before_sends = [value("tracker_sends_total", outcome=outcome) for outcome in names]
    before_429 = value("tracker_provider_rate_limited_total")
    before_tokens = value("tracker_provider_token_refreshes_total")
    before_calls = value("tracker_provider_request_seconds_count", path="/api/send-sms")
    with loop(make_settings, database_url, sandbox_config(burst_length=1)) as (settings, _):
        async with dispatching(settings, database):
            await wait_for(database, [message_id], settled)
    after_sends = [value("tracker_sends_total", outcome=outcome) for outcome in names]
    assert [a - b for a, b in zip(after_sends, before_sends, strict=True)] == [1, 1]
    assert value("tracker_provider_rate_limited_total") - before_429 == 1
    assert value("tracker_provider_token_refreshes_total") - before_tokens == 1
    calls = value("tracker_provider_request_seconds_count", path="/api/send-sms")
    assert calls - before_calls == 2


async def test_callback_outcomes_and_ack_latency_are_counted(http: httpx.AsyncClient) -> None:
    """A forged callback URL is answered 404 and counted as not_found, with its latency."""
    before = (
        value("tracker_callbacks_total", outcome="not_found"),
        value("tracker_callback_ack_seconds_count"),
    )
    response = await http.post(f"/v1/callbacks/kimisms/{uuid.uuid4()}/forged", json={})
    assert response.status_code == 404
    after = await scrape(http)
    assert after["tracker_callbacks_total", (("outcome", "not_found"),)] == before[0] + 1
    assert after["tracker_callback_ack_seconds_count", ()] == before[1] + 1


async def test_a_scrape_answers_when_the_database_is_down(make_settings: SettingsFactory) -> None:
    """The process's own metrics are still served; the database gauge says 0."""
    settings = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    async with running(create_app(settings)) as http:
        samples = await scrape(http)
    assert samples["tracker_metrics_database_up", ()] == 0


async def test_item_5_a_scrape_serves_the_last_values_without_reading_the_database(
    http: httpx.AsyncClient, database: db.Database, make_settings: SettingsFactory
) -> None:
    """/metrics never waits on the database: it shows the last refresh, and its age."""
    settings = make_settings(database_url=database.url, dlr_overdue_seconds=3600)
    await add_message(database, status=Status.QUEUED)
    assert await gauges.refresh_database_gauges(database, settings)
    first = await scrape(http)
    await add_message(database, status=Status.QUEUED)
    second = await scrape(http)
    assert first["tracker_messages", (("status", "queued"),)] == 1
    assert second["tracker_messages", (("status", "queued"),)] == 1
    assert second["tracker_metrics_database_age_seconds", ()] >= 0
