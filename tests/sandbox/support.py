"""Helpers for the sandbox's contract tests: constants, a fake clock, clients, a receiver."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.sandbox import SandboxConfig
from tracker.sandbox.runtime import Sandbox

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
SENDER = "KIMISMS"
CONTACT = "254712345678"  # an ordinary number: random faults only
TOKEN_BODY = {
    "grant_type": "client_credentials",
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
}

# Short timings for tests; a test overrides what it is about.
FAST: dict[str, Any] = {
    "callback_delay_seconds": 0.05,
    "failure_ratio": 0.0,
    "callback_timeout_seconds": 1.0,
    "slow_response_seconds": 0.3,
    "hang_seconds": 1.0,
    "late_callback_seconds": 0.5,
    "seed": 7,
}


def fast_config(**overrides: Any) -> SandboxConfig:
    """The default sandbox with test-sized delays, plus the test's own settings."""
    return SandboxConfig.model_validate({**FAST, **overrides})


class FakeClock:
    """A wall clock that moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SandboxClient:
    """An HTTP client for one sandbox, with the calls every test makes."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._token: str | None = None

    async def token(self) -> str:
        """A fresh access token (one generate-token call)."""
        response = await self.client.post("/api/generate-token", json=TOKEN_BODY)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def send(
        self,
        contact: str = CONTACT,
        *,
        key: str | None = None,
        callback_url: str | None = None,
        message: str = "Hello",
        read_timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """A valid send-sms call; the token is fetched once and reused."""
        if self._token is None:
            self._token = await self.token()
        headers = {"Authorization": f"Bearer {self._token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        body = {"sender_name": SENDER, "contact": contact, "message": message}
        if callback_url is not None:
            body["callback_url"] = callback_url
        request_timeout = (
            httpx.Timeout(read_timeout_seconds)
            if read_timeout_seconds is not None
            else httpx.USE_CLIENT_DEFAULT
        )
        return await self.client.post(
            "/api/send-sms", json=body, headers=headers, timeout=request_timeout
        )

    async def get_json(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.get_json("/sandbox/stats")
        return stats

    async def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = await self.get_json("/sandbox/messages")
        return messages

    async def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = await self.get_json("/sandbox/calls")
        return calls

    async def settled(self, within_seconds: float = 5.0) -> dict[str, Any]:
        """The stats once no callback is still scheduled."""
        deadline = time.monotonic() + within_seconds
        while True:
            stats = await self.stats()
            if stats["callbacks_pending"] == 0 or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.02)


class InProcess(SandboxClient):
    """A sandbox app behind ``httpx.ASGITransport``, with its state and clock at hand."""

    def __init__(self, client: httpx.AsyncClient, sandbox: Sandbox, clock: FakeClock) -> None:
        super().__init__(client)
        self.sandbox = sandbox
        self.clock = clock


MakeInProcess = Callable[..., Awaitable[InProcess]]
MakeLive = Callable[..., SandboxClient]


@dataclass
class Received:
    """One callback as the receiver saw it."""

    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """One test's callback inbox; set ``status_code``/``delay_seconds`` to misbehave."""

    inbox_url: str
    status_code: int = 200
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)

    def url(self) -> str:
        return self.inbox_url

    def statuses(self) -> list[str]:
        return [item.body["status"] for item in self.received]

    async def wait_for(self, count: int, within_seconds: float = 5.0) -> list[Received]:
        """Everything received once at least ``count`` callbacks arrived (or time ran out)."""
        deadline = time.monotonic() + within_seconds
        while True:
            if len(self.received) >= count or time.monotonic() > deadline:
                return list(self.received)
            await asyncio.sleep(0.01)


class ReceiverServer:
    """A callback receiver on a real socket, shared by the session: one inbox per test."""

    def __init__(self) -> None:
        self.base_url = ""
        self._inboxes: dict[str, Receiver] = {}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/callbacks/{inbox}", self._handle, methods=["POST"])])

    def inbox(self) -> Receiver:
        """A fresh inbox under its own unguessable path."""
        name = uuid.uuid4().hex
        receiver = Receiver(f"{self.base_url}/callbacks/{name}")
        self._inboxes[name] = receiver
        return receiver

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        receiver = self._inboxes.get(request.path_params["inbox"])
        if receiver is None:
            return Response(status_code=404)
        receiver.received.append(Received(body, time.monotonic()))
        if receiver.delay_seconds:
            await asyncio.sleep(receiver.delay_seconds)
        return Response(status_code=receiver.status_code)
