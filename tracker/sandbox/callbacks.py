"""Delivery callbacks: post each report, time the receiver, record the answer.

The provider documents one rule: the receiver must answer 200 within 5
seconds. The sandbox enforces it with ``callback_timeout_seconds`` and never
retries (the documentation does not promise retries, so the tracker must not
rely on them); only a fault posts the same report twice. The callback URL is a
capability of the tracker, so it never appears in a log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import httpx
import structlog

from tracker.sandbox.faults import Report, Step
from tracker.sandbox.records import CallbackAttempt, SentMessage

log = structlog.get_logger(__name__)


def payload(message: SentMessage, report: Report) -> dict[str, str]:
    """The documented callback body."""
    return {
        "message_id": message.message_id,
        "contact": message.contact,
        "status": report.status,
        "description": report.description,
    }


# An idle connection is dropped well before the receiver's keep-alive timeout
# (uvicorn's default and `tracker serve`'s: 5 s). httpx's default is also 5 s, so
# a callback could be written into a connection the server was closing at that
# instant: a ReadError, and a report the sandbox never posts again.
KEEPALIVE_SECONDS = 2.0


class Courier:
    """Posts callbacks now or later, and owns the tasks of those still to come."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        clock: Callable[[], float],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Messages with callbacks still to post."""
        return len(self._tasks)

    async def open(self) -> None:
        """Start the HTTP client (the app's lifespan calls this)."""
        self._client = httpx.AsyncClient(
            timeout=self._timeout_seconds,
            transport=self._transport,
            follow_redirects=False,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
        )

    async def close(self) -> None:
        """Cancel what is still scheduled and close the client."""
        await self.cancel_pending()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def cancel_pending(self) -> None:
        """Forget scheduled callbacks (shutdown and reset); wait until they stop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def schedule(self, message: SentMessage, steps: Sequence[Step]) -> None:
        """Post the steps in order in the background; the answer does not wait."""
        if not steps:
            return
        task = asyncio.create_task(self._run(message, steps))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: SentMessage, steps: Sequence[Step]) -> None:
        for step in steps:
            await asyncio.sleep(step.wait_seconds)
            await self.post(message, step.report)

    async def post(self, message: SentMessage, report: Report) -> CallbackAttempt:
        """POST one report and record how (and how fast) the receiver answered."""
        if self._client is None or message.callback_url is None:
            raise RuntimeError("the sandbox's lifespan has not started its callback client")
        attempt = CallbackAttempt(report, sent_at=self._clock())
        started = time.perf_counter()
        try:
            response = await self._client.post(message.callback_url, json=payload(message, report))
            attempt.http_status = response.status_code
        except httpx.TimeoutException:
            attempt.error = f"timeout after {self._timeout_seconds:g} s"
        except Exception as exc:
            attempt.error = type(exc).__name__
        attempt.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        message.callbacks.append(attempt)
        log.info(
            "sandbox_callback_posted",
            message_id=message.message_id,
            status=report.status,
            http_status=attempt.http_status,
            duration_ms=attempt.latency_ms,
            error=attempt.error,
        )
        return attempt
