"""The admin API for clients: GET/POST /v1/clients, GET/PATCH /v1/clients/{name}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.integration.send_support import Headers, bearer
from tracker import auth, db
from tracker.clients import records
from tracker.settings import Settings

SENDERS = "KIMISMS,ACME,ALERTS"
BODY_LIMIT = 1024
NO_LIMITS = {"rate_per_minute": None, "daily_cap": None, "high_per_minute": None}
NO_OVERRIDES = {"retention_body": None, "retention_contact": None, "retention_message": None}


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(database_url=database_url, sender_names=SENDERS, max_body_bytes=BODY_LIMIT)


@pytest.fixture
async def admin(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("ops", "admin"))


async def test_an_admin_lists_every_client_with_its_active_keys(
    client: httpx.AsyncClient, admin: Headers, database: db.Database, make_key: Callable[..., Any]
) -> None:
    """Each client once, by name, with its settings and the count of keys not revoked."""
    await make_key("billing-2025", "send")
    await auth.create_key(database, "billing-2026", frozenset({auth.Scope.SEND}), client="ops")
    await auth.revoke_key(database, "billing-2025")
    response = await client.get("/v1/clients", headers=admin)
    assert response.status_code == 200, response.text
    listed = {c["name"]: c for c in response.json()["clients"]}
    assert list(listed) == ["billing-2025", "ops"]
    assert listed["ops"]["active_keys"] == 2
    assert listed["billing-2025"] == {
        "name": "billing-2025",
        "sender_names": None,
        "default_sender": None,
        **NO_LIMITS,
        **NO_OVERRIDES,
        "weight": 1,
        "created_at": listed["billing-2025"]["created_at"],
        "active_keys": 0,
    }


async def test_post_creates_a_client_that_get_then_shows(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """201 with the client as stored; GET /v1/clients/{name} answers the same, with its keys."""
    body = {
        "name": "billing",
        "sender_names": ["ACME", "ALERTS"],
        "default_sender": "ALERTS",
        "rate_per_minute": 30,
        "daily_cap": 5000,
        "high_per_minute": 5,
        "weight": 3,
        "retention_body": "3d",
        "retention_contact": "keep",
        "retention_message": "365d",
    }
    created = await client.post("/v1/clients", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {**body, "created_at": created.json()["created_at"], "active_keys": 0}
    shown = await client.get("/v1/clients/billing", headers=admin)
    assert shown.status_code == 200
    assert shown.json() == {**created.json(), "keys": []}


async def test_a_name_taken_is_409_and_the_first_client_is_unchanged(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """A second POST of the same name conflicts and changes nothing."""
    first = await client.post("/v1/clients", json={"name": "billing", "weight": 2}, headers=admin)
    assert first.status_code == 201
    again = await client.post("/v1/clients", json={"name": "billing", "weight": 9}, headers=admin)
    assert again.status_code == 409
    assert again.json() == {"detail": "a client named 'billing' already exists"}
    assert (await client.get("/v1/clients/billing", headers=admin)).json()["weight"] == 2


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "bad name"}, {"name": ["must be letters, digits, '-' or '_'"]}),
        ({}, {"name": ["this field is required"]}),
        (
            {"name": "a", "sender_names": ["NOPE", "ACME"]},
            {"sender_names": ["'NOPE' not in TRACKER_SENDER_NAMES (KIMISMS, ACME, ALERTS)"]},
        ),
        ({"name": "a", "sender_names": []}, {"sender_names": ["must hold at least 1 name"]}),
        (
            {"name": "a", "sender_names": ["ACME", "ACME"]},
            {"sender_names": ["must not repeat a name"]},
        ),
        (
            {"name": "a", "sender_names": ["ACME"], "default_sender": "KIMISMS"},
            {"default_sender": ["'KIMISMS' is not one of its senders (ACME)"]},
        ),
        (
            {"name": "a", "default_sender": "NOPE"},
            {"default_sender": ["'NOPE' is not one of its senders (KIMISMS, ACME, ALERTS)"]},
        ),
        ({"name": "a", "rate_per_minute": 0}, {"rate_per_minute": ["must be at least 1"]}),
        ({"name": "a", "daily_cap": "10"}, {"daily_cap": ["must be an integer"]}),
        ({"name": "a", "high_per_minute": 1.5}, {"high_per_minute": ["must be an integer"]}),
        ({"name": "a", "weight": 101}, {"weight": ["must be at most 100"]}),
        ({"name": "a", "weight": None}, {"weight": ["must be an integer"]}),
        ({"name": "a", "weight": True}, {"weight": ["must be an integer"]}),
        ({"name": "a", "colour": "red"}, {"colour": ["unknown field"]}),
    ],
)
async def test_bad_fields_are_400_naming_each_field(
    client: httpx.AsyncClient, admin: Headers, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    """Shapes, ranges and the sender allow-list: 400 by field, and no client is created."""
    response = await client.post("/v1/clients", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json() == {"errors": errors}
    listed = (await client.get("/v1/clients", headers=admin)).json()["clients"]
    assert [c["name"] for c in listed] == ["ops"]


async def test_patch_changes_only_the_fields_given_and_null_clears_a_limit(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """PATCH {rate_per_minute: null, weight: 5}: the rate limit goes, the rest stays."""
    body = {"name": "billing", "rate_per_minute": 30, "daily_cap": 100, "sender_names": ["ACME"]}
    assert (await client.post("/v1/clients", json=body, headers=admin)).status_code == 201
    changes = {"rate_per_minute": None, "weight": 5}
    patched = await client.patch("/v1/clients/billing", json=changes, headers=admin)
    assert patched.status_code == 200, patched.text
    got = patched.json()
    assert (got["rate_per_minute"], got["daily_cap"], got["weight"]) == (None, 100, 5)
    assert got["sender_names"] == ["ACME"]
    assert (await client.get("/v1/clients/billing", headers=admin)).json()["weight"] == 5
    cleared = await client.patch("/v1/clients/billing", json={"sender_names": None}, headers=admin)
    assert cleared.json()["sender_names"] is None


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"weight": None}, {"weight": ["must be an integer from 1 to 100; it cannot be cleared"]}),
        (
            {"sender_names": ["KIMISMS"]},
            {"default_sender": ["'ACME' is not one of its senders (KIMISMS)"]},
        ),
        (
            {"default_sender": "ALERTS"},
            {"default_sender": ["'ALERTS' is not one of its senders (ACME)"]},
        ),
        ({"name": "other"}, {"name": ["unknown field"]}),
        ({"daily_cap": -1}, {"daily_cap": ["must be at least 1"]}),
    ],
)
async def test_a_bad_patch_is_400_and_changes_nothing(
    client: httpx.AsyncClient, admin: Headers, changes: dict[str, Any], errors: dict[str, Any]
) -> None:
    """The rules hold on the client as the PATCH would leave it; a refusal keeps it as it was."""
    body = {"name": "billing", "sender_names": ["ACME"], "default_sender": "ACME", "daily_cap": 9}
    before = (await client.post("/v1/clients", json=body, headers=admin)).json()
    response = await client.patch("/v1/clients/billing", json=changes, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json() == {"errors": errors}
    after = (await client.get("/v1/clients/billing", headers=admin)).json()
    assert {k: v for k, v in after.items() if k != "keys"} == before


async def test_an_unknown_client_is_404_for_get_and_patch(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """No such client: 404 with a detail, and PATCH does not create it."""
    shown = await client.get("/v1/clients/nobody", headers=admin)
    assert (shown.status_code, shown.json()) == (404, {"detail": "no client named 'nobody'"})
    patched = await client.patch("/v1/clients/nobody", json={"weight": 2}, headers=admin)
    assert patched.status_code == 404
    assert (await client.get("/v1/clients/nobody", headers=admin)).status_code == 404


@pytest.mark.parametrize("name", ["%00", "a%20b", "x" * 65, "%C3%A9t%C3%A9"])
async def test_a_name_no_client_could_have_is_404(
    client: httpx.AsyncClient, admin: Headers, name: str
) -> None:
    """A NUL, a space, 65 characters or non-ASCII in the path: 404, never a 500."""
    for method in ("GET", "PATCH"):
        response = await client.request(
            method, f"/v1/clients/{name}", json={"weight": 2}, headers=admin
        )
        assert response.status_code == 404, response.text


async def test_get_shows_the_clients_keys_revoked_ones_included(
    client: httpx.AsyncClient, admin: Headers, database: db.Database
) -> None:
    """Each key's name, prefix, scopes and state; never the key itself."""
    async with database.write() as session:
        await records.create(session, "billing")
    old = await auth.create_key(
        database, "billing-2025", frozenset({auth.Scope.SEND}), client="billing"
    )
    await auth.create_key(database, "billing-2026", frozenset({auth.Scope.READ}), client="billing")
    await auth.revoke_key(database, "billing-2025")
    response = await client.get("/v1/clients/billing", headers=admin)
    body = response.json()
    assert body["active_keys"] == 1
    keys = [(k["name"], k["scopes"], k["revoked"]) for k in body["keys"]]
    assert keys == [("billing-2025", ["send"], True), ("billing-2026", ["read"], False)]
    assert body["keys"][0]["prefix"] == old[:10]
    assert old not in response.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/clients", None),
        ("POST", "/v1/clients", {"name": "x"}),
        ("GET", "/v1/clients/ops", None),
        ("PATCH", "/v1/clients/ops", {"weight": 2}),
    ],
)
async def test_every_route_needs_an_admin_key(
    client: httpx.AsyncClient,
    make_key: Callable[..., Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """No key or a bad key: 401; a send,read key: 403 naming the admin scope."""
    await make_key("ops", "admin")
    reader = bearer(await make_key("app", "send,read"))
    for headers, expected in (({}, 401), (bearer("kt_nope"), 401), (reader, 403)):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == expected, (headers, response.text)
    refused = await client.request(method, path, json=body, headers=reader)
    assert refused.json() == {"detail": "this key lacks the 'admin' scope"}


async def test_a_body_too_large_is_413_and_not_json_is_415(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """The usual body limits: over TRACKER_MAX_BODY_BYTES is 413; another media type is 415."""
    big = {"name": "billing", "padding": "x" * BODY_LIMIT}
    for method, path in (("POST", "/v1/clients"), ("PATCH", "/v1/clients/ops")):
        too_large = await client.request(method, path, json=big, headers=admin)
        assert too_large.status_code == 413, too_large.text
        form = await client.request(
            method, path, content=b"name=x", headers={**admin, "Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        broken = await client.request(
            method, path, content=b"{", headers={**admin, "Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        assert list(broken.json()["errors"]) == ["body"]


async def test_another_method_is_405(client: httpx.AsyncClient, admin: Headers) -> None:
    """DELETE is not offered: 405 naming what is."""
    for path, allowed in (("/v1/clients", {"GET", "POST"}), ("/v1/clients/ops", {"GET", "PATCH"})):
        response = await client.delete(path, headers=admin)
        assert response.status_code == 405
        assert allowed <= {m.strip() for m in response.headers["allow"].split(",")}
