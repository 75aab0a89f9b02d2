"""Idempotency-Key on the send routes: replays, conflicts, per-key scope, expiry, races."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.conftest import SettingsFactory
from tests.integration.send_support import (
    Headers,
    api_settings,
    bearer,
    count,
    errors_of,
    iso,
    later,
    message,
    post_json,
    send,
)
from tracker import clock, db, models
from tracker.sending import store
from tracker.settings import Settings

BATCH = "/v1/messages/batch"


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


def keyed(headers: Headers, key: str) -> Headers:
    return {**headers, "Idempotency-Key": key}


async def test_a_replay_returns_the_same_status_and_body_and_creates_nothing(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A retried POST gets the first answer byte for byte; one message exists."""
    first = await send(client, keyed(headers, "order-1"))
    again = await send(client, keyed(headers, "order-1"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(database, models.Message) == 1
    assert await count(database, models.MessageEvent) == 1


async def test_a_batch_replay_returns_the_same_answer_and_creates_nothing(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The whole batch answer is replayed; no message is stored twice."""
    body = {"messages": [message(), message(to="0733123456")]}
    first = await post_json(client, BATCH, body, keyed(headers, "batch-1"))
    again = await post_json(client, BATCH, body, keyed(headers, "batch-1"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert await count(database, models.Message) == 2


async def test_the_same_request_formatted_differently_is_a_replay(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The hash is over canonical JSON: key order and spacing do not matter."""
    compact = b'{"to":"0712345678","message":"hi","metadata":{"a":1,"b":2}}'
    spaced = b'{ "metadata": {"b": 2, "a": 1},\n  "message": "hi", "to": "0712345678" }'
    json_headers = {**keyed(headers, "k"), "Content-Type": "application/json"}
    first = await client.post("/v1/messages", content=compact, headers=json_headers)
    again = await client.post("/v1/messages", content=spaced, headers=json_headers)
    assert again.content == first.content
    assert await count(database, models.Message) == 1


async def test_the_same_key_with_a_different_body_is_409(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Reusing a key for another request is refused, and stores nothing."""
    await send(client, keyed(headers, "order-2"), message="first")
    response = await send(client, keyed(headers, "order-2"), message="second")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "this Idempotency-Key was already used for a different request"
    }
    assert await count(database, models.Message) == 1


async def test_the_same_key_on_the_other_route_is_409(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """The route is part of the request: a single send's key cannot replay a batch."""
    await send(client, keyed(headers, "shared"))
    response = await post_json(client, BATCH, {"messages": [message()]}, keyed(headers, "shared"))
    assert response.status_code == 409


async def test_keys_belong_to_their_api_key(
    client: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Two clients using the same key string are independent of each other."""
    billing = keyed(bearer(await make_key("billing", "send")), "1")
    shipping = keyed(bearer(await make_key("shipping", "send")), "1")
    first = await send(client, billing)
    second = await send(client, shipping, message="another body")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert (first.json()["client"], second.json()["client"]) == ("billing", "shipping")
    assert await count(database, models.Message) == 2


async def test_an_expired_key_is_ignored_and_overwritten(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """After TRACKER_IDEMPOTENCY_TTL_SECONDS the key is free again, even for another body."""
    first = await send(client, keyed(headers, "old"))
    async with database.write() as session:
        await session.execute(
            update(models.IdempotencyKey).values(
                expires_at=clock.utcnow() - dt.timedelta(seconds=1)
            )
        )
    reused = await send(client, keyed(headers, "old"), message="a new body")
    assert reused.status_code == 202
    assert reused.json()["id"] != first.json()["id"]
    replay = await send(client, keyed(headers, "old"), message="a new body")
    assert replay.content == reused.content
    assert await count(database, models.Message) == 2
    assert await count(database, models.IdempotencyKey) == 1


async def test_expired_keys_are_purged_and_live_ones_kept(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The dispatcher's housekeeping deletes expired answers (they can be megabytes)."""
    await send(client, keyed(headers, "old"))
    async with database.write() as session:
        await session.execute(
            update(models.IdempotencyKey).values(
                expires_at=clock.utcnow() - dt.timedelta(seconds=1)
            )
        )
    await send(client, keyed(headers, "live"))
    async with database.write() as session:
        assert await store.purge_idempotency_keys(session, clock.utcnow()) == 1
    async with database.read() as session:
        assert list(await session.scalars(select(models.IdempotencyKey.key))) == ["live"]


async def test_keys_are_kept_for_the_configured_time(
    client: httpx.AsyncClient, headers: Headers, database: db.Database, settings: Settings
) -> None:
    """A key's record expires TRACKER_IDEMPOTENCY_TTL_SECONDS (24 h by default) after use."""
    before = clock.utcnow()
    await send(client, keyed(headers, "kept"))
    async with database.read() as session:
        record = await session.get(models.IdempotencyKey, 1)
    assert record is not None
    kept = record.expires_at - before
    ttl = dt.timedelta(seconds=settings.idempotency_ttl_seconds)
    assert ttl <= kept < ttl + dt.timedelta(seconds=5)


async def test_a_replay_is_answered_even_after_its_send_at_has_passed(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The stored answer wins over rules that depend on the clock (a retry is not refused)."""
    # A wide margin: under CI load the first request itself once took over 0.5 s,
    # so its send_at had passed before it was checked.
    body = message(send_at=iso(later(2.0)))
    first = await post_json(client, "/v1/messages", body, keyed(headers, "soon"))
    assert first.status_code == 202, first.text
    await asyncio.sleep(2.1)
    again = await post_json(client, "/v1/messages", body, keyed(headers, "soon"))
    assert again.status_code == 202
    assert again.content == first.content
    assert await count(database, models.Message) == 1


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A 400 is not remembered: the corrected request with the same key is accepted."""
    refused = await send(client, keyed(headers, "fix-me"), to="0812345678")
    accepted = await send(client, keyed(headers, "fix-me"))
    assert (refused.status_code, accepted.status_code) == (400, 202)
    assert await count(database, models.Message) == 1


async def test_concurrent_requests_with_one_key_create_exactly_one_message(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Racing retries: one wins, the others roll back and replay the winner's answer."""
    racers = [send(client, keyed(headers, "race"), reference="r") for _ in range(6)]
    answers = await asyncio.gather(*racers)
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    assert await count(database, models.Message) == 1
    assert await count(database, models.MessageEvent) == 1
    assert await count(database, models.IdempotencyKey) == 1


async def test_concurrent_batches_with_one_key_create_one_batch(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The losers' whole batches are rolled back, not just their keys."""
    body = {"messages": [message(), message(to="0733123456"), message(to="0770123456")]}
    racers = [post_json(client, BATCH, body, keyed(headers, "batch-race")) for _ in range(4)]
    answers = await asyncio.gather(*racers)
    assert len({(a.status_code, a.content) for a in answers}) == 1
    assert await count(database, models.Message) == 3


@pytest.mark.parametrize("key", [b"", b"k" * 256, "clé".encode("latin-1"), b"tab\there"])
async def test_an_invalid_idempotency_key_is_400(
    client: httpx.AsyncClient, headers: Headers, database: db.Database, key: bytes
) -> None:
    """Keys are 1 to 255 printable ASCII characters."""
    raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw_headers += [(b"Idempotency-Key", key), (b"Content-Type", b"application/json")]
    content = json.dumps(message()).encode()
    response = await client.post("/v1/messages", content=content, headers=raw_headers)
    assert errors_of(response) == {
        "Idempotency-Key": ["must be 1 to 255 printable ASCII characters"]
    }
    assert await count(database, models.Message) == 0


async def test_a_key_of_255_printable_characters_is_accepted(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """The longest key, with spaces and punctuation, works."""
    key = ("a-Z 0~!" * 40)[:255]
    assert (await send(client, keyed(headers, key))).status_code == 202
