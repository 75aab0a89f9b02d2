"""Dispatch latency: from the 202 to the provider receiving the send-sms POST (issue 14).

    .venv/bin/python -m bench.dispatch_latency [--quick] [--messages 200]
        [--backend sqlite|postgresql] [--postgres-url URL] [--json PATH]

One message at a time, with free pacer slots (6000/min, a pause between
messages far longer than the 10 ms pacer interval), through real processes:

- SQLite: ``tracker serve`` with its dispatcher in-process (woken by the send
  API's doorbell);
- PostgreSQL: ``tracker serve --no-dispatcher`` and a separate ``tracker worker``
  (woken by NOTIFY across processes).

The sandbox runs in this process, so its record of each call (``/sandbox/calls``,
``at``: wall-clock time on arrival) and our clock are the same clock: latency =
the call's ``at`` minus the time this script had the 202 in hand. The baseline,
in the same run: a raw HTTP POST to the sandbox's send-sms (``at`` minus the time
just before the POST was sent), that is, what loopback HTTP alone costs.
Targets: p50 <= 10 ms and p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.scratch import DEFAULT_POSTGRES_URL, plain_url, scratch_database
from tests.processes import Running, free_port, started
from tracker import auth, db, logs
from tracker.sandbox import SandboxConfig, running_sandbox

CLIENT_ID, CLIENT_SECRET = "bench-latency", "bench-latency-secret"
PER_MINUTE = 6000
GAP_SECONDS = 0.1  # between messages: every one finds a free pacer slot and an idle dispatcher
WARMUP = 5  # messages first, not counted (the token call, connection set-up)
TARGET_P50_MS, TARGET_P99_MS = 10.0, 50.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


def arrivals(sandbox_url: str) -> dict[str, float]:
    """Idempotency-Key -> epoch seconds of the first send-sms call that carried it."""
    calls = httpx.get(f"{sandbox_url}/sandbox/calls", timeout=30).json()
    first: dict[str, float] = {}
    for call in calls:
        key = call.get("idempotency_key")
        if key and call["path"].endswith("/send-sms") and key not in first:
            first[key] = dt.datetime.fromisoformat(call["at"]).timestamp()
    return first


def baseline(sandbox_url: str, count: int) -> list[float]:
    """Raw POSTs to the sandbox's send-sms: client send to sandbox arrival, in ms."""
    sent: dict[str, float] = {}
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        for n in range(count + WARMUP):
            key = f"baseline-{uuid.uuid4()}"
            before = time.time()
            client.post("/api/send-sms", json={}, headers={"Idempotency-Key": key})
            if n >= WARMUP:
                sent[key] = before
            time.sleep(GAP_SECONDS / 4)
    seen = arrivals(sandbox_url)
    return [(seen[key] - at) * 1000 for key, at in sent.items()]


def environment(url: str, sandbox_url: str, port: int, data_dir: Path) -> dict[str, str]:
    return {
        "TRACKER_DATABASE_URL": plain_url(url),
        "TRACKER_DATA_DIR": str(data_dir),
        "TRACKER_KIMISMS_BASE_URL": sandbox_url,
        "TRACKER_KIMISMS_CLIENT_ID": CLIENT_ID,
        "TRACKER_KIMISMS_CLIENT_SECRET": CLIENT_SECRET,
        "TRACKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TRACKER_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def tracker_processes(backend: str, env: dict[str, str], port: int) -> Iterator[list[Running]]:
    """SQLite: ``serve`` with its dispatcher; PostgreSQL: ``serve --no-dispatcher`` + ``worker``."""
    ready = f"http://127.0.0.1:{port}/healthz"
    serve_args = ["serve", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            yield [stack.enter_context(started(*serve_args, env=env, ready_url=ready))]
            return
        api = stack.enter_context(started(*serve_args, "--no-dispatcher", env=env, ready_url=ready))
        worker = stack.enter_context(started("worker", env=env))
        yield [api, worker]


def send_one(client: httpx.Client, key: str) -> tuple[str, float]:
    """POST one due message; (its id, the epoch time the 202 was in hand)."""
    answer = client.post(
        "/v1/messages",
        json={"to": "0712345678", "message": "Your code is 123456", "priority": "high"},
        headers={"Authorization": f"Bearer {key}"},
    )
    at = time.time()
    if answer.status_code != 202:
        raise RuntimeError(f"send answered {answer.status_code}: {answer.text[:300]}")
    message_id: str = answer.json()["id"]
    return message_id, at


async def make_key(url: str) -> str:
    database = db.Database(url)
    try:
        return await auth.create_key(database, "bench", auth.parse_scopes("send,read"))
    finally:
        await database.dispose()


def measure_case(backend: str, url: str, key: str, messages: int) -> dict[str, Any]:
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rate_limit_per_minute=PER_MINUTE,
        callback_delay_seconds=3600,  # no callbacks needed: only the sends are measured
        failure_ratio=0.0,
    )
    port = free_port()
    with (
        running_sandbox(config) as sandbox_url,
        tempfile.TemporaryDirectory(prefix="tracker-bench-") as data_dir,
    ):
        env = environment(url, sandbox_url, port, Path(data_dir))
        with (
            tracker_processes(backend, env, port),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            time.sleep(2.0)  # the dispatcher leads, looks once and goes idle
            accepted: dict[str, float] = {}
            for n in range(messages + WARMUP):
                message_id, at = send_one(client, key)
                if n >= WARMUP:
                    accepted[message_id] = at
                time.sleep(GAP_SECONDS)
            deadline = time.monotonic() + 30  # the last ones, even with a slow poll
            while (
                time.monotonic() < deadline and not accepted.keys() <= arrivals(sandbox_url).keys()
            ):
                time.sleep(0.2)
            seen = arrivals(sandbox_url)
        ours = [(seen[i] - at) * 1000 for i, at in accepted.items() if i in seen]
        raw = baseline(sandbox_url, messages)
    setup = "serve (dispatcher in-process)" if backend == "sqlite" else "serve + tracker worker"
    return {
        "backend": backend,
        "setup": setup,
        "messages": messages,
        "sent": len(ours),
        **summary(ours),
        "baseline": summary(raw),
        "met": bool(ours)
        and len(ours) == messages
        and statistics.median(ours) <= TARGET_P50_MS
        and percentile(ours, 0.99) <= TARGET_P99_MS,
    }


async def run(backend: str, postgres_url: str, messages: int) -> dict[str, Any]:
    """One case on a fresh database (the processes' part runs in a thread)."""
    async with scratch_database(backend, postgres_url) as url:
        key = await make_key(url)
        return await asyncio.to_thread(measure_case, backend, url, key, messages)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="30 messages a case")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logs.configure("json", "WARNING")
    messages = 30 if args.quick else args.messages
    backends = args.backend or ["sqlite", "postgresql"]
    results = [asyncio.run(run(b, args.postgres_url, messages)) for b in backends]
    for r in results:
        base = r["baseline"]
        print(
            f"dispatch latency ({r['backend']}, {r['setup']}): "
            f"202 -> provider p50 {r['p50_ms']} ms,"
            f" p99 {r['p99_ms']} ms, max {r['max_ms']} ms ({r['sent']}/{r['messages']} sent); "
            f"raw POST to the sandbox p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms "
            f"-> {'OK' if r['met'] else 'MISSED'} (p50 <= {TARGET_P50_MS:g}, p99 <= "
            f"{TARGET_P99_MS:g} ms)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
