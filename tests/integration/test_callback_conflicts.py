"""Issue 12, item 4: a report the database would refuse never counts as an outage.

A report claiming a provider message id that another message holds is refused
as a mismatch by the planner, in one batch and across batches; a constraint the
planner does not foresee splits the batch instead of spooling it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select, text
from structlog.testing import capture_logs

from tests.conftest import running
from tests.factories import add_message, fetch_message
from tests.integration.test_callbacks import post, report
from tracker import clock, db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.reports import ingest, plan, reading, statements
from tracker.reports.spool import Spool
from tracker.settings import Settings

DEADLINE = 1.0


def receipt(message_id: uuid.UUID, body: dict[str, str]) -> reading.Receipt:
    return reading.Receipt(message_id, json.dumps(body), "127.0.0.1", clock.utcnow())


async def receipts_of(database: db.Database, message_id: uuid.UUID) -> list[str]:
    async with database.read() as session:
        rows = await session.scalars(
            select(models.CallbackReceipt.outcome)
            .where(models.CallbackReceipt.message_id == message_id)
            .order_by(models.CallbackReceipt.id)
        )
    return list(rows)


async def event_details(database: db.Database, message_id: uuid.UUID) -> list[str | None]:
    async with database.read() as session:
        rows = await session.scalars(
            select(models.MessageEvent.detail)
            .where(models.MessageEvent.message_id == message_id)
            .order_by(models.MessageEvent.id)
        )
    return list(rows)


async def test_item_4_a_report_claiming_another_messages_provider_id_is_a_recorded_409(
    settings: Settings, database: db.Database
) -> None:
    """Item 4: the provider id of another message is a mismatch (409, recorded), not an outage."""
    holder = await add_message(database, provider_message_id="p-held")
    claimant = await add_message(database, status=status.Status.SENDING)
    app = create_app(settings)
    with capture_logs() as captured:
        async with running(app) as http:
            response = await post(http, settings, claimant, report(message_id="p-held"))
            after = await post(http, settings, holder, report(message_id="p-held"))
            breaker = app.state.ingester._broken_until
    assert response.status_code == 409
    assert response.json() == {"detail": "report contradicts the message it was sent for"}
    assert after.json()["outcome"] == "applied"  # the holder's own report still applies
    assert breaker == 0.0
    assert "callback_db_unavailable" not in [e["event"] for e in captured]
    assert Spool(settings.spool_path).backlog() == 0
    message = await fetch_message(database, claimant)
    assert (message.status, message.provider_message_id) == (status.Status.SENDING, None)
    assert await receipts_of(database, claimant) == ["mismatch"]
    assert await event_details(database, claimant) == [
        "refused: provider message id belongs to another message"
    ]


async def test_item_4_two_reports_claiming_one_provider_id_in_a_batch_and_across_batches(
    database: db.Database,
) -> None:
    """Item 4: the first message to claim an id keeps it; later claims, in the same batch
    or the next one, are mismatches."""
    first, second, third = [
        await add_message(database, status=status.Status.SENDING) for _ in range(3)
    ]
    claim = report(message_id="p-x")
    async with database.write() as session:
        outcomes = await statements.apply_receipts(
            session,
            [receipt(first, report("Sent", message_id="p-x")), receipt(second, claim)],
        )
    assert outcomes == [plan.Outcome.INTERIM, plan.Outcome.MISMATCH]
    async with database.write() as session:
        outcomes = await statements.apply_receipts(
            session, [receipt(third, claim), receipt(first, claim)]
        )
    assert outcomes == [plan.Outcome.MISMATCH, plan.Outcome.APPLIED]
    assert (await fetch_message(database, first)).provider_message_id == "p-x"
    for other in (second, third):
        message = await fetch_message(database, other)
        assert (message.status, message.provider_message_id) == (status.Status.SENDING, None)
        assert await receipts_of(database, other) == ["mismatch"]


async def test_item_4_a_batch_mixing_good_reports_with_a_cross_message_provider_id(
    settings: Settings, database: db.Database
) -> None:
    """Item 4: concurrent callbacks, one claiming another's provider id: the good ones
    are applied (200), the bad one is 409, nothing is spooled, the breaker stays shut."""
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(20)]
    bad = await add_message(database, status=status.Status.SENDING)
    bodies = [(i, report(message_id=f"p-{n}")) for n, i in enumerate(ids)]
    bodies.insert(7, (bad, report(message_id="p-3")))
    app = create_app(settings)
    with capture_logs() as captured:
        async with running(app) as http:
            responses = await asyncio.gather(*(post(http, settings, i, b) for i, b in bodies))
            breaker = app.state.ingester._broken_until
    answers = [(r.status_code, r.json().get("outcome")) for r in responses]
    assert answers == [(200, "applied")] * 7 + [(409, None)] + [(200, "applied")] * 13
    assert breaker == 0.0
    assert "callback_db_unavailable" not in [e["event"] for e in captured]
    assert Spool(settings.spool_path).backlog() == 0
    assert {(await fetch_message(database, i)).status for i in ids} == {"delivered"}
    assert await receipts_of(database, bad) == ["mismatch"]


async def _forbid_a_second_poison_event(database: db.Database) -> None:
    """A constraint the planner knows nothing of (as a race or a new rule would be):
    only one event may say the status word "Poison"."""
    async with database.write() as session:
        await session.execute(
            text(
                "CREATE UNIQUE INDEX ix_test_one_poison ON message_events (detail)"
                " WHERE detail LIKE '%Poison%'"
            )
        )


@pytest.mark.parametrize("position", [0, 5, 11])
async def test_item_4_a_constraint_failing_one_report_splits_the_group_commit(
    database: db.Database, tmp_path: Path, position: int
) -> None:
    """Item 4: an integrity error in a group commit is not an outage: the batch is split,
    the others are applied, the culprit is recorded and refused as a mismatch."""
    await _forbid_a_second_poison_event(database)
    first = await add_message(database, provider_message_id="p-first")
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(12)]
    bodies = [receipt(i, report(message_id=f"p-{n}")) for n, i in enumerate(ids)]
    bodies[position] = receipt(ids[position], report("Poison", message_id=f"p-{position}"))
    spool = Spool(tmp_path / "spool.jsonl")
    ingester = ingest.Ingester(database, spool, deadline_seconds=DEADLINE)
    await ingester.start(replay_interval=3600)
    try:
        unknown = await ingester.submit(receipt(first, report("Poison", message_id="p-first")))
        with capture_logs() as captured:
            outcomes = await asyncio.gather(*(ingester.submit(r) for r in bodies))
        breaker = ingester._broken_until
    finally:
        await ingester.stop()
    assert unknown == plan.Outcome.UNKNOWN_STATUS
    expected = [plan.Outcome.APPLIED] * 12
    expected[position] = plan.Outcome.MISMATCH
    assert outcomes == expected
    assert breaker == 0.0
    events = [e["event"] for e in captured]
    assert "callback_db_unavailable" not in events
    assert events.count("callback_refused_by_database") == 1
    assert spool.backlog() == 0
    statuses = [(await fetch_message(database, i)).status for i in ids]
    assert statuses == ["pending" if n == position else "delivered" for n in range(12)]
    assert await receipts_of(database, ids[position]) == ["mismatch"]
    assert await event_details(database, ids[position]) == [plan.REFUSED_BY_DATABASE]


async def test_item_4_a_refused_report_resent_is_refused_again_without_a_second_record(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Item 4: the report the database refused is remembered: the resend is a 409 too."""
    await _forbid_a_second_poison_event(database)
    first = await add_message(database, provider_message_id="p-first")
    second = await add_message(database, provider_message_id="p-second")
    await post(client, settings, first, report("Poison", message_id="p-first"))
    body = report("Poison", message_id="p-second")
    answers = [(await post(client, settings, second, body)).status_code for _ in range(2)]
    assert answers == [409, 409]
    assert await receipts_of(database, second) == ["mismatch"]
    assert Spool(settings.spool_path).backlog() == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite has one writer
async def test_item_4_a_provider_id_taken_by_a_concurrent_transaction_is_refused_not_spooled(
    database: db.Database, database_url: str, tmp_path: Path
) -> None:
    """Item 4: the planner cannot see an uncommitted claim of the same provider id; the
    unique violation at commit splits the batch: the other report applies, this one is 409."""
    claimant = await add_message(database, status=status.Status.SENDING)
    taker = await add_message(database, status=status.Status.SENDING)
    good = await add_message(database, provider_message_id="p-good")
    other = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    transaction = other.transaction()
    await transaction.start()
    await other.execute("UPDATE messages SET provider_message_id = 'p-x' WHERE id = $1", taker)
    spool = Spool(tmp_path / "spool.jsonl")
    ingester = ingest.Ingester(database, spool, deadline_seconds=5.0)
    await ingester.start(replay_interval=3600)
    try:
        submitted = asyncio.gather(
            ingester.submit(receipt(good, report(message_id="p-good"))),
            ingester.submit(receipt(claimant, report(message_id="p-x"))),
        )
        await _until_the_writer_waits_for_a_lock(database_url)
        await transaction.commit()
        outcomes = await submitted
        breaker = ingester._broken_until
    finally:
        await other.close()
        await ingester.stop()
    assert list(outcomes) == [plan.Outcome.APPLIED, plan.Outcome.MISMATCH]
    assert breaker == 0.0
    assert spool.backlog() == 0
    assert (await fetch_message(database, claimant)).provider_message_id is None
    assert (await fetch_message(database, taker)).provider_message_id == "p-x"
    assert await receipts_of(database, claimant) == ["mismatch"]


async def _until_the_writer_waits_for_a_lock(database_url: str) -> None:
    """Poll (from a connection outside any transaction: pg_stat_activity is a snapshot
    per transaction) until the ingester waits on the other transaction."""
    watcher = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        for _ in range(500):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'tracker-callbacks' AND wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    raise AssertionError("the writer never waited for the lock")
