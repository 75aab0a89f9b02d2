"""A client's retention overrides (#17), through the admin API and `tracker clients`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.send_support import Headers, bearer


@pytest.fixture
async def admin(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("ops", "admin"))


async def test_overrides_are_set_normalised_and_cleared_by_patch(
    client: httpx.AsyncClient, admin: Headers
) -> None:
    """168h is stored as 7d, KEEP as keep; null goes back to the setting; others stay."""
    await client.post("/v1/clients", json={"name": "billing"}, headers=admin)
    changed = await client.patch(
        "/v1/clients/billing",
        json={"retention_body": "168h", "retention_contact": "KEEP", "retention_message": "400d"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    got = changed.json()
    assert (got["retention_body"], got["retention_contact"], got["retention_message"]) == (
        "7d", "keep", "400d",
    )  # fmt: skip
    cleared = await client.patch(
        "/v1/clients/billing", json={"retention_body": None}, headers=admin
    )
    shown = (await client.get("/v1/clients/billing", headers=admin)).json()
    assert cleared.status_code == 200
    assert (shown["retention_body"], shown["retention_contact"]) == (None, "keep")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7 days", "must be a number of seconds or like 15m, 24h, 7d"),
        ("0d", "must be a number of seconds or like 15m, 24h, 7d, above zero, or 'keep'"),
        (7, "must be a string"),
        ("9" * 17, "must be at most 16 characters"),
    ],
)
async def test_a_bad_period_is_400_naming_the_field(
    client: httpx.AsyncClient, admin: Headers, value: object, message: str
) -> None:
    """A period that is not a duration or keep: 400 on that field, and nothing changes."""
    await client.post("/v1/clients", json={"name": "billing"}, headers=admin)
    for field in ("retention_body", "retention_contact", "retention_message"):
        response = await client.patch("/v1/clients/billing", json={field: value}, headers=admin)
        assert response.status_code == 400, response.text
        assert response.json() == {"errors": {field: [message]}}
    shown = (await client.get("/v1/clients/billing", headers=admin)).json()
    assert shown["retention_body"] is None
