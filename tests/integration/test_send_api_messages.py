"""GET /v1/messages/{id} and POST /v1/messages/{id}/cancel, and what the dispatcher sees."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import SettingsFactory
from tests.factories import add_message, fetch_message
from tests.integration.send_support import (
    MESSAGE_FIELDS,
    Headers,
    api_settings,
    bearer,
    events_of,
    iso,
    later,
    parse_time,
    send,
)
from tracker import clock, db, models
from tracker.dispatch import outbox
from tracker.domain import status
from tracker.sending import schemas, store
from tracker.settings import Settings

LEASE = dt.timedelta(seconds=60)
WINDOW = dt.timedelta(hours=23)


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


async def queued_id(http: httpx.AsyncClient, headers: Headers, **fields: Any) -> str:
    response = await send(http, headers, **fields)
    assert response.status_code == 202, response.text
    message_id: str = response.json()["id"]
    return message_id


async def test_get_shows_the_message_and_its_events(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """The message as sent, plus its history oldest first."""
    message_id = await queued_id(client, headers, reference="r-1", metadata={"k": "v"})
    await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    response = await client.get(f"/v1/messages/{message_id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    schemas.MessageDetail.model_validate(body)
    assert set(body) == MESSAGE_FIELDS | {"events"}
    assert (body["id"], body["reference"], body["metadata"]) == (message_id, "r-1", {"k": "v"})
    steps = [(e["from_status"], e["to_status"], e["source"]) for e in body["events"]]
    assert steps == [(None, "queued", "api"), ("queued", "cancelled", "api")]
    assert set(body["events"][0]) == {
        "from_status",
        "to_status",
        "source",
        "detail",
        "payload",
        "created_at",
    }


async def test_get_answers_what_post_answered(client: httpx.AsyncClient, headers: Headers) -> None:
    """The stored message reads back exactly as it was answered (times included)."""
    sent = (await send(client, headers, send_at=iso(later(600)), valid_for=60)).json()
    read = (await client.get(f"/v1/messages/{sent['id']}", headers=headers)).json()
    del read["events"]
    assert read == sent


async def test_another_clients_message_is_not_found(
    client: httpx.AsyncClient, headers: Headers, make_key: Callable[..., Any]
) -> None:
    """A key sees only its own client's messages: someone else's is 404, not 403."""
    message_id = await queued_id(client, headers)
    other = bearer(await make_key("other", "send,read"))
    response = await client.get(f"/v1/messages/{message_id}", headers=other)
    assert response.status_code == 404
    assert response.json() == {"detail": "message not found"}


async def test_an_admin_key_sees_every_clients_messages(
    client: httpx.AsyncClient, headers: Headers, make_key: Callable[..., Any]
) -> None:
    """Operators with the admin scope can read any message."""
    message_id = await queued_id(client, headers)
    admin = bearer(await make_key("ops", "admin"))
    response = await client.get(f"/v1/messages/{message_id}", headers=admin)
    assert response.status_code == 200
    assert response.json()["client"] == "app"


@pytest.mark.parametrize("raw", ["not-a-uuid", "123", str(uuid.uuid4())])
async def test_an_unknown_or_malformed_id_is_404(
    client: httpx.AsyncClient, headers: Headers, raw: str
) -> None:
    """Anything that is not one of the caller's message ids is simply not found."""
    for response in (
        await client.get(f"/v1/messages/{raw}", headers=headers),
        await client.post(f"/v1/messages/{raw}/cancel", headers=headers),
    ):
        assert response.status_code == 404
        assert "not found" in response.json()["detail"].lower()


async def test_a_wrong_method_on_the_batch_route_is_405_not_a_missing_message(
    client: httpx.AsyncClient, headers: Headers
) -> None:
    """/v1/messages/batch is not an id: GET on it is a method error."""
    response = await client.get("/v1/messages/batch", headers=headers)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


async def test_reading_needs_the_read_scope(
    client: httpx.AsyncClient, headers: Headers, make_key: Callable[..., Any]
) -> None:
    """A send-only key cannot read a message, even its own client's."""
    message_id = await queued_id(client, headers)
    sender = bearer(await make_key("sender", "send"))
    assert (await client.get(f"/v1/messages/{message_id}", headers=sender)).status_code == 403
    assert (await client.get(f"/v1/messages/{message_id}")).status_code == 401


async def test_a_queued_message_can_be_cancelled(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """200 with the cancelled message; the row is final and its history says so."""
    message_id = await queued_id(client, headers)
    response = await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    assert response.status_code == 200
    body = response.json()
    schemas.MessageOut.model_validate(body)
    assert body["status"] == "cancelled"
    assert parse_time(body["final_at"]) >= parse_time(body["created_at"])
    row = await fetch_message(database, uuid.UUID(message_id))
    assert (row.status, row.rank) == ("cancelled", status.RANK[status.Status.CANCELLED])
    events = await events_of(database, message_id)
    assert [(e.from_status, e.to_status, e.source) for e in events][-1] == (
        "queued",
        "cancelled",
        "api",
    )


async def test_item_20_cancelling_a_cancelled_message_again_is_200_with_the_message(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """A retried cancel answers 200 with the message as the first did, and records nothing."""
    message_id = await queued_id(client, headers)
    first = await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    again = await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.json()["status"] == "cancelled"
    assert len(await events_of(database, message_id)) == 2


@pytest.mark.parametrize(
    "status",
    [
        status.Status.SENDING,
        status.Status.DELIVERED,
        status.Status.FAILED,
        status.Status.EXPIRED,
    ],
)
async def test_a_message_past_queued_cannot_be_cancelled(
    client: httpx.AsyncClient, headers: Headers, database: db.Database, status: status.Status
) -> None:
    """Once the dispatcher has it, or it ended otherwise, cancel is 409 naming its status
    (item 20: only an already-cancelled message is answered 200)."""
    message_id = await add_message(database, status=status, client="app")
    response = await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"message is {status.value};")
    assert (await fetch_message(database, message_id)).status == status.value


async def test_item_6_a_message_waiting_to_retry_a_send_cannot_be_cancelled(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Item 6: queued again for a retry after a call KIMISMS may have taken (attempts 1):
    cancel is 409 and the message stays queued; after only a 429 (attempts 0) it cancels."""
    tried, held = [await add_message(database, status=status.Status.QUEUED) for _ in range(2)]
    async with database.write() as session:
        await session.execute(
            update(models.Message).where(models.Message.id == tried).values(attempts=1)
        )
    refused = await client.post(f"/v1/messages/{tried}/cancel", headers=headers)
    assert (refused.status_code, refused.json()) == (409, {"detail": store.RETRY_NOT_CANCELLABLE})
    assert (await fetch_message(database, tried)).status == status.Status.QUEUED
    allowed = await client.post(f"/v1/messages/{held}/cancel", headers=headers)
    assert allowed.status_code == 200


async def test_another_clients_message_cannot_be_cancelled(
    client: httpx.AsyncClient, headers: Headers, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Someone else's message is 404 to cancel, and stays queued."""
    message_id = await queued_id(client, headers)
    other = bearer(await make_key("other", "send,read"))
    response = await client.post(f"/v1/messages/{message_id}/cancel", headers=other)
    assert response.status_code == 404
    assert (await fetch_message(database, uuid.UUID(message_id))).status == "queued"


async def test_cancelling_needs_the_send_scope(
    client: httpx.AsyncClient, headers: Headers, make_key: Callable[..., Any]
) -> None:
    """A read-only key cannot cancel."""
    message_id = await queued_id(client, headers)
    reader = bearer(await make_key("reader", "read"))
    response = await client.post(f"/v1/messages/{message_id}/cancel", headers=reader)
    assert response.status_code == 403


async def test_an_accepted_message_is_due_for_the_dispatcher(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """The dispatcher's claim finds what the API stored (same types, same time format)."""
    message_id = await queued_id(client, headers)
    async with database.write() as session:
        claimed = await outbox.claim_due(
            session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
        )
    assert claimed is not None
    assert (str(claimed.id), claimed.contact) == (message_id, "254712345678")


async def test_concurrent_claims_never_take_the_same_message(database: db.Database) -> None:
    """Two claims at once (SKIP LOCKED on PostgreSQL, the write lock on SQLite) split the
    due messages between them: none is handed out twice, none is left out."""
    ids = {await add_message(database, status=status.Status.QUEUED) for _ in range(12)}

    async def claim() -> set[uuid.UUID]:
        taken: set[uuid.UUID] = set()
        for _ in range(8):
            async with database.write() as session:
                claimed = await outbox.claim_due(
                    session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
                )
                await asyncio.sleep(0.01)  # hold the row lock while the other claims
            if claimed is not None:
                taken.add(claimed.id)
        return taken

    first, second = await asyncio.gather(claim(), claim())
    assert not first & second
    assert first | second == ids


async def test_high_priority_is_claimed_before_earlier_normal_and_low(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """priority is stored as the order the claim sorts by."""
    await queued_id(client, headers, priority="low")
    await queued_id(client, headers)
    urgent = await queued_id(client, headers, priority="high")
    async with database.write() as session:
        claimed = await outbox.claim_due(
            session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
        )
    assert claimed is not None
    assert str(claimed.id) == urgent


async def test_a_scheduled_message_is_not_due_before_send_at(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """send_at is the due time: nothing is claimed before it, the message is after it."""
    send_at = later(3600)
    message_id = await queued_id(client, headers, send_at=iso(send_at))
    async with database.write() as session:
        early = await outbox.claim_due(
            session, now=clock.utcnow(), lease=LEASE, give_up_after=WINDOW
        )
        on_time = await outbox.claim_due(
            session, now=send_at + dt.timedelta(seconds=1), lease=LEASE, give_up_after=WINDOW
        )
    assert early is None
    assert on_time is not None
    assert str(on_time.id) == message_id


async def test_a_cancelled_message_is_never_claimed(
    client: httpx.AsyncClient, headers: Headers, database: db.Database
) -> None:
    """Cancel takes the message out of the queue."""
    message_id = await queued_id(client, headers)
    await client.post(f"/v1/messages/{message_id}/cancel", headers=headers)
    async with database.write() as session:
        claimed = await outbox.claim_due(session, now=later(60), lease=LEASE, give_up_after=WINDOW)
    assert claimed is None
