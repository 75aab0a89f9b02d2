"""Access to a body (#17 item 4) and pseudonymised rows in the API (item 3 of the brief)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests import factories
from tests.conftest import SettingsFactory
from tests.integration.send_support import Headers, api_settings, bearer, errors_of, send
from tracker import clock, db
from tracker.privacy import audit, pseudonyms, scrub
from tracker.settings import Settings

NUMBER = "254712345678"
BODY = "Your code is 123456"


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def app_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


async def body_reads(database: db.Database) -> list[tuple[str, str]]:
    """(actor, message id) of every body_read audit event, newest first."""
    async with database.read() as session:
        found = await audit.recent(session, action=audit.Action.BODY_READ)
    return [(row["actor"], str(row["message_id"])) for row in found]


async def test_the_owning_clients_read_key_sees_the_body_and_the_read_is_audited(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """``include=body`` shows the text to the sender's read key; the audit names the key."""
    sent = (await send(client, app_key, message=BODY)).json()
    plain = (await client.get(f"/v1/messages/{sent['id']}", headers=app_key)).json()
    assert "body" not in plain
    assert await body_reads(database) == []
    shown = await client.get(f"/v1/messages/{sent['id']}?include=body", headers=app_key)
    assert shown.status_code == 200, shown.text
    assert shown.json()["body"] == BODY
    assert shown.json()["events"]  # the detail as without include, plus the body
    assert await body_reads(database) == [(audit.actor_of("app", "app"), sent["id"])]


async def test_an_admin_sees_any_clients_body_and_another_client_gets_404_unaudited(
    client: httpx.AsyncClient, app_key: Headers, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Admin keys read every client's bodies (audited as theirs); another client's
    read key gets 404, as without include, and nothing is recorded for it."""
    sent = (await send(client, app_key, message=BODY)).json()
    other = bearer(await make_key("billing", "read"))
    refused = await client.get(f"/v1/messages/{sent['id']}?include=body", headers=other)
    assert refused.status_code == 404
    assert await body_reads(database) == []
    admin = bearer(await make_key("ops", "admin"))
    shown = await client.get(f"/v1/messages/{sent['id']}?include=body", headers=admin)
    assert shown.json()["body"] == BODY
    assert await body_reads(database) == [(audit.actor_of("ops", "ops"), sent["id"])]


async def test_a_send_only_key_and_unknown_include_values_are_refused(
    client: httpx.AsyncClient, app_key: Headers, make_key: Callable[..., Any], database: db.Database
) -> None:
    """No read scope: 403. ``include`` other than ``body``, or twice: 400 on ``include``."""
    sent = (await send(client, app_key, message=BODY)).json()
    sender = bearer(await make_key("app-sender", "send"))
    path = f"/v1/messages/{sent['id']}"
    assert (await client.get(f"{path}?include=body", headers=sender)).status_code == 403
    wrong = await client.get(f"{path}?include=events", headers=app_key)
    assert errors_of(wrong) == {"include": ["unknown value 'events': the only one is body"]}
    twice = await client.get(f"{path}?include=body&include=body", headers=app_key)
    assert errors_of(twice) == {"include": ["must be given once"]}
    assert await body_reads(database) == []


async def test_after_redaction_the_body_is_null_with_redacted_at(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """A redacted message answers ``body: null`` and says when; the read is still audited."""
    message_id = await factories.add_message(database)
    async with database.write() as session:
        await scrub.redact(session, [message_id], clock.utcnow())
    shown = (await client.get(f"/v1/messages/{message_id}?include=body", headers=app_key)).json()
    assert shown["body"] is None
    assert shown["redacted_at"] is not None
    assert len(await body_reads(database)) == 1


async def test_lists_never_show_bodies(
    client: httpx.AsyncClient, app_key: Headers, make_key: Callable[..., Any]
) -> None:
    """Neither the client's list nor an admin's, even when asked to include them."""
    await send(client, app_key, message=BODY)
    admin = bearer(await make_key("ops", "admin"))
    for headers in (app_key, admin):
        listed = await client.get("/v1/messages", headers=headers)
        assert listed.status_code == 200
        assert listed.json()["messages"]
        assert all("body" not in item for item in listed.json()["messages"])
        assert BODY not in listed.text
    asked = await client.get("/v1/messages?include=body", headers=app_key)
    assert errors_of(asked) == {"include": ["unknown parameter"]}


async def test_a_pseudonymised_message_shows_its_hash_instead_of_its_number(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, settings: Settings
) -> None:
    """``to`` null, ``to_pseudonym`` the hash, ``pseudonymised_at`` set; in lists too."""
    message_id = await factories.add_message(database)
    fresh = (await client.get(f"/v1/messages/{message_id}", headers=app_key)).json()
    assert (fresh["to"], fresh["to_pseudonym"], fresh["pseudonymised_at"]) == (NUMBER, None, None)
    async with database.write() as session:
        await scrub.pseudonymise(
            session, [message_id], settings.pseudonym_key_bytes(), clock.utcnow()
        )
    pseudonym = pseudonyms.of(NUMBER, settings.pseudonym_key_bytes())
    shown = (await client.get(f"/v1/messages/{message_id}", headers=app_key)).json()
    assert (shown["to"], shown["to_pseudonym"]) == (None, pseudonym)
    assert shown["pseudonymised_at"] is not None
    (listed,) = (await client.get("/v1/messages", headers=app_key)).json()["messages"]
    assert (listed["to"], listed["to_pseudonym"]) == (None, pseudonym)


async def test_the_to_filter_finds_pseudonymised_messages_by_the_number(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, settings: Settings
) -> None:
    """``to`` in any written form finds the number's messages, pseudonymised or not,
    and no other number's."""
    gone = await factories.add_message(database)
    kept = await factories.add_message(database)
    other = await factories.add_message(database, contact="254722000111")
    async with database.write() as session:
        await scrub.pseudonymise(session, [gone], settings.pseudonym_key_bytes(), clock.utcnow())
    found = await client.get("/v1/messages", params={"to": "0712 345 678"}, headers=app_key)
    assert {item["id"] for item in found.json()["messages"]} == {str(gone), str(kept)}
    theirs = await client.get("/v1/messages", params={"to": "0722000111"}, headers=app_key)
    assert [item["id"] for item in theirs.json()["messages"]] == [str(other)]
