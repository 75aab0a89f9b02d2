"""Request context and the one canonical log line per request.

The line names the route *template* (``/v1/callbacks/kimisms/{id}/{token}``),
never the raw path, so capability tokens in URLs never reach a log.
"""

from __future__ import annotations

import random
import re
import time
from http import HTTPStatus

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker import logs, web

log = logs.get_logger("tracker.http")
REQUEST_ID_HEADER = "x-request-id"
# A caller's request id is echoed only if it is short and harmless.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID if it is safe to echo, else a new one."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = bytes(value).decode("latin-1")
            if SAFE_REQUEST_ID.match(candidate):
                return candidate
    # Unique, not secret: no system call per request, as uuid4() makes.
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    """Binds ``request_id`` for every log line of a request, then logs the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code, response_started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answered here rather than by Starlette's outer error middleware, so
            # the line and the 500 still carry the request id (and uvicorn does
            # not log the traceback a second time).
            log.exception("unhandled_exception", route=web.route_template(scope))
            if response_started:
                raise  # too late for a clean 500: let the server drop the connection
            await web.error_response(500, "internal error")(scope, receive, send_with_id)
        finally:
            self._log(scope, status_code, started)
            structlog.contextvars.clear_contextvars()

    @staticmethod
    def _log(scope: Scope, status_code: int, started: float) -> None:
        route = web.route_template(scope)
        if route in QUIET_ROUTES and status_code < HTTPStatus.BAD_REQUEST:
            return
        state = scope.get("state") or {}
        log.info(
            "http_request",
            method=scope["method"],
            route=route,
            status=status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            client=state.get("client"),
        )
