"""The webhook pages: endpoints, an endpoint's deliveries, a delivery's attempts; retry, recover.

Reads and changes go through ``tracker.webhooks.recovery`` (as ``/v1/webhooks`` does);
only success rates come from ``webhook_rates``. A key sees its own client's
endpoints, admin every client's; another's is a 404. Retry and recover are POSTs with
the CSRF token and need ``send`` (or ``admin``); after their commit the in-process
deliverer's doorbell rings, as ``tracker.webhooks.api`` rings it.
"""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracker import clock, errors, logs, models
from tracker.dashboard import access, forms, overview, pages, webhook_rates
from tracker.services import services_of
from tracker.webhooks import endpoints, recovery

log = logs.get_logger(__name__)
LIST_PATH = "/dashboard/webhooks"
ENDPOINT_PATH = LIST_PATH + "/{id:uuid}"
DELIVERY_PATH = LIST_PATH + "/deliveries/{delivery_id:int}"


def own_client(viewer: access.Viewer) -> str | None:
    """The client whose endpoints the viewer sees: its own, or every one for admin."""
    return None if viewer.is_admin else viewer.principal.client


def shown_url(url: str) -> str:
    """The endpoint's URL without credentials or query (either may carry a token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _endpoint_out(found: endpoints.Endpoint) -> dict[str, Any]:
    return {
        "id": found.id,
        "client": found.client,
        "url": shown_url(found.url),
        "description": found.description,
        "events": [event.value for event in found.events],
        "enabled": found.enabled,
        "disabled_reason": found.disabled_reason,
        "failing_since": found.failing_since,
    }


async def _list_view(request: Request, template: str) -> Response:
    viewer = await access.viewer(request)
    since = clock.utcnow() - webhook_rates.WINDOW
    async with services_of(request).database.read() as session:
        found = await endpoints.list_of(session, own_client(viewer))
        rates = await webhook_rates.success_rates(session, [e.id for e in found], since)
        numbers = {e.id: await recovery.overview(session, e.id) for e in found}
    rows = [{**_endpoint_out(e), "rate": rates[e.id], "numbers": numbers[e.id]} for e in found]
    return pages.render(template, viewer=viewer, rows=rows, window=webhook_rates.WINDOW_LABEL)


async def list_page(request: Request) -> Response:
    """``/dashboard/webhooks``: each endpoint with its success rate, backlog, last error."""
    return await _list_view(request, "webhooks.html")


async def list_live(request: Request) -> Response:
    """The part of the list htmx polls and swaps in place."""
    return await _list_view(request, "_webhooks_live.html")


def _status_filter(request: Request) -> str | None:
    asked = request.query_params.get("status") or None
    if asked is not None and asked not in recovery.STATUSES:
        raise errors.ValidationFailed(
            {"status": [f"must be one of {', '.join(recovery.STATUSES)}"]}
        )
    return asked


def _page_url(request: Request, *, cursor: str | None, live: bool) -> str:
    """This endpoint's page (or its live part) with the status filter and ``cursor``."""
    status = request.query_params.get("status")
    pairs = [("status", status)] if status else []
    pairs += [("cursor", cursor)] if cursor else []
    path = f"{LIST_PATH}/{request.path_params['id']}" + ("/live" if live else "")
    return f"{path}?{urllib.parse.urlencode(pairs)}" if pairs else path


async def _endpoint_view(request: Request, template: str) -> Response:
    viewer = await access.viewer(request)
    endpoint_id: uuid.UUID = request.path_params["id"]
    wanted, cursor = _status_filter(request), request.query_params.get("cursor")
    async with services_of(request).database.read() as session:
        found = await endpoints.get(session, endpoint_id, client=own_client(viewer))
        if found is None:
            raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
        numbers = await recovery.overview(session, endpoint_id)
        page = await recovery.deliveries(session, endpoint_id, status=wanted, cursor=cursor)
    following = page.next_cursor
    return pages.render(
        template,
        viewer=viewer,
        endpoint=_endpoint_out(found),
        numbers=numbers,
        rows=[(d, recovery.attempts_of(page, d)) for d in page.deliveries],
        status=wanted,
        statuses=recovery.STATUSES,
        windows=list(overview.WINDOWS),
        recovered=request.query_params.get("recovered"),
        next_url=following and _page_url(request, cursor=following, live=False),
        live_url=_page_url(request, cursor=cursor, live=True),
    )


async def endpoint_page(request: Request) -> Response:
    """An endpoint: its numbers, deliveries newest first (by status, keyset pages), recover."""
    return await _endpoint_view(request, "webhook.html")


async def endpoint_live(request: Request) -> Response:
    """The part of an endpoint's page htmx polls and swaps in place."""
    return await _endpoint_view(request, "_webhook_live.html")


async def _delivery(
    request: Request, viewer: access.Viewer
) -> tuple[models.WebhookDelivery, endpoints.Endpoint, list[models.WebhookAttempt]]:
    """The delivery (404 if not the viewer's) with its attempts, oldest first."""
    delivery_id: int = request.path_params["delivery_id"]
    async with services_of(request).database.read() as session:
        found = await recovery.get_delivery(session, delivery_id, client=own_client(viewer))
        if found is None or delivery_id >= recovery.MAX_DELIVERY_ID:
            raise errors.NotFound(f"no webhook delivery {delivery_id}")
        delivery, endpoint = found
        # The endpoint's page starting just above this id holds exactly this delivery.
        page = await recovery.deliveries(
            session, endpoint.id, limit=1, cursor=recovery.encode_cursor(delivery_id + 1)
        )
    return delivery, endpoint, list(recovery.attempts_of(page, delivery))


async def _delivery_view(request: Request, template: str) -> Response:
    viewer = await access.viewer(request)
    delivery, endpoint, attempts = await _delivery(request, viewer)
    return pages.render(
        template, viewer=viewer, delivery=delivery, endpoint=_endpoint_out(endpoint),
        attempts=attempts,
    )  # fmt: skip


async def delivery_page(request: Request) -> Response:
    """A delivery's fields and every attempt (code, latency, error, response excerpt)."""
    return await _delivery_view(request, "webhook_delivery.html")


async def delivery_live(request: Request) -> Response:
    """The part of a delivery's page htmx polls and swaps in place."""
    return await _delivery_view(request, "_webhook_delivery_live.html")


async def retry(request: Request) -> Response:
    """The retry button: ``recovery.retry``, the doorbell, then back to the delivery."""
    form = await forms.read(request)
    viewer = await access.actor(request, form.get("csrf"))
    delivery_id: int = request.path_params["delivery_id"]
    services = services_of(request)
    async with services.database.write() as session:
        await recovery.retry(session, delivery_id, clock.utcnow(), client=own_client(viewer))
    services.webhook_doorbell.ring()
    log.info("webhook_delivery_retried", delivery_id=delivery_id, via="dashboard")
    return pages.secure(RedirectResponse(f"{LIST_PATH}/deliveries/{delivery_id}", 303))


async def recover(request: Request) -> Response:
    """The recover button: failed deliveries of the chosen window back to pending."""
    form = await forms.read(request)
    viewer = await access.actor(request, form.get("csrf"))
    endpoint_id: uuid.UUID = request.path_params["id"]
    window = form.get("window", "")
    if window not in overview.WINDOWS:
        raise errors.ValidationFailed({"window": [f"must be one of {', '.join(overview.WINDOWS)}"]})
    now = clock.utcnow()
    services = services_of(request)
    async with services.database.write() as session:
        found = await endpoints.get(session, endpoint_id, client=own_client(viewer))
        if found is None:
            raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
        recovered = await recovery.recover(session, found, now - overview.WINDOWS[window], now)
    if recovered:
        services.webhook_doorbell.ring()
    log.info("webhook_deliveries_recovered", endpoint_id=str(endpoint_id), count=recovered)
    target = f"{LIST_PATH}/{endpoint_id}?recovered={recovered}"
    return pages.secure(RedirectResponse(target, status_code=303))


routes = [
    Route(LIST_PATH, list_page, methods=["GET"], include_in_schema=False),
    Route(LIST_PATH + "/live", list_live, methods=["GET"], include_in_schema=False),
    Route(ENDPOINT_PATH, endpoint_page, methods=["GET"], include_in_schema=False),
    Route(ENDPOINT_PATH + "/live", endpoint_live, methods=["GET"], include_in_schema=False),
    Route(ENDPOINT_PATH + "/recover", recover, methods=["POST"], include_in_schema=False),
    Route(DELIVERY_PATH, delivery_page, methods=["GET"], include_in_schema=False),
    Route(DELIVERY_PATH + "/live", delivery_live, methods=["GET"], include_in_schema=False),
    Route(DELIVERY_PATH + "/retry", retry, methods=["POST"], include_in_schema=False),
]
