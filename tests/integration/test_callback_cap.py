"""Issue 12, item 12: one capability URL cannot make the tracker store without bound.

Past ``TRACKER_CALLBACK_REPORTS_PER_MESSAGE`` receipts, a report that moves
nothing is counted and answered 200 ``ignored`` but not stored; a report that
moves the status (a final delivery report) is always applied and stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory, running
from tests.factories import add_message, count_rows, fetch_message
from tests.integration.test_callbacks import PROVIDER_ID, post, report
from tracker import clock, db, metrics, models
from tracker.app import create_app
from tracker.domain import status
from tracker.errors import ConfigurationError
from tracker.reports import ingest, plan, reading, statements
from tracker.reports.spool import Spool

CAP = 3


def dropped() -> float:
    return float(metrics.CALLBACK_REPORTS_DROPPED._value.get())


async def test_item_12_reports_past_the_cap_are_answered_ignored_and_not_stored(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Item 12: interim, stale and malformed reports past the cap are 200 ignored, counted,
    and leave no receipt or event; the final report past the cap still applies."""
    settings = make_settings(database_url=database_url, callback_reports_per_message=CAP)
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    before = dropped()
    async with running(create_app(settings)) as http:
        interim = [
            await post(http, settings, message_id, report("Sent", description=f"hop {n}"))
            for n in range(CAP + 2)
        ]
        malformed = await post(http, settings, message_id, b"not json")
        final = await post(http, settings, message_id, report())
        stale = await post(http, settings, message_id, report("Failed"))
    outcomes = [r.json()["outcome"] for r in interim]
    assert outcomes == ["interim"] * CAP + ["ignored"] * 2
    assert {r.status_code for r in interim} == {200}
    assert (malformed.status_code, malformed.json()["outcome"]) == (200, "ignored")
    assert final.json() == {"received": True, "outcome": "applied"}
    assert stale.json()["outcome"] == "ignored"
    assert dropped() - before == 4
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.provider_status == "Delivered"
    assert await count_rows(database, models.CallbackReceipt, message_id) == CAP + 1
    assert await count_rows(database, models.MessageEvent, message_id) == CAP + 1


async def test_item_12_a_batch_stops_storing_at_the_cap_but_keeps_the_final_report(
    database: db.Database,
) -> None:
    """Item 12: many interim reports then a Delivered in one group commit: the cap holds
    within the batch and the Delivered is applied; another message is not affected."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    other = await add_message(database, provider_message_id="p-other")
    bodies = [json.dumps(report("Buffered", description=f"try {n}")) for n in range(6)]
    batch = [reading.Receipt(message_id, b, None, clock.utcnow()) for b in bodies]
    batch.append(reading.Receipt(message_id, json.dumps(report()), None, clock.utcnow()))
    batch.append(
        reading.Receipt(other, json.dumps(report(message_id="p-other")), None, clock.utcnow())
    )
    async with database.write() as session:
        outcomes = await statements.apply_receipts(session, batch, cap=CAP)
    interim, ignored, applied = (
        plan.Outcome.INTERIM,
        plan.Outcome.IGNORED,
        plan.Outcome.APPLIED,
    )
    assert outcomes == [interim] * CAP + [ignored] * 3 + [applied, applied]
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
    assert await count_rows(database, models.CallbackReceipt, message_id) == CAP + 1
    assert (await fetch_message(database, other)).status == status.Status.DELIVERED


async def test_item_12_the_replay_honours_the_cap(database: db.Database, tmp_path: Path) -> None:
    """Item 12: a spool full of reports on one message stores no more than the cap, and
    its final report is applied."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    spool = Spool(tmp_path / "spool.jsonl")
    bodies = [report("Sent", description=f"hop {n}") for n in range(10)] + [report()]
    spool.append([reading.Receipt(message_id, json.dumps(b), None, clock.utcnow()) for b in bodies])
    before = dropped()
    assert await ingest.replay(database, spool, batch_size=4, cap=CAP) == 11
    assert dropped() - before == 10 - CAP
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
    assert await count_rows(database, models.CallbackReceipt, message_id) == CAP + 1


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_item_12_a_bad_cap_names_its_variable(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Item 12: the cap is validated at start like every setting, default 50."""
    assert make_settings().callback_reports_per_message == plan.REPORTS_PER_MESSAGE == 50
    monkeypatch.setenv("TRACKER_CALLBACK_REPORTS_PER_MESSAGE", value)
    with pytest.raises(ConfigurationError, match="TRACKER_CALLBACK_REPORTS_PER_MESSAGE"):
        make_settings()
