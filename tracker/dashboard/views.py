"""The dashboard's routes: overview, messages, a message (and its cancel), /docs.

Pages are GETs; every change is a POST carrying the session's CSRF token.
The webhook pages (endpoints, deliveries, retry, recover) are ``webhook_pages``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from tracker import clock, errors, logs
from tracker.dashboard import (
    access,
    charts,
    counts,
    deliveries,
    forms,
    listing,
    login,
    overview,
    pages,
    webhook_pages,
)
from tracker.ops import queries
from tracker.sending import schemas, store
from tracker.services import services_of

log = logs.get_logger(__name__)


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
        key = services.settings.pseudonym_key_bytes()
        wanted = listing.parse(request.query_params, viewer, key)
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
    form = await forms.read(request)
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
    Route(access.LOGIN_PATH, login.login_page, methods=["GET"], include_in_schema=False),
    Route(access.LOGIN_PATH, login.login, methods=["POST"], include_in_schema=False),
    Route("/dashboard/logout", login.logout, methods=["POST"], include_in_schema=False),
    Route("/dashboard/messages", messages_page, methods=["GET"], include_in_schema=False),
    Route("/dashboard/messages/{id:uuid}", message_page, methods=["GET"], include_in_schema=False),
    Route(
        "/dashboard/messages/{id:uuid}/live", message_live, methods=["GET"], include_in_schema=False
    ),
    Route(
        "/dashboard/messages/{id:uuid}/cancel", cancel, methods=["POST"], include_in_schema=False
    ),
    *webhook_pages.routes,
    Mount(pages.STATIC_PREFIX, app=pages.static_files, name="dashboard-static"),
]
exception_handlers = {access.LoginRequired: access.to_login}
