"""The retention job (#17): bodies redacted, numbers pseudonymised, messages deleted,
each a period after the message became final (``final_at``).

The periods are ``TRACKER_RETENTION_BODY``, ``_CONTACT`` and ``_MESSAGE``, which
each client may override (``clients.retention_*``: a duration or ``keep``).
Webhook attempts and spool quarantine entries older than
``TRACKER_RETENTION_BODY`` are pruned too: they hold what callers and KIMISMS
sent. The job works in bounded batches (``retention_batches``), at most
``BATCH_SIZE`` rows a transaction, each on SQLite on a thread of its own
(``retention_writer``), shrunk to hold the write lock about
``LOCK_TARGET_SECONDS``, with a pause as long between batches (on both
databases), so callbacks and the API keep at least half of the lock, the CPU and
the disk however much is due at once. A run that changed anything leaves one
audit entry with its counts (never a number).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, logs, metrics
from tracker.clients import records
from tracker.domain import durations
from tracker.privacy import audit, retention_batches, retention_writer, scrub
from tracker.reports import spool
from tracker.settings import Settings

Rule = retention_batches.Rule
BATCH_SIZE = 1000  # rows per transaction at most
MIN_BATCH_SIZE = 50  # however slow the disk, a batch still gets somewhere
LOCK_TARGET_SECONDS = 0.02  # of SQLite's write lock a batch (at 0.05, callbacks' p99 > 50 ms)
ORDER = (Rule.MESSAGE, Rule.CONTACT, Rule.BODY)  # a deleted row needs no redaction
log = logs.get_logger(__name__)


@dataclass(frozen=True)
class Policy:
    """One client's periods; None: kept for ever."""

    client: str
    periods: Mapping[Rule, dt.timedelta | None]


def policy_of(client: records.Client, settings: Settings) -> Policy:
    """The client's overrides where it has them, else the settings."""
    own = {
        Rule.BODY: (client.retention_body, settings.retention_body),
        Rule.CONTACT: (client.retention_contact, settings.retention_contact),
        Rule.MESSAGE: (client.retention_message, settings.retention_message),
    }
    return Policy(
        client.name,
        {
            rule: fallback if text is None else durations.parse_period(text)
            for rule, (text, fallback) in own.items()
        },
    )


@dataclass(frozen=True)
class Result:
    """What a run did (or, dry, would do: then only messages are counted per rule)."""

    redacted: int = 0
    pseudonymised: scrub.Pseudonymised = field(default_factory=scrub.Pseudonymised)
    deleted: retention_batches.Deleted = field(default_factory=retention_batches.Deleted)
    webhook_attempts: int = 0  # pruned
    quarantine_entries: int = 0  # pruned
    transactions: int = 0
    dry_run: bool = False

    def __add__(self, other: Result) -> Result:
        return replace(
            self,
            redacted=self.redacted + other.redacted,
            pseudonymised=self.pseudonymised + other.pseudonymised,
            deleted=self.deleted + other.deleted,
            webhook_attempts=self.webhook_attempts + other.webhook_attempts,
            quarantine_entries=self.quarantine_entries + other.quarantine_entries,
            transactions=self.transactions + other.transactions,
        )

    def counts(self) -> dict[str, int]:
        """Flat, for the audit log, the CLI and the log line."""
        return {
            "redacted_messages": self.redacted,
            **{f"pseudonymised_{k}": v for k, v in self.pseudonymised.counts().items()},
            **{f"deleted_{k}": v for k, v in vars(self.deleted).items()},
            "pruned_webhook_attempts": self.webhook_attempts,
            "pruned_quarantine_entries": self.quarantine_entries,
        }

    @property
    def changed(self) -> bool:
        return any(self.counts().values())


async def run(
    database: db.Database,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    lock_target_seconds: float | None = LOCK_TARGET_SECONDS,
    stopping: asyncio.Event | None = None,
) -> Result:
    """One run over every client; stops between batches once ``stopping`` is set."""
    now = now or clock.utcnow()
    started = time.perf_counter()
    async with database.read() as session:
        policies = [policy_of(c, settings) for c in await records.list_all(session)]
    if dry_run:
        return await _dry_run(database, settings, policies, now)
    job = _Job(database, settings, now, batch_size, lock_target_seconds, stopping)
    try:
        await job.everything(policies)
    finally:  # a run cut short (stopped, cancelled, failed) still says what it did
        await job.writer.close()
        await _report(database, job.result, started)
    return job.result


async def _report(database: db.Database, result: Result, started: float) -> None:
    """One audit entry and one log line, if the run changed anything."""
    if not result.changed:
        return
    log.info(
        "retention_run",
        **result.counts(),
        transactions=result.transactions,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    async with database.write() as session:
        await audit.record(session, audit.Action.RETENTION, audit.RETENTION_ACTOR,
                           detail=result.counts())  # fmt: skip


class _Job:
    """One run's batches, and how large the next one may be."""

    def __init__(  # noqa: PLR0917 - run()'s own arguments
        self,
        database: db.Database,
        settings: Settings,
        now: dt.datetime,
        batch_size: int,
        lock_target_seconds: float | None,
        stopping: asyncio.Event | None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.limit = self.size = batch_size
        self.target = lock_target_seconds if database.is_sqlite else None
        self.stopping = stopping or asyncio.Event()
        self.key = settings.pseudonym_key_bytes()
        self.result = Result()
        self.writer = retention_writer.Writer(database)  # last: its thread ends in close()

    async def everything(self, policies: Sequence[Policy]) -> None:
        for policy in policies:
            for rule in ORDER:
                period = policy.periods[rule]
                if period is not None and not self.stopping.is_set():
                    await self.rule(rule, policy.client, self.now - period)
        if self.settings.retention_body is not None and not self.stopping.is_set():
            cutoff = self.now - self.settings.retention_body
            await self.attempts(cutoff)
            pruned = await asyncio.to_thread(_quarantine(self.settings).prune_quarantine, cutoff)
            self.result += Result(quarantine_entries=pruned)
            metrics.RETENTION_PRUNED.labels(kind="quarantine_entries").inc(pruned)

    async def rule(self, rule: Rule, client: str, cutoff: dt.datetime) -> None:
        """Batches of one rule for one client until one comes back short."""
        batch = self.planned if rule is Rule.CONTACT else self.direct
        while not self.stopping.is_set():
            limit = self.size
            found, done, took = await batch(rule, client, cutoff, limit)
            self.result += replace(done, transactions=1)
            _count(done)
            if found < limit:
                return
            await self.between(took)

    async def direct(
        self, rule: Rule, client: str, cutoff: dt.datetime, limit: int
    ) -> tuple[int, Result, float]:
        """Pick and change in one write transaction: set-based SQL, short however many."""

        async def batch(session: AsyncSession) -> tuple[int, Result]:
            ids = await retention_batches.due_ids(session, rule, client, cutoff, limit)
            return len(ids), await self.apply(session, rule, ids)

        (found, done), took = await self.writer.run(batch)
        return found, done, took

    async def planned(
        self, rule: Rule, client: str, cutoff: dt.datetime, limit: int
    ) -> tuple[int, Result, float]:
        """Pseudonymising: the rows are read and their new text worked out first, without
        the lock (most of a batch's time), then written in one transaction."""

        async def pick(session: AsyncSession) -> tuple[int, scrub.Plan]:
            ids = await retention_batches.due_ids(
                session, rule, client, cutoff, limit, locked=False
            )
            return len(ids), await scrub.plan(session, ids, self.key)

        found, plan = await self.writer.read(pick)

        async def write(session: AsyncSession) -> scrub.Pseudonymised:
            return await scrub.apply(session, plan, self.now)

        done, took = await self.writer.run(write)
        return found, Result(pseudonymised=done), took

    async def apply(self, session: AsyncSession, rule: Rule, ids: list[uuid.UUID]) -> Result:
        if not ids:
            return Result()
        if rule is Rule.BODY:
            return Result(redacted=await scrub.redact(session, ids, self.now))
        await retention_batches.keep_counts(session, ids)
        return Result(deleted=await retention_batches.delete_messages(session, ids))

    async def attempts(self, cutoff: dt.datetime) -> None:
        """Webhook attempts: picked in a read (a scan takes no lock), deleted in batches."""
        while not self.stopping.is_set():
            limit = self.limit

            async def pick(session: AsyncSession, limit: int = limit) -> list[int]:
                return await retention_batches.old_attempt_ids(session, cutoff, limit)

            ids = await self.writer.read(pick)
            if not ids:
                return

            async def prune(session: AsyncSession, ids: list[int] = ids) -> int:
                return await retention_batches.delete_attempts(session, ids, cutoff)

            pruned, took = await self.writer.run(prune)
            self.result += Result(webhook_attempts=pruned, transactions=1)
            metrics.RETENTION_PRUNED.labels(kind="webhook_attempts").inc(pruned)
            if len(ids) < limit:
                return
            await self.between(took)

    async def between(self, took: float) -> None:
        """Resize the next batch toward the lock target, and give the lock away as long."""
        if self.target is not None and took > 0:
            scaled = int(self.size * self.target / took)
            self.size = max(MIN_BATCH_SIZE, min(self.limit, self.size * 2, scaled))
        # On PostgreSQL too: its locks are row locks, but its CPU and disk are shared with
        # the callbacks and the dispatcher (without a pause, 5M rows starved their reads).
        await asyncio.sleep(took)


def _count(done: Result) -> None:
    for action, rows in (
        ("redacted", done.redacted),
        ("pseudonymised", done.pseudonymised.messages),
        ("deleted", done.deleted.messages),
    ):
        if rows:
            metrics.RETENTION_ROWS.labels(action=action).inc(rows)


def _quarantine(settings: Settings) -> spool.Spool:
    return spool.Spool(settings.spool_path)


async def _dry_run(
    database: db.Database, settings: Settings, policies: Sequence[Policy], now: dt.datetime
) -> Result:
    """What a run would change now: messages per rule, attempts, quarantine entries."""
    total = Result(dry_run=True)
    async with database.read() as session:
        for policy in policies:
            for rule, period in policy.periods.items():
                if period is None:
                    continue
                due = await retention_batches.count_due(session, rule, policy.client, now - period)
                total += _as_result(rule, due)
        if settings.retention_body is not None:
            cutoff = now - settings.retention_body
            attempts = await retention_batches.count_old_attempts(session, cutoff)
            entries = await asyncio.to_thread(
                _quarantine(settings).prune_quarantine, cutoff, dry_run=True
            )
            total += Result(webhook_attempts=attempts, quarantine_entries=entries)
    return total


def _as_result(rule: Rule, messages: int) -> Result:
    if rule is Rule.BODY:
        return Result(redacted=messages)
    if rule is Rule.CONTACT:
        return Result(pseudonymised=scrub.Pseudonymised(messages=messages))
    return Result(deleted=retention_batches.Deleted(messages=messages))
