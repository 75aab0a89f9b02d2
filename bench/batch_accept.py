"""Accept one batch of messages through the API, and insert the same rows raw.

    .venv/bin/python -m bench.batch_accept [--postgres-url URL] [--size 10000]
        [--repeat 3] [--idempotency-key] [--no-postgres]

For SQLite and for PostgreSQL, every run gets a fresh migrated database that
this script creates and drops (SQLite: a copy of a migrated file; PostgreSQL:
``CREATE DATABASE ... TEMPLATE`` of a migrated scratch database, made through
the server named by ``--postgres-url``).

- API: the real app in-process (httpx.ASGITransport, lifespan running, logs at
  INFO into /dev/null), an API key made beforehand and one warm-up request;
  the clock covers one ``POST /v1/messages/batch`` of ``--size`` messages
  (distinct numbers in all four forms), from sending the bytes to the 202.
- raw: the same rows (``messages`` and their ``queued`` events), as tuples
  already in the driver's types, inserted with the driver's ``executemany``
  (aiosqlite with the app's pragmas; asyncpg) in one transaction; the clock
  covers the transaction only.

Prints the median of ``--repeat`` runs and raw/API (the target: the API under
2 s and at least 0.5 of raw speed, on both databases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import aiosqlite
import asyncpg
import httpx

from tracker import auth, clock, db, logs, migrate
from tracker.app import create_app, freeze_startup_objects
from tracker.sending import intake, schemas
from tracker.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
API_TARGET_SECONDS = 2.0
RATIO_TARGET = 0.5
CLIENT = "bench"
# The batch's client (messages.client is a foreign key), made before the clock starts,
# as the API run's key made it.
CLIENT_SQL = "INSERT INTO clients (name, weight, created_at, updated_at) VALUES ($1, 1, $2, $2)"
EVENT_COLUMNS = ("message_id", "from_status", "to_status", "source", "detail", "payload")
Fresh = Callable[[], contextlib.AbstractAsyncContextManager[str]]
DATA_DIR = Path(tempfile.gettempdir()) / "tracker-bench"  # the app's spool dir (stays empty)


def batch_body(size: int) -> bytes:
    """``size`` messages to distinct numbers, written every common way."""
    forms = ("07{:08d}", "+2547{:08d}", "2541{:08d}", "7{:08d}")
    items = []
    for n in range(size):
        item: dict[str, Any] = {
            "to": forms[n % len(forms)].format(10_000_000 + n),
            "message": f"Hello customer {n}, your order #{100_000 + n} has shipped. Reply STOP.",
        }
        if n % 3 == 0:
            item["reference"] = f"order-{100_000 + n}"
        if n % 10 == 0:
            item["priority"] = "high"
        items.append(item)
    return json.dumps({"messages": items}).encode()


# --- databases ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_databases() -> AsyncIterator[Fresh]:
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as workdir:
        template = Path(workdir) / "template.db"
        await asyncio.to_thread(migrate.upgrade, f"sqlite+aiosqlite:///{template}")
        counter = iter(range(1_000_000))

        @contextlib.asynccontextmanager
        async def fresh() -> AsyncIterator[str]:
            path = Path(workdir) / f"run-{next(counter)}.db"
            shutil.copyfile(template, path)
            try:
                yield f"sqlite+aiosqlite:///{path}"
            finally:
                _remove_sqlite_files(path)

        yield fresh


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def postgres_databases(server_url: str) -> AsyncIterator[Fresh]:
    base = server_url.rsplit("/", 1)[0]
    prefix = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    template = f"{prefix}_tpl"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server_url, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    await admin(f'CREATE DATABASE "{template}"')
    counter = iter(range(1_000_000))

    @contextlib.asynccontextmanager
    async def fresh() -> AsyncIterator[str]:
        name = f"{prefix}_{next(counter)}"
        await admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
        finally:
            await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        await asyncio.to_thread(
            migrate.upgrade, f"postgresql+asyncpg://{base.split('://', 1)[1]}/{template}"
        )
        yield fresh
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


# --- the two contenders ------------------------------------------------------


async def api_run(url: str, body: bytes, size: int, *, with_key: bool) -> float:
    """Seconds for one batch POST through the app; checks what was stored."""
    settings = Settings.load(database_url=url, data_dir=DATA_DIR, log_format="json")
    database = db.Database(settings.async_database_url)
    try:
        key = await auth.create_key(database, CLIENT, frozenset({auth.Scope.SEND}))
    finally:
        await database.dispose()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    app = create_app(settings)
    freeze_startup_objects()  # as `tracker serve` does
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            warm_up = await http.post(
                "/v1/messages", json={"to": "0799000000", "message": "hi"}, headers=headers
            )
            expect(warm_up.status_code == 202, f"warm-up: {warm_up.status_code} {warm_up.text}")
            if with_key:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            started = time.perf_counter()
            response = await http.post("/v1/messages/batch", content=body, headers=headers)
            elapsed = time.perf_counter() - started
    expect(response.status_code == 202, f"batch: {response.status_code} {response.text[:500]}")
    expect(response.json()["count"] == size, "batch: wrong count")
    await check_counts(url, size + 1)
    return elapsed


async def stored_rows(body: bytes, size: int) -> list[dict[str, Any]]:
    """The rows the API stores for this body (new ids), built the way the API builds them."""
    settings = Settings.load(data_dir=DATA_DIR)
    batch = schemas.parse_batch(json.loads(body), size)
    return await intake.Intake(settings, CLIENT, clock.utcnow()).rows(batch)


def _sqlite_value(value: Any) -> Any:
    """What SQLAlchemy stores on SQLite: uuid hex, naive UTC text, JSON text."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _postgres_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value


def raw_tuples(
    rows: list[dict[str, Any]], convert: Callable[[Any], Any]
) -> tuple[list[str], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    columns = list(rows[0])
    messages = [tuple(convert(row[name]) for name in columns) for row in rows]
    events = [
        tuple(convert(value) for value in (row["id"], None, "queued", "api", None, None))
        for row in rows
    ]
    return columns, messages, events


async def raw_sqlite(url: str, rows: list[dict[str, Any]]) -> float:
    columns, messages, events = raw_tuples(rows, _sqlite_value)
    path = url.split("///", 1)[1]
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            await connection.execute(f"PRAGMA {pragma}")
        message_sql = _insert_sql("messages", columns, lambda _n: "?")
        event_sql = _insert_sql("message_events", [*EVENT_COLUMNS, "created_at"], lambda _n: "?")
        created = _sqlite_value(rows[0]["created_at"])
        # ?1, ?2: numbered parameters, as asyncpg's $1, $2
        await connection.execute(CLIENT_SQL.replace("$", "?"), (CLIENT, created))
        started = time.perf_counter()
        await connection.execute("BEGIN IMMEDIATE")
        await connection.executemany(message_sql, messages)
        await connection.executemany(event_sql, [(*event, created) for event in events])
        await connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    await check_counts(url, len(rows))
    return elapsed


async def raw_postgres(url: str, rows: list[dict[str, Any]]) -> float:
    columns, messages, events = raw_tuples(rows, _postgres_value)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        message_sql = _insert_sql("messages", columns, lambda n: f"${n}")
        event_sql = _insert_sql("message_events", [*EVENT_COLUMNS, "created_at"], lambda n: f"${n}")
        created = rows[0]["created_at"]
        await connection.execute(CLIENT_SQL, CLIENT, created)
        started = time.perf_counter()
        async with connection.transaction():
            await connection.executemany(message_sql, messages)
            await connection.executemany(event_sql, [(*event, created) for event in events])
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    await check_counts(url, len(rows))
    return elapsed


def _insert_sql(table: str, columns: list[str], placeholder: Callable[[int], str]) -> str:
    marks = ", ".join(placeholder(n) for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - our names


async def check_counts(url: str, expected: int) -> None:
    from sqlalchemy import text

    database = db.Database(url)
    try:
        async with database.read() as session:
            for table in ("messages", "message_events"):
                found = await session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                expect(found == expected, f"{table}: {found} rows, expected {expected}")
    finally:
        await database.dispose()


# --- the report --------------------------------------------------------------


async def measure(
    name: str,
    databases: Callable[[], contextlib.AbstractAsyncContextManager[Fresh]],
    raw: Callable[[str, list[dict[str, Any]]], Awaitable[float]],
    args: argparse.Namespace,
    report: TextIO,
) -> bool:
    body = batch_body(args.size)
    api_times, raw_times = [], []
    async with databases() as fresh:
        for _ in range(args.repeat):
            async with fresh() as url:
                api_times.append(await api_run(url, body, args.size, with_key=args.idempotency_key))
            async with fresh() as url:
                raw_times.append(await raw(url, await stored_rows(body, args.size)))
    api, raw_median = statistics.median(api_times), statistics.median(raw_times)
    ratio = raw_median / api
    ok = api < API_TARGET_SECONDS and ratio >= RATIO_TARGET
    figures.append(
        {
            "backend": name.lower(),
            "size": args.size,
            "repeat": args.repeat,
            "api_seconds": round(api, 4),
            "raw_seconds": round(raw_median, 4),
            "ratio": round(ratio, 4),
            "met": ok,
        }
    )
    print(
        f"{name:<10} {args.size} messages: API {api:.3f} s, raw executemany {raw_median:.3f} s, "
        f"raw/API {ratio:.2f} {'OK' if ok else 'MISSED'} "
        f"(medians of {args.repeat}; API runs {_list(api_times)}; raw runs {_list(raw_times)})",
        file=report,
        flush=True,
    )
    return ok


def expect(condition: bool, failure: str) -> None:
    if not condition:
        raise RuntimeError(failure)


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


figures: list[dict[str, Any]] = []  # one entry per database, for --json


async def main(args: argparse.Namespace, report: TextIO) -> int:
    logs.configure("json", "INFO")
    results = [await measure("SQLite", sqlite_databases, raw_sqlite, args, report)]
    if not args.no_postgres:
        postgres = functools.partial(postgres_databases, args.postgres_url)
        results.append(await measure("PostgreSQL", postgres, raw_postgres, args, report))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(results) else 1


def run(args: argparse.Namespace) -> int:
    """The app logs at INFO, as in production, into /dev/null; the report keeps stdout."""
    report = sys.stdout
    with Path(os.devnull).open("w") as devnull, contextlib.redirect_stdout(devnull):
        return asyncio.run(main(args, report))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="any database on the server"
    )
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idempotency-key", action="store_true", help="send an Idempotency-Key")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(run(parse_args()))
