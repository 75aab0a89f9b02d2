"""Loose input at the API's edges (issue 12, item 14): media types and query integers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.factories import add_message, fetch_message
from tests.integration.send_support import Headers, api_settings, bearer, count, message
from tracker import db, models
from tracker.domain import status
from tracker.reports import capability
from tracker.settings import Settings

BODY = json.dumps(message()).encode()
BATCH = json.dumps({"messages": [message(), message()]}).encode()


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return api_settings(make_settings, database_url)


@pytest.fixture
async def headers(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read,admin"))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonp",
        "",
    ],
)
@pytest.mark.parametrize("route", [("/v1/messages", BODY), ("/v1/messages/batch", BATCH)])
async def test_item_14_a_body_declared_as_anything_but_json_is_415(
    client: httpx.AsyncClient,
    headers: Headers,
    database: db.Database,
    content_type: str,
    route: tuple[str, bytes],
) -> None:
    """A declared non-JSON Content-Type is refused with 415 in the detail shape; nothing stored."""
    path, body = route
    response = await client.post(
        path, content=body, headers={**headers, "Content-Type": content_type}
    )
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert await count(database, models.Message) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/vnd.tracker+json",
        None,  # undeclared: read as JSON, as simple clients send it
    ],
)
async def test_item_14_json_media_types_and_an_undeclared_one_are_accepted(
    client: httpx.AsyncClient, headers: Headers, content_type: str | None
) -> None:
    """application/json (any parameters), application/*+json and a missing header all send."""
    extra = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post("/v1/messages", content=BODY, headers={**headers, **extra})
    assert response.status_code == 202, response.text


async def test_item_14_callbacks_keep_accepting_what_the_provider_sends(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """The KIMISMS callback is not held to the internal API's media type rule."""
    provider_id = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
    message_id = await add_message(database, provider_message_id=provider_id)
    url = capability.callback_url(settings.public_url, settings.callback_keys(), message_id)
    report = {"message_id": provider_id, "contact": "254712345678", "status": "Delivered"}
    response = await client.post(
        url.removeprefix(settings.public_url),
        content=json.dumps(report).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/messages", "limit=1.0", "limit"),
        ("/v1/messages", "limit=5_0", "limit"),
        ("/v1/messages", "limit=%205%20", "limit"),
        ("/v1/messages", "limit=%2B5", "limit"),
        ("/v1/messages", "limit=-5", "limit"),
        ("/v1/messages", "limit=5e1", "limit"),
        ("/v1/messages", "limit=%D9%A5", "limit"),  # ARABIC-INDIC DIGIT FIVE
        ("/v1/stats", "window=%205%20", "window"),
        ("/v1/stats", "window=%2060s", "window"),
        ("/v1/stats", "window=5_0", "window"),
        ("/v1/stats", "window=1.0", "window"),
        ("/v1/stats", "window=%2B5", "window"),
        ("/v1/stats", "window=%D9%A5m", "window"),
    ],
)
async def test_item_14_query_integers_take_only_decimal_digits(
    client: httpx.AsyncClient, headers: Headers, path: str, query: str, name: str
) -> None:
    """Floats, underscores, spaces, signs and non-ASCII digits are a 400 naming the parameter."""
    response = await client.get(f"{path}?{query}", headers=headers)
    assert response.status_code == 400, response.text
    assert list(response.json()["errors"]) == [name]


@pytest.mark.parametrize(
    ("path", "query"), [("/v1/messages", "limit=5"), ("/v1/stats", "window=90")]
)
async def test_item_14_plain_decimal_query_integers_still_work(
    client: httpx.AsyncClient, headers: Headers, path: str, query: str
) -> None:
    """``limit=5`` and ``window=90`` are read as before."""
    response = await client.get(f"{path}?{query}", headers=headers)
    assert response.status_code == 200, response.text
