"""The deliverer: claims due webhook deliveries, POSTs them signed, records the outcomes.

Claim (a short transaction: leases) -> sign and POST (no transaction open) -> record
(batched: one short transaction for many outcomes). A global pool bounds the attempts
in flight (``TRACKER_WEBHOOK_CONCURRENCY``) and each endpoint gets at most
``TRACKER_WEBHOOK_ENDPOINT_CONCURRENCY`` of them, so a slow endpoint holds only its own
few slots and never delays another's deliveries. It runs in every process that wants it
(``serve`` in-process, ``tracker worker``): on PostgreSQL the claims skip each other's
locked rows, so there is no leader.

Idle, it sleeps until its doorbell rings: after an in-process commit that changed a
status (``Services.webhook_doorbell``), on PostgreSQL at a NOTIFY from the outbox trigger
(``wakeup.WEBHOOKS_CHANNEL``), when a retry it scheduled comes due, when an attempt ends
(a slot is free), or at the slow fallback poll. An attempt whose outcome is never
recorded (a crash, a kill -9) keeps its lease until it runs out and is then made again:
delivery is at least once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import random
import time
import uuid
from http import HTTPStatus

import httpx

from tracker import clock, db, logs, metrics, wakeup
from tracker.settings import Settings
from tracker.webhooks import clients, deliveries, payloads, schedule, signing, transport

log = logs.get_logger(__name__)
FALLBACK_POLL_SECONDS = 2.0  # a retry due in another process, a lost NOTIFY, a lease run out
FAILED_CYCLE_PAUSE_SECONDS = 1.0
RETRY_WAKE_LAG_SECONDS = 0.01  # past the due time, so the claim's `<= now` sees it due
RECORD_BATCH = 500  # outcomes per transaction at most
LEASE_MARGIN_SECONDS = 5.0  # beyond two attempt timeouts: waiting to be recorded included
DRAIN_SECONDS = 5.0  # at shutdown, how long attempts in flight may still take
GAUGES_SECONDS = 10.0
CLAIM_INTERVAL_SECONDS = 0.01  # between claims while attempts are in flight
EXCERPT_CHARACTERS = transport.KEPT_RESPONSE_BYTES


class Deliverer:
    """One process's deliverer; ``run()`` until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        database: db.Database,
        *,
        doorbell: wakeup.Doorbell | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.doorbell = doorbell or wakeup.Doorbell()
        self.stopping = asyncio.Event()
        self.rng = rng or random.Random()
        self._http = http  # injected (tests): one client for every endpoint
        self._clients = clients.Clients(settings)
        self._lease = dt.timedelta(
            seconds=2 * settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self._busy: collections.Counter[uuid.UUID] = collections.Counter()
        self._outcomes: asyncio.Queue[_Recording | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None  # when ``start`` runs it
        self.listener = (
            None  # SQLite has no NOTIFY: there the deliverer runs in `serve`, rung in-process
            if database.is_sqlite
            else wakeup.Listener(
                wakeup.dsn_of(database),
                self.doorbell,
                timeout_seconds=settings.database_timeout_seconds,
                channel=wakeup.WEBHOOKS_CHANNEL,
                application_name=wakeup.WEBHOOKS_APPLICATION_NAME,
            )
        )

    def stop(self) -> None:
        self.stopping.set()

    async def close(self) -> None:
        """Stop the task ``start`` made, and wait for it."""
        self.stop()
        if self.task is not None:
            await self.task

    async def run(self) -> None:
        """Deliver until ``stop()``; then let attempts in flight finish (briefly) and close."""
        helpers = [
            asyncio.create_task(self._record_forever(), name="webhook-recorder"),
            asyncio.create_task(self._refresh_gauges(), name="webhook-gauges"),
        ]
        if self.listener is not None:
            helpers.append(asyncio.create_task(self.listener.run(self.stopping), name="wakeup"))
        try:
            while not self.stopping.is_set():
                try:
                    await self._cycle()
                except Exception as exc:  # a database hiccup must not kill the deliverer
                    log.warning("webhook_cycle_failed", error=type(exc).__name__, exc_info=True)
                    await self._pause(FAILED_CYCLE_PAUSE_SECONDS)
        finally:
            await self._drain()
            self._outcomes.put_nowait(None)  # the recorder ends after what is queued
            await asyncio.gather(helpers[0], return_exceptions=True)
            for helper in helpers[1:]:
                helper.cancel()
            await asyncio.gather(*helpers[1:], return_exceptions=True)
            await self._clients.close()
            log.info("webhook_deliverer_stopped")

    async def _cycle(self) -> None:
        """Claim what the free slots allow and start it; idle when nothing more is due."""
        free = self.settings.webhook_concurrency - len(self._in_flight)
        # Cleared before looking: a ring while we look is kept for the next wait.
        rung = self.doorbell.rung
        self.doorbell.clear()
        # Unrung (the slow poll), a read first: an idle claim would take the write lock.
        look = free > 0 and (rung or await self._any_due())
        claimed = await self._claim(free) if look else []
        for delivery in claimed:
            self._start(delivery)
        if len(claimed) < free or free <= 0:
            await self.doorbell.wait(FALLBACK_POLL_SECONDS, self.stopping)
            if self._in_flight:
                # Busy: let more attempts end (and events come) so that one claim
                # takes them all; a claim per ended attempt would hold the write lock
                # as often as the callbacks need it.
                await self._pause(CLAIM_INTERVAL_SECONDS)

    async def _any_due(self) -> bool:
        async with self.database.read() as session:
            return await deliveries.any_due(session, clock.utcnow())

    async def _claim(self, limit: int) -> list[deliveries.Claimed]:
        now = clock.utcnow()
        async with self.database.write() as session:
            return await deliveries.claim_due(
                session,
                now=now,
                lease_until=now + self._lease,
                limit=limit,
                per_endpoint=self.settings.webhook_endpoint_concurrency,
                busy=dict(self._busy),
            )

    def _start(self, claimed: deliveries.Claimed) -> None:
        self._busy[claimed.endpoint_id] += 1
        task = asyncio.create_task(self._deliver(claimed), name=f"webhook-{claimed.id}")
        self._in_flight.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.doorbell.ring()  # a slot is free
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("webhook_attempt_crashed", error=type(exc).__name__, exc_info=exc)

    async def _deliver(self, claimed: deliveries.Claimed) -> None:
        try:
            outcome = await self._attempt(claimed)
        finally:
            self._release_endpoint(claimed.endpoint_id)
        recording = _Recording(outcome)
        self._outcomes.put_nowait(recording)
        result = await recording.done
        metrics.WEBHOOK_DELIVERIES.labels(outcome=result).inc()
        metrics.WEBHOOK_DELIVERY_SECONDS.observe(outcome.latency_ms / 1000)
        log.info(
            "webhook_attempted",
            delivery_id=claimed.id,
            endpoint_id=str(claimed.endpoint_id),
            attempt=claimed.attempts + 1,
            status_code=outcome.status_code,
            latency_ms=round(outcome.latency_ms, 1),
            outcome=result,
            error=outcome.error,
        )

    def _release_endpoint(self, endpoint: uuid.UUID) -> None:
        self._busy[endpoint] -= 1
        if self._busy[endpoint] <= 0:
            del self._busy[endpoint]

    async def _attempt(self, claimed: deliveries.Claimed) -> deliveries.Outcome:
        """Sign with a fresh timestamp and POST once; what came of it."""
        now = clock.utcnow()
        started = time.perf_counter()
        answer: transport.Answer | None = None
        error: str | None = None
        try:
            content = payloads.body(
                claimed.event_type,
                claimed.occurred_at,
                claimed.data,
                message_id=claimed.message_id,
                sequence=claimed.sequence,
            )
            headers = signing.headers(claimed.event_id, now, content, claimed.secrets)
            answer = await transport.post(
                self._http or self._clients.get(claimed.endpoint_id),
                claimed.url,
                content=content,
                headers=headers,
                timeout_seconds=self.settings.webhook_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            error = describe(exc)
        except ValueError as exc:  # a body or secret we cannot use: retried, then failed
            error = f"cannot sign the delivery: {type(exc).__name__}"
        latency_ms = (time.perf_counter() - started) * 1000
        return self._judge(claimed, now, latency_ms, answer, error)

    def _judge(
        self,
        claimed: deliveries.Claimed,
        now: dt.datetime,
        latency_ms: float,
        answer: transport.Answer | None,
        error: str | None,
    ) -> deliveries.Outcome:
        """2xx succeeds; anything else is a failure, retried on the schedule."""
        code = answer.status_code if answer is not None else None
        succeeded = code is not None and HTTPStatus.OK <= code < HTTPStatus.MULTIPLE_CHOICES
        gone = code == HTTPStatus.GONE
        retry_in = None
        if answer is not None and not succeeded:
            error = f"HTTP {code}"
            waited = schedule.honoured_retry_after(
                answer.status_code, answer.headers.get("retry-after"), now
            )
        else:
            waited = None
        if not succeeded and not gone:
            retry_in = schedule.next_attempt_delay(
                self.settings.webhook_retry_schedule,
                claimed.attempts + 1,
                self.rng,
                retry_after=waited,
            )
        return deliveries.Outcome(
            claimed=claimed,
            attempted_at=now,
            status_code=code,
            latency_ms=latency_ms,
            error=error,
            excerpt=excerpt(answer),
            succeeded=succeeded,
            retry_in=retry_in,
            gone=gone,
        )

    async def _record_forever(self) -> None:
        """Record queued outcomes in batches until the ``None`` that ``run`` queues last."""
        while True:
            first = await self._outcomes.get()
            batch: list[_Recording] = []
            ending = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < RECORD_BATCH and not self._outcomes.empty():
                item = self._outcomes.get_nowait()
                if item is None:
                    ending = True
                    break
                batch.append(item)
            if batch:
                await self._record(batch)
            if ending:
                return

    async def _record(self, batch: list[_Recording]) -> None:
        outcomes = [recording.outcome for recording in batch]
        try:
            now = clock.utcnow()
            async with self.database.write() as session:
                disabled = await deliveries.record(
                    session, outcomes, now=now, disable_after=self.settings.webhook_disable_after
                )
        except Exception as exc:  # the leases run out and the attempts are made again
            log.warning("webhook_outcomes_unrecorded", error=type(exc).__name__, count=len(batch))
            for recording in batch:
                recording.resolve("unrecorded")
            return
        for endpoint, reason in disabled:
            metrics.WEBHOOK_ENDPOINTS_DISABLED_TOTAL.inc()
            log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint), reason=reason)
        for recording in batch:
            recording.resolve(self._result(recording.outcome))

    def _result(self, outcome: deliveries.Outcome) -> str:
        if outcome.succeeded:
            return "succeeded"
        if outcome.retry_in is None:
            return "failed"
        self.doorbell.ring_in(outcome.retry_in + RETRY_WAKE_LAG_SECONDS)
        return "retried"

    async def _drain(self) -> None:
        """Give attempts in flight a moment; the rest keep their leases (made again later)."""
        if not self._in_flight:
            return
        tasks = list(self._in_flight)
        _done, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _refresh_gauges(self) -> None:
        """The backlog and disabled gauges, read in the background (a scrape never waits)."""
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(GAUGES_SECONDS), self.database.read() as session:
                    metrics.WEBHOOK_BACKLOG.set(await deliveries.backlog(session))
                    metrics.WEBHOOK_ENDPOINTS_DISABLED.set(
                        await deliveries.disabled_endpoints(session)
                    )
            except Exception as exc:  # the gauges keep their last values; retried
                log.warning("webhook_gauges_unavailable", error=type(exc).__name__)
            await self._pause(GAUGES_SECONDS)


def start(settings: Settings, database: db.Database, doorbell: wakeup.Doorbell) -> Deliverer:
    """A deliverer running as a task (``serve``'s lifespan); ``close()`` it at the end."""
    hooks = Deliverer(settings, database, doorbell=doorbell)
    hooks.task = asyncio.create_task(hooks.run(), name="webhook-deliverer")
    return hooks


class _Recording:
    """An outcome waiting in the recorder's queue, and what became of it."""

    def __init__(self, outcome: deliveries.Outcome) -> None:
        self.outcome = outcome
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def resolve(self, result: str) -> None:
        if not self.done.done():
            self.done.set_result(result)


def describe(exc: httpx.HTTPError) -> str:
    """An attempt's error for the attempt log: its kind and message, never the URL."""
    if transport.is_refusal(exc):
        return f"destination refused: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: {exc}" if str(exc) else "timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def excerpt(answer: transport.Answer | None) -> str | None:
    """The answer's first 1 KiB as text (NULs dropped: PostgreSQL text refuses them)."""
    if answer is None:
        return None
    text = answer.excerpt.decode("utf-8", errors="replace").replace("\x00", "")
    return text[:EXCERPT_CHARACTERS]
