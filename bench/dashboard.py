"""The dashboard's overview on 1,000,000 messages (PostgreSQL): p50/p99 per window.

    .venv/bin/python -m bench.dashboard [--postgres-url URL] [--messages 1000000]
        [--requests 300] [--time-limit 900] [--quick] [--json PATH]

Seeds a scratch database exactly as ``bench.query_latency`` does (30 days, 5
clients, the usual mix of statuses; the 0005 triggers write the per-hour
counts' deltas as the rows go in), folds the deltas once and vacuums (untimed,
as the first overview and autovacuum would), then logs in through the real form
and times the overview (whole page), its live fragment and the 30-day chart
data, for one client's ``read`` key and for an ``admin`` key over every client.
The app runs in-process (httpx.ASGITransport, lifespan running, logs to
/dev/null); requests are sequential, after a warm-up. Target: p99 < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import query_latency
from tracker import db, logs
from tracker.app import create_app
from tracker.dashboard import counts
from tracker.settings import Settings

TARGET_MS = 150.0
LOGIN_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
WARMUP = 20
PATHS = (
    "/dashboard?window=24h",
    "/dashboard?window=30d",
    "/dashboard/live?window=30d",
    "/dashboard/charts?window=30d",
)


@dataclass
class Case:
    name: str
    key: str
    path: str
    ms: list[float] = field(default_factory=list)


async def fold_once(url: str) -> None:
    """Fold the seed's deltas, then vacuum as autovacuum would after a fold that large."""
    database = db.Database(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        started = time.perf_counter()
        await counts.fold(database)
        print(f"  fold deltas: {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await database.dispose()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE message_counts, message_count_deltas")
    finally:
        await connection.close()


async def log_in(http: httpx.AsyncClient, key: str) -> None:
    """Through the real form: its pre-session cookie and CSRF token, then the POST."""
    form = await http.get("/dashboard/login")
    token = LOGIN_CSRF.search(form.text)
    if token is None:
        raise RuntimeError("no CSRF token on the login form")
    login = await http.post("/dashboard/login", data={"key": key, "csrf": token[1]})
    if login.status_code != 303:
        raise RuntimeError(f"login: {login.status_code}")


async def measure(settings: Settings, all_cases: list[Case], requests: int) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        for case in all_cases:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                await log_in(http, case.key)
                for round_ in range(WARMUP + requests):
                    started = time.perf_counter()
                    answer = await http.get(case.path)
                    elapsed = (time.perf_counter() - started) * 1000
                    if answer.status_code != 200:
                        raise RuntimeError(f"{case.path}: {answer.status_code}")
                    if round_ >= WARMUP:
                        case.ms.append(elapsed)


def figures(all_cases: list[Case], rows: int) -> list[dict[str, Any]]:
    result = []
    for case in all_cases:
        p50, p99 = query_latency.quantiles(case.ms)
        result.append(
            {
                "name": case.name,
                "rows": rows,
                "requests": len(case.ms),
                "p50_ms": round(p50, 2),
                "p99_ms": round(p99, 2),
                "target": f"< {TARGET_MS:g} ms",
                "met": p99 < TARGET_MS,
            }
        )
    return result


def report(found: list[dict[str, Any]]) -> bool:
    print(f"\n{'case':<48} {'p50':>8} {'p99':>8}  p99 target")
    for row in found:
        verdict = "ok" if row["met"] else "MISSED"
        print(f"{row['name']:<48} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f}  < 150 {verdict}")
    print("(ms, whole request through the app, sequential)")
    return all(row["met"] for row in found)


async def run(args: argparse.Namespace) -> bool:
    async with query_latency.scratch(args.postgres_url) as url:
        print(f"seeding {args.messages:,} messages", flush=True)
        await query_latency.seed(url, args.messages)
        await fold_once(url)
        keys = await query_latency.make_keys(url)
        all_cases = [
            Case(f"{who}: {path}", keys[who], path) for who in ("client", "admin") for path in PATHS
        ]
        settings = Settings.load(database_url=url, log_format="json", log_level="INFO")
        logs.configure("json", "INFO")
        print(f"timing {args.requests:,} requests per case (+{WARMUP} warm-up)", flush=True)
        devnull = Path(os.devnull).open("w")  # noqa: ASYNC230, SIM115 - /dev/null never blocks
        with devnull, contextlib.redirect_stdout(devnull):
            await measure(settings, all_cases, args.requests)
        found = figures(all_cases, args.messages)
        if args.json:
            args.json.write_text(json.dumps(found, indent=2))
        return report(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres-url", default=query_latency.DEFAULT_POSTGRES_URL)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds, seeding included")
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 50 requests")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.requests = 20_000, 50
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        met = asyncio.run(asyncio.wait_for(run(args), args.time_limit))
    except TimeoutError:
        print(f"stopped after --time-limit {args.time_limit:.0f} s", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
