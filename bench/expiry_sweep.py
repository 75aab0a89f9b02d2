"""Expiry sweep under callback load (issue 12, item 1).

    .venv/bin/python -m bench.expiry_sweep [--quick] [--backend sqlite|postgresql]
        [--postgres-url URL] [--expiring 10000] [--rate 400] [--json PATH]

For each database: seed ``pending`` messages (callback targets) and 10,000 ``queued``
messages (not due), run ``tracker serve --sandbox`` (dispatcher included, so its sweep
runs as in production) and send delivery reports at concurrency 32 (open loop at
``--rate``): first 3 s with no sweep (the baseline, same server, same load), then make
the 10,000 expire and go on for 12 s while the sweep runs. Prints the callback ack
p50/p99 of both phases, the callbacks spooled (the
server's ``tracker_callbacks_total{outcome="spooled"}``), how long the sweep took (validity
end to the last message seen expired, including up to one housekeeping interval), and the
longest single sweep transaction (from the sweep's log line; estimated from the commit
time when the server does not log it). Targets: p99 < 50 ms and 0 spooled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, update

from bench import loadgen
from bench.callback_ingest import SECRET, free_port, requests_for, wait_until_up
from bench.scratch import DEFAULT_POSTGRES_URL, plain_url, scratch_database, seed_pending
from tracker import clock, db, models
from tracker.clients import records
from tracker.domain import status

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 32
QUIET_SECONDS = 3.0  # the baseline phase: callbacks, no sweep
EXPIRY_DELAY_SECONDS = 0.5  # the sweep phase's load starts this long before the validity ends
SWEEP_PHASE_SECONDS = 12.0  # callbacks go on this long from then (the sweep runs inside)
P99_TARGET_MS = 50.0
SWEEP_LINE = "expired_overdue"  # the sweep's log event (absent before item 1)


@contextlib.contextmanager
def serve(env: dict[str, str], log_path: Path, *, worker: bool = False) -> Iterator[str]:
    """``tracker serve --sandbox`` on loopback, its log in ``log_path``; stopped on exit.

    ``worker``: ``serve --no-dispatcher`` and a ``tracker worker`` beside it (the
    dispatcher's leader, and so its housekeeping, in a process of its own), logging to
    the same file."""
    port, sandbox_port = free_port(), free_port()
    command = [sys.executable, "-m", "tracker", "serve", "--sandbox", "--port", str(port)]
    command += ["--sandbox-port", str(sandbox_port)] + (["--no-dispatcher"] if worker else [])
    base = f"http://127.0.0.1:{port}"
    # Both processes name the same credentials: serve's sandbox accepts them, the worker sends them.
    provider = {
        "TRACKER_KIMISMS_CLIENT_ID": "bench-client",
        "TRACKER_KIMISMS_CLIENT_SECRET": "bench-secret",
    }
    with log_path.open("ab") as log, contextlib.ExitStack() as processes:
        processes.enter_context(_running(command, {**env, **provider}, log))
        wait_until_up(base)
        if worker:
            beside = {
                "TRACKER_KIMISMS_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
                "TRACKER_PUBLIC_URL": base,
            }
            worker_command = [sys.executable, "-m", "tracker", "worker"]
            processes.enter_context(_running(worker_command, {**env, **provider, **beside}, log))
        yield base


@contextlib.contextmanager
def _running(command: list[str], env: dict[str, str], log: Any) -> Iterator[None]:
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log, cwd=ROOT)
    try:
        yield
    finally:
        process.terminate()
        process.wait(15)


async def seed_expiring(url: str, count: int, expires_at: dt.datetime) -> None:
    """``count`` queued messages, not yet due, whose validity ends at ``expires_at``."""
    database = db.Database(url)
    now = clock.utcnow()
    later = expires_at + dt.timedelta(hours=1)  # never due first: only the sweep moves them
    try:
        async with database.write() as session:
            await records.ensure(session, "bench")  # every message's client has a row (FK)
        for start in range(0, count, 5000):
            rows: list[dict[str, Any]] = [
                {
                    "id": models.new_id(),
                    "client": "bench",
                    "sender_name": "KIMISMS",
                    "contact": "254712345678",
                    "body": f"expiring message {n}",
                    "segments": 1,
                    "encoding": "gsm7",
                    "priority": 1,
                    "status": status.Status.QUEUED.value,
                    "rank": status.RANK[status.Status.QUEUED],
                    "attempts": 0,
                    "next_attempt_at": later,
                    "send_at": later,
                    "expires_at": expires_at,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(start, min(count, start + 5000))
            ]
            async with database.write() as session:
                await session.execute(insert(models.Message), rows)
    finally:
        await database.dispose()


async def watch_sweep(url: str, count: int, give_up_at: float) -> tuple[float | None, Any]:
    """Poll until ``count`` messages are expired: (monotonic time seen, latest final_at)."""
    database = db.Database(url)
    m = models.Message
    try:
        while time.monotonic() < give_up_at:
            async with database.read() as session:
                row = (
                    await session.execute(
                        select(func.count(), func.max(m.final_at)).where(
                            m.status == status.Status.EXPIRED.value
                        )
                    )
                ).one()
            if row[0] >= count:
                return time.monotonic(), row[1]
            await asyncio.sleep(0.05)
        return None, None
    finally:
        await database.dispose()


def spooled_count(base: str) -> int:
    """The server's own count of callbacks it spooled."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found = re.search(
        r'^tracker_callbacks_total\{outcome="spooled"\} ([0-9.e+]+)$', text, re.MULTILINE
    )
    return int(float(found[1])) if found else 0


def sweep_lines(log_path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict) and line.get("event") == SWEEP_LINE:
                lines.append(line)
    return lines


async def make_expire(url: str, at: dt.datetime) -> None:
    """The seeded messages' validity ends at ``at`` (one statement, before the sweep phase)."""
    database = db.Database(url)
    m = models.Message
    try:
        async with database.write() as session:
            queued = m.status == status.Status.QUEUED.value
            await session.execute(update(m).where(queued).values(expires_at=at))
    finally:
        await database.dispose()


def latency(result: loadgen.Result) -> dict[str, float]:
    return {
        "p50_ms": round(result.median * 1000, 2),
        "p99_ms": round(result.percentile(99) * 1000, 2),
        "max_ms": round(max(result.latencies, default=0) * 1000, 1),
    }


async def measure(
    backend: str, postgres_url: str, expiring: int, rate: float, quick: bool
) -> dict[str, Any]:
    quiet_n = int(rate * QUIET_SECONDS)
    sweep_n = int(rate * (SWEEP_PHASE_SECONDS / (2 if quick else 1)))
    async with scratch_database(backend, postgres_url) as url:
        ids = await seed_pending(url, quiet_n + sweep_n)
        await seed_expiring(url, expiring, clock.utcnow() + dt.timedelta(hours=1))
        workdir = Path(tempfile.mkdtemp(prefix="tracker-sweep-"))
        env = {
            "TRACKER_DATABASE_URL": plain_url(url),
            "TRACKER_CALLBACK_SECRETS": SECRET,
            "TRACKER_DATA_DIR": str(workdir),
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_LOG_LEVEL": "INFO",
        }
        log_path = workdir / "serve.log"
        with serve(env, log_path) as base:
            # The baseline: the same load on the same server, no sweep running.
            quiet = await loadgen.run(base, requests_for(ids, 0, quiet_n), CONCURRENCY, rate=rate)
            await make_expire(url, clock.utcnow() + dt.timedelta(seconds=EXPIRY_DELAY_SECONDS))
            expires_mono = time.monotonic() + EXPIRY_DELAY_SECONDS
            load = asyncio.create_task(
                loadgen.run(base, requests_for(ids, quiet_n, sweep_n), CONCURRENCY, rate=rate)
            )
            seen, last_final = await watch_sweep(url, expiring, expires_mono + 90)
            result = await load
            spooled = spooled_count(base)
        lines = sweep_lines(log_path)
    longest = max((line.get("longest_transaction_ms", 0) for line in lines), default=None)
    estimated = False
    if longest is None and seen is not None and last_final is not None:
        # One transaction stamped every row with the time it began; it ended by `seen`.
        began = clock.restore_utc(last_final)  # an aggregate: text on SQLite
        behind = (clock.utcnow() - began).total_seconds() - (time.monotonic() - seen)
        longest, estimated = round(behind * 1000, 1), True
    during = latency(result)
    return {
        "backend": backend,
        "expiring": expiring,
        "callbacks": quiet.count + result.count,
        "callback_rate": rate,
        "concurrency": CONCURRENCY,
        "quiet": latency(quiet),
        "ack_p50_ms": during["p50_ms"],
        "ack_p99_ms": during["p99_ms"],
        "ack_max_ms": during["max_ms"],
        "statuses": result.statuses,
        "spooled": spooled,
        "sweep_seconds": None if seen is None else round(seen - expires_mono, 2),
        "sweep_transactions": sum(line.get("transactions", 0) for line in lines) or None,
        "longest_transaction_ms": longest,
        "longest_transaction_estimated": estimated,
        "met": during["p99_ms"] < P99_TARGET_MS and spooled == 0 and seen is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--expiring", type=int, default=None)
    parser.add_argument("--rate", type=float, default=400.0, help="callbacks per second")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    expiring = args.expiring or (2000 if args.quick else 10_000)
    results = [
        asyncio.run(measure(b, args.postgres_url, expiring, args.rate, args.quick))
        for b in args.backend or ["sqlite", "postgresql"]
    ]
    for r in results:
        estimate = " (estimated)" if r["longest_transaction_estimated"] else ""
        print(
            f"{r['backend']:>10}: {r['expiring']} expired in {r['sweep_seconds']} s "
            f"({r['sweep_transactions'] or '?'} transactions, longest "
            f"{r['longest_transaction_ms']} ms{estimate}) | {r['callbacks']} callbacks "
            f"@{r['concurrency']}: ack p50 {r['ack_p50_ms']} ms p99 {r['ack_p99_ms']} ms "
            f"max {r['ack_max_ms']} ms (no sweep: p50 {r['quiet']['p50_ms']} ms p99 "
            f"{r['quiet']['p99_ms']} ms), spooled {r['spooled']}, statuses {r['statuses']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0 if all(r["met"] for r in results) else 1)


if __name__ == "__main__":
    main()
