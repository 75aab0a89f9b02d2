"""Helpers shared by the dashboard's HTTP and browser tests."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from tracker.dashboard import overview

LOOPBACK = "http://127.0.0.1"
_TILE = re.compile(r'data-tile="([a-z_]+)">\s*<span class="label">[^<]*</span>'
                   r'<span class="value">([^<]*)</span>')  # fmt: skip
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LOGIN_CSRF = re.compile(r'action="/dashboard/login">.*?name="csrf" value="([^"]+)"', re.DOTALL)


@asynccontextmanager
async def dashboard_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app at a loopback address (so the session cookie is not Secure)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=LOOPBACK) as client:
            yield client


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Through the real form: GET it (its pre-session cookie and token), then POST."""
    form = await client.get("/dashboard/login")
    token = login_csrf(form.text)
    data = {"key": key, "next": "/dashboard", "csrf": token}
    return await client.post("/dashboard/login", data=data)


def login_csrf(page: str) -> str:
    """The login form's CSRF token."""
    found = _LOGIN_CSRF.search(page)
    assert found is not None, "no CSRF token on the login form"
    return found[1]


def tiles(page: str) -> dict[str, str]:
    """Tile name -> the value shown."""
    return {name: html.unescape(value) for name, value in _TILE.findall(page)}


def csrf(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "no CSRF token on the page"
    return found[1]


def expected_tiles(stats: dict[str, object]) -> dict[str, str]:
    """What the count tiles must show for a /v1/stats answer."""
    counts = stats["counts"]
    queue = stats["queue"]
    provider = stats["provider"]
    assert isinstance(counts, dict)
    assert isinstance(queue, dict)
    assert isinstance(provider, dict)
    rate = stats["delivery_rate"]
    return {
        "accepted": str(stats["total"]),
        **{name: str(counts[name]) for name in ("delivered", "failed", "rejected", "expired")},
        "delivery_rate": overview.NONE if rate is None else f"{float(str(rate)) * 100:.1f} %",
        "units_billed": str(stats["units_billed"]),
        "queue_depth": str(queue["depth"]),
        "overdue": str(stats["overdue"]),
        "rate_limited": str(provider["rate_limited"]),
        "provider_errors": str(provider["errors"]),
    }
