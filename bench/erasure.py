"""Erasure on request (#17): how long it takes, and how long each batch holds the writer.

    .venv/bin/python -m bench.erasure [--backend sqlite|postgresql|both]
        [--messages 200000] [--erased 5000] [--postgres-url URL]

A scratch database (an SQLite file, or a PostgreSQL database created and dropped)
gets ``--messages`` delivered messages over 20,000 numbers, and ``--erased`` more to
the one number to erase, each of those with an event and a callback receipt that
name it. Then ``privacy.erasure.erase`` runs once, as ``POST /v1/erasures`` does.
Prints the messages erased per second and the longest and median write
transaction (from BEGIN to COMMIT, through the engine's events): the batches of
1,000 are what another writer (the callback ingester) may wait behind on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text

from tracker import db, migrate
from tracker.privacy import erasure

NUMBER = "254712345678"
KEY = b"bench-pseudonym-key-of-32-characters"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

CONTACT_JSON = f'{{"contact": "{NUMBER}"}}'
RECEIPT_JSON = f'{{"contact": "{NUMBER}", "status": "Delivered"}}'


# The SQL below is built from this module's own constants and integers, never input.
def _messages(source: str, contact: str, new_id: str) -> str:
    return (
        "INSERT INTO messages (id, client, sender_name, contact, body, segments, encoding,"  # noqa: S608
        " priority, status, rank, attempts, created_at, updated_at, final_at)"
        f" SELECT {new_id}, 'app', 'KIMISMS', {contact}, 'Your code is 1234', 1, 'gsm7', 1,"
        f" 'delivered', 5, 1, :now, :now, :now FROM ({source}) AS s"
    )


def _seed_sql(sqlite: bool, messages: int, erased: int) -> list[str]:
    """Other numbers' messages, then the number's own with an event and a receipt each."""
    if sqlite:
        counted = "WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {})"
        series = [counted.format(n) + " SELECT g FROM c" for n in (messages, erased)]  # noqa: S608
        new_id = random_key = "lower(hex(randomblob(16)))"
    else:
        series = [f"SELECT g FROM generate_series(1, {n}) g" for n in (messages, erased)]  # noqa: S608
        new_id, random_key = "gen_random_uuid()", "md5(random()::text)"
    others = "'2547' || substr('0000000' || (g % 20000), -8, 8)"
    return [
        "INSERT INTO clients (name, weight, created_at, updated_at) VALUES ('app', 1, :now, :now)",
        _messages(series[0], others, new_id),
        _messages(series[1], f"'{NUMBER}'", new_id),
        (
            "INSERT INTO message_events (message_id, source, payload, created_at) SELECT id,"  # noqa: S608
            f" 'callback', '{CONTACT_JSON}', :now FROM messages WHERE contact = '{NUMBER}'"
        ),
        (
            "INSERT INTO callback_receipts (message_id, dedupe_key, body, outcome, received_at,"  # noqa: S608
            f" applied_at) SELECT id, {random_key}, '{RECEIPT_JSON}', 'applied', :now, :now"
            f" FROM messages WHERE contact = '{NUMBER}'"
        ),
    ]


async def _seed(database: db.Database, messages: int, erased: int) -> None:
    now = dt.datetime.now(dt.UTC)
    stamp: Any = db.sqlite_time(now) if database.is_sqlite else now
    async with database.write() as session:
        for statement in _seed_sql(database.is_sqlite, messages, erased):
            await session.execute(text(statement), {"now": stamp})
    if not database.is_sqlite:
        async with database.write() as session:
            await session.execute(text("ANALYZE"))


def _time_transactions(database: db.Database) -> list[float]:
    """Seconds of every transaction from BEGIN to COMMIT, as they happen."""
    spans: list[float] = []
    began: dict[int, float] = {}
    engine = database.engine.sync_engine
    event.listen(engine, "begin", lambda c: began.__setitem__(id(c), time.perf_counter()))
    event.listen(
        engine, "commit", lambda c: spans.append(time.perf_counter() - began.pop(id(c), 0.0))
    )
    return spans


async def run(url: str, messages: int, erased: int) -> dict[str, float]:
    database = db.Database(url)
    try:
        await _seed(database, messages, erased)
        spans = _time_transactions(database)
        started = time.perf_counter()
        done = await erasure.erase(database, NUMBER, KEY, erasure.CLI_ACTOR)
        took = time.perf_counter() - started
    finally:
        await database.dispose()
    if done.changed.messages != erased:
        raise RuntimeError(f"erased {done.changed.messages} of {erased} messages")
    return {
        "seconds": took,
        "messages_per_second": erased / took,
        "transactions": len(spans),
        "longest_ms": max(spans) * 1000,
        "median_ms": statistics.median(spans) * 1000,
        "receipts": done.changed.receipts,
        "events": done.changed.events,
    }


async def _postgres(server_url: str, messages: int, erased: int) -> dict[str, float]:
    name = f"bench_erasure_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        target = f"{url}/{name}"
        await asyncio.to_thread(migrate.upgrade, target)
        return await run(target, messages, erased)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--erased", type=int, default=5_000)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    results = {}
    if args.backend in {"sqlite", "both"}:
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
            migrate.upgrade(url)
            results["sqlite"] = asyncio.run(run(url, args.messages, args.erased))
    if args.backend in {"postgresql", "both"}:
        results["postgresql"] = asyncio.run(
            _postgres(args.postgres_url, args.messages, args.erased)
        )
    for backend, found in results.items():
        print(
            f"{backend}: {args.erased:,} messages erased (beside {args.messages:,}) in"
            f" {found['seconds']:.2f} s = {found['messages_per_second']:,.0f}/s;"
            f" {found['transactions']:.0f} write transactions, longest"
            f" {found['longest_ms']:.1f} ms, median {found['median_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
