"""Pacing: the rate the dispatcher achieves against the configured limit, with no 429s.

    .venv/bin/python -m bench.pacing [--seconds 65] [--per-minute 600] [--json PATH]

Queues more messages than the run can send, runs the real dispatcher against
the sandbox (over loopback HTTP, the sandbox enforcing the same limit with its
sliding window) for ``--seconds``, then reads the sandbox's own record of calls:
achieved = calls in the steady window / duration, scaled to a minute, divided
by the configured limit (target >= 0.98), and 429s caused by the window (target 0).
Token calls count against the limit too, as they do at the provider.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.scratch import scratch_database
from tests.acceptance.test_chaos import queue_messages
from tracker import db, logs
from tracker.app import provider_client
from tracker.dispatch import dispatcher
from tracker.sandbox import SandboxConfig, running_sandbox
from tracker.settings import Settings

CLIENT_ID, CLIENT_SECRET = "bench-pacing", "bench-pacing-secret"


async def measure(seconds: float, per_minute: int) -> dict[str, Any]:
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rate_limit_per_minute=per_minute,
        callback_delay_seconds=3600,  # no callbacks needed: only the sends are measured
        failure_ratio=0.0,
    )
    async with scratch_database("sqlite", "") as url:
        database = db.Database(url)
        await queue_messages(database, int(per_minute * seconds / 60 * 1.2) + 10)
        with running_sandbox(config) as sandbox_url:
            settings = Settings.load(
                database_url=url,
                data_dir=Path(tempfile.mkdtemp(prefix="tracker-bench-")),
                kimisms_base_url=sandbox_url,
                kimisms_client_id=CLIENT_ID,
                kimisms_client_secret=CLIENT_SECRET,
                rate_limit_per_minute=per_minute,
                log_format="json",
                log_level="WARNING",
            )
            async with provider_client(settings) as http:
                sender = dispatcher.create(settings, database, http)
                task = asyncio.create_task(sender.run())
                await asyncio.sleep(seconds)
                sender.stop()
                await task
            async with httpx.AsyncClient() as client:
                calls = (await client.get(f"{sandbox_url}/sandbox/calls")).json()
                stats = (await client.get(f"{sandbox_url}/sandbox/stats")).json()
        await database.dispose()
    times = sorted(dt.datetime.fromisoformat(c["at"]) for c in calls)
    span = (times[-1] - times[0]).total_seconds()
    achieved = (len(times) - 1) / span * 60 if span else 0.0
    return {
        "configured_per_minute": per_minute,
        "seconds": round(span, 1),
        "calls": len(times),
        "token_calls": stats["token_calls"],
        "achieved_per_minute": round(achieved, 1),
        "ratio": round(achieved / per_minute, 4),
        "throttled_by_limit": stats["throttled_by_limit"],
        "max_sends_per_key": stats["max_sends_per_key"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=65.0)
    parser.add_argument("--per-minute", type=int, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logs.configure("json", "WARNING")
    result = asyncio.run(measure(args.seconds, args.per_minute))
    print(
        f"pacing: configured {result['configured_per_minute']}/min, achieved "
        f"{result['achieved_per_minute']}/min over {result['seconds']} s "
        f"({result['calls']} calls, {result['token_calls']} token) -> ratio {result['ratio']}, "
        f"429s from the window: {result['throttled_by_limit']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
