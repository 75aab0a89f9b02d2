"""Read latency on 1,000,000 messages (PostgreSQL): the app against its own SQL.

    .venv/bin/python -m bench.query_latency [--postgres-url URL] [--messages 1000000]
        [--requests 2000] [--time-limit 540] [--quick] [--json PATH]

- seed: a scratch database (created, migrated, dropped at the end) gets
  ``--messages`` messages over 30 days (5 clients, 200,000 numbers, the usual mix
  of statuses, ties in created_at as batches make) and their events, generated
  by the server itself (``INSERT ... SELECT generate_series``), then ANALYZE.
- API: the real app in-process (httpx.ASGITransport, lifespan running, INFO logs
  into /dev/null), a client's ``read`` key (an ``admin`` key for the admin case);
  the clock covers one request, sequentially, after a warm-up.
- baseline: every SQL statement those same requests ran (captured from the
  engine in an untimed pass), replayed with the same parameters on one asyncpg
  connection; the clock covers one request's statements.

Prints p50/p99 of each and app/baseline. Targets (p99): GET by id < 5 ms, a
filtered list page < 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tracker import auth, db, logs, migrate
from tracker.app import create_app
from tracker.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLIENT = "otp"  # half of all messages
WARMUP = 200
TARGETS_MS = {"by id": 5.0, "list": 25.0}  # p99; stats have no target (reported only)
STATS_SHARE = 20  # the stats case runs 1/20 of --requests (it aggregates a whole window)

# Every message's client has a row (messages.client is a foreign key).
SEED_CLIENTS = """
INSERT INTO clients (name, weight, created_at, updated_at)
SELECT name, 1, now(), now()
FROM unnest(ARRAY['otp', 'billing', 'marketing', 'alerts', 'support']) AS name
ON CONFLICT DO NOTHING
"""
SEED_MESSAGES = """
INSERT INTO messages (id, client, sender_name, contact, network, body, segments, encoding,
    priority, reference, status, rank, provider_message_id, attempts, next_attempt_at,
    created_at, updated_at, submitted_at, accepted_at, final_at)
SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
        || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
    (ARRAY['otp','otp','otp','otp','otp','billing','billing','marketing','alerts','support'])
        [1 + (i / 7) % 10],
    'KIMISMS', '2547' || lpad(((i::bigint * 7919) % 200000)::text, 8, '0'), 'Safaricom',
    'Your code is ' || (i % 1000000), 1 + (i % 7 = 0)::int, 'gsm7', 1,
    CASE WHEN i % 2 = 0 THEN 'ref-' || i END, s,
    (ARRAY[0,1,2,4,3,5,5,5])[array_position(ARRAY['queued','sending','pending','delivered',
        'failed','rejected','expired','cancelled'], s)],
    CASE WHEN s IN ('pending', 'delivered', 'failed') THEN 'p-' || i END,
    (s <> 'queued')::int, c, c, c,
    CASE WHEN s <> 'queued' THEN c + interval '1 second' END,
    CASE WHEN s IN ('pending', 'delivered', 'failed') THEN c + interval '2 seconds' END,
    CASE WHEN s NOT IN ('queued', 'sending', 'pending') THEN c + (5 + i % 55) * interval '1 s' END
FROM (SELECT i, md5(i::text) AS h,
        now() - interval '30 days' + (i / 10) * (interval '30 days' / ($1::int / 10 + 1)) AS c,
        CASE WHEN i % 100 < 85 THEN 'delivered' WHEN i % 100 < 90 THEN 'failed'
             WHEN i % 100 < 93 THEN 'pending' WHEN i % 100 < 95 THEN 'queued'
             WHEN i % 100 = 95 THEN 'sending' WHEN i % 100 = 96 THEN 'rejected'
             WHEN i % 100 = 97 THEN 'expired' WHEN i % 100 = 98 THEN 'cancelled'
             ELSE 'delivered' END AS s
      FROM generate_series(1, $1::int) AS i) AS g
"""
SEED_EVENTS = """
INSERT INTO message_events (message_id, from_status, to_status, source, detail, payload,
    created_at)
SELECT m.id, e.from_status, e.to_status, e.source, e.detail, e.payload::json, e.at
FROM messages AS m CROSS JOIN LATERAL (VALUES
    (NULL, 'queued', 'api', NULL, NULL, m.created_at),
    ('sending', 'pending', 'dispatcher', 'attempt 1: accepted by KIMISMS', NULL, m.accepted_at),
    ('pending', m.status, 'callback', 'provider reported ' || initcap(m.status),
     '{"status": "' || initcap(m.status) || '"}', m.final_at)
) AS e (from_status, to_status, source, detail, payload, at)
WHERE e.at IS NOT NULL AND (e.source <> 'callback' OR m.status IN ('delivered', 'failed'))
"""
# Secondary indexes and the events' foreign key are dropped while seeding and
# built afterwards: one sort per index and one join beat a check per row.
SECONDARY_INDEXES = """
SELECT indexname AS name, indexdef AS definition FROM pg_indexes
WHERE tablename IN ('messages', 'message_events') AND indexname LIKE 'ix_%'
"""
FOREIGN_KEYS = """
SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
WHERE conrelid = 'message_events'::regclass AND contype = 'f'
"""


@dataclass
class Case:
    name: str
    kind: str  # "by id", "list" or "stats": which target applies
    headers: dict[str, str]
    paths: list[str]
    app_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    statements: list[list[tuple[str, tuple[Any, ...]]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scratch(server_url: str) -> AsyncIterator[str]:
    """A migrated, empty database; its plain URL. Dropped on the way out, whatever happens."""
    name = f"tracker_bench_q_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{server_url.rsplit('/', 1)[0]}/{name}"
        migrate.upgrade(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed(url: str, count: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        indexes = await connection.fetch(SECONDARY_INDEXES)
        keys = await connection.fetch(FOREIGN_KEYS)
        for key in keys:
            await connection.execute(f'ALTER TABLE message_events DROP CONSTRAINT "{key["name"]}"')
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["name"]}"')
        await connection.execute("SET synchronous_commit = off")
        await connection.execute("SET maintenance_work_mem = '256MB'")
        await connection.execute(SEED_CLIENTS)
        await _timed("seed messages", connection.execute(SEED_MESSAGES, count))
        await _timed("seed events", connection.execute(SEED_EVENTS))
        for index in indexes:
            await _timed(index["name"], connection.execute(index["definition"]))
        for key in keys:
            add = f'ALTER TABLE message_events ADD CONSTRAINT "{key["name"]}" {key["definition"]}'
            await _timed(key["name"], connection.execute(add))
        await _timed("vacuum analyze", connection.execute("VACUUM ANALYZE"))
        rows = await connection.fetchval("SELECT count(*) FROM message_events")
        print(f"  {count:,} messages, {rows:,} events", flush=True)
    finally:
        await connection.close()


async def _timed(what: str, work: Awaitable[Any]) -> None:
    started = time.perf_counter()
    await work
    print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)


async def samples(url: str, requests: int) -> dict[str, list[Any]]:
    """Random ids, numbers, references and times of the client's messages."""
    connection = await asyncpg.connect(url)
    try:
        found = await connection.fetch(
            "SELECT id, contact, reference, created_at FROM messages TABLESAMPLE SYSTEM (2)"
            " WHERE client = $1 LIMIT $2",
            CLIENT,
            requests * 3,
        )
    finally:
        await connection.close()
    rows = list(found)
    random.Random(7).shuffle(rows)
    return {
        "ids": [r["id"] for r in rows],
        "contacts": [r["contact"] for r in rows],
        "references": [r["reference"] for r in rows if r["reference"]],
        "times": [r["created_at"].isoformat().replace("+", "%2B") for r in rows],
    }


def cases(found: dict[str, list[Any]], keys: dict[str, str], count: int) -> list[Case]:
    client = {"Authorization": f"Bearer {keys['client']}"}
    admin = {"Authorization": f"Bearer {keys['admin']}"}

    def first(values: list[Any]) -> list[Any]:
        return (values * (count // max(1, len(values)) + 1))[:count]

    return [
        Case("GET /v1/messages/{id}", "by id", client,
             [f"/v1/messages/{i}" for i in first(found["ids"])]),
        Case("list status=delivered, limit=50", "list", client,
             ["/v1/messages?status=delivered&limit=50"] * count),
        Case("list to=N&status=delivered", "list", client,
             [f"/v1/messages?to={c}&status=delivered" for c in first(found["contacts"])]),
        Case("list reference=R", "list", client,
             [f"/v1/messages?reference={r}" for r in first(found["references"])]),
        Case("list status=delivered&created_before=T (deep page)", "list", client,
             [f"/v1/messages?status=delivered&created_before={t}&limit=50"
              for t in first(found["times"])]),
        Case("admin: list client=billing&status=failed", "list", admin,
             ["/v1/messages?client=billing&status=failed&limit=50"] * count),
        Case("admin: GET /v1/stats?window=24h (all clients)", "stats", admin,
             ["/v1/stats?window=24h"] * max(2, count // STATS_SHARE)),
    ]  # fmt: skip


async def measure_app(settings: Settings, all_cases: list[Case]) -> None:
    """Time each request through the app; then, untimed, capture the SQL each one ran."""
    app = create_app(settings)
    capture: list[tuple[str, tuple[Any, ...]]] | None = None

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if capture is not None:
            capture.append((statement, tuple(parameters or ())))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as http,
        ):
            for case in all_cases:
                await _run(http, case, case.paths[: min(WARMUP, len(case.paths))], None)
                await _run(http, case, case.paths, case.app_ms)
                for path in case.paths:
                    capture = []
                    await _run(http, case, [path], None)
                    case.statements.append(capture)
                capture = None
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def _run(
    http: httpx.AsyncClient, case: Case, paths: list[str], out: list[float] | None
) -> None:
    for path in paths:
        started = time.perf_counter()
        response = await http.get(path, headers=case.headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
        if out is not None:
            out.append(elapsed)


async def measure_sql(url: str, all_cases: list[Case]) -> None:
    """Replay each request's statements with the same parameters, straight through asyncpg."""
    connection = await asyncpg.connect(url)
    try:
        for case in all_cases:
            for statements in case.statements[:WARMUP]:
                await _replay(connection, statements)
            for statements in case.statements:
                started = time.perf_counter()
                await _replay(connection, statements)
                case.sql_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()


async def _replay(
    connection: asyncpg.Connection, statements: list[tuple[str, tuple[Any, ...]]]
) -> None:
    for statement, parameters in statements:
        await connection.fetch(statement, *parameters)


def quantiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def figures(all_cases: list[Case], rows: int) -> list[dict[str, Any]]:
    """The table as data, for --json (and bench/run_all.py)."""
    result = []
    for case in all_cases:
        (app50, app99), (sql50, sql99) = quantiles(case.app_ms), quantiles(case.sql_ms)
        target = TARGETS_MS.get(case.kind)
        result.append(
            {
                "name": case.name,
                "kind": case.kind,
                "rows": rows,
                "requests": len(case.app_ms),
                "p50_ms": round(app50, 2),
                "p99_ms": round(app99, 2),
                "baseline_p50_ms": round(sql50, 2),
                "baseline_p99_ms": round(sql99, 2),
                "target": "-" if target is None else f"< {target:g} ms",
                "met": target is None or app99 < target,
            }
        )
    return result


def report(all_cases: list[Case]) -> bool:
    header = ("case", "app p50", "app p99", "sql p50", "sql p99", "app/sql", "p99 target")
    print("\n{:<52} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}".format(*header))
    met = True
    for case in all_cases:
        (app50, app99), (sql50, sql99) = quantiles(case.app_ms), quantiles(case.sql_ms)
        target = TARGETS_MS.get(case.kind)
        met &= target is None or app99 < target
        verdict = "-" if target is None else f"< {target:g} {'ok' if app99 < target else 'MISSED'}"
        numbers = f"{app50:8.2f} {app99:8.2f} {sql50:8.2f} {sql99:8.2f} {app50 / sql50:8.1f}"
        print(f"{case.name:<52} {numbers} {verdict:>12}")
    print("(ms; sql = the same statements, same parameters, one asyncpg connection)")
    return met


async def make_keys(url: str) -> dict[str, str]:
    database = db.Database(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        return {
            "client": await auth.create_key(database, CLIENT, auth.parse_scopes("read")),
            "admin": await auth.create_key(database, "ops", auth.parse_scopes("admin")),
        }
    finally:
        await database.dispose()


async def run(args: argparse.Namespace) -> bool:
    async with scratch(args.postgres_url) as url:
        print(f"seeding {args.messages:,} messages", flush=True)
        await seed(url, args.messages)
        all_cases = cases(await samples(url, args.requests), await make_keys(url), args.requests)
        settings = Settings.load(database_url=url, log_format="json", log_level="INFO")
        logs.configure("json", "INFO")
        print(f"timing {args.requests:,} requests per case (+{WARMUP} warm-up)", flush=True)
        devnull = Path(os.devnull).open("w")  # noqa: ASYNC230, SIM115 - /dev/null never blocks
        with devnull, contextlib.redirect_stdout(devnull):
            await measure_app(settings, all_cases)
        await measure_sql(url, all_cases)
        if args.json:
            args.json.write_text(json.dumps(figures(all_cases, args.messages), indent=2))
        return report(all_cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--time-limit", type=float, default=540, help="seconds, seeding included")
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 200 requests")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.requests = 20_000, 200
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the bench's client, not the app
    try:
        met = asyncio.run(asyncio.wait_for(run(args), args.time_limit))
    except TimeoutError:
        print(f"stopped after --time-limit {args.time_limit:.0f} s", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
