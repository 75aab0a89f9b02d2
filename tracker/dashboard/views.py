"""The dashboard's routes: login, overview, messages, a message (and its cancel), /docs.

Pages are GETs; every change is a POST carrying the session's CSRF token.
Webhook pages (endpoints, deliveries, retry/recover) belong beside the message
pages once #15 lands: see ``routes`` below.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from tracker import auth, clock, errors, logs, web
from tracker.dashboard import access, charts, counts, deliveries, listing, overview, pages, session
from tracker.ops import queries
from tracker.sending import schemas, store
from tracker.services import services_of

log = logs.get_logger(__name__)
MAX_FORM_BYTES = 4096


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (login key, CSRF token); larger bodies are refused (413)."""
    body = await web.read_body(request, MAX_FORM_BYTES)
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), max_num_fields=8)
    return dict(pairs)


async def login_page(request: Request) -> Response:
    return pages.render("login.html", next=_next(request.query_params.get("next")))


def _next(path: str | None) -> str:
    """Only our own pages: never an absolute or scheme-relative URL."""
    if path and path.startswith("/dashboard") and not path.startswith("//"):
        return path
    return "/dashboard"


async def login(request: Request) -> Response:
    """The key entered once becomes the session cookie; the key itself is not kept."""
    form = await _form(request)
    services = services_of(request)
    principal = await auth.verify_key(services.database, form.get("key", "").strip())
    if principal is None or not principal.allows(auth.Scope.READ):
        problem = "That key is not valid, or lacks the read scope."
        return pages.render("login.html", status_code=401, error=problem, next=_next(None))
    secret = session.secret_of(services.settings)
    opened = session.new(principal.key_id)
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    response.set_cookie(
        session.COOKIE_NAME,
        session.encode(opened, secret),
        max_age=session.LIFETIME_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=session.cookie_secure(request.url.hostname),
    )
    log.info("dashboard_login", client=principal.client)
    return pages.secure(response)


async def logout(request: Request) -> Response:
    form = await _form(request)
    found = await access.viewer(request)
    secret = session.secret_of(services_of(request).settings)
    if session.csrf_ok(found.session, secret, form.get("csrf")):
        response = RedirectResponse(access.LOGIN_PATH, status_code=303)
        response.delete_cookie(session.COOKIE_NAME, path="/")
        return pages.secure(response)
    return pages.render("login.html", status_code=403, error="Reload and try again.", next="")


def _window(request: Request) -> str:
    asked = request.query_params.get("window", overview.DEFAULT_WINDOW)
    if asked not in overview.WINDOWS:
        raise errors.ValidationFailed({"window": [f"must be one of {', '.join(overview.WINDOWS)}"]})
    return asked


async def _overview(request: Request, template: str) -> Response:
    viewer = await access.viewer(request)
    window = _window(request)
    client = access.visible_client(viewer, request.query_params.get("client"))
    services = services_of(request)
    await counts.fold(services.database)
    async with services.database.read() as db_session:
        found = await overview.build(
            db_session, services.settings, window, client, admin=viewer.is_admin
        )
    return pages.render(
        template,
        viewer=viewer,
        view=found,
        client=client,
        windows=list(overview.WINDOWS),
        threshold=overview.FAILURE_RATE_THRESHOLD,
    )


async def overview_page(request: Request) -> Response:
    """``/dashboard``: the tiles, charts and breakdowns of one window."""
    return await _overview(request, "overview.html")


async def overview_live(request: Request) -> Response:
    """The part of the overview htmx polls and swaps in place."""
    return await _overview(request, "_live.html")


async def messages_page(request: Request) -> Response:
    """``/dashboard/messages``: the list API's filters as a form, keyset pages, search."""
    viewer = await access.viewer(request)
    services = services_of(request)
    try:
        wanted = listing.parse(request.query_params, viewer)
    except (ValidationError, errors.ValidationFailed, errors.InvalidRecipient) as exc:
        return pages.render("messages.html", status_code=400, viewer=viewer, problem=str(exc),
                            rows=[], form=listing.form_values(request.query_params),
                            next_url=None, statuses=listing.STATUSES)  # fmt: skip
    if wanted.message_id is not None:
        return RedirectResponse(f"/dashboard/messages/{wanted.message_id}", status_code=303)
    cutoff = clock.utcnow() - dt.timedelta(seconds=services.settings.dlr_overdue_seconds)
    async with services.database.read() as db_session:
        page = await listing.search(db_session, wanted, cutoff)
    return pages.render(
        "messages.html",
        viewer=viewer,
        rows=[_listed(row, cutoff) for row in page.rows],
        form=listing.form_values(request.query_params),
        next_url=listing.next_url(request.query_params, page.next_cursor),
        statuses=listing.STATUSES,
        problem=None,
    )


def _listed(row: Any, cutoff: dt.datetime) -> dict[str, Any]:
    return {**schemas.message_out(row), "overdue": queries.is_overdue(row, cutoff)}


async def _message(request: Request, template: str) -> Response:
    viewer = await access.viewer(request)
    message_id: uuid.UUID = request.path_params["id"]
    own = None if viewer.is_admin else viewer.principal.client
    async with services_of(request).database.read() as db_session:
        found = await store.get_message(db_session, message_id, client=own)
        webhooks = await deliveries.of_message(db_session, message_id)
    message = schemas.message_out(found.message)
    events = [schemas.event_out(event) for event in found.events]
    return pages.render(
        template, viewer=viewer, message=message, events=events, deliveries=webhooks
    )


async def message_page(request: Request) -> Response:
    """A message's fields and the timeline of every event."""
    return await _message(request, "message.html")


async def message_live(request: Request) -> Response:
    return await _message(request, "_message_live.html")


async def cancel(request: Request) -> Response:
    """The cancel button: the API's own cancel, then back to the message."""
    form = await _form(request)
    viewer = await access.actor(request, form.get("csrf"))
    message_id: uuid.UUID = request.path_params["id"]
    own = None if viewer.is_admin else viewer.principal.client
    async with services_of(request).database.write() as db_session:
        await store.cancel_message(db_session, message_id, client=own)
    log.info("message_cancelled", message_id=str(message_id), client=viewer.principal.client)
    return pages.secure(RedirectResponse(f"/dashboard/messages/{message_id}", status_code=303))


async def docs(_request: Request) -> Response:
    """``/docs``: the OpenAPI document in the vendored Swagger UI."""
    return pages.render("docs.html", csp=pages.DOCS_CSP)


async def home(_request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


# HTML for people, not API operations: kept out of the OpenAPI document.
routes = [
    Route("/", home, methods=["GET"], include_in_schema=False),
    Route("/docs", docs, methods=["GET"], include_in_schema=False),
    Route("/dashboard", overview_page, methods=["GET"], include_in_schema=False),
    Route("/dashboard/live", overview_live, methods=["GET"], include_in_schema=False),
    Route("/dashboard/charts", charts.data, methods=["GET"], include_in_schema=False),
    Route(access.LOGIN_PATH, login_page, methods=["GET"], include_in_schema=False),
    Route(access.LOGIN_PATH, login, methods=["POST"], include_in_schema=False),
    Route("/dashboard/logout", logout, methods=["POST"], include_in_schema=False),
    Route("/dashboard/messages", messages_page, methods=["GET"], include_in_schema=False),
    Route("/dashboard/messages/{id:uuid}", message_page, methods=["GET"], include_in_schema=False),
    Route(
        "/dashboard/messages/{id:uuid}/live", message_live, methods=["GET"], include_in_schema=False
    ),
    Route(
        "/dashboard/messages/{id:uuid}/cancel", cancel, methods=["POST"], include_in_schema=False
    ),
    # Webhooks (#15), once landed: /dashboard/webhooks, /dashboard/webhooks/{id}
    # and POST .../retry and .../recover, with access.actor like ``cancel``.
    Mount(pages.STATIC_PREFIX, app=pages.static_files, name="dashboard-static"),
]
exception_handlers = {access.LoginRequired: access.to_login}
