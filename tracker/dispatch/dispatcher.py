"""The dispatcher: turns due messages into sends at the provider's pace.

Claim (short transaction, commit) -> wait for the pacer's turn -> confirm (the claim
still holds and the message is still valid: only then ``sending``) -> send (no
transaction open) -> record (a short transaction). Only the leader dispatches
(``leadership``); the pacer spaces every call; transient failures are retried with
exponential backoff and full jitter under the same Idempotency-Key, until the attempts
or the provider's 24 h key window run out. The leader's chores (the expiry sweep, ...)
run in a task beside the claims (``housekeeping``). Idle, it sleeps until its doorbell
rings (``wakeup``: the send API in-process, a NOTIFY across processes, a retry it
scheduled coming due) or the slow fallback poll comes round. After each outcome and
sweep it rings the webhook deliverer's doorbell.
"""

# Over 400 lines (by a few): the claim loop, the send and its retry policy read as one
# sequence; the webhook doorbell (#15) took the last lines under the limit.

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import inspect
import random
import time
from collections.abc import Awaitable
from http import HTTPStatus

import httpx

from tracker import clock, db, errors, logs, metrics, wakeup
from tracker.dispatch import housekeeping, kimisms, leadership, outbox
from tracker.dispatch.pacing import Pacer
from tracker.reports import capability
from tracker.settings import Settings

log = logs.get_logger(__name__)
MAX_IN_FLIGHT = 8  # sends awaiting an answer at once (a slow provider must not stall pacing)
# Idle, look for work this often even unwoken (a message whose send_at came, a
# lease that ran out, a NOTIFY lost while the listener reconnected).
FALLBACK_POLL_SECONDS = 2.0
FAILED_CYCLE_PAUSE_SECONDS = 1.0
RETRY_WAKE_LAG_SECONDS = 0.01  # past the due time, so the claim's `<= now` sees it due
CLAIM_AHEAD_SECONDS = 0.25  # claim this long before the pacer's next turn
ACCOUNT_PAUSE_SECONDS = 30.0  # after credentials/URL failures
Outcome = outbox.Outcome


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        database: db.Database,
        client: kimisms.KimismsClient,
        *,
        lock: leadership.Leadership | None = None,
        rng: random.Random | None = None,
        doorbell: wakeup.Doorbell | None = None,
        webhook_doorbell: wakeup.Doorbell | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.client = client
        self.lock = lock or leadership.for_database(database)
        self.rng = rng or random.Random()
        self.stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._in_flight: dict[asyncio.Task[None], _Send] = {}
        self._keys = settings.callback_keys()
        self._give_up_after = dt.timedelta(seconds=settings.give_up_after_seconds)
        self._lease = dt.timedelta(seconds=settings.lease_seconds)
        self.doorbell = doorbell or wakeup.Doorbell()
        self.webhook_doorbell = webhook_doorbell or wakeup.Doorbell()
        self.fallback_poll_seconds = (
            settings.dispatch_fallback_poll_seconds or FALLBACK_POLL_SECONDS
        )
        self._deposed = False
        timeout = settings.database_timeout_seconds
        self.listener = (
            None  # SQLite has no NOTIFY: there the dispatcher runs in `serve`, rung in-process
            if database.is_sqlite
            else wakeup.Listener(wakeup.dsn_of(database), self.doorbell, timeout_seconds=timeout)
        )

    async def run(self) -> None:
        """Wait for leadership, then dispatch until ``stop()``; then drain in-flight sends."""
        listening = None
        if self.listener is not None:  # a standby listens too: it may lead next
            listening = asyncio.create_task(self.listener.run(self.stopping), name="wakeup")
        try:
            while not self.stopping.is_set():
                if not await leadership.wait_for_leadership(self.lock, self.stopping):
                    break
                await self._lead()
        finally:
            await self._drain()
            await self.lock.release()
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
            log.info("dispatcher_stopped")

    def stop(self) -> None:
        self.stopping.set()

    async def _lead(self) -> None:
        self._deposed = False
        chores = asyncio.create_task(
            housekeeping.keep_house(
                self.database,
                self.lock,
                self._give_up_after,
                stopping=self.stopping,
                deposed=self._depose,
                swept=self.webhook_doorbell.ring,
                settings=self.settings,
            ),
            name="housekeeping",
        )
        chores.add_done_callback(lambda _task: self._depose())  # ended early or failed: stop
        try:
            while not self.stopping.is_set() and not self._deposed:
                try:
                    await self._dispatch_one()
                except Exception as exc:  # a database hiccup must not kill the dispatcher
                    log.warning(
                        "dispatcher_cycle_failed",
                        error=type(exc).__name__,
                        detail=str(exc),
                        exc_info=True,
                    )
                    await self._idle(FAILED_CYCLE_PAUSE_SECONDS, woken=False)
        finally:
            chores.cancel()
            await asyncio.gather(chores, return_exceptions=True)

    def _depose(self) -> None:
        """Leadership lost (or the chores failed): the claim loop ends at its next turn."""
        self._deposed = True
        self.doorbell.ring()

    async def _dispatch_one(self) -> None:
        await self._slots.acquire()
        try:
            claimed = None
            # Claim shortly before the next turn (a claimed row should not sit on
            # its lease through a pause), but take the turn only just before the
            # POST: the pacer counts calls when they leave, however slow the claim.
            ready = self.client.pacer.wait_ready(ahead=CLAIM_AHEAD_SECONDS)
            if await self._unless_stopped(ready):
                # Cleared before looking (a ring meanwhile is kept); rung: claim, no read first.
                rung = self.doorbell.rung
                self.doorbell.clear()
                if rung or await self._any_due():
                    claimed = await self._claim()
        except BaseException:
            self._slots.release()
            raise
        if claimed is None:
            self._slots.release()
            await self._idle(self.fallback_poll_seconds)
            return
        send = _Send(claimed)
        task = asyncio.create_task(self._send(send), name=f"send-{claimed.id}")
        self._in_flight[task] = send
        task.add_done_callback(self._sent)
        # One claim waits for its turn at a time: claims stay in priority order
        # and none holds a lease while a queue of others is paced ahead of it.
        await self._unless_stopped(send.turn_taken.wait())

    async def _unless_stopped(self, awaitable: Awaitable[object]) -> bool:
        """Await it unless ``stop()`` comes first; whether it finished."""
        if self.stopping.is_set():
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: close it, or it warns when collected
            return False
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        for future in (work, stop):
            future.cancel()
        return work.done() and not work.cancelled()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._slots.release()
        self.webhook_doorbell.ring()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Recording the outcome failed (the database, most likely): the lease
            # expires and the retry reuses the key, so nothing is lost or doubled.
            log.error("message_outcome_unrecorded", error=type(exc).__name__, exc_info=exc)

    async def _idle(self, seconds: float, *, woken: bool = True) -> None:
        """Wait ``seconds``, or less: until ``stop()`` or (``woken``) the doorbell."""
        if woken:
            await self.doorbell.wait(seconds, self.stopping)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _any_due(self) -> bool:
        async with self.database.read() as session:
            return await outbox.any_due(session, clock.utcnow(), self._give_up_after)

    async def _claim(self) -> outbox.Claimed | None:
        # Our own sends in flight are never claimed again, even past their lease.
        mine = [send.claimed.id for send in self._in_flight.values()]
        async with self.database.write() as session:
            return await outbox.claim_due(
                session,
                now=clock.utcnow(),
                lease=self._lease,
                give_up_after=self._give_up_after,
                exclude=mine,
            )

    async def _send(self, send: _Send) -> None:
        try:
            await self.client.pacer.acquire()
        finally:
            send.turn_taken.set()
        if (confirmed := await self._confirm(send.claimed)) is None:
            return
        send.claimed = claimed = confirmed
        started = time.perf_counter()
        url = capability.callback_url(self.settings.public_url, self._keys, claimed.id)
        outcome, provider_message_id = "accepted", None
        try:
            accepted = await self.client.send_sms(
                message_id=claimed.id,
                sender_name=claimed.sender_name,
                contact=claimed.contact,
                message=claimed.body,
                callback_url=url,
                turn_taken=True,  # taken above
            )
            provider_message_id = accepted.provider_message_id
            async with self.database.write() as session:
                await outbox.record_acceptance(
                    session, claimed.id, accepted, attempt=claimed.attempts, now=clock.utcnow()
                )
        except errors.ProviderError as exc:
            outcome = await self._handle_failure(claimed, exc)
        except BaseException:
            outcome = "unrecorded"
            raise
        finally:
            metrics.SENDS.labels(outcome=outcome).inc()
            log.info(
                "message_dispatched",
                message_id=str(claimed.id),
                provider_message_id=provider_message_id,
                outcome=outcome,
                attempt=claimed.attempts,
                provider_latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    async def _confirm(self, claimed: outbox.Claimed) -> outbox.Claimed | None:
        """The claim, confirmed at its turn; None (counted ``not_sent``) when it is not.

        The turn may have come long after the claim (a 429 pauses everyone):
        send only what is still ours and still valid now.
        """
        async with self.database.write() as session:
            confirmed = await outbox.confirm_send(
                session,
                claimed,
                now=clock.utcnow(),
                lease=self._lease,
                give_up_after=self._give_up_after,
            )
        if confirmed is None:
            metrics.SENDS.labels(outcome="not_sent").inc()
            log.info("message_not_sent", message_id=str(claimed.id))
        return confirmed

    # Over 40 lines: one branch per kind of failure, each with its own write,
    # read top to bottom as the retry policy.
    async def _handle_failure(self, claimed: outbox.Claimed, exc: errors.ProviderError) -> str:
        """Record a failed attempt; returns the outcome for the log line."""
        outcome = attempt_outcome(exc)
        if exc.permanent:
            async with self.database.write() as session:
                await outbox.record_rejection(
                    session,
                    claimed.id,
                    str(exc),
                    exc.field_errors,
                    attempt=claimed.attempts,
                    now=clock.utcnow(),
                )
            return "rejected"
        now = clock.utcnow()
        if isinstance(exc, kimisms.ProviderUnavailable):
            self.client.pacer.pause(ACCOUNT_PAUSE_SECONDS)
            log.error("provider_unavailable", detail=str(exc))
            await self._retry(
                claimed, str(exc), now + dt.timedelta(seconds=ACCOUNT_PAUSE_SECONDS), outcome
            )
            return "account_unavailable"
        if exc.status_code == HTTPStatus.TOO_MANY_REQUESTS:  # not sent; the pacer already paused
            wait = exc.retry_after or self.settings.rate_limit_pause_seconds
            await self._retry(claimed, str(exc), now + dt.timedelta(seconds=wait), outcome)
            return "rate_limited"
        retry_at = now + dt.timedelta(seconds=self._backoff(claimed.attempts))
        first = claimed.first_attempt_at or now
        window_ends = first + dt.timedelta(seconds=self.settings.give_up_after_seconds)
        if claimed.attempts >= self.settings.max_attempts or retry_at >= window_ends:
            reason = f"{exc} (after {claimed.attempts} attempts)"
            async with self.database.write() as session:
                await outbox.record_failure(
                    session,
                    claimed.id,
                    reason,
                    attempt=claimed.attempts,
                    outcome=outcome,
                    now=clock.utcnow(),
                )
            return "failed"
        await self._retry(claimed, str(exc), retry_at, outcome)
        return "retry"

    async def _retry(
        self, claimed: outbox.Claimed, reason: str, at: dt.datetime, outcome: outbox.Outcome
    ) -> None:
        async with self.database.write() as session:
            await outbox.schedule_retry(
                session,
                claimed.id,
                reason,
                at=at,
                attempt=claimed.attempts,
                outcome=outcome,
                now=clock.utcnow(),
            )
        # Wake when it is due (the fallback poll may be far off), a moment after.
        self.doorbell.ring_in((at - clock.utcnow()).total_seconds() + RETRY_WAKE_LAG_SECONDS)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(
            self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (attempt - 1)
        )
        return self.rng.uniform(0, ceiling)

    async def _drain(self) -> None:
        """Let in-flight sends finish and be recorded; release what cannot finish.

        A send still waiting for its pacer turn has not called the provider: it
        is cancelled at once rather than held through a pause.
        """
        if not self._in_flight:
            return
        sends = dict(self._in_flight)
        for task, send in sends.items():
            if not send.turn_taken.is_set():
                task.cancel()
        timeout = self.settings.provider_read_timeout_seconds + 5
        _done, pending = await asyncio.wait(list(sends), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        unfinished = [send.claimed for task, send in sends.items() if task.cancelled()]
        if unfinished:
            async with self.database.write() as session:
                await outbox.release(session, unfinished, clock.utcnow())


@dataclasses.dataclass
class _Send:
    """A claimed message on its way to the provider."""

    claimed: outbox.Claimed
    turn_taken: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


def attempt_outcome(exc: errors.ProviderError) -> outbox.Outcome:
    """The structured outcome of a failed call (``message_events.outcome``)."""
    if exc.permanent:
        return Outcome.REJECTED
    if isinstance(exc, kimisms.ProviderUnavailable):
        return Outcome.ACCOUNT_UNAVAILABLE
    if exc.status_code == HTTPStatus.TOO_MANY_REQUESTS:
        return Outcome.RATE_LIMITED
    if exc.status_code is None:  # a timeout, a lost connection, a 200 without an id
        return Outcome.NO_ANSWER
    return Outcome.PROVIDER_ERROR


def create(
    settings: Settings,
    database: db.Database,
    http: httpx.AsyncClient,
    *,
    doorbell: wakeup.Doorbell | None = None,
    webhook_doorbell: wakeup.Doorbell | None = None,
) -> Dispatcher:
    """A dispatcher with its pacer and provider client, from settings; ``doorbell``: the
    one the send API rings (``serve``), else its own (rung by NOTIFY on PostgreSQL)."""
    client = kimisms.KimismsClient(
        http,
        database,
        client_id=settings.kimisms_client_id,
        client_secret=settings.kimisms_client_secret.get_secret_value(),
        pacer=Pacer(settings.rate_limit_per_minute),
        rate_limit_pause_seconds=settings.rate_limit_pause_seconds,
    )
    return Dispatcher(
        settings, database, client, doorbell=doorbell, webhook_doorbell=webhook_doorbell
    )
