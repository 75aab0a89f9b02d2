"""The rules that turn a request into a queued row (settings and clock injected)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tracker import errors
from tracker.domain import status
from tracker.sending import intake, schemas

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def rules(make_settings: SettingsFactory) -> intake.Intake:
    """The rules at NOW, with a 64-byte metadata limit."""
    return intake.Intake(make_settings(max_metadata_bytes=64), "app", NOW)


def request(**fields: Any) -> schemas.SendRequest:
    return schemas.parse_send({"to": "0712345678", "message": "hi", **fields})


def test_a_row_is_a_queued_message_due_now(rules: intake.Intake) -> None:
    """Status, rank, due time and owner are set for the dispatcher."""
    row = rules.row(request())
    assert (row["status"], row["rank"], row["client"]) == ("queued", 0, "app")
    assert row["next_attempt_at"] == row["created_at"] == NOW
    assert row["priority"] == status.PRIORITY_ORDER[status.Priority.NORMAL]


def test_metadata_is_measured_in_utf8_bytes_up_to_the_limit(rules: intake.Intake) -> None:
    """Exactly the limit passes; one byte more (a two-byte character) does not."""
    at_limit = {"k": "x" * (64 - len(json.dumps({"k": ""}, separators=(",", ":"))))}
    rules.row(request(metadata=at_limit))
    over = {"k": "x" * (len(at_limit["k"]) - 1) + "é"}
    with pytest.raises(errors.ValidationFailed) as caught:
        rules.row(request(metadata=over))
    assert caught.value.errors == {"metadata": ["must be at most 64 bytes as JSON (this is 65)"]}


def test_metadata_nesting_is_counted_without_recursion() -> None:
    """Objects and lists count as levels; scalars do not."""
    assert intake._depth({"a": 1}) == 1
    assert intake._depth({"a": [{"b": [1, 2]}]}) == 4
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    assert intake._depth(deep) > intake.MAX_METADATA_DEPTH


def test_a_validity_running_past_year_9999_is_refused(rules: intake.Intake) -> None:
    """Date arithmetic that overflows is the caller's mistake, not a 500."""
    far = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    with pytest.raises(errors.ValidationFailed) as caught:
        rules.row(schemas.SendRequest(to="0712345678", message="hi", send_at=far, valid_for=86_400))
    assert caught.value.errors == {"valid_for": ["runs past the year 9999"]}


def test_a_long_refused_sender_name_is_quoted_short(rules: intake.Intake) -> None:
    """The error quotes the caller's value, but never all of a huge one."""
    with pytest.raises(errors.ValidationFailed) as caught:
        rules.row(request(sender_name="S" * 500))
    assert len(caught.value.errors["sender_name"][0]) < 100


async def test_checking_a_big_batch_gives_other_tasks_turns(
    rules: intake.Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop runs between slices of a batch, so callbacks are not held up."""
    monkeypatch.setattr(intake, "YIELD_EVERY", 2)
    turns = 0

    async def other_request() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_request())
    await asyncio.sleep(0)
    started = turns
    rows = await rules.rows(schemas.Batch([request()] * 10))
    task.cancel()
    assert len(rows) == 10
    assert turns - started >= 4


async def test_a_batch_reports_every_bad_item_by_place(rules: intake.Intake) -> None:
    """Problems of all items at once, keyed messages[i].field."""
    batch = [request(), request(to="0812345678"), request(sender_name="X", message="\x00")]
    with pytest.raises(errors.ValidationFailed) as caught:
        await rules.rows(schemas.Batch(batch))
    assert set(caught.value.errors) == {
        "messages[1].to",
        "messages[2].message",
        "messages[2].sender_name",
    }
