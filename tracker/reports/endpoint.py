"""The KIMISMS callback endpoint, as a bare ASGI app on the hot path.

``POST /v1/callbacks/kimisms/{id}/{token}`` is the one route under load from
outside: a burst of delivery reports must each be answered within 5 s, and at
peak the server is CPU-bound. Through Starlette's middleware, router, Request
and JSONResponse, a callback cost several times what its own work does, so
``app.TrackerApp`` hands these POSTs straight to this endpoint. It does what
the middleware would (request id header, one canonical log line without the
token, a clean 500) and nothing else. Other methods take the ordinary route
(405), so the route table and OpenAPI still describe it.
"""

from __future__ import annotations

import json
import time
import uuid
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tracker import clock, logs, metrics, web
from tracker.middleware import REQUEST_ID_HEADER, request_id_of
from tracker.reports import capability, ingest, plan, reading

if TYPE_CHECKING:
    from tracker.services import Services

log = logs.get_logger(__name__)
PREFIX = capability.PATH_TEMPLATE.split("{", 1)[0]  # "/v1/callbacks/kimisms/"

_DETAILS = {
    "not_found": "not found",
    "too_large": "callback body too large",
    "unavailable": "temporarily unable to store the callback",
    "internal_error": "internal error",
    plan.Outcome.MISMATCH.value: "report contradicts the message it was sent for",
    plan.Outcome.MALFORMED.value: "not a delivery report",
    plan.Outcome.UNKNOWN_MESSAGE.value: "not found",
}


def handles(scope: Scope) -> bool:
    """Whether a request is a callback POST (what the fast path takes)."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and _route_path(scope).startswith(PREFIX)
    )


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _parse_path(scope: Scope) -> tuple[uuid.UUID, str] | None:
    """(message id, token) from ``.../{id}/{token}``, or None for any other shape."""
    id_text, _, token = _route_path(scope)[len(PREFIX) :].partition("/")
    if not token or "/" in token:
        return None
    try:
        return uuid.UUID(id_text), token
    except ValueError:
        return None


class CallbackEndpoint:
    """ASGI app for the callback route: verify, read, hand to the ingester, answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = request_id_of(scope)
        outcome, status_code, message_id = "internal_error", 500, None
        try:
            outcome, status_code, message_id = await self._handle(scope, receive)
        except ClientDisconnect:
            outcome, status_code = "disconnected", 0
        except Exception:
            log.exception(
                "unhandled_exception", route=capability.PATH_TEMPLATE, request_id=request_id
            )
        if status_code:
            await send_answer(send, status_code, outcome, request_id)
        elapsed = time.perf_counter() - started
        metrics.CALLBACKS.labels(outcome=outcome).inc()
        metrics.CALLBACK_ACK_SECONDS.observe(elapsed)
        log.info(
            "callback_received",
            outcome=outcome,
            message_id=message_id,
            status=status_code,
            duration_ms=round(elapsed * 1000, 2),
            request_id=request_id,
        )

    @staticmethod
    async def _handle(scope: Scope, receive: Receive) -> tuple[str, int, str | None]:
        """(outcome, HTTP status, message id) for one callback request."""
        services: Services = scope["app"].state.services
        parsed = _parse_path(scope)
        if parsed is None:
            return "not_found", 404, None
        message_id, token = parsed
        if not capability.verify(services.settings.callback_keys(), message_id, token):
            return "not_found", 404, None  # a forged or stale URL: same answer as unknown
        try:
            body = await web.read_asgi_body(
                scope, receive, services.settings.callback_max_body_bytes
            )
        except web.PayloadTooLarge:
            return "too_large", 413, str(message_id)
        client = scope.get("client")
        receipt = reading.Receipt(
            message_id=message_id,
            body=body.decode("utf-8", errors="replace"),
            remote_addr=client[0] if client else None,
            received_at=clock.utcnow(),
        )
        ingester: ingest.Ingester = scope["app"].state.ingester  # the lifespan starts it
        try:
            result = await ingester.submit(receipt)
        except OSError:
            return "unavailable", 503, str(message_id)
        status_code = 200 if result == "spooled" else plan.HTTP_STATUS.get(result, 200)
        return str(result), status_code, str(message_id)


_ANSWERS: dict[tuple[int, str], bytes] = {}


def _answer_body(status_code: int, outcome: str) -> bytes:
    """The JSON answer, built once per (status, outcome): 200 says what happened,
    errors use DESIGN.md's ``{"detail": ...}`` shape."""
    key = (status_code, outcome)
    body = _ANSWERS.get(key)
    if body is None:
        document = (
            {"received": True, "outcome": outcome}
            if status_code == HTTPStatus.OK
            else {"detail": _DETAILS.get(outcome, outcome)}
        )
        body = _ANSWERS[key] = json.dumps(document, separators=(",", ":")).encode()
    return body


async def send_answer(send: Send, status_code: int, outcome: str, request_id: str) -> None:
    body = _answer_body(status_code, outcome)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER.encode(), request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


routes = [Route(capability.PATH_TEMPLATE, CallbackEndpoint(), methods=["POST"])]
