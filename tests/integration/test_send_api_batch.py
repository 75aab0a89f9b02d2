"""POST /v1/messages/batch: one transaction, all-or-nothing, errors keyed by item."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import SettingsFactory, running
from tests.integration.send_support import (
    MAX_BATCH,
    MESSAGE_FIELDS,
    Headers,
    api_settings,
    bearer,
    count,
    errors_of,
    events_of,
    message,
    post_json,
)
from tracker import db, models
from tracker.app import create_app
from tracker.sending import schemas
from tracker.settings import Settings

BATCH = "/v1/messages/batch"


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


def numbered(n: int, **fields: Any) -> list[dict[str, Any]]:
    """``n`` valid messages to distinct numbers."""
    return [message(to=f"07{10_000_000 + i:08d}", reference=f"ref-{i}", **fields) for i in range(n)]


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement sent to any database while the block runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (connection, cursor, statement, parameters, context, executemany)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_batch_is_queued_and_answered_in_order_with_a_count(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """202 with {"count", "messages"}: each message as POST /v1/messages answers it."""
    items = [
        message(to="0712345678"),
        message(to="+254733123456", priority="high", sender_name="ACME"),
        message(to="254112345678", message="Habari 😊"),
    ]
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert response.status_code == 202
    body = response.json()
    schemas.BatchAccepted.model_validate(body)
    assert body["count"] == 3
    assert all(set(m) == MESSAGE_FIELDS for m in body["messages"])
    answered = [(m["to"], m["priority"], m["sender_name"], m["encoding"]) for m in body["messages"]]
    assert answered == [
        ("254712345678", "normal", "KIMISMS", "gsm7"),
        ("254733123456", "high", "ACME", "gsm7"),
        ("254112345678", "normal", "KIMISMS", "ucs2"),
    ]
    assert len({m["id"] for m in body["messages"]}) == 3


async def test_a_batch_stores_n_messages_and_n_queued_events(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Every message of the batch is in the database with its first event before the answer."""
    response = await post_json(client, BATCH, {"messages": numbered(MAX_BATCH)}, headers)
    assert response.status_code == 202
    assert await count(database, models.Message) == MAX_BATCH
    assert await count(database, models.MessageEvent) == MAX_BATCH
    last = response.json()["messages"][-1]
    events = await events_of(database, last["id"])
    assert [(e.from_status, e.to_status, e.source) for e in events] == [(None, "queued", "api")]


async def test_a_batch_is_one_insert_per_table_not_one_per_row(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """Batch speed: one INSERT statement for all messages and one for all events."""
    with statements() as seen:
        response = await post_json(client, BATCH, {"messages": numbered(MAX_BATCH)}, headers)
    assert response.status_code == 202
    inserts = [s.split("(", 1)[0].strip() for s in seen if s.lstrip().upper().startswith("INSERT")]
    assert inserts == ["INSERT INTO messages", "INSERT INTO message_events"]


async def test_one_bad_item_refuses_the_whole_batch_naming_every_bad_item(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """All or nothing: no message is stored, and each problem is keyed messages[i].field."""
    items = numbered(5)
    items[1]["to"] = "0812345678"
    items[3]["sender_name"] = "NOPE"
    items[3]["message"] = "x" * 1000
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert errors_of(response) == {
        "messages[1].to": ["'0812345678' is not a valid Kenyan mobile number"],
        "messages[3].message": ["message needs 7 parts; the maximum is 3"],
        "messages[3].sender_name": [
            "'NOPE' is not an allowed sender name (allowed: KIMISMS, ACME)"
        ],
    }
    assert await count(database, models.Message) == 0
    assert await count(database, models.MessageEvent) == 0


async def test_wrong_types_and_unknown_fields_are_keyed_by_item(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """Shape errors name the item too; an item that is not an object says so."""
    items: list[Any] = [message(), message(colour="red"), {"to": 712345678}, "text"]
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert errors_of(response) == {
        "messages[1].colour": ["unknown field"],
        "messages[2].to": ["must be a string"],
        "messages[2].message": ["this field is required"],
        "messages[3]": ["must be a JSON object"],
    }


async def test_item_16_shape_and_rule_errors_of_every_item_come_in_one_answer(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A bad ``to`` in item 1 and a bad ``priority`` in item 2 are both named, and an item
    with both kinds names both: the rules still check the fields whose shape is right."""
    items = numbered(4)
    items[1]["to"] = "0812345678"
    items[2]["priority"] = "urgent"
    items[3].update(to="020 123 4567", priority=7, colour="red")
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert errors_of(response) == {
        "messages[1].to": ["'0812345678' is not a valid Kenyan mobile number"],
        "messages[2].priority": ["must be one of 'high', 'normal' or 'low'"],
        "messages[3].priority": ["must be one of 'high', 'normal' or 'low'"],
        "messages[3].colour": ["unknown field"],
        "messages[3].to": ["'020 123 4567' is not a Kenyan mobile number"],
    }
    assert await count(database, models.Message) == 0


async def test_item_16_a_broken_required_field_hides_no_other_problem(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """An item without its text, or with one of the wrong type, still has its number checked;
    only the broken field itself is reported by its shape, not by a rule."""
    items: list[Any] = [{"to": "0812345678"}, {"to": "0812345678", "message": 5}]
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert errors_of(response) == {
        "messages[0].message": ["this field is required"],
        "messages[0].to": ["'0812345678' is not a valid Kenyan mobile number"],
        "messages[1].message": ["must be a string"],
        "messages[1].to": ["'0812345678' is not a valid Kenyan mobile number"],
    }


async def test_a_batch_over_the_maximum_size_is_400(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """TRACKER_MAX_BATCH_SIZE is checked before any item is read."""
    response = await post_json(client, BATCH, {"messages": numbered(MAX_BATCH + 1)}, headers)
    assert errors_of(response) == {
        "messages": [f"at most {MAX_BATCH} messages per batch (got {MAX_BATCH + 1})"]
    }
    assert await count(database, models.Message) == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": []}, {"messages": ["must hold at least 1 item(s)"]}),
        ({}, {"messages": ["this field is required"]}),
        ({"messages": {"to": "0712345678"}}, {"messages": ["must be a list"]}),
        ({"messages": [message()], "dry_run": True}, {"dry_run": ["unknown field"]}),
    ],
)
async def test_a_batch_must_be_a_non_empty_list_of_messages(
    client: httpx.AsyncClient, headers: Headers, body: dict[str, Any], expected: Any
) -> None:
    """Empty, missing, not a list, or with unknown envelope fields: 400."""
    assert errors_of(await post_json(client, BATCH, body, headers)) == expected


async def test_a_batch_body_over_its_limit_is_413(
    make_settings: SettingsFactory, database_url: str, headers: Headers, database: db.Database
) -> None:
    """TRACKER_MAX_BATCH_BODY_BYTES bounds a batch's body."""
    settings = api_settings(make_settings, database_url, max_batch_body_bytes=2048)
    items = numbered(MAX_BATCH, message="y" * 150)  # about 4 KB
    async with running(create_app(settings)) as http:
        response = await post_json(http, BATCH, {"messages": items}, headers)
    assert response.status_code == 413
    assert await count(database, models.Message) == 0


async def test_a_batch_repeating_a_number_stores_each_message(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The same recipient twice is two messages (the number is checked once)."""
    items = [message(message="first"), message(to="+254712345678", message="second")]
    response = await post_json(client, BATCH, {"messages": items}, headers)
    assert [m["to"] for m in response.json()["messages"]] == ["254712345678"] * 2
    assert await count(database, models.Message) == 2


async def test_a_batch_needs_the_send_scope(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """A read-only key cannot send a batch."""
    reader = bearer(await make_key("reader", "read"))
    response = await post_json(client, BATCH, {"messages": [message()]}, reader)
    assert response.status_code == 403
