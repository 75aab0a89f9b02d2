"""The provider's two endpoints, answered as ``kimisms-api.md`` documents them.

Every call passes the rate limiter first, then its handler decides an
``Answer``; the call is recorded *before* any injected delay, so a client that
gives up on a hanging answer still finds the send in ``/sandbox/calls``.
Between reading the idempotency cache and storing the new answer there is no
``await``, so two concurrent calls with one key can never both send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tracker.sandbox import faults, tokens, validation
from tracker.sandbox.faults import Fault
from tracker.sandbox.idempotency import CachedAnswer, fingerprint
from tracker.sandbox.ratelimit import Throttled
from tracker.sandbox.records import ApiCall, SentMessage
from tracker.sandbox.runtime import Sandbox

log = structlog.get_logger(__name__)

TOKEN_PATH = "/api/generate-token"  # noqa: S105 - a URL path, not a secret
SEND_PATH = "/api/send-sms"
# Django's stock 500 page: the provider's errors are not always JSON.
SERVER_ERROR_HTML = "<h1>Server Error (500)</h1>"


@dataclass
class Answer:
    """A decided answer, plus what the call log should say about it."""

    status_code: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    replay: bool = False
    body_mismatch: bool = False
    message_id: str | None = None

    def response(self) -> Response:
        if isinstance(self.body, str):
            return HTMLResponse(self.body, self.status_code, self.headers)
        return JSONResponse(self.body, self.status_code, self.headers)


def _loggable(body: dict[str, Any] | str) -> dict[str, Any] | str:
    """An answer as the call log keeps it: issued tokens are not repeated there."""
    if isinstance(body, dict) and "access_token" in body:
        return {**body, "access_token": "[issued]"}
    return body


def throttled(refusal: Throttled) -> Answer:
    """DRF's throttle answer, with the ``Retry-After`` header it sets."""
    wait = refusal.retry_after_seconds
    unit = "second" if wait == 1 else "seconds"
    detail = f"Request was throttled. Expected available in {wait} {unit}."
    return Answer(429, {"detail": detail}, headers={"Retry-After": str(wait)})


def _accepted_body(message: SentMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "contact": message.contact,
        "status": "Pending",
        "description": "Initiated",
        "provider": "Swift",
    }


Handler = Callable[[Request], Awaitable[Answer]]


class ProviderApi:
    """``POST /api/generate-token`` and ``POST /api/send-sms``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.config = sandbox.config

    def routes(self) -> list[Route]:
        return [
            Route(TOKEN_PATH, self._endpoint(self.generate_token), methods=["POST"]),
            Route(SEND_PATH, self._endpoint(self.send_sms), methods=["POST"]),
        ]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with the rate limit, the call log and the injected delay."""

        async def endpoint(request: Request) -> Response:
            now = self.sandbox.clock()
            admission = self.sandbox.limiter.admit(now)
            over_limit = isinstance(admission, Throttled) and not admission.burst
            if isinstance(admission, Throttled):
                answer = throttled(admission)
            else:
                answer = await handler(request)
                if answer.status_code == HTTPStatus.TOO_MANY_REQUESTS:  # a burst fault; not counted
                    self.sandbox.limiter.release(admission)
            self._record(request, now, answer, over_limit=over_limit)
            if answer.delay_seconds > 0:
                await asyncio.sleep(answer.delay_seconds)
            return answer.response()

        return endpoint

    def _record(self, request: Request, now: float, answer: Answer, *, over_limit: bool) -> None:
        call = ApiCall(
            at=now,
            method=request.method,
            path=request.url.path,
            status_code=answer.status_code,
            idempotency_key=request.headers.get("idempotency-key"),
            replay=answer.replay,
            body_mismatch=answer.body_mismatch,
            message_id=answer.message_id,
            over_limit=over_limit,
            answer=_loggable(answer.body),
        )
        self.sandbox.records.calls.append(call)

    async def generate_token(self, request: Request) -> Answer:
        """Client credentials in, a Bearer JWT out; every error is a 400."""
        try:
            body = validation.parse_object(await request.body())
        except validation.MalformedBodyError as exc:
            return Answer(400, {"detail": exc.detail})
        fields = validation.token_request(body)
        if isinstance(fields, dict):
            return Answer(400, fields)
        if not tokens.credentials_match(self.config, fields.client_id, fields.client_secret):
            return Answer(400, {"credentials": [validation.INVALID_CREDENTIALS]})
        return Answer(200, tokens.issue(self.config, self.sandbox.clock()).to_json())

    async def send_sms(self, request: Request) -> Answer:
        """Authenticate, replay or validate, then accept (or fail as a fault says)."""
        answer = await self._send(request)
        answer.delay_seconds += self.config.latency_seconds
        return answer

    async def _send(self, request: Request) -> Answer:
        authorization = request.headers.get("authorization")
        try:
            client_id = tokens.authenticate(self.config, authorization, self.sandbox.clock())
        except tokens.AuthenticationError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="api"'}
            return Answer(401, {"detail": exc.detail}, headers=headers)
        try:
            body = validation.parse_object(await request.body())
        except validation.MalformedBodyError as exc:
            return Answer(400, {"detail": exc.detail})
        # No await from here until the answer is cached: replays cannot race.
        key = request.headers.get("idempotency-key") or None
        now = self.sandbox.clock()
        if key is not None:
            cached = self.sandbox.cache.get(client_id, key, now)
            if cached is not None:
                return self._replay(cached, fingerprint(body))
        fields = validation.send_request(body, self.config.sender_names)
        if isinstance(fields, dict):
            refused = Answer(400, fields)
            self._remember(client_id, key, refused, body, now)
            return refused
        return await self._accept(fields, client_id, key, body)

    def _replay(self, cached: CachedAnswer, body_fingerprint: str) -> Answer:
        """The first answer again, whatever this body says; nothing is sent."""
        return Answer(
            cached.status_code,
            cached.body,
            replay=True,
            body_mismatch=body_fingerprint != cached.fingerprint,
            message_id=cached.message_id,
        )

    def _remember(
        self, client_id: str, key: str | None, answer: Answer, body: dict[str, Any], now: float
    ) -> None:
        if key is None or isinstance(answer.body, str):
            return
        cached = CachedAnswer(
            answer.status_code, answer.body, fingerprint(body), now, answer.message_id
        )
        self.sandbox.cache.put(client_id, key, cached)

    def _fault_answer(self, plan: faults.Plan, key: str | None) -> Answer | None:
        """A 500 or a 429 burst instead of sending, if the plan says so."""
        once_500 = Fault.ERROR_500_ONCE in plan.faults
        if Fault.ERROR_500 in plan.faults or (
            once_500 and self.sandbox.first_time(Fault.ERROR_500_ONCE, key)
        ):
            return Answer(500, SERVER_ERROR_HTML)
        if Fault.BURST_429 in plan.faults and self.sandbox.first_time(Fault.BURST_429, key):
            return throttled(self.sandbox.limiter.start_burst())
        return None

    async def _accept(
        self,
        request: validation.SendRequest,
        client_id: str,
        key: str | None,
        body: dict[str, Any],
    ) -> Answer:
        """Record the send, cache the answer, then deal with its callbacks."""
        plan = faults.plan_for(request.contact, self.config, self.sandbox.rng)
        refusal = self._fault_answer(plan, key)
        if refusal is not None:
            log.info("sandbox_send_refused", status_code=refusal.status_code)
            return refusal
        message = self._record_send(request, client_id, key, plan)
        answer = Answer(200, _accepted_body(message), message_id=message.message_id)
        self._remember(client_id, key, answer, body, message.accepted_at)
        log.info(
            "sandbox_send_accepted",
            message_id=message.message_id,
            faults=sorted(f.value for f in plan.faults),
        )
        steps = faults.callback_steps(plan, self.config) if message.callback_url else ()
        if steps and Fault.EARLY_CALLBACK in plan.faults:
            await self.sandbox.courier.post(message, steps[0].report)
            steps = steps[1:]
        self.sandbox.courier.schedule(message, steps)
        if Fault.SLOW_RESPONSE in plan.faults:
            answer.delay_seconds += self.config.slow_response_seconds
        if Fault.ACCEPT_THEN_HANG in plan.faults:
            answer.delay_seconds += self.config.hang_seconds
        return answer

    def _record_send(
        self,
        request: validation.SendRequest,
        client_id: str,
        key: str | None,
        plan: faults.Plan,
    ) -> SentMessage:
        message = SentMessage(
            message_id=self.sandbox.new_message_id(),
            client_id=client_id,
            idempotency_key=key,
            sender_name=request.sender_name,
            contact=request.contact,
            message=request.message,
            callback_url=request.callback_url,
            accepted_at=self.sandbox.clock(),
            final=plan.final,
            faults=plan.faults,
            callback_dropped=bool(request.callback_url) and Fault.DROPPED_CALLBACK in plan.faults,
        )
        self.sandbox.records.messages[message.message_id] = message
        return message
