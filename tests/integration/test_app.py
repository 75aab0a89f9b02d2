"""The assembled app: probes, API-key auth, error shapes, request logging."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory, running
from tracker import auth, db, web
from tracker.app import create_app
from tracker.settings import Settings


async def test_healthz_answers_while_alive(client: httpx.AsyncClient) -> None:
    """Liveness does not depend on the database."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_on_a_migrated_database(client: httpx.AsyncClient) -> None:
    """Readiness checks the database answers and the schema is at head."""
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_item_9_readyz_logs_no_alembic_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Probing readiness every few seconds must not write alembic's INFO lines each time."""
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert (await client.get("/readyz")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


async def test_readyz_is_503_with_a_reason_before_migrating(
    make_settings: SettingsFactory, tmp_path: Any
) -> None:
    """An unmigrated database is reachable but not ready, and says what to run."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    async with running(create_app(settings)) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert "tracker db upgrade" in response.json()["reason"]


async def test_readyz_stays_ready_when_the_schema_is_newer_than_the_code(
    settings: Settings, database: db.Database, client: httpx.AsyncClient
) -> None:
    """During a rollout the migration runs first; old pods must not all turn unready."""
    async with database.write() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["schema"] == "ffff_future"


async def test_readyz_is_503_when_the_database_is_unreachable(
    make_settings: SettingsFactory,
) -> None:
    """A database that cannot be reached makes the instance unready, not a 500."""
    settings = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    async with running(create_app(settings)) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "database unreachable"


async def test_a_valid_key_is_accepted(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """A key from keys create opens a route that needs its scope."""
    key = await make_key("billing", "read")
    response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json() == {"client": "billing", "scopes": ["read"]}


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer kt_wrong", "Basic Zm9vOmJhcg==", "kt_wrong"]
)
async def test_a_missing_or_bad_key_is_401(client: httpx.AsyncClient, header: str | None) -> None:
    """No key, a malformed header or an unknown key all get 401 with the detail shape."""
    headers = {"Authorization": header} if header else {}
    response = await client.get("/v1/whoami", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "a valid API key is required"}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_revoked_key_is_refused(
    client: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Revocation takes effect on the next request."""
    key = await make_key("old-app", "read")
    assert await auth.revoke_key(database, "old-app")
    response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert not await auth.revoke_key(database, "old-app")


async def test_a_key_without_the_scope_is_403(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """A send-only key cannot read."""
    key = await make_key("sender", "send")
    response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert "read" in response.json()["detail"]


async def test_admin_implies_every_scope(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """An admin key passes any scope check."""
    key = await make_key("ops", "admin")
    response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


async def test_keys_are_stored_only_as_hashes(
    make_key: Callable[..., Any], database: db.Database
) -> None:
    """The database never holds the key itself."""
    key = await make_key("app", "send")
    listed = await auth.list_keys(database)
    assert [k.name for k in listed] == ["app"]
    assert key not in repr(listed)
    assert listed[0].prefix == key[:10]


async def test_unknown_routes_get_the_detail_shape(client: httpx.AsyncClient) -> None:
    """A 404 is JSON {"detail": ...}, never HTML."""
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def _app_with(settings: Settings, endpoint: Callable[[Request], Any]) -> Any:
    app = create_app(settings)
    app.router.routes.append(Route("/test/{secret}", endpoint, methods=["POST"]))
    return app


async def test_an_unexpected_error_is_a_bare_500(settings: Settings) -> None:
    """No traceback or exception text reaches the caller."""

    async def boom(_request: Request) -> JSONResponse:
        raise RuntimeError("internal detail that must not leak")

    transport = httpx.ASGITransport(app=_app_with(settings, boom), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with capture_logs() as captured:
            response = await http.post("/test/x", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert response.headers["x-request-id"] == "r-500"  # the caller can quote it to us
    [error] = [e for e in captured if e["event"] == "unhandled_exception"]
    assert error["route"] == "/test/{secret}"
    assert "internal detail" not in response.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "a JSON object is required"),
        (b"[1, 2]", "a JSON object is required"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
async def test_bad_json_is_a_400_in_the_errors_shape(
    settings: Settings, body: bytes, expected: str
) -> None:
    """Empty, non-object and malformed bodies are the caller's mistake: 400."""

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(await web.read_json_object(request, limit=1024))

    async with running(_app_with(settings, echo)) as http:
        response = await http.post("/test/x", content=body)
    assert response.status_code == 400
    assert expected in response.json()["errors"]["body"][0]


async def test_a_body_over_the_limit_is_413(settings: Settings) -> None:
    """Oversized bodies are refused, whether or not they declare their length."""

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(await web.read_json_object(request, limit=1024))

    async with running(_app_with(settings, echo)) as http:
        declared = await http.post("/test/x", content=b"{" + b" " * 2000 + b"}")

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 200

        streamed = await http.post("/test/x", content=chunks())
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "1024" in declared.json()["detail"]


async def test_the_request_line_names_the_route_template_not_the_path(
    settings: Settings,
) -> None:
    """A capability token in a URL never reaches the log; the request id is echoed."""

    async def ok(_request: Request) -> JSONResponse:
        return JSONResponse({})

    async with running(_app_with(settings, ok)) as http:
        with capture_logs() as captured:
            response = await http.post(
                "/test/capability-token-123", headers={"X-Request-ID": "r-1"}
            )
    assert response.headers["x-request-id"] == "r-1"
    line = next(e for e in captured if e["event"] == "http_request")
    assert line["route"] == "/test/{secret}"
    assert line["status"] == 200
    assert "capability-token-123" not in repr(captured)


async def test_the_request_line_spells_a_typed_route_without_its_converter(
    settings: Settings,
) -> None:
    """``/v1/messages/{id:uuid}`` is logged as ``/v1/messages/{id}``, as the docs spell it."""
    async with running(create_app(settings)) as http:
        with capture_logs() as captured:
            response = await http.get(f"/v1/messages/{uuid.uuid4()}")
    assert response.status_code == 401  # no key: the route matched, the line is written
    line = next(e for e in captured if e["event"] == "http_request")
    assert line["route"] == "/v1/messages/{id}"
