"""``/sandbox/*``: what the sandbox saw and did, for tests, benchmarks and demos.

No authentication: the sandbox is a test tool and its data is fake. These
routes are neither rate-limited nor recorded, so reading the evidence never
changes it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracker.sandbox.faults import MAGIC_NUMBERS
from tracker.sandbox.runtime import Sandbox


class InspectionApi:
    """Read the calls, sends, callbacks and counts; reset them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def routes(self) -> list[Route]:
        return [
            Route("/sandbox/health", self.health, methods=["GET"]),
            Route("/sandbox/messages", self.messages, methods=["GET"]),
            Route("/sandbox/messages/{message_id}", self.message, methods=["GET"]),
            Route("/sandbox/calls", self.calls, methods=["GET"]),
            Route("/sandbox/stats", self.stats, methods=["GET"]),
            Route("/sandbox/magic-numbers", self.magic_numbers, methods=["GET"]),
            Route("/sandbox/reset", self.reset, methods=["POST"]),
        ]

    async def health(self, _request: Request) -> JSONResponse:
        """Readiness for scripts that start the sandbox as a process."""
        return JSONResponse({"status": "ok"})

    async def messages(self, request: Request) -> JSONResponse:
        """Accepted sends in order; ``?contact=`` and ``?idempotency_key=`` filter."""
        contact = request.query_params.get("contact")
        key = request.query_params.get("idempotency_key")
        found = [
            message.to_json()
            for message in self.sandbox.records.messages.values()
            if (contact is None or message.contact == contact)
            and (key is None or message.idempotency_key == key)
        ]
        return JSONResponse(found)

    async def message(self, request: Request) -> JSONResponse:
        """One accepted send with its callbacks, or 404."""
        message = self.sandbox.records.messages.get(request.path_params["message_id"])
        if message is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        return JSONResponse(message.to_json())

    async def calls(self, _request: Request) -> JSONResponse:
        """Every provider API call with the status it was answered."""
        return JSONResponse([call.to_json() for call in self.sandbox.records.calls])

    async def stats(self, _request: Request) -> JSONResponse:
        """Counts that prove the invariants (one send per key, callbacks answered 200)."""
        return JSONResponse(self.sandbox.stats())

    async def magic_numbers(self, _request: Request) -> JSONResponse:
        """The fault table, so a client can discover it."""
        table = [
            {
                "contact": magic.contact,
                "summary": magic.summary,
                "faults": sorted(fault.value for fault in magic.faults),
                "final_status": magic.final.status,
            }
            for magic in MAGIC_NUMBERS.values()
        ]
        return JSONResponse(table)

    async def reset(self, _request: Request) -> JSONResponse:
        """Start over: no calls, sends, keys, window or scheduled callbacks."""
        await self.sandbox.reset()
        return JSONResponse({"reset": True})
