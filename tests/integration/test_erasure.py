"""Erasure on request (#17 item 2): every table, every client, audited, bounded batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests import factories
from tests.conftest import SettingsFactory
from tests.integration import privacy_support
from tests.integration.callback_support import post_report
from tests.integration.send_support import Headers, api_settings, bearer, errors_of, post_json
from tracker import clock, db, models
from tracker.domain import status
from tracker.privacy import audit, erasure, pseudonyms
from tracker.reports import reading
from tracker.settings import Settings

NUMBER = "254712345678"
OTHER = "254722000111"
PROVIDER_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def admin(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("ops", "admin"))


@pytest.fixture
async def app_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


async def erase(http: httpx.AsyncClient, headers: Headers, **body: Any) -> httpx.Response:
    return await post_json(http, "/v1/erasures", body, headers)


async def send_keyed(http: httpx.AsyncClient, headers: Headers, to: str, key: str) -> str:
    """A send with an Idempotency-Key (its answer is stored); the message id."""
    response = await http.post(
        "/v1/messages",
        content=json.dumps({"to": to, "message": "Your code is 123456"}),
        headers={**headers, "Content-Type": "application/json", "Idempotency-Key": key},
    )
    assert response.status_code == 202, response.text
    message_id: str = response.json()["id"]
    return message_id


async def test_erasure_reaches_every_table_and_every_client(
    client: httpx.AsyncClient,
    admin: Headers,
    app_key: Headers,
    database: db.Database,
    settings: Settings,
) -> None:
    """Messages, events, receipts, webhook deliveries and attempts, Idempotency-Key
    answers: no form of the number is left, and no body of a message to it."""
    pending = await factories.add_message(database, contact=NUMBER)
    await privacy_support.history(database, pending, NUMBER)
    billing = await factories.add_message(database, contact=NUMBER, client="billing")
    await send_keyed(client, app_key, "0712 345 678", "first-send")
    answer = await erase(client, admin, to="+254 712 345 678")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "messages_found": 3, "messages_cancelled": 1, "messages_redacted": 3,
        "messages_pseudonymised": 3, "events": 1, "receipts": 1, "webhook_deliveries": 1,
        "webhook_attempts": 1, "idempotency_keys": 1,
    }  # fmt: skip
    rows = await privacy_support.every_row(database)
    for form in privacy_support.forms_of(NUMBER):
        assert form not in rows
    assert "Your code is 123456" not in rows
    pseudonym = pseudonyms.of(NUMBER, settings.pseudonym_key_bytes())
    for message_id in (pending, billing):
        message = await factories.fetch_message(database, message_id)
        assert (message.contact, message.contact_pseudonym) == ("", pseudonym)
        assert message.body is None
        assert message.redacted_at is not None
        assert message.pseudonymised_at is not None


async def test_erasure_cancels_what_is_queued_and_leaves_other_numbers_alone(
    client: httpx.AsyncClient, admin: Headers, app_key: Headers, database: db.Database
) -> None:
    """The queued message is cancelled with a reason first; another number's message,
    queued or final, keeps its number, body and history."""
    queued = await send_keyed(client, app_key, NUMBER, "mine")
    other_queued = await send_keyed(client, app_key, OTHER, "theirs")
    other_final = await factories.add_message(
        database, contact=OTHER, status=status.Status.DELIVERED
    )
    await privacy_support.history(database, other_final, OTHER)
    before = (await privacy_support.every_row(database)).count(OTHER)
    assert (await erase(client, admin, to=NUMBER)).json()["messages_cancelled"] == 1
    shown = (await client.get(f"/v1/messages/{queued}", headers=admin)).json()
    assert shown["status"] == "cancelled"
    assert shown["error"] == erasure.CANCELLED_DETAIL
    assert shown["events"][-1]["detail"] == erasure.CANCELLED_DETAIL
    assert shown["to"] is None
    assert (await privacy_support.every_row(database)).count(OTHER) == before
    for message_id in (other_final,):
        message = await factories.fetch_message(database, message_id)
        assert (message.contact, message.body) == (OTHER, "Your code is 123456")
    left = (await client.get(f"/v1/messages/{other_queued}", headers=admin)).json()
    assert (left["status"], left["to"]) == ("queued", OTHER)


async def test_the_audit_event_names_the_admin_key_and_counts_but_never_the_number(
    client: httpx.AsyncClient, admin: Headers, database: db.Database
) -> None:
    """One erasure event: actor ``client/key``, the counts the answer gave, no number."""
    await factories.add_message(database, contact=NUMBER)
    counts = (await erase(client, admin, to="0712345678")).json()
    async with database.read() as session:
        (event,) = await audit.recent(session, action=audit.Action.ERASURE)
    assert event["actor"] == audit.actor_of("ops", "ops")
    assert event["detail"] == counts
    assert event["message_id"] is None
    assert "712345678" not in str(dict(event))
    listed = await client.get("/v1/audit-events", headers=admin)
    assert [e["action"] for e in listed.json()["audit_events"]] == ["erasure"]
    assert listed.json()["audit_events"][0]["detail"] == counts


async def test_only_an_admin_key_erases_and_bad_input_is_a_400_by_field(
    client: httpx.AsyncClient, admin: Headers, app_key: Headers, database: db.Database
) -> None:
    """A read/send key is 403 and changes nothing; a bad number, none, or an unknown
    field is a 400 naming it."""
    message_id = await factories.add_message(database, contact=NUMBER)
    assert (await erase(client, app_key, to=NUMBER)).status_code == 403
    assert (await client.get("/v1/audit-events", headers=app_key)).status_code == 403
    assert (await factories.fetch_message(database, message_id)).contact == NUMBER
    assert "to" in errors_of(await erase(client, admin, to="12"))
    assert "to" in errors_of(await erase(client, admin))
    assert "to" in errors_of(await erase(client, admin, to=712345678))
    assert "number" in errors_of(await erase(client, admin, to=NUMBER, number=NUMBER))
    bad_action = await client.get("/v1/audit-events?action=nope", headers=admin)
    assert "action" in errors_of(bad_action)
    async with database.read() as session:
        assert await audit.recent(session) == []


async def test_erasure_goes_in_bounded_batches_until_none_is_left(
    database: db.Database, settings: Settings
) -> None:
    """Five messages in batches of two: all are found, and asking again changes nothing
    but still finds them by their pseudonym."""
    key = settings.pseudonym_key_bytes()
    ids = [await factories.add_message(database, contact=NUMBER) for _ in range(5)]
    first = await erasure.erase(database, NUMBER, key, erasure.CLI_ACTOR, batch=2)
    assert (first.messages_found, first.messages_redacted) == (5, 5)
    assert first.changed.messages == 5
    again = await erasure.erase(database, NUMBER, key, erasure.CLI_ACTOR, batch=2)
    assert again.messages_found == 5
    assert again.counts() | {"messages_found": 0} == dict.fromkeys(again.counts(), 0)
    for message_id in ids:
        assert (await factories.fetch_message(database, message_id)).contact == ""
    async with database.read() as session:
        actors = [e["actor"] for e in await audit.recent(session)]
    assert actors == ["cli", "cli"]


async def test_a_report_after_erasure_is_applied_and_stores_no_number(
    client: httpx.AsyncClient, admin: Headers, database: db.Database, settings: Settings
) -> None:
    """A message in flight when its number is erased: its delivery report (naming the
    number) still finds it by id, moves it to delivered, and is stored pseudonymised."""
    message_id = await factories.add_message(
        database, contact=NUMBER, provider_message_id=PROVIDER_ID
    )
    assert (await erase(client, admin, to=NUMBER)).json()["messages_pseudonymised"] == 1
    report = {"message_id": PROVIDER_ID, "contact": NUMBER, "status": "Delivered",
              "description": f"Delivered to {NUMBER}"}  # fmt: skip
    response = await post_report(client, settings, message_id, report)
    assert response.json() == {"received": True, "outcome": "applied"}
    message = await factories.fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.contact == ""
    rows = await privacy_support.every_row(database)
    for form in privacy_support.forms_of(NUMBER):
        assert form not in rows
    pseudonym = pseudonyms.of(NUMBER, settings.pseudonym_key_bytes())
    async with database.read() as session:
        (receipt,) = (await session.scalars(select(models.CallbackReceipt))).all()
    assert pseudonym in receipt.body
    assert message.provider_description == f"Delivered to {pseudonym}"


async def test_a_batch_answer_keeps_the_other_numbers_and_its_replay_shows_the_pseudonym(
    client: httpx.AsyncClient,
    admin: Headers,
    app_key: Headers,
    database: db.Database,
    settings: Settings,
) -> None:
    """An Idempotency-Key answer naming two numbers loses only the erased one, so a
    replay of that batch still answers, with the hash where the number was."""
    batch = {"messages": [{"to": NUMBER, "message": "a"}, {"to": OTHER, "message": "b"}]}
    headers = {**app_key, "Content-Type": "application/json", "Idempotency-Key": "the-batch"}
    sent = await client.post("/v1/messages/batch", content=json.dumps(batch), headers=headers)
    assert sent.status_code == 202, sent.text
    assert (await erase(client, admin, to=NUMBER)).json()["idempotency_keys"] == 1
    replayed = await client.post("/v1/messages/batch", content=json.dumps(batch), headers=headers)
    assert replayed.status_code == 202
    assert [m["to"] for m in replayed.json()["messages"]] == [
        pseudonyms.of(NUMBER, settings.pseudonym_key_bytes()),
        OTHER,
    ]
    assert "712345678" not in await privacy_support.every_row(database)


async def test_no_receipts_dedupe_key_can_give_the_number_back(
    client: httpx.AsyncClient, admin: Headers, database: db.Database, settings: Settings
) -> None:
    """A receipt's dedupe key hashes its raw body (unkeyed): after erasure no key is the
    hash of a body naming the number, reports before or after it; a repeat after it is
    answered 200 and stored again, changing nothing."""
    message_id = await factories.add_message(
        database, contact=NUMBER, provider_message_id=PROVIDER_ID
    )
    interim = {"message_id": PROVIDER_ID, "contact": NUMBER, "status": "Pending"}
    final = {"message_id": PROVIDER_ID, "contact": NUMBER, "status": "Delivered"}
    assert (await post_report(client, settings, message_id, interim)).status_code == 200
    await erase(client, admin, to=NUMBER)
    for _ in range(2):
        response = await post_report(client, settings, message_id, final)
        assert response.status_code == 200, response.text
    async with database.read() as session:
        keys = set((await session.scalars(select(models.CallbackReceipt.dedupe_key))).all())
    raw = {
        reading.Receipt(message_id, json.dumps(body), None, clock.utcnow()).dedupe_key
        for body in (interim, final)
    }
    assert len(keys) == 3
    assert not keys & raw
    assert (await factories.fetch_message(database, message_id)).status == status.Status.DELIVERED
