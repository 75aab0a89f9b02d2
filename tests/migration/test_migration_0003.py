"""Migration 0003 with data: every key's name becomes a client, and no history is lost.

On both databases: a schema at 0002 gets keys (one revoked), messages with
events and Idempotency-Keys under those names (and names that no key holds),
then 0003 runs; and back to 0002 while each key's name is still unique.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tests import conftest
from tracker import auth, clock, db, migrate, models
from tracker.clients import records

T = TypeVar("T")
BEFORE = "0002"
NOW = clock.utcnow().replace(microsecond=0)

# The tables as 0002 left them (api_keys had no client then), typed for both drivers.
OLD_KEYS = sa.table(
    "api_keys",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("key_hash", sa.String()),
    sa.column("prefix", sa.String()),
    sa.column("scopes", sa.String()),
    sa.column("created_at", db.UTCDateTime()),
    sa.column("revoked_at", db.UTCDateTime()),
)
OLD_MESSAGES = sa.table(
    "messages",
    *(sa.column(name) for name in ("client", "sender_name", "contact", "body", "encoding")),
    *(sa.column(name) for name in ("status", "segments", "priority", "rank", "attempts")),
    sa.column("id", sa.Uuid()),
    sa.column("created_at", db.UTCDateTime()),
    sa.column("updated_at", db.UTCDateTime()),
)
OLD_EVENTS = sa.table(
    "message_events",
    *(sa.column(name) for name in ("from_status", "to_status", "source", "detail")),
    sa.column("message_id", sa.Uuid()),
    sa.column("created_at", db.UTCDateTime()),
)
OLD_IDEMPOTENCY_KEYS = sa.table(
    "idempotency_keys",
    *(sa.column(name) for name in ("client", "key", "request_hash", "status_code")),
    sa.column("response_body"),
    sa.column("created_at", db.UTCDateTime()),
    sa.column("expires_at", db.UTCDateTime()),
)


@dataclass
class Seeded:
    """What was written at 0002: each key by name, and each message's events."""

    keys: dict[str, str] = field(default_factory=dict)
    events: dict[uuid.UUID, list[tuple[str | None, str | None, str | None]]] = field(
        default_factory=dict
    )
    clients: dict[uuid.UUID, str] = field(default_factory=dict)


@pytest.fixture
async def url_at_0002(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """An empty database of the test's backend, migrated to 0002."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await asyncio.to_thread(migrate.upgrade, url, BEFORE)
        yield url
        return
    request.getfixturevalue("postgres_template")  # fails or skips if the server is down
    name = f"tracker_m3_{uuid.uuid4().hex[:10]}"
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


async def seed(database: db.Database) -> Seeded:
    """Keys billing, ops (admin) and gone (revoked); messages of billing, gone and of
    'legacy' (no key); an Idempotency-Key of 'batch-job' (no key, no message)."""
    seeded = Seeded()
    async with database.engine.begin() as connection:
        for name, scopes, revoked in (
            ("billing", "read,send", None),
            ("ops", "admin", None),
            ("gone", "send", NOW),
        ):
            key = auth.KEY_PREFIX + secrets.token_urlsafe(32)
            seeded.keys[name] = key
            await connection.execute(
                sa.insert(OLD_KEYS).values(
                    id=uuid.uuid4(), name=name, key_hash=auth.hash_key(key), prefix=key[:10],
                    scopes=scopes, created_at=NOW - dt.timedelta(days=30), revoked_at=revoked,
                )
            )  # fmt: skip
        for client, count in (("billing", 3), ("gone", 1), ("legacy", 2)):
            for n in range(count):
                message_id = uuid.uuid4()
                await _old_message(connection, message_id, client, events=n + 1)
                seeded.clients[message_id] = client
                seeded.events[message_id] = [
                    (None if e == 0 else "queued", "queued" if e == 0 else None, f"event {e}")
                    for e in range(n + 1)
                ]
        for client in ("billing", "batch-job"):
            await connection.execute(
                sa.insert(OLD_IDEMPOTENCY_KEYS).values(
                    client=client, key="k-1", request_hash="0" * 64, status_code=202,
                    response_body="{}", created_at=NOW, expires_at=NOW + dt.timedelta(days=1),
                )
            )  # fmt: skip
    return seeded


async def _old_message(connection: Any, message_id: uuid.UUID, client: str, *, events: int) -> None:
    await connection.execute(
        sa.insert(OLD_MESSAGES).values(
            id=message_id, client=client, sender_name="KIMISMS", contact="254712345678",
            body="hello", segments=1, encoding="gsm7", priority=1, status="queued", rank=0,
            attempts=0, created_at=NOW - dt.timedelta(days=2), updated_at=NOW,
        )
    )  # fmt: skip
    for n in range(events):
        await connection.execute(
            sa.insert(OLD_EVENTS).values(
                message_id=message_id,
                from_status=None if n == 0 else "queued",
                to_status="queued" if n == 0 else None,
                source="api",
                detail=f"event {n}",
                created_at=NOW,
            )
        )


async def history(database: db.Database) -> Seeded:
    """Each message's client and events, and no keys (they are hashed)."""
    found = Seeded()
    async with database.read() as session:
        m, e = models.Message, models.MessageEvent
        for message_id, client in await session.execute(sa.select(m.id, m.client)):
            found.clients[message_id] = client
        rows = await session.execute(
            sa.select(e.message_id, e.from_status, e.to_status, e.detail).order_by(e.id)
        )
        for message_id, from_status, to_status, detail in rows:
            found.events.setdefault(message_id, []).append((from_status, to_status, detail))
    return found


async def key_owners(database: db.Database) -> dict[str, str]:
    async with database.read() as session:
        rows = await session.execute(sa.select(models.ApiKey.name, models.ApiKey.client))
        return dict(rows.all())


async def client_names(database: db.Database) -> list[str]:
    async with database.read() as session:
        return [client.name for client in await records.list_all(session)]


def test_every_name_becomes_a_client_and_every_key_its_own_clients(url_at_0002: str) -> None:
    """After 0003: a client per name in keys, messages and Idempotency-Keys, no limits,
    weight 1; each key belongs to the client of its name."""
    asyncio.run(using(url_at_0002, seed))
    migrate.upgrade(url_at_0002)
    assert asyncio.run(using(url_at_0002, client_names)) == [
        "batch-job", "billing", "gone", "legacy", "ops",
    ]  # fmt: skip
    assert asyncio.run(using(url_at_0002, key_owners)) == {
        "billing": "billing", "ops": "ops", "gone": "gone",
    }  # fmt: skip

    async def billing(database: db.Database) -> records.Client | None:
        async with database.read() as session:
            return await records.get(session, "billing")

    migrated = asyncio.run(using(url_at_0002, billing))
    assert migrated is not None
    assert (migrated.weight, migrated.limited, migrated.sender_names) == (1, False, None)


def test_every_message_and_event_is_still_there_with_its_client(url_at_0002: str) -> None:
    """The same messages, each with its client and its events in order (none cascaded away)."""
    seeded = asyncio.run(using(url_at_0002, seed))
    migrate.upgrade(url_at_0002)
    found = asyncio.run(using(url_at_0002, history))
    assert found.clients == seeded.clients
    assert found.events == seeded.events


def test_the_keys_still_verify_and_a_revoked_keys_name_is_free(url_at_0002: str) -> None:
    """auth.verify_key knows each active key with its client and scopes; the revoked one
    stays refused, and its name can be given to a new key of the same client."""
    seeded = asyncio.run(using(url_at_0002, seed))
    migrate.upgrade(url_at_0002)

    async def check(database: db.Database) -> None:
        billing = await auth.verify_key(database, seeded.keys["billing"])
        assert billing is not None
        assert (billing.client, billing.scopes) == (
            "billing",
            frozenset({auth.Scope.READ, auth.Scope.SEND}),
        )
        assert billing.policy == records.Client("billing", created_at=billing.policy.created_at)
        ops = await auth.verify_key(database, seeded.keys["ops"])
        assert ops is not None
        assert ops.allows(auth.Scope.ADMIN)
        assert await auth.verify_key(database, seeded.keys["gone"]) is None
        again = await auth.create_key(database, "gone", frozenset({auth.Scope.READ}))
        principal = await auth.verify_key(database, again)
        assert principal is not None
        assert principal.client == "gone"

    asyncio.run(using(url_at_0002, check))


def test_downgrade_to_0002_keeps_keys_messages_and_events(url_at_0002: str) -> None:
    """Back to 0002 while key names are unique: the keys, messages and events remain,
    and upgrading again finds the same clients."""
    seeded = asyncio.run(using(url_at_0002, seed))
    migrate.upgrade(url_at_0002)
    migrate.downgrade(url_at_0002, BEFORE)

    async def old_keys(database: db.Database) -> dict[str, bool]:
        async with database.engine.connect() as connection:
            rows = await connection.execute(sa.select(OLD_KEYS.c.name, OLD_KEYS.c.revoked_at))
            return {name: revoked is not None for name, revoked in rows}

    assert asyncio.run(using(url_at_0002, old_keys)) == {
        "billing": False,
        "ops": False,
        "gone": True,
    }
    found = asyncio.run(using(url_at_0002, history))
    assert (found.clients, found.events) == (seeded.clients, seeded.events)
    migrate.upgrade(url_at_0002)
    assert asyncio.run(using(url_at_0002, client_names)) == [
        "batch-job", "billing", "gone", "legacy", "ops",
    ]  # fmt: skip
    assert asyncio.run(using(url_at_0002, key_owners))["billing"] == "billing"
