"""A real webhook receiver for tests: an HTTP/1.1 server on 127.0.0.1 (port 0).

Each request is kept (headers, body); what it answers is decided by ``answer``, an
async function that may sleep (a slow endpoint) or never return (held open).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from tracker import clock, db, models
from tracker.clients import records
from tracker.settings import Settings
from tracker.webhooks import deliverer

ALLOWED = "127.0.0.1/32"
SECRET = "whsec_" + "QUFB" * 8  # 24 bytes of "A": the shortest secret the format allows
OTHER_SECRET = "whsec_" + "QkJC" * 8


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"


Answer = Callable[[Request], Awaitable[Reply]]


async def ok(_request: Request) -> Reply:
    return Reply()


class Receiver:
    """Keeps every request; ``url(path)`` for an endpoint on it."""

    def __init__(self, answer: Answer = ok) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def wait_for(self, count: int, within: float = 15.0) -> list[Request]:
        """Until ``count`` requests arrived (TimeoutError otherwise)."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read(reader)) is not None:
                async with self._arrived:
                    self.requests.append(request)
                    self._arrived.notify_all()
                reply = await self.answer(request)
                head = [f"HTTP/1.1 {reply.status} X", f"content-length: {len(reply.body)}"]
                head += [f"{name}: {value}" for name, value in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _read(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(path, headers, body, time.monotonic())


@contextlib.asynccontextmanager
async def receiving(answer: Answer = ok) -> AsyncIterator[Receiver]:
    receiver = Receiver(answer)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


async def add_endpoint(
    database: db.Database,
    url: str,
    *,
    client: str = "app",
    events: tuple[str, ...] = ("message.delivered", "message.failed"),
    **columns: Any,
) -> uuid.UUID:
    """An endpoint of ``client`` at ``url``, written straight to the tables."""
    async with database.write() as session:
        await records.ensure(session, client)
        endpoint = models.WebhookEndpoint(client=client, url=url, secret=SECRET, **columns)
        session.add(endpoint)
        await session.flush()
        for event_type in events:
            session.add(models.WebhookSubscription(endpoint_id=endpoint.id, event_type=event_type))
    return endpoint.id


async def add_test_delivery(database: db.Database, endpoint_id: uuid.UUID, note: str = "") -> int:
    """A pending ``webhook.test`` delivery (no message), due now."""
    now = clock.utcnow()
    async with database.write() as session:
        delivery = models.WebhookDelivery(
            endpoint_id=endpoint_id,
            event_id=f"msg_{uuid.uuid4().hex}",
            event_type="webhook.test",
            data={"note": note},
            occurred_at=now,
            status="pending",
            attempts=0,
            next_attempt_at=now,
        )
        session.add(delivery)
        await session.flush()
        return delivery.id


@contextlib.asynccontextmanager
async def delivering(
    settings: Settings, database: db.Database, **options: Any
) -> AsyncIterator[deliverer.Deliverer]:
    """A deliverer running in this event loop until the block ends."""
    hooks = deliverer.Deliverer(settings, database, **options)
    task = asyncio.create_task(hooks.run())
    try:
        yield hooks
    finally:
        hooks.stop()
        await task


async def delivery(database: db.Database, delivery_id: int) -> models.WebhookDelivery:
    async with database.read() as session:
        found = await session.get(models.WebhookDelivery, delivery_id)
    assert found is not None
    return found


async def settled(database: db.Database, delivery_id: int, within: float = 15.0) -> str:
    """Wait until the delivery is no longer pending; its status then."""
    async with asyncio.timeout(within):
        # Polled: the deliverer writes from its own task, with no event to wait on.
        while (found := await delivery(database, delivery_id)).status == "pending":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return found.status


async def attempts(database: db.Database, delivery_id: int) -> list[models.WebhookAttempt]:
    async with database.read() as session:
        found = await session.scalars(
            sa.select(models.WebhookAttempt)
            .where(models.WebhookAttempt.delivery_id == delivery_id)
            .order_by(models.WebhookAttempt.id)
        )
        return list(found)


async def endpoint(database: db.Database, endpoint_id: uuid.UUID) -> models.WebhookEndpoint:
    async with database.read() as session:
        found = await session.get(models.WebhookEndpoint, endpoint_id)
    assert found is not None
    return found


async def pending_deliveries(database: db.Database) -> list[models.WebhookDelivery]:
    async with database.read() as session:
        found = await session.scalars(
            sa.select(models.WebhookDelivery)
            .where(models.WebhookDelivery.status == "pending")
            .order_by(models.WebhookDelivery.id)
        )
        return list(found)
