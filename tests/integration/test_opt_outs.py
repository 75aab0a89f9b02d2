"""Opt-outs (#17 item 3): refused sends, cancelled queues, numbers kept only as hashes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import SettingsFactory
from tests.integration.send_support import (
    Headers,
    api_settings,
    bearer,
    errors_of,
    message,
    post_json,
    send,
)
from tracker import clock, db, models
from tracker.clients import records
from tracker.domain import status
from tracker.privacy import optouts
from tracker.settings import Settings

NUMBER = "254712345678"
KEY = b"a-test-pseudonym-key-of-32-characters"


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def app_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


@pytest.fixture
async def admin(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("ops", "admin"))


async def opt_out(http: httpx.AsyncClient, headers: Headers, **body: Any) -> httpx.Response:
    return await post_json(http, "/v1/opt-outs", body, headers)


async def test_an_opted_out_number_is_refused_with_a_400_on_to(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """After an opt-out, a send to the number in any written form is a 400 naming ``to``."""
    created = await opt_out(client, app_key, to="0712 345 678")
    assert created.status_code == 201, created.text
    assert created.json()["client"] == "app"
    refused = await send(client, app_key, to="+254-712-345-678")
    assert errors_of(refused) == {"to": ["this number has opted out of this client's messages"]}
    async with database.read() as session:
        assert (await session.scalars(select(models.Message))).all() == []
    other = await send(client, app_key, to="0712 345 679")
    assert other.status_code == 202, other.text


async def test_a_batch_names_every_opted_out_item(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """A batch is refused whole, each opted-out item named by its index."""
    await opt_out(client, app_key, to=NUMBER)
    batch = {"messages": [message(to="0712345679"), message(to=NUMBER), message(to="0712345678")]}
    response = await post_json(client, "/v1/messages/batch", batch, app_key)
    assert set(errors_of(response)) == {"messages[1].to", "messages[2].to"}


async def test_an_opt_out_cancels_what_is_queued_to_the_number_with_a_reason(
    client: httpx.AsyncClient, app_key: Headers, make_key: Callable[..., Any]
) -> None:
    """Queued messages to the number are cancelled at once, other clients' are left."""
    mine = (await send(client, app_key, to=NUMBER)).json()
    theirs_key = bearer(await make_key("billing", "send,read"))
    theirs = (await send(client, theirs_key, to=NUMBER)).json()
    created = await opt_out(client, app_key, to=NUMBER)
    assert created.json()["cancelled"] == 1
    shown = (await client.get(f"/v1/messages/{mine['id']}", headers=app_key)).json()
    assert shown["status"] == "cancelled"
    assert shown["error"] == "cancelled: the number opted out"
    assert shown["events"][-1]["detail"] == "cancelled: the number opted out"
    left = (await client.get(f"/v1/messages/{theirs['id']}", headers=theirs_key)).json()
    assert left["status"] == "queued"


async def test_an_admin_opts_a_number_out_for_every_client(
    client: httpx.AsyncClient, admin: Headers, make_key: Callable[..., Any]
) -> None:
    """``client: null`` from an admin key binds every client, and cancels all their queues."""
    billing = bearer(await make_key("billing", "send,read"))
    queued = (await send(client, billing, to=NUMBER)).json()
    created = await opt_out(client, admin, to=NUMBER, client=None)
    assert created.status_code == 201, created.text
    assert created.json()["client"] is None
    assert created.json()["cancelled"] == 1
    assert errors_of(await send(client, billing, to=NUMBER))["to"]
    shown = (await client.get(f"/v1/messages/{queued['id']}", headers=billing)).json()
    assert shown["status"] == "cancelled"


async def test_only_an_admin_may_choose_the_scope(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """A send key opts numbers out for its own client only; bad input is a 400 by field."""
    assert "client" in errors_of(await opt_out(client, app_key, to=NUMBER, client=None))
    assert "client" in errors_of(await opt_out(client, app_key, to=NUMBER, client="billing"))
    assert "to" in errors_of(await opt_out(client, app_key, to="12"))
    assert "to" in errors_of(await opt_out(client, app_key))
    assert "number" in errors_of(await opt_out(client, app_key, to=NUMBER, number=NUMBER))


async def test_opting_out_twice_is_one_opt_out(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """The second POST is 200 with the same opt-out; the number is stored only as a hash."""
    first = await opt_out(client, app_key, to=NUMBER)
    second = await opt_out(client, app_key, to="0712345678")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    async with database.read() as session:
        (row,) = (await session.scalars(select(models.OptOut))).all()
    assert NUMBER not in row.contact_pseudonym
    assert len(row.contact_pseudonym) == 64


async def test_listing_checks_a_number_and_delete_lifts_the_opt_out(
    client: httpx.AsyncClient, app_key: Headers, make_key: Callable[..., Any]
) -> None:
    """``?to=`` finds the number's opt-out; another client cannot see or delete it."""
    created = (await opt_out(client, app_key, to=NUMBER)).json()
    found = await client.get("/v1/opt-outs", params={"to": "0712 345 678"}, headers=app_key)
    assert [item["id"] for item in found.json()["opt_outs"]] == [created["id"]]
    other = await client.get("/v1/opt-outs", params={"to": "0712345679"}, headers=app_key)
    assert other.json()["opt_outs"] == []
    billing = bearer(await make_key("billing", "send,read"))
    assert (await client.get("/v1/opt-outs", headers=billing)).json()["opt_outs"] == []
    assert (
        await client.delete(f"/v1/opt-outs/{created['id']}", headers=billing)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/opt-outs/{created['id']}", headers=app_key)
    ).status_code == 204
    assert (await send(client, app_key, to=NUMBER)).status_code == 202


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_an_opt_out_waits_for_a_send_being_stored_and_then_cancels_it(
    database: db.Database,
) -> None:
    """PostgreSQL: a send that checked before the opt-out is still cancelled by it, not missed."""
    async with database.write() as session:
        await records.ensure(session, "app")
    async with database.write() as sending:
        assert await optouts.refused(sending, [NUMBER], "app", KEY) == set()
        adding = asyncio.create_task(_add(database))
        await asyncio.sleep(0.3)
        assert not adding.done()  # it waits for the send's transaction to end
        sending.add(_queued(NUMBER))
    added = await asyncio.wait_for(adding, 5)
    assert added.cancelled == 1


async def _add(database: db.Database) -> optouts.Added:
    async with database.write() as session:
        return await optouts.add(session, NUMBER, "app", "app", KEY)


def _queued(contact: str) -> models.Message:
    queued = status.Status.QUEUED
    return models.Message(
        client="app", sender_name="KIMISMS", contact=contact, body="Your code is 123456",
        segments=1, encoding="gsm7", priority=status.PRIORITY_ORDER[status.Priority.NORMAL],
        status=queued.value, rank=status.RANK[queued], next_attempt_at=clock.utcnow(),
    )  # fmt: skip


async def test_the_list_refuses_unknown_or_repeated_parameters(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """Only ``to``, once: anything else is a 400 naming the parameter."""
    unknown = await client.get("/v1/opt-outs", params={"number": NUMBER}, headers=app_key)
    assert errors_of(unknown) == {"number": ["unknown parameter"]}
    twice = await client.get("/v1/opt-outs?to=0712345678&to=0712345679", headers=app_key)
    assert errors_of(twice) == {"to": ["must be given once"]}
    assert "to" in errors_of(await client.get("/v1/opt-outs?to=12", headers=app_key))


async def test_a_message_waiting_to_retry_is_cancelled_too(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """A queued retry (attempts > 0) is not sent again once its number opted out."""
    queued = (await send(client, app_key, to=NUMBER)).json()
    async with database.write() as session:
        row = await session.get(models.Message, uuid.UUID(queued["id"]))
        assert row is not None
        row.attempts = 1
    assert (await opt_out(client, app_key, to=NUMBER)).json()["cancelled"] == 1
    shown = (await client.get(f"/v1/messages/{queued['id']}", headers=app_key)).json()
    assert shown["status"] == "cancelled"
