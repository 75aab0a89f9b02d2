"""Callback ingest: our receiver against a bare Starlette endpoint, same load, same run.

    .venv/bin/python -m bench.callback_ingest [--quick] [--backend sqlite|postgresql]
        [--postgres-url URL] [--json PATH]

For each database: seed ``pending`` messages, start ``tracker serve --no-dispatcher``
and a bare Starlette app (same JSON parse, no database) as uvicorn subprocesses,
and drive both with one keep-alive HTTP/1.1 load generator over loopback:

- peak: closed loop at concurrency 64, alternating targets, median of 3 rounds;
  ratio = our callbacks/s / bare requests/s (targets: >= 0.5 SQLite, >= 0.4 PostgreSQL);
  the same rounds drive ``bench.ceiling_app`` (our server with the ingester answering
  at once, no database): its ratio is what the receiver would reach if the group
  commit cost nothing;
- half-peak: open loop at half our peak rate; p50/p99 ack latency (target p99 < 25 ms);
- burst: 10,000 callbacks at concurrency 256; every one must be answered 200 in < 5 s;
- then every callback we answered must be applied in the database (none lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench import loadgen
from bench.scratch import DEFAULT_POSTGRES_URL, plain_url, scratch_database, seed_pending
from tracker import db, models
from tracker.domain import status
from tracker.reports import capability
from tracker.settings import parse_callback_keys

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench:" + "b" * 32
PEAK_CONCURRENCY = 64
BURST_CONCURRENCY = 256


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


PEAK_RSS: dict[str, float] = {}


def wait_until_up(base: str, within_seconds: float = 30) -> None:
    """Poll ``/healthz`` until the server answers, or the time is up."""
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, name: str = "") -> Iterator[str]:
    """A uvicorn subprocess on loopback, stopped on exit."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=log, cwd=ROOT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base)
            yield base
        finally:
            if name:
                PEAK_RSS[name] = peak_rss_mb(process.pid)
            process.terminate()
            process.wait(15)


def requests_for(ids: list[Any], offset: int, count: int) -> list[loadgen.Request]:
    keys = parse_callback_keys(SECRET)
    result = []
    for n in range(offset, offset + count):
        path = capability.callback_url("", keys, ids[n])
        body = {
            "message_id": f"p-{n}",
            "contact": "254712345678",
            "status": "Delivered",
            "description": "Message delivered successfully",
        }
        result.append(loadgen.Request(path, json.dumps(body).encode()))
    return result


async def applied_count(url: str) -> int:
    database = db.Database(url)
    try:
        async with database.read() as session:
            value = await session.scalar(
                select(func.count()).where(models.Message.status == status.Status.DELIVERED)
            )
            return int(value or 0)
    finally:
        await database.dispose()


async def measure(backend: str, postgres_url: str, quick: bool) -> dict[str, Any]:
    peak_n, burst_n = (500, 1000) if quick else (4000, 10_000)
    half_n = peak_n
    warm = 200
    async with scratch_database(backend, postgres_url) as url:
        total = warm + 3 * peak_n + half_n + burst_n
        ids = await seed_pending(url, total)
        tracker_port, bare_port, ceiling_port = free_port(), free_port(), free_port()
        env = {
            "TRACKER_DATABASE_URL": plain_url(url),
            "TRACKER_CALLBACK_SECRETS": SECRET,
            "TRACKER_DATA_DIR": tempfile.mkdtemp(prefix="tracker-bench-"),
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        }
        ours_cmd = [
            sys.executable,
            "-m",
            "tracker",
            "serve",
            "--no-dispatcher",
            "--port",
            str(tracker_port),
        ]
        ceiling_cmd = [sys.executable, "-m", "bench.ceiling_app", *ours_cmd[3:]]
        # Its own data dir: its replayer must not claim the real server's spool.
        ceiling_env = {**env, "TRACKER_DATA_DIR": tempfile.mkdtemp(prefix="tracker-ceiling-")}
        ceiling_cmd[ceiling_cmd.index(str(tracker_port))] = str(ceiling_port)
        bare_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(bare_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        with (
            server(ours_cmd, env, tracker_port, "ours") as ours,
            server(bare_cmd, {}, bare_port, "bare") as bare,
            server(ceiling_cmd, ceiling_env, ceiling_port) as ceiling,
        ):
            offset = 0
            for target in (ours, bare, ceiling):
                await loadgen.run(target, requests_for(ids, offset, warm), 16)
            offset += warm
            ours_rates: list[float] = []
            bare_rates: list[float] = []
            ceiling_rates: list[float] = []
            statuses: dict[int, int] = {}
            for _ in range(3):
                bare_result = await loadgen.run(
                    bare, requests_for(ids, offset, peak_n), PEAK_CONCURRENCY
                )
                ceiling_result = await loadgen.run(
                    ceiling, requests_for(ids, offset, peak_n), PEAK_CONCURRENCY
                )
                ours_result = await loadgen.run(
                    ours, requests_for(ids, offset, peak_n), PEAK_CONCURRENCY
                )
                offset += peak_n
                bare_rates.append(bare_result.rate)
                ceiling_rates.append(ceiling_result.rate)
                ours_rates.append(ours_result.rate)
                for code, n in ours_result.statuses.items():
                    statuses[code] = statuses.get(code, 0) + n
            peak = statistics.median(ours_rates)
            half = await loadgen.run(
                ours, requests_for(ids, offset, half_n), PEAK_CONCURRENCY, rate=peak / 2
            )
            offset += half_n
            burst = await loadgen.run(ours, requests_for(ids, offset, burst_n), BURST_CONCURRENCY)
            offset += burst_n
        sent_to_ours = offset
        answered_200 = (
            statuses.get(200, 0) + warm + half.statuses.get(200, 0) + burst.statuses.get(200, 0)
        )
        applied = await applied_count(url)
    return {
        "backend": backend,
        "ours_per_second": round(peak, 1),
        "bare_per_second": round(statistics.median(bare_rates), 1),
        "ratio": round(peak / statistics.median(bare_rates), 3),
        "ceiling_per_second": round(statistics.median(ceiling_rates), 1),
        "ceiling_ratio": round(statistics.median(ceiling_rates) / statistics.median(bare_rates), 3),
        "half_peak_p50_ms": round(half.median * 1000, 2),
        "half_peak_p99_ms": round(half.percentile(99) * 1000, 2),
        "burst_count": burst.count,
        "burst_all_200": burst.statuses == {200: burst.count},
        "burst_max_ms": round(max(burst.latencies) * 1000, 1),
        "burst_seconds": round(burst.elapsed, 2),
        "answered_200": answered_200,
        "sent": sent_to_ours,
        "applied": applied,
        "peak_rss_mb_ours": PEAK_RSS.get("ours"),
        "peak_rss_mb_bare": PEAK_RSS.get("bare"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = [
        asyncio.run(measure(b, args.postgres_url, args.quick))
        for b in args.backend or ["sqlite", "postgresql"]
    ]
    for r in results:
        print(
            f"{r['backend']:>10}: ours {r['ours_per_second']:>7}/s  "
            f"bare {r['bare_per_second']:>7}/s  ratio {r['ratio']:.3f} "
            f"(no-database ceiling {r['ceiling_ratio']:.3f}) | "
            f"half-peak p50 {r['half_peak_p50_ms']} ms p99 {r['half_peak_p99_ms']} ms | "
            f"burst {r['burst_count']} all-200={r['burst_all_200']} max {r['burst_max_ms']} ms | "
            f"applied {r['applied']}/{r['sent']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
