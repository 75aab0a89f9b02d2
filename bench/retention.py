"""The retention job under callback load (#17).

    .venv/bin/python -m bench.retention [--quick] [--backend sqlite|postgresql]
        [--postgres-url URL] [--messages N] [--rate 400] [--time-limit S] [--worker]
        [--json PATH]

For each database: seed old, final messages (1,000,000 on SQLite, 5,000,000 on
PostgreSQL; each with an event and a receipt naming its number) of a client whose
overrides keep everything, and ``pending`` messages as callback targets. Run
``tracker serve --sandbox`` (its leader runs retention every second, as in
production but sooner) and send delivery reports at concurrency 32 (open loop at
``--rate``): first a baseline with nothing due, then switch the old client's
overrides to 1d (bodies and numbers) and go on while the leader redacts and
pseudonymises them. Prints rows per second (messages redacted + messages
pseudonymised, over the run's own duration from its log line, or over what ran
by ``--time-limit``), the callback ack p50/p99 during the run against the
baseline, and the callbacks spooled. Targets: p99 < 50 ms and 0 spooled.

``--worker``: ``serve --no-dispatcher`` answers the callbacks and a ``tracker worker``
beside it runs retention (as its leader), so the two share no interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import loadgen
from bench import retention_seed as seed
from bench.callback_ingest import SECRET, requests_for
from bench.expiry_sweep import latency, serve, spooled_count
from bench.scratch import DEFAULT_POSTGRES_URL, plain_url, scratch_database, seed_pending

CONCURRENCY = 32
QUIET_SECONDS = 5.0  # the baseline: callbacks, nothing due
BUSY_SECONDS = 60.0  # callbacks at most this long once retention starts (it may go on)
SLICE_SECONDS = 2.0  # the callbacks during the run, sent in slices: none after it ends
P99_TARGET_MS = 50.0
RUN_LINE = "retention_run"
COUNTS = {"sqlite": 1_000_000, "postgresql": 5_000_000}
QUICK_COUNT = 20_000
# Left to do, per rule, through the rules' own partial indexes (cheap as they shrink).
REMAINING = {
    "sqlite": (
        "SELECT (SELECT count(*) FROM messages INDEXED BY ix_messages_redaction_due"
        " WHERE final_at IS NOT NULL AND body IS NOT NULL AND client = 'archive'),"
        " (SELECT count(*) FROM messages INDEXED BY ix_messages_pseudonymisation_due"
        " WHERE final_at IS NOT NULL AND pseudonymised_at IS NULL AND client = 'archive')"
    ),
    "postgresql": (
        "SELECT (SELECT count(*) FROM messages WHERE final_at IS NOT NULL AND body IS NOT NULL"
        " AND client = 'archive'), (SELECT count(*) FROM messages WHERE final_at IS NOT"
        " NULL AND pseudonymised_at IS NULL AND client = 'archive')"
    ),
}
SWITCH = "UPDATE clients SET retention_body = {0}, retention_contact = {0} WHERE name = '{1}'"


async def _sql(url: str, backend: str, statement: str) -> Any:
    """One statement outside the server (its first row), on the bench's own connection."""
    if backend == "sqlite":
        path = url.split("///", 1)[1]

        def run() -> Any:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                return connection.execute(statement).fetchone()
            finally:
                connection.close()

        return await asyncio.to_thread(run)
    connection = await asyncpg.connect(plain_url(url))
    try:
        return await connection.fetchrow(statement)
    finally:
        await connection.close()


async def watch(
    url: str, backend: str, count: int, give_up_at: float, every: float
) -> tuple[float, int, bool]:
    """Poll what is left until nothing or ``give_up_at``: (when, rows done, finished)."""
    done = 0
    while True:
        left = await _sql(url, backend, REMAINING[backend])
        done = 2 * count - int(left[0]) - int(left[1])
        if done >= 2 * count:
            return time.monotonic(), done, True
        if time.monotonic() >= give_up_at:
            return time.monotonic(), done, False
        await asyncio.sleep(every)


async def callbacks_while(
    running: asyncio.Task[Any], base: str, ids: list[Any], first: int, rate: float
) -> loadgen.Result:
    """Callbacks in slices of ``SLICE_SECONDS`` while ``running`` runs (or ids last), so
    the figures are of the run, not of the quiet after it."""
    total = loadgen.Result()
    size = int(rate * SLICE_SECONDS)
    for offset in range(first, len(ids) - size + 1, size):
        if running.done():
            break
        part = await loadgen.run(base, requests_for(ids, offset, size), CONCURRENCY, rate=rate)
        total.latencies += part.latencies
        for code, n in part.statuses.items():
            total.statuses[code] = total.statuses.get(code, 0) + n
        total.elapsed += part.elapsed
    return total


def run_lines(log_path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict) and line.get("event") == RUN_LINE:
                lines.append(line)
    return lines


async def _seed(url: str, backend: str, count: int) -> float:
    if backend == "sqlite":
        return await asyncio.to_thread(seed.seed_sqlite, Path(url.split("///", 1)[1]), count)
    return await seed.seed_postgres(plain_url(url), count)


async def measure(  # noqa: PLR0917 - the command line's options
    backend: str, postgres_url: str, count: int, rate: float, time_limit: float, worker: bool
) -> dict[str, Any]:
    quiet_n, busy_n = int(rate * QUIET_SECONDS), int(rate * min(BUSY_SECONDS, time_limit))
    async with scratch_database(backend, postgres_url) as url:
        seeded = await _seed(url, backend, count)
        await _sql(url, backend, SWITCH.format("'keep'", seed.CLIENT))
        ids = await seed_pending(url, quiet_n + busy_n)
        workdir = Path(tempfile.mkdtemp(prefix="tracker-retention-"))
        env = {
            "TRACKER_DATABASE_URL": plain_url(url),
            "TRACKER_CALLBACK_SECRETS": SECRET,
            "TRACKER_DATA_DIR": str(workdir),
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_RETENTION_INTERVAL": "1s",
        }
        log_path = workdir / "serve.log"
        with serve(env, log_path, worker=worker) as base:
            quiet = await loadgen.run(base, requests_for(ids, 0, quiet_n), CONCURRENCY, rate=rate)
            await _sql(url, backend, SWITCH.format("'1d'", seed.CLIENT))
            started = time.monotonic()
            every = 5.0 if backend == "sqlite" else 10.0
            watching = asyncio.create_task(watch(url, backend, count, started + time_limit, every))
            busy = await callbacks_while(watching, base, ids, quiet_n, rate)
            ended, done, finished = await watching
            spooled = spooled_count(base)
        lines = run_lines(log_path)
    figures = _figures(backend, count, seeded, quiet, busy, spooled, started, ended, done,
                       finished, lines)  # fmt: skip
    return {**figures, "retention_in": "tracker worker" if worker else "tracker serve"}


def _figures(  # noqa: PLR0917 - one run's measurements, put together
    backend: str,
    count: int,
    seeded: float,
    quiet: loadgen.Result,
    busy: loadgen.Result,
    spooled: int,
    started: float,
    ended: float,
    done: int,
    finished: bool,
    lines: list[dict[str, Any]],
) -> dict[str, Any]:
    line = max(lines, key=lambda item: item.get("redacted_messages", 0), default=None)
    if finished and line is not None:  # the run's own clock: from its first batch to its end
        rows = line["redacted_messages"] + line["pseudonymised_messages"]
        seconds = line["duration_ms"] / 1000
    else:  # cut short (or no log line): polled, from the switch to the last poll
        rows, seconds = done, ended - started
    during = latency(busy)
    return {
        "backend": backend,
        "messages": count,
        "seed_seconds": round(seeded, 1),
        "finished": finished,
        "rows_done": rows,
        "run_seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds) if seconds else None,
        "transactions": line.get("transactions") if line else None,
        "pseudonymised": {k: v for k, v in (line or {}).items() if k.startswith("pseudonymised")},
        "callbacks": quiet.count + busy.count,
        "callback_rate": round(busy.rate, 1),
        "concurrency": CONCURRENCY,
        "quiet": latency(quiet),
        "ack_p50_ms": during["p50_ms"],
        "ack_p99_ms": during["p99_ms"],
        "ack_max_ms": during["max_ms"],
        "statuses": busy.statuses,
        "spooled": spooled,
        "met": during["p99_ms"] < P99_TARGET_MS and spooled == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--messages", type=int, default=None, help="old messages to seed")
    parser.add_argument("--rate", type=float, default=400.0, help="callbacks per second")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds the run may take (default 900)"
    )
    parser.add_argument(
        "--worker", action="store_true", help="retention in a `tracker worker` beside `serve`"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    limit = args.time_limit or (60.0 if args.quick else 900.0)
    results = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        count = args.messages or (QUICK_COUNT if args.quick else COUNTS[backend])
        run = measure(backend, args.postgres_url, count, args.rate, limit, args.worker)
        results.append(asyncio.run(run))
    for r in results:
        state = "all" if r["finished"] else f"cut at --time-limit, {r['rows_done']:,} rows"
        print(
            f"{r['backend']:>10} ({r['retention_in']}): {r['messages']:,} messages "
            f"(seeded in {r['seed_seconds']} s): "
            f"{r['rows_per_second']} rows/s ({state}, {r['run_seconds']} s, "
            f"{r['transactions'] or '?'} transactions) | {r['callbacks']} callbacks "
            f"@{r['concurrency']}: ack p50 {r['ack_p50_ms']} ms p99 {r['ack_p99_ms']} ms "
            f"max {r['ack_max_ms']} ms (no retention: p50 {r['quiet']['p50_ms']} ms p99 "
            f"{r['quiet']['p99_ms']} ms), spooled {r['spooled']}, statuses {r['statuses']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0 if all(r["met"] for r in results) else 1)


if __name__ == "__main__":
    main()
