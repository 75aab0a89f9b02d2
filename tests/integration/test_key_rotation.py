"""A key rotates with no gap and the client keeps its history (issue 14, rotation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.integration.send_support import Headers, api_settings, bearer, send
from tracker import auth, db
from tracker.clients import records
from tracker.settings import Settings

SEND_READ = frozenset({auth.Scope.SEND, auth.Scope.READ})


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


async def billing_key(database: db.Database, name: str) -> Headers:
    """A send,read key ``name`` of client ``billing``."""
    return bearer(await auth.create_key(database, name, SEND_READ, client="billing"))


@pytest.fixture
async def rotated(
    client: httpx.AsyncClient, database: db.Database
) -> tuple[Headers, Headers, list[str]]:
    """billing-2025 sends three messages; then billing-2026 is created and 2025 revoked."""
    async with database.write() as session:
        await records.create(session, "billing")
    old = await billing_key(database, "billing-2025")
    sent = [await send(client, old, reference=f"inv-{n}") for n in range(3)]
    assert [r.status_code for r in sent] == [202, 202, 202]
    new = await billing_key(database, "billing-2026")
    assert await auth.revoke_key(database, "billing-2025")
    return old, new, [r.json()["id"] for r in sent]


async def test_the_new_key_reads_each_message_the_old_key_sent(
    client: httpx.AsyncClient, rotated: tuple[Headers, Headers, list[str]]
) -> None:
    """GET /v1/messages/{id} with billing-2026 answers 200 for billing-2025's messages."""
    _old, new, ids = rotated
    for message_id in ids:
        response = await client.get(f"/v1/messages/{message_id}", headers=new)
        assert response.status_code == 200, response.text
        assert response.json()["client"] == "billing"


async def test_the_new_key_lists_its_clients_messages_by_name(
    client: httpx.AsyncClient, rotated: tuple[Headers, Headers, list[str]]
) -> None:
    """?client=billing is the key's own client, so a non-admin key gets 200 with all three."""
    _old, new, ids = rotated
    for query in ("?client=billing", ""):
        response = await client.get(f"/v1/messages{query}", headers=new)
        assert response.status_code == 200, response.text
        assert sorted(m["id"] for m in response.json()["messages"]) == sorted(ids)
    other = await client.get("/v1/messages?client=billing-2025", headers=new)
    assert other.status_code == 403  # the old key's name is not a client of its own


async def test_stats_count_the_old_keys_messages(
    client: httpx.AsyncClient, rotated: tuple[Headers, Headers, list[str]]
) -> None:
    """/v1/stats for billing (its own, and by name) counts the three queued messages."""
    _old, new, _ids = rotated
    for query in ("", "&client=billing"):
        response = await client.get(f"/v1/stats?window=1h{query}", headers=new)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["client"], body["total"], body["counts"]["queued"]) == ("billing", 3, 3)


async def test_the_revoked_key_answers_401_and_its_name_can_be_used_again(
    client: httpx.AsyncClient, database: db.Database, rotated: tuple[Headers, Headers, list[str]]
) -> None:
    """billing-2025 is refused at once; a new key of that name works and sees the history."""
    old, _new, ids = rotated
    for path in (f"/v1/messages/{ids[0]}", "/v1/messages", "/v1/whoami"):
        assert (await client.get(path, headers=old)).status_code == 401
    assert (await send(client, old)).status_code == 401
    again = await billing_key(database, "billing-2025")
    assert again != old
    response = await client.get(f"/v1/messages/{ids[0]}", headers=again)
    assert response.status_code == 200
    keys = await auth.list_keys(database)
    assert [(k.name, k.revoked) for k in keys if k.name == "billing-2025"] == [
        ("billing-2025", True),
        ("billing-2025", False),
    ]


async def test_an_idempotency_key_used_before_the_rotation_is_still_the_clients(
    client: httpx.AsyncClient, database: db.Database, make_key: Callable[..., Any]
) -> None:
    """A retry with the new key and the old Idempotency-Key gets the first answer, not a copy."""
    async with database.write() as session:
        await records.create(session, "billing")
    old = await billing_key(database, "billing-2025")
    first = await send(client, {**old, "Idempotency-Key": "inv-7"}, reference="inv-7")
    assert first.status_code == 202
    new = await billing_key(database, "billing-2026")
    await auth.revoke_key(database, "billing-2025")
    retry = await send(client, {**new, "Idempotency-Key": "inv-7"}, reference="inv-7")
    assert retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers.get("idempotent-replayed") == "true"
    stranger = bearer(await make_key("shop", "send,read"))
    elsewhere = await send(client, {**stranger, "Idempotency-Key": "inv-7"}, reference="inv-7")
    assert elsewhere.json()["id"] != first.json()["id"]  # keys are per client
