"""Webhook attempts and quarantined callbacks are pruned after TRACKER_RETENTION_BODY (#17)."""

from __future__ import annotations

import datetime as dt
import json

from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.conftest import SettingsFactory
from tests.integration import retention_support as rs
from tracker import db, models
from tracker.clients import records
from tracker.privacy import retention
from tracker.reports import spool


async def _attempts(database: db.Database, *days_ago: float) -> None:
    """One delivery (already made) with an attempt ``days_ago`` before NOW for each."""
    async with database.write() as session:
        await records.ensure(session, "app")
        endpoint = models.WebhookEndpoint(client="app", url="https://example.com/h", secret="s")
        session.add(endpoint)
        await session.flush()
        delivery = models.WebhookDelivery(
            endpoint_id=endpoint.id, event_id="msg_1", event_type="message.delivered",
            data={}, occurred_at=rs.NOW, status="succeeded",
        )  # fmt: skip
        session.add(delivery)
        await session.flush()
        for days in days_ago:
            at = rs.NOW - dt.timedelta(days=days)
            session.add(models.WebhookAttempt(delivery_id=delivery.id, attempted_at=at,
                                              latency_ms=1.0, error=f"{days}"))  # fmt: skip


def _quarantine(path: spool.Spool, *days_ago: float) -> None:
    lines = [
        json.dumps({"raw": "x", "reason": "test",
                    "quarantined_at": (rs.NOW - dt.timedelta(days=d)).isoformat()})
        for d in days_ago
    ]  # fmt: skip
    path.quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    path.quarantine_path.write_text("\n".join([*lines, "not json"]) + "\n")


async def test_old_attempts_and_quarantine_entries_go_and_young_ones_stay(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """Older than the body period: pruned (in batches); younger, or undated: kept."""
    settings = make_settings(
        database_url=database.url, retention_body="7d", retention_contact="keep"
    )
    await _attempts(database, 8, 9, 10, 6.9)
    quarantine = spool.Spool(settings.spool_path)
    _quarantine(quarantine, 8, 30, 6.9)
    dry = await retention.run(database, settings, now=rs.NOW, dry_run=True)
    assert (dry.webhook_attempts, dry.quarantine_entries) == (3, 2)
    assert quarantine.quarantined() == 4
    before = [_pruned("webhook_attempts"), _pruned("quarantine_entries")]
    result = await retention.run(database, settings, now=rs.NOW, batch_size=2)
    assert (result.webhook_attempts, result.quarantine_entries) == (3, 2)
    after = [_pruned("webhook_attempts"), _pruned("quarantine_entries")]
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 2]
    assert result.transactions == 3  # the bodies' pick (none due), then 2 + 1 attempts
    async with database.read() as session:
        left = (await session.scalars(select(models.WebhookAttempt.error))).all()
    assert left == ["6.9"]
    kept = quarantine.quarantine_path.read_text().splitlines()
    assert len(kept) == 2
    assert kept[1] == "not json"
    assert "quarantined_at" in kept[0]


def _pruned(kind: str) -> float:
    value = REGISTRY.get_sample_value("tracker_retention_pruned_total", {"kind": kind})
    assert value is not None
    return value


async def test_keep_bodies_for_ever_keeps_attempts_too(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """TRACKER_RETENTION_BODY=keep prunes nothing."""
    settings = make_settings(database_url=database.url, retention_body="keep")
    await _attempts(database, 400)
    _quarantine(spool.Spool(settings.spool_path), 400)
    result = await retention.run(database, settings, now=rs.NOW)
    assert (result.webhook_attempts, result.quarantine_entries) == (0, 0)
    assert spool.Spool(settings.spool_path).quarantined() == 2
