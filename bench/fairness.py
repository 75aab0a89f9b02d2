"""Fairness: a small client behind a bulk one, and an OTP behind both (issue 14).

    .venv/bin/python -m bench.fairness [--quick] [--bulk 5000]
        [--backend sqlite|postgresql] [--postgres-url URL] [--json PATH]

The real app with its dispatcher in-process (httpx.ASGITransport, lifespan
running), the sandbox over loopback HTTP, both at 6000 sends a minute so the run
takes seconds. Client A queues ``--bulk`` ``normal`` messages in one batch; a
moment later client B queues 10 ``normal``; then client C one ``high`` (an OTP).
From the sandbox's own record of send-sms calls (arrival order, its clock, the
same as ours) it prints:

- the sends of A and B from B's 202 to B's last send, B's included (target
  <= 20: B's 10 interleaved with A's; priority then age, as before issue 14,
  sends all of A's first);
- the sends between C's 202 and C's send (target <= 1: the next pacer slot,
  behind at most the one claim already waiting for its turn).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.scratch import DEFAULT_POSTGRES_URL, scratch_database
from tracker import auth, db, logs
from tracker.app import create_app
from tracker.sandbox import SandboxConfig, running_sandbox
from tracker.settings import Settings

CLIENT_ID, CLIENT_SECRET = "bench-fairness", "bench-fairness-secret"
PER_MINUTE = 6000
SMALL = 10
MOMENT_SECONDS = 0.2  # between A's batch and B's
WAIT_SECONDS = 150.0  # long enough for the old order to send all of A's first
TARGET_B, TARGET_C = 20, 1


@asynccontextmanager
async def tracker_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, run_dispatcher=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tracker.bench", timeout=60
        ) as client:
            yield client


async def queue(
    http: httpx.AsyncClient, key: str, count: int, priority: str
) -> tuple[list[str], float]:
    """One batch of ``count`` messages; (their ids, the epoch time of the 202)."""
    body = {
        "messages": [
            {"to": "0712345678", "message": f"message {n}", "priority": priority}
            for n in range(count)
        ]
    }
    answer = await http.post(
        "/v1/messages/batch", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    at = time.time()
    if answer.status_code != 202:
        raise RuntimeError(f"batch answered {answer.status_code}: {answer.text[:300]}")
    return [m["id"] for m in answer.json()["messages"]], at


async def sends(sandbox: httpx.AsyncClient) -> list[tuple[float, str]]:
    """(epoch arrival, Idempotency-Key) of every send-sms call, in arrival order."""
    calls = (await sandbox.get("/sandbox/calls")).json()
    return [
        (dt.datetime.fromisoformat(c["at"]).timestamp(), c["idempotency_key"])
        for c in calls
        if c["path"].endswith("/send-sms") and c.get("idempotency_key")
    ]


async def measure(backend: str, postgres_url: str, bulk: int) -> dict[str, Any]:
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rate_limit_per_minute=PER_MINUTE,
        callback_delay_seconds=3600,  # no callbacks needed: only the sends are measured
        failure_ratio=0.0,
    )
    async with scratch_database(backend, postgres_url) as url:
        database = db.Database(url)
        send = auth.parse_scopes("send")
        keys = {name: await auth.create_key(database, name, send) for name in ("a", "b", "c")}
        await database.dispose()
        with running_sandbox(config) as sandbox_url:
            settings = Settings.load(
                database_url=url,
                data_dir=Path(tempfile.mkdtemp(prefix="tracker-bench-")),
                kimisms_base_url=sandbox_url,
                kimisms_client_id=CLIENT_ID,
                kimisms_client_secret=CLIENT_SECRET,
                rate_limit_per_minute=PER_MINUTE,
                log_format="json",
                log_level="WARNING",
            )
            async with (
                tracker_app(settings) as http,
                httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
            ):
                await queue(http, keys["a"], bulk, "normal")
                await asyncio.sleep(MOMENT_SECONDS)
                b_ids, b_at = await queue(http, keys["b"], SMALL, "normal")
                c_ids, c_at = await queue(http, keys["c"], 1, "high")
                wanted = set(b_ids) | set(c_ids)
                deadline = time.monotonic() + WAIT_SECONDS
                while time.monotonic() < deadline:
                    if wanted <= {key for _, key in await sends(sandbox)}:
                        break
                    await asyncio.sleep(0.2)
                calls = await sends(sandbox)
    return figures(backend, bulk, calls, b=(b_ids, b_at), c=(c_ids[0], c_at))


def figures(
    backend: str,
    bulk: int,
    calls: list[tuple[float, str]],
    *,
    b: tuple[list[str], float],
    c: tuple[str, float],
) -> dict[str, Any]:
    """The counts from the sandbox's calls; B's leave C's one send out (two clients)."""
    (b_ids, b_at), (c_id, c_at) = b, c
    order = [key for _, key in calls if key != c_id]
    b_sent = [order.index(i) for i in b_ids if i in order]
    b_last = max(b_sent) if len(b_sent) == len(b_ids) else None
    since_b = [key for at, key in calls if at > b_at and key != c_id]
    since_c = [key for at, key in calls if at > c_at]
    c_sent = c_id in since_c
    until_b = since_b.index(order[b_last]) + 1 if b_last is not None else None
    before_c = since_c.index(c_id) if c_sent else None
    return {
        "backend": backend,
        "bulk": bulk,
        "sends_total": len(calls),
        "b_sent": len(b_sent),
        "sends_before_b_last_from_start": b_last + 1 if b_last is not None else None,
        "sends_from_b_queued_to_b_last": until_b,
        "sends_between_c_queued_and_c": before_c,
        "met": until_b is not None
        and until_b <= TARGET_B
        and before_c is not None
        and before_c <= TARGET_C,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a bulk of 500")
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logs.configure("json", "WARNING")
    bulk = 500 if args.quick else args.bulk
    backends = args.backend or ["sqlite", "postgresql"]
    results = [asyncio.run(measure(b, args.postgres_url, bulk)) for b in backends]
    for r in results:
        print(
            f"fairness ({r['backend']}): A {r['bulk']} normal, then B {SMALL} normal, then C 1 "
            f"high: {r['sends_from_b_queued_to_b_last']} sends from B's 202 to B's last "
            f"(target <= {TARGET_B}; {r['sends_before_b_last_from_start']} from the start), "
            f"{r['b_sent']}/{SMALL} of B's sent in {r['sends_total']} sends; "
            f"{r['sends_between_c_queued_and_c']} sends between C's 202 and C's send "
            f"(target <= {TARGET_C}) -> {'OK' if r['met'] else 'MISSED'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
