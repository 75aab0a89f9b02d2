"""The webhooks API: endpoints, rotation, deliveries, retry, recover and the test event."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from tests.conftest import SettingsFactory, running
from tests.integration import webhook_support as support
from tests.integration.send_support import Headers, bearer
from tracker import clock, db, models
from tracker.app import create_app
from tracker.settings import Settings
from tracker.webhooks import events, signing

ENDPOINT_FIELDS = {
    "id", "client", "url", "events", "description", "enabled", "disabled_at",
    "disabled_reason", "failing_since", "previous_secret_until", "created_at", "updated_at",
}  # fmt: skip


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(
        database_url=database_url,
        webhook_allowed_networks="127.0.0.1/32",
        webhook_secret_grace_seconds=support.GRACE_SECONDS,
        max_body_bytes=4096,
    )


@pytest.fixture
def app(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as http:
        yield http


@pytest.fixture
async def app_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


@pytest.fixture
async def other_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("other", "send,read"))


@pytest.fixture
async def admin(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("ops", "admin"))


# --- create, show, list ------------------------------------------------------


async def test_create_answers_the_endpoint_with_its_secret_once(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """201 with every field and a whsec_ secret; GET and the list never show the secret."""
    created = await support.create(client, app_key, description="billing hooks")
    assert set(created) == ENDPOINT_FIELDS | {"secret"}
    assert created["client"] == "app"
    assert created["url"] == support.HOOK
    assert created["events"] == list(events.MESSAGE_EVENTS)
    assert created["enabled"] is True
    assert created["description"] == "billing hooks"
    assert len(signing.secret_key(created["secret"])) == signing.SECRET_BYTES
    shown = await client.get(f"/v1/webhooks/{created['id']}", headers=app_key)
    assert shown.status_code == 200, shown.text
    assert "secret" not in shown.json()
    assert shown.json()["deliveries"] == {
        "pending": 0, "failed": 0, "last_attempt_at": None,
        "last_status_code": None, "last_error": None,
    }  # fmt: skip
    listed = await client.get("/v1/webhooks", headers=app_key)
    assert [set(w) for w in listed.json()["webhooks"]] == [ENDPOINT_FIELDS]


async def test_a_subset_of_events_is_kept_in_declared_order(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """Subscribed events come back once each, in the order events.MESSAGE_EVENTS declares."""
    created = await support.create(
        client, app_key, events=["message.failed", "message.delivered", "message.failed"]
    )
    assert created["events"] == ["message.delivered", "message.failed"]


@pytest.mark.parametrize(
    ("events_value", "words"),
    [
        (["message.sent"], "unknown event 'message.sent'"),
        (["webhook.test"], "is sent on request"),
        ([], "subscribe to at least one event"),
        ("message.failed", "must be a list"),
    ],
)
async def test_a_bad_subscription_is_a_400_naming_events(
    client: httpx.AsyncClient, app_key: Headers, events_value: Any, words: str
) -> None:
    """Unknown, unsubscribable, empty or non-list events: 400 on ``events``, nothing stored."""
    response = await client.post(
        "/v1/webhooks", json={"url": support.HOOK, "events": events_value}, headers=app_key
    )
    assert response.status_code == 400, response.text
    assert words in " ".join(response.json()["errors"]["events"])
    listed = await client.get("/v1/webhooks", headers=app_key)
    assert listed.json()["webhooks"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": support.HOOK, "description": "x" * 256}, "description"),
        ({"url": support.HOOK, "colour": "red"}, "colour"),
        ({"url": "http://127.0.0.1/\x00"}, "url"),
        ({"url": 5}, "url"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(
    client: httpx.AsyncClient, app_key: Headers, body: dict[str, Any], field: str
) -> None:
    """Missing url, a long description, an unknown field, NUL, a number: 400 on that field."""
    response = await client.post("/v1/webhooks", json=body, headers=app_key)
    assert response.status_code == 400, response.text
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
        ("https://localhost/hook", "loopback"),
        ("http://93.184.215.14/hook", "must use https"),
        ("ftp://93.184.215.14/hook", "http(s)"),
        ("https://user:pw@93.184.215.14/hook", "user name or password"),
    ],
)
async def test_registration_refuses_inside_and_plain_http_destinations(
    make_settings: SettingsFactory,
    database_url: str,
    app_key: Headers,
    url: str,
    words: str,
) -> None:
    """Without TRACKER_WEBHOOK_ALLOWED_NETWORKS: 400 on ``url`` saying why; nothing stored."""
    closed = make_settings(database_url=database_url)
    async with running(create_app(closed)) as client:
        response = await client.post("/v1/webhooks", json={"url": url}, headers=app_key)
        assert response.status_code == 400, response.text
        assert words in response.json()["errors"]["url"][0]
        assert (await client.get("/v1/webhooks", headers=app_key)).json()["webhooks"] == []


async def test_an_allowed_network_opens_plain_http_to_loopback_only(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """127.0.0.1/32 allowed: http to it is taken; another loopback address stays refused."""
    assert (await support.create(client, app_key))["url"] == support.HOOK
    refused = await client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.2/hook"}, headers=app_key
    )
    assert refused.status_code == 400
    assert "loopback" in refused.json()["errors"]["url"][0]


async def test_only_admin_keys_create_for_another_client(
    client: httpx.AsyncClient, app_key: Headers, admin: Headers, other_key: Headers
) -> None:
    """A key naming another client is 403; admin may name any existing client, not a new one."""
    refused = await client.post(
        "/v1/webhooks", json={"url": support.HOOK, "client": "other"}, headers=app_key
    )
    assert refused.status_code == 403, refused.text
    own = await support.create(client, app_key, client="app")
    assert own["client"] == "app"
    for_other = await support.create(client, admin, client="other")
    assert for_other["client"] == "other"
    unknown = await client.post(
        "/v1/webhooks", json={"url": support.HOOK, "client": "nobody"}, headers=admin
    )
    assert unknown.status_code == 400
    assert "nobody" in unknown.json()["errors"]["client"][0]
    seen = await client.get("/v1/webhooks", headers=other_key)
    assert [w["id"] for w in seen.json()["webhooks"]] == [for_other["id"]]


async def test_admin_lists_every_client_or_one_and_others_only_their_own(
    client: httpx.AsyncClient, app_key: Headers, other_key: Headers, admin: Headers
) -> None:
    """Admin: all, or ?client=; a key asking for another client's list is 403."""
    mine = await support.create(client, app_key)
    theirs = await support.create(client, other_key)
    every = await client.get("/v1/webhooks", headers=admin)
    assert {w["id"] for w in every.json()["webhooks"]} == {mine["id"], theirs["id"]}
    one = await client.get("/v1/webhooks", params={"client": "other"}, headers=admin)
    assert [w["id"] for w in one.json()["webhooks"]] == [theirs["id"]]
    refused = await client.get("/v1/webhooks", params={"client": "other"}, headers=app_key)
    assert refused.status_code == 403


async def test_a_read_only_key_lists_but_cannot_create(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """POST needs the send scope (403); GET needs only read."""
    reader = bearer(await make_key("reader", "read"))
    refused = await client.post("/v1/webhooks", json={"url": support.HOOK}, headers=reader)
    assert refused.status_code == 403
    assert "'send'" in refused.json()["detail"]
    assert (await client.get("/v1/webhooks", headers=reader)).status_code == 200
    assert (await client.get("/v1/webhooks")).status_code == 401


# --- another client's endpoint, malformed ids ----------------------------------


async def test_another_clients_endpoint_is_not_found_on_every_route(
    client: httpx.AsyncClient, app_key: Headers, other_key: Headers
) -> None:
    """Every route answers 404 for another client's endpoint, as for one that never was."""
    theirs = (await support.create(client, other_key))["id"]
    base = f"/v1/webhooks/{theirs}"
    since = {"since": "2026-01-01T00:00:00Z"}
    answers = [
        await client.get(base, headers=app_key),
        await client.patch(base, json={"description": "x"}, headers=app_key),
        await client.delete(base, headers=app_key),
        await client.post(base + "/rotate-secret", headers=app_key),
        await client.get(base + "/deliveries", headers=app_key),
        await client.post(base + "/recover", params=since, headers=app_key),
        await client.post(base + "/test", headers=app_key),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json()["detail"] == f"no webhook endpoint {theirs}" for a in answers)
    assert (await client.get(base, headers=other_key)).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/webhooks/not-a-uuid",
        "/v1/webhooks/12345/deliveries",
        "/v1/webhooks/deliveries/abc/retry",
        "/v1/webhooks/deliveries/99999999999999999999999/retry",
        f"/v1/webhooks/{uuid.UUID(int=7)}",
    ],
)
async def test_malformed_or_unknown_ids_are_404(
    client: httpx.AsyncClient, app_key: Headers, path: str
) -> None:
    """A path that no endpoint or delivery could have is a JSON 404, never a 500."""
    method = "POST" if path.endswith("/retry") else "GET"
    response = await client.request(method, path, headers=app_key)
    assert response.status_code == 404, response.text
    assert "detail" in response.json()


async def test_the_collection_answers_405_to_other_methods(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """DELETE on /v1/webhooks is 405 naming GET and POST."""
    refused = await client.delete("/v1/webhooks", headers=app_key)
    assert refused.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in refused.headers["allow"].split(",")}


# --- update, delete, rotate ----------------------------------------------------


async def test_patch_changes_the_fields_given_and_vets_a_new_url(
    client: httpx.AsyncClient, app_key: Headers
) -> None:
    """events and url change, description null clears; a refused url is 400 and no change."""
    created = await support.create(client, app_key, description="first")
    base = f"/v1/webhooks/{created['id']}"
    changed = await client.patch(
        base,
        json={"events": ["message.failed"], "url": support.HOOK + "/v2", "description": None},
        headers=app_key,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["events"], body["url"], body["description"]) == (
        ["message.failed"], support.HOOK + "/v2", None,
    )  # fmt: skip
    assert "secret" not in body
    refused = await client.patch(base, json={"url": "https://10.1.2.3/"}, headers=app_key)
    assert refused.status_code == 400
    assert "private" in refused.json()["errors"]["url"][0]
    for bad in ({"enabled": None}, {"url": None}, {"events": ["nope"]}, {"enabled": "no"}):
        answer = await client.patch(base, json=bad, headers=app_key)
        assert answer.status_code == 400, (bad, answer.text)
        assert set(answer.json()["errors"]) == set(bad)
    assert (await client.get(base, headers=app_key)).json()["url"] == support.HOOK + "/v2"


async def test_disabling_fails_the_backlog_and_enabling_clears_the_failure_state(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """enabled false: disabled_at and reason set, pending deliveries failed as the trigger
    fails a disabled endpoint's; enabled true clears disabled_at, reason and failing_since."""
    created = await support.create(client, app_key)
    base = f"/v1/webhooks/{created['id']}"
    pending = await support.add_delivery(database, created["id"], "pending")
    disabled = (await client.patch(base, json={"enabled": False}, headers=app_key)).json()
    assert disabled["enabled"] is False
    assert disabled["disabled_at"] is not None
    assert disabled["disabled_reason"] == "disabled by request"
    row = await support.delivery_row(database, pending)
    assert (row.status, row.last_error, row.next_attempt_at) == (
        "failed", "endpoint disabled", None,
    )  # fmt: skip
    async with database.write() as session:
        endpoint = await session.get(models.WebhookEndpoint, uuid.UUID(created["id"]))
        assert endpoint is not None
        endpoint.failing_since = clock.utcnow()
    enabled = (await client.patch(base, json={"enabled": True}, headers=app_key)).json()
    assert (enabled["enabled"], enabled["disabled_at"], enabled["disabled_reason"]) == (
        True, None, None,
    )  # fmt: skip
    assert enabled["failing_since"] is None


async def test_delete_removes_the_endpoint_and_its_deliveries(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """204; then 404, and its deliveries and attempts are gone with it (cascade)."""
    created = await support.create(client, app_key)
    await support.add_delivery(database, created["id"], "failed", attempts=2)
    deleted = await client.delete(f"/v1/webhooks/{created['id']}", headers=app_key)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/v1/webhooks/{created['id']}", headers=app_key)).status_code == 404
    async with database.read() as session:
        left = await session.scalar(select(func.count()).select_from(models.WebhookDelivery))
        tried = await session.scalar(select(func.count()).select_from(models.WebhookAttempt))
        subscribed = await session.scalar(
            select(func.count()).select_from(models.WebhookSubscription)
        )
    assert (left, tried, subscribed) == (0, 0, 0)


async def test_rotation_returns_a_new_secret_and_both_sign_through_the_grace(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database
) -> None:
    """200 with a new secret; the old one is kept until now + grace, so two v1 signatures."""
    created = await support.create(client, app_key)
    before = clock.utcnow()
    rotated = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=app_key)
    after = clock.utcnow()
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"] != created["secret"]
    assert body["secret"].startswith("whsec_")
    row = await support.endpoint_row(database, created["id"])
    assert row.secret == body["secret"]
    assert row.previous_secret == created["secret"]
    assert row.previous_secret_until is not None
    grace = dt.timedelta(seconds=support.GRACE_SECONDS)
    assert before + grace <= row.previous_secret_until <= after + grace
    assert dt.datetime.fromisoformat(body["previous_secret_until"]) == row.previous_secret_until
    signing_now = signing.active_secrets(
        row.secret, row.previous_secret, row.previous_secret_until, clock.utcnow()
    )
    signature = signing.sign(signing_now, "msg_1", clock.utcnow(), b"{}")
    assert len(signature.split(" ")) == 2
    assert all(entry.startswith("v1,") for entry in signature.split(" "))
    shown = await client.get(f"/v1/webhooks/{created['id']}", headers=app_key)
    assert "secret" not in shown.json()
