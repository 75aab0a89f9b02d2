"""The retention job (#17): each rule changes the rows it should, and no others."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY
from sqlalchemy import insert, select

from tests.conftest import SettingsFactory
from tests.integration import retention_support as rs
from tracker import db, models
from tracker.clients import records
from tracker.privacy import audit, pseudonyms, retention

Status = rs.Status


async def _override(database: db.Database, name: str, **periods: str) -> None:
    async with database.write() as session:
        await records.ensure(session, name)
        await records.update(session, name, **periods)


async def test_each_rule_changes_the_due_rows_and_no_others(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """Just past a cutoff is done, just inside it is not, non-final rows never; overrides win."""
    settings = make_settings(database_url=database.url, retention_message="keep")
    await _override(database, "strict", retention_body="1d", retention_message="30d")
    await _override(database, "keeper", retention_body="keep", retention_contact="keep")
    old_body, young_body = [await rs.add(database, final_days_ago=d) for d in (7.01, 6.99)]
    old_number, young_number = [await rs.add(database, final_days_ago=d) for d in (90.01, 89.99)]
    unfinished = [
        await rs.add(database, final_days_ago=None, state=state, created_days_ago=200)
        for state in (Status.QUEUED, Status.SENDING, Status.PENDING)
    ]
    strict_body = await rs.add(database, final_days_ago=1.5, client="strict")
    strict_gone = await rs.add(database, final_days_ago=30.5, client="strict")
    kept = await rs.add(database, final_days_ago=365, client="keeper")

    result = await retention.run(database, settings, now=rs.NOW)

    redacted = [
        await rs.message(database, m) for m in (old_body, old_number, young_number, strict_body)
    ]
    assert [(m.body, m.redacted_at) for m in redacted if m] == [(None, rs.NOW)] * 4
    untouched = [await rs.message(database, m) for m in (young_body, *unfinished, kept)]
    assert [(m.body, m.contact, m.redacted_at) for m in untouched if m] == [
        (rs.BODY, rs.NUMBER, None)
    ] * 5
    young, number = redacted[2], redacted[1]
    assert young is not None
    assert (young.contact, young.pseudonymised_at) == (rs.NUMBER, None)
    assert number is not None
    key = settings.pseudonym_key_bytes()
    assert (number.contact, number.contact_pseudonym) == ("", pseudonyms.of(rs.NUMBER, key))
    assert await rs.message(database, strict_gone) is None
    assert result.redacted == 4
    assert result.pseudonymised.counts() == {
        "messages": 1, "events": 1, "receipts": 1, "webhook_deliveries": 0, "webhook_attempts": 0
    }  # fmt: skip
    assert (result.deleted.messages, result.deleted.events, result.deleted.receipts) == (1, 1, 1)


async def test_a_deleted_message_takes_its_history_and_leaves_its_counts(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """Events and receipts go with it; deleted_message_counts holds its day, status, units."""
    settings = make_settings(database_url=database.url, retention_message="30d")
    gone = await rs.add(database, final_days_ago=40, created_days_ago=40.2)
    await rs.add(database, final_days_ago=40, created_days_ago=40.2, state=Status.FAILED)
    stays = await rs.add(database, final_days_ago=10)
    await retention.run(database, settings, now=rs.NOW)
    await retention.run(database, settings, now=rs.NOW)  # nothing more: counted once
    assert await rs.message(database, gone) is None
    assert await rs.message(database, stays) is not None
    assert await rs.rows(database, models.MessageEvent) == 1
    assert await rs.rows(database, models.CallbackReceipt) == 1
    async with database.read() as session:
        found = (await session.execute(select(models.DeletedMessageCount))).scalars().all()
    day = (rs.NOW - dt.timedelta(days=40.2)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert sorted((c.client, c.day, c.status, c.messages, c.units) for c in found) == [
        ("app", day, "delivered", 1, 2),
        ("app", day, "failed", 1, 2),
    ]


async def test_a_dry_run_counts_and_changes_nothing(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """Dry, each rule's count is what the real run then does, and no row changes meanwhile."""
    settings = make_settings(database_url=database.url, retention_message="30d")
    for days in (8, 8, 95, 40):
        await rs.add(database, final_days_ago=days)
    dry = await retention.run(database, settings, now=rs.NOW, dry_run=True)
    assert (dry.redacted, dry.pseudonymised.messages, dry.deleted.messages) == (4, 1, 2)
    async with database.read() as session:
        bodies = (await session.scalars(select(models.Message.body))).all()
        assert bodies == [rs.BODY] * 4
        assert await audit.recent(session) == []
    real = await retention.run(database, settings, now=rs.NOW)
    assert real.deleted.messages == 2  # deleted first: then no need to redact them
    assert (real.redacted, real.pseudonymised.messages) == (2, 0)


async def test_a_run_that_changed_rows_is_audited_once_with_counts(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """One retention entry per run that changed something, its counts, no number; none if idle."""
    settings = make_settings(database_url=database.url)
    await rs.add(database, final_days_ago=100)
    await retention.run(database, settings, now=rs.NOW)
    await retention.run(database, settings, now=rs.NOW)
    async with database.read() as session:
        entries = await audit.recent(session, action=audit.Action.RETENTION)
    assert len(entries) == 1
    assert entries[0]["actor"] == "retention"
    assert entries[0]["detail"]["redacted_messages"] == 1
    assert entries[0]["detail"]["pseudonymised_receipts"] == 1
    assert "712345678" not in str(entries[0])


async def test_batches_are_bounded(database: db.Database, make_settings: SettingsFactory) -> None:
    """2,500 due rows at 1,000 a batch take three transactions."""
    settings = make_settings(
        database_url=database.url, retention_contact="keep", retention_message="keep"
    )
    async with database.write() as session:
        await records.ensure(session, "app")
    await _bulk_final(database, 2500)
    result = await retention.run(
        database, settings, now=rs.NOW, batch_size=1000, lock_target_seconds=None
    )
    assert (result.redacted, result.transactions) == (2500, 3)


async def _bulk_final(database: db.Database, count: int) -> None:
    """``count`` delivered messages final 30 days ago, in one statement."""
    at = rs.NOW - dt.timedelta(days=30)
    rows = [
        {
            "id": models.new_id(), "client": "app", "sender_name": "KIMISMS",
            "contact": rs.NUMBER, "body": rs.BODY, "segments": 1, "encoding": "gsm7",
            "priority": 1, "status": "delivered", "rank": 4, "next_attempt_at": at,
            "created_at": at, "updated_at": at, "final_at": at,
        }
        for _ in range(count)
    ]  # fmt: skip
    async with database.write() as session:
        await session.execute(insert(models.Message), rows)


async def test_the_rows_are_counted_in_the_metrics(
    database: db.Database, make_settings: SettingsFactory
) -> None:
    """tracker_retention_rows_total rises by what each action did."""
    settings = make_settings(database_url=database.url, retention_message="30d")
    await rs.add(database, final_days_ago=10)
    await rs.add(database, final_days_ago=40)
    before = {a: _metric(a) for a in ("redacted", "pseudonymised", "deleted")}
    await retention.run(database, settings, now=rs.NOW)
    after = {a: _metric(a) - before[a] for a in before}
    assert after == {"redacted": 1, "pseudonymised": 0, "deleted": 1}


def _metric(action: str) -> float:
    value = REGISTRY.get_sample_value("tracker_retention_rows_total", {"action": action})
    assert value is not None
    return value
