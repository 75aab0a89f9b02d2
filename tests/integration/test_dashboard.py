"""The dashboard over HTTP: login and session, CSRF, scoping, headers, tiles vs /v1/stats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests import dashboard_support as support
from tests.factories import add_message, fetch_message
from tracker import auth, clock, db, models
from tracker.app import create_app
from tracker.dashboard import session
from tracker.domain import status
from tracker.privacy import pseudonyms, scrub
from tracker.settings import Settings

Status = status.Status


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with support.dashboard_client(create_app(settings)) as client:
        yield client


async def test_login_sets_a_strict_httponly_session_cookie(
    web: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """A read key becomes an HttpOnly, SameSite=Strict, expiring cookie (not Secure on loopback)."""
    answer = await support.log_in(web, await make_key("app", "read"))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert f"max-age={session.LIFETIME_SECONDS}" in cookie
    assert "secure" not in cookie
    assert (await web.get("/dashboard")).status_code == 200


async def test_a_bad_key_or_none_is_sent_to_the_login_form(
    web: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """No session redirects to the form; a wrong key or one without read is refused there."""
    first = await web.get("/dashboard/messages")
    assert first.status_code == 303
    assert first.headers["location"].startswith("/dashboard/login")
    assert (await support.log_in(web, "kt_not-a-key")).status_code == 401
    assert (await support.log_in(web, await make_key("sender", "send"))).status_code == 401
    assert session.COOKIE_NAME not in web.cookies


async def test_a_revoked_key_ends_its_session(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """The cookie names the key; once it is revoked the next page asks to log in again."""
    await support.log_in(web, await make_key("app", "read"))
    assert (await web.get("/dashboard")).status_code == 200
    assert await auth.revoke_key(database, "app")
    assert (await web.get("/dashboard")).status_code == 303


async def test_a_tampered_or_expired_cookie_is_refused(settings: Settings) -> None:
    """Only a cookie we signed, and before its expiry, opens a session."""
    secret = session.secret_of(settings)
    opened = session.new("some-key", now=1000)
    cookie = session.encode(opened, secret)
    assert session.decode(cookie, secret, now=1001) == opened
    assert session.decode(cookie, secret, now=1000 + session.LIFETIME_SECONDS) is None
    assert session.decode(cookie[:-2] + "xx", secret, now=1001) is None
    assert session.decode(cookie, b"another secret", now=1001) is None


async def test_the_session_secret_is_generated_once_or_configured(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    """Without TRACKER_SESSION_SECRET one is written once into the data dir and reused."""
    plain = make_settings(data_dir=tmp_path / "one")
    first = session.secret_of(plain)
    assert first == session.secret_of(plain)
    assert (tmp_path / "one" / session.SECRET_FILE).stat().st_mode & 0o777 == 0o600
    configured = make_settings(data_dir=tmp_path / "two", session_secret="s" * 32)
    assert session.secret_of(configured) == b"s" * 32
    assert not (tmp_path / "two" / session.SECRET_FILE).exists()


async def test_cancel_needs_the_csrf_token_and_the_send_scope(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A POST without the token is 403; a read-only key is 403; send with the token cancels."""
    message_id = await add_message(database, status=Status.QUEUED)
    reader = await auth.create_key(database, "reader", frozenset({auth.Scope.READ}), client="app")
    await support.log_in(web, reader)
    page = (await web.get(f"/dashboard/messages/{message_id}")).text
    assert 'id="cancel"' not in page  # no button for a key that may not act
    url = f"/dashboard/messages/{message_id}/cancel"
    assert (await web.post(url, data={"csrf": support.csrf(page)})).status_code == 403
    web.cookies.clear()
    writer = frozenset({auth.Scope.SEND, auth.Scope.READ})
    await support.log_in(web, await auth.create_key(database, "writer", writer, client="app"))
    page = (await web.get(f"/dashboard/messages/{message_id}")).text
    assert (await web.post(url, data={})).status_code == 403
    assert (await web.post(url, data={"csrf": "forged"})).status_code == 403
    assert (await fetch_message(database, message_id)).status == Status.QUEUED.value
    done = await web.post(url, data={"csrf": support.csrf(page)})
    assert done.status_code == 303
    assert (await fetch_message(database, message_id)).status == Status.CANCELLED.value


async def test_a_key_sees_only_its_own_clients_messages(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Another client's message is a 404 and is not listed; admin sees both."""
    mine = await add_message(database, client="app", contact="254712000001")
    theirs = await add_message(database, client="other", contact="254712000002")
    await support.log_in(web, await make_key("app", "read"))
    listed = (await web.get("/dashboard/messages", params={"client": "other"})).text
    assert str(mine) in listed
    assert str(theirs) not in listed
    assert (await web.get(f"/dashboard/messages/{theirs}")).status_code == 404
    web.cookies.clear()
    await support.log_in(web, await auth.create_key(database, "ops", frozenset({auth.Scope.ADMIN})))
    listed = (await web.get("/dashboard/messages")).text
    assert str(mine) in listed
    assert str(theirs) in listed


async def test_the_tiles_agree_with_v1_stats(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Every count tile shows the number /v1/stats gives for the same window and key."""
    for state in (Status.DELIVERED, Status.DELIVERED, Status.FAILED, Status.QUEUED):
        await add_message(database, status=state)
    await add_message(database, status=Status.FAILED, client="other")
    key = await make_key("app", "send,read")
    await support.log_in(web, key)
    for window in ("1h", "24h", "7d", "30d"):
        shown = support.tiles((await web.get("/dashboard", params={"window": window})).text)
        stats = await web.get(
            "/v1/stats", params={"window": window}, headers={"Authorization": f"Bearer {key}"}
        )
        expected = support.expected_tiles(stats.json())
        assert {name: shown[name] for name in expected} == expected
    assert shown["accepted"] == "4"
    assert shown["delivery_rate"] == "66.7 %"


async def test_the_search_finds_by_number_reference_and_id(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A number in another form lists its messages; an id opens the message."""
    wanted = await add_message(database, contact="254712345600")
    other = await add_message(database, contact="254712345699")
    await support.log_in(web, await make_key("app", "read"))
    found = (await web.get("/dashboard/messages", params={"q": "0712 345 600"})).text
    assert str(wanted) in found
    assert str(other) not in found
    opened = await web.get("/dashboard/messages", params={"q": str(wanted)})
    assert opened.headers["location"] == f"/dashboard/messages/{wanted}"
    bad = await web.get("/dashboard/messages", params={"created_after": "yesterday"})
    assert bad.status_code == 400
    assert "created_after" in bad.text


async def test_the_search_finds_a_pseudonymised_message_by_its_number(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database, settings: Settings
) -> None:
    """Once its number is a keyed hash, the number still finds the message, which shows
    ``#`` and the hash's start in the list and on its page, never the number."""
    hidden = await add_message(database, contact="254712345601")
    async with database.write() as session:
        key = settings.pseudonym_key_bytes()
        await scrub.pseudonymise(session, [hidden], key, clock.utcnow())
    await support.log_in(web, await make_key("app", "read"))
    listed = (await web.get("/dashboard/messages", params={"q": "0712 345 601"})).text
    shown = "#" + pseudonyms.of("254712345601", key)[:10]
    assert str(hidden) in listed
    assert shown in listed
    assert "712345601" not in listed
    page = (await web.get(f"/dashboard/messages/{hidden}")).text
    assert shown in page
    assert "712345601" not in page


async def test_every_answer_carries_the_strict_headers(
    web: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """Pages, /docs and assets have a CSP without inline script and refuse framing."""
    await support.log_in(web, await make_key("app", "read"))
    htmx = "/dashboard/static/vendor/htmx/htmx.min.js"
    pages = ("/dashboard", "/dashboard/messages", "/dashboard/webhooks", "/dashboard/webhooks/live")
    for path in (*pages, "/docs", htmx, "/dashboard/login"):
        answer = await web.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
    asset = await web.get(htmx)
    assert asset.headers["cache-control"] == "public, max-age=86400"
    assert "htmx" in asset.text[:200]


async def test_root_redirects_and_docs_use_the_vendored_swagger_ui(web: httpx.AsyncClient) -> None:
    """``/`` goes to the dashboard; /docs loads Swagger UI from our own static files."""
    root = await web.get("/")
    assert root.headers["location"] == "/dashboard"
    docs = (await web.get("/docs")).text
    assert "/dashboard/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert "<script>" not in docs
    assert (await web.get("/dashboard/static/docs.js")).status_code == 200


async def test_a_message_page_lists_its_webhook_deliveries_and_attempts(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A delivery of the message shows with each attempt's code and error, never the secret."""
    message_id = await add_message(database, status=Status.DELIVERED)
    now = clock.utcnow()
    async with database.write() as session:
        endpoint = models.WebhookEndpoint(
            client="app", url="https://hooks.example/in", secret="whsec_hidden-secret",
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(endpoint)
        await session.flush()
        delivery = models.WebhookDelivery(
            endpoint_id=endpoint.id, event_id="msg_1", event_type="message.delivered",
            message_id=message_id, data={}, occurred_at=now, status="pending", attempts=1,
        )  # fmt: skip
        session.add(delivery)
        await session.flush()
        session.add(
            models.WebhookAttempt(
                delivery_id=delivery.id,
                attempted_at=now,
                status_code=503,
                latency_ms=12.5,
                error="HTTP 503",
            )
        )
    await support.log_in(web, await make_key("app", "read"))
    page = (await web.get(f"/dashboard/messages/{message_id}")).text
    assert "message.delivered" in page
    assert "503" in page
    assert "HTTP 503" in page
    assert "whsec_hidden-secret" not in page


async def test_a_login_post_without_its_forms_token_is_refused(
    web: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """Login CSRF: no token, no pre-session cookie, or another cookie's token is a 403
    (no session); the form's own token with its cookie logs in."""
    key = await make_key("app", "read")
    bare = await web.post("/dashboard/login", data={"key": key})
    assert bare.status_code == 403
    assert session.COOKIE_NAME not in web.cookies
    form = await web.get("/dashboard/login")
    token = support.login_csrf(form.text)
    assert web.cookies.get(session.LOGIN_COOKIE_NAME)
    web.cookies.clear()  # the token without its cookie
    stolen = await web.post("/dashboard/login", data={"key": key, "csrf": token})
    assert stolen.status_code == 403
    assert session.COOKIE_NAME not in web.cookies
    fresh = support.login_csrf(stolen.text)  # a fresh form (and cookie) to try again with
    assert fresh != token
    mismatched = await web.post("/dashboard/login", data={"key": key, "csrf": token})
    assert mismatched.status_code == 403
    token = fresh
    answer = await web.post("/dashboard/login", data={"key": key, "csrf": token})
    assert answer.status_code == 303
    assert session.COOKIE_NAME in web.cookies
    assert (await web.get("/dashboard")).status_code == 200
