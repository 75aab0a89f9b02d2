"""Where one dispatch's time goes: each database step, against a bare transaction.

    .venv/bin/python -m bench.dispatch_steps [--quick] [--messages 100]
        [--backend sqlite|postgresql] [--postgres-url URL] [--json PATH]

``bench.dispatch_latency`` times the whole way from the 202 to the provider;
this splits the database part of it. One queued message at a time (a client
row, the fair-dispatch state, the same statements the dispatcher runs), each
step timed on its own: the claim (``outbox.claim_due``: whose turn, the lease,
the turn recorded) and the confirmation (``outbox.confirm_send``: now
``sending``, and its event). The baseline, in the same run: a bare write
transaction (BEGIN, ``SELECT 1``, COMMIT) through the same ``Database``, the
floor any step pays. Figures are medians; the ratios say how many bare
transactions each step costs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text

from bench.scratch import DEFAULT_POSTGRES_URL, scratch_database
from tracker import clock, db, models
from tracker.clients import records
from tracker.dispatch import outbox
from tracker.domain import segments, status

LEASE = dt.timedelta(seconds=60)
GIVE_UP_AFTER = dt.timedelta(hours=23)
CLIENTS = ("app-a", "app-b", "app-c")  # a few clients: the claim's round robin has work
Result = TypeVar("Result")


async def _queue_one(database: db.Database, client: str) -> None:
    async with database.write() as session:
        session.add(
            models.Message(
                id=models.new_id(),
                client=client,
                sender_name="KIMISMS",
                contact="254712345678",
                body="Your code is 123456",
                segments=1,
                encoding=segments.Encoding.GSM7.value,
                priority=status.PRIORITY_ORDER[status.Priority.NORMAL],
                status=status.Status.QUEUED.value,
                rank=status.RANK[status.Status.QUEUED],
                next_attempt_at=clock.utcnow(),
            )
        )


async def _timed(step: Callable[[], Awaitable[Result]]) -> tuple[float, Result]:
    started = time.perf_counter()
    result = await step()
    return (time.perf_counter() - started) * 1000, result


async def _claim(database: db.Database) -> outbox.Claimed | None:
    async with database.write() as session:
        return await outbox.claim_due(
            session, now=clock.utcnow(), lease=LEASE, give_up_after=GIVE_UP_AFTER
        )


async def _confirm(database: db.Database, claimed: outbox.Claimed) -> outbox.Claimed | None:
    async with database.write() as session:
        return await outbox.confirm_send(
            session, claimed, now=clock.utcnow(), lease=LEASE, give_up_after=GIVE_UP_AFTER
        )


async def _bare(database: db.Database) -> None:
    async with database.write() as session:
        await session.execute(text("SELECT 1"))


async def measure(url: str, messages: int) -> dict[str, float]:
    """Median milliseconds of the bare transaction, the claim and the confirmation."""
    database = db.Database(url)
    bare: list[float] = []
    claim: list[float] = []
    confirm: list[float] = []
    try:
        async with database.write() as session:
            for name in CLIENTS:
                await records.ensure(session, name)
        for n in range(messages):
            await _queue_one(database, CLIENTS[n % len(CLIENTS)])
            bare.append((await _timed(lambda: _bare(database)))[0])
            took, claimed = await _timed(lambda: _claim(database))
            if claimed is None:
                raise RuntimeError("the queued message was not claimed")
            claim.append(took)
            confirm.append((await _timed(functools.partial(_confirm, database, claimed)))[0])
    finally:
        await database.dispose()
    return {
        "bare_ms": round(statistics.median(bare), 2),
        "claim_ms": round(statistics.median(claim), 2),
        "confirm_ms": round(statistics.median(confirm), 2),
    }


async def run(backends: list[str], postgres_url: str, messages: int) -> list[dict[str, Any]]:
    results = []
    for backend in backends:
        async with scratch_database(backend, postgres_url) as url:
            figures = await measure(url, messages)
        bare = figures["bare_ms"] or 0.01
        results.append(
            {
                "backend": backend,
                **figures,
                "claim_ratio": round(figures["claim_ms"] / bare, 1),
                "confirm_ratio": round(figures["confirm_ms"] / bare, 1),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 messages: a smoke run")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    messages = 20 if args.quick else args.messages
    backends = args.backend or ["sqlite", "postgresql"]
    results = asyncio.run(run(backends, args.postgres_url, messages))
    for r in results:
        print(
            f"dispatch steps ({r['backend']}, medians of {messages}): bare transaction "
            f"{r['bare_ms']} ms; claim {r['claim_ms']} ms ({r['claim_ratio']}x); "
            f"confirm {r['confirm_ms']} ms ({r['confirm_ratio']}x)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
