"""Webhooks: status change -> signed POST latency, backlog drain rate, callback ingest cost.

    .venv/bin/python -m bench.webhooks [--quick] [--backend sqlite|postgresql]
        [--postgres-url URL] [--json PATH]

For each database, one ``tracker serve --no-dispatcher`` (its deliverer in-process) and a
receiver process on loopback that logs each POST's arrival (``time.monotonic``, the same
clock in every process):

- latency: a delivery report POSTed to serve, one at a time, idle in between, until its
  ``message.delivered`` webhook arrives; p50/p99, against a raw POST of the same size
  from here to the receiver (target p50 < 20 ms);
- ingest: callbacks at concurrency 64 (``bench.callback_ingest``'s requests), in
  alternating rounds with no endpoint subscribed and with one; median rate with / without
  (target >= 0.8); each round waits until the webhooks of the last one have arrived;
- the CPU time every process of the bench spent per callback in those rounds (the webhook's
  delivery and its receipt included), and how busy the machine's cores were: on 2 cores
  the load, serve and the receiver share them, so a rate bounded by CPU falls as the work
  per callback grows;
- on PostgreSQL, the same rounds again with ``serve --no-webhooks`` and the deliveries
  made by a separate ``tracker worker`` (woken by NOTIFY);
- drain: N pending deliveries (``webhook.test``, a message-sized body) over 8 endpoints
  on the receiver come due at once; deliveries/s of the one process, first to last
  arrival (target >= 500/s).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench import loadgen
from bench.callback_ingest import SECRET, free_port, requests_for, server
from bench.scratch import DEFAULT_POSTGRES_URL, plain_url, scratch_database, seed_pending
from tests.integration import webhook_receiver as hooks
from tracker import clock, db, logs, models
from tracker.clients import records

TARGET_P50_MS = 20.0
TARGET_DRAIN_PER_SECOND = 500.0
TARGET_INGEST_RATIO = 0.8
GAP_SECONDS = 0.05  # between latency samples: the deliverer is idle for each
CONCURRENCY = 64
DRAIN_ENDPOINTS = 8
SAMPLE_DATA = {
    "id": uuid.UUID(int=0).hex,
    "status": "delivered",
    "to": "254712345678",
    "provider_status": "Delivered",
    "provider_description": "Message delivered successfully",
    "created_at": "2026-12-02 07:19:08.123456",
    "note": "x" * 300,
}


async def receive(port: int, log_path: Path) -> None:
    """The receiver process: answer 200 to every POST, log its webhook-id and arrival."""
    with log_path.open("a", buffering=1) as log:

        async def answer(request: hooks.Request) -> hooks.Reply:
            log.write(f"{request.headers.get('webhook-id', '-')} {request.at}\n")
            return hooks.Reply()

        receiver = hooks.Receiver(answer)
        await receiver.start(port)
        await asyncio.Event().wait()  # until the bench terminates this process


@contextmanager
def receiver_process() -> Iterator[tuple[str, Path]]:
    """The receiver as its own process (its CPU is not the load generator's)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tracker-hooks-") as workdir:
        log = Path(workdir) / "arrivals.log"
        log.touch()
        command = [sys.executable, "-m", "bench.webhooks", "--receive", str(port), str(log)]
        process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    httpx.post(f"http://127.0.0.1:{port}/up", content=b"", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", log
        finally:
            process.terminate()
            process.wait(10)


class Arrivals:
    """Reads the receiver's log as it grows: webhook-id -> arrival time."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("r")
        self.seen: dict[str, float] = {}

    def poll(self) -> dict[str, float]:
        for line in self._file.readlines():
            name, at = line.split()
            self.seen[name] = float(at)
        return self.seen

    async def wait_for(self, count: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while len(self.poll()) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
    }


async def subscribe(database: db.Database, url: str, client: str = "bench") -> uuid.UUID:
    async with database.write() as session:
        await records.ensure(session, client)
        endpoint = models.WebhookEndpoint(client=client, url=url, secret=hooks.SECRET)
        session.add(endpoint)
        await session.flush()
        session.add(
            models.WebhookSubscription(endpoint_id=endpoint.id, event_type="message.delivered")
        )
    return endpoint.id


async def unsubscribe(database: db.Database, endpoint_id: uuid.UUID) -> None:
    async with database.write() as session:
        await session.execute(
            sa.delete(models.WebhookSubscription).where(
                models.WebhookSubscription.endpoint_id == endpoint_id
            )
        )


async def resubscribe(database: db.Database, endpoint_id: uuid.UUID) -> None:
    async with database.write() as session:
        session.add(
            models.WebhookSubscription(endpoint_id=endpoint_id, event_type="message.delivered")
        )


async def latency(
    base: str, receiver: str, arrivals: Arrivals, ids: list[uuid.UUID], *, offset: int, count: int
) -> dict[str, Any]:
    """Callback -> webhook arrival, one at a time; and the raw POST baseline."""
    ours: list[float] = []
    raw: list[float] = []
    requests = requests_for(ids, offset, count)
    async with httpx.AsyncClient(timeout=10) as client:
        for n, request in enumerate(requests):
            prefix = f"msg_{ids[offset + n].hex}_"
            started = time.monotonic()
            answer = await client.post(base + request.path, content=request.body)
            answer.raise_for_status()
            while not (
                found := [at for name, at in arrivals.poll().items() if name.startswith(prefix)]
            ):
                if time.monotonic() - started > 10:
                    break
                await asyncio.sleep(0.0005)
            if found:
                ours.append((found[0] - started) * 1000)
            await asyncio.sleep(GAP_SECONDS)
        body = json.dumps({"type": "message.delivered", "data": SAMPLE_DATA}).encode()
        for n in range(count):
            name = f"raw_{n}"
            started = time.monotonic()
            await client.post(receiver + "/raw", content=body, headers={"webhook-id": name})
            if name in arrivals.poll():
                raw.append((arrivals.seen[name] - started) * 1000)
            await asyncio.sleep(GAP_SECONDS)
    return {"samples": len(ours), **summary(ours), "baseline": summary(raw)}


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core (/proc/stat)."""
    user, nice, system, idle, iowait, *rest = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    ticks = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + sum(rest)
    return busy / ticks, (busy + idle + iowait) / ticks


def our_cpu() -> float:
    """CPU seconds of this process (the load) and its children (serve, receiver, worker)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if stat.parent.name == str(os.getpid()) or fields[1] == str(os.getpid()):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def ingest(
    base: str,
    database: db.Database,
    endpoint_id: uuid.UUID,
    ids: list[uuid.UUID],
    *,
    offset: int,
    count: int,
) -> dict[str, Any]:
    """Alternating rounds without and with the endpoint subscribed; median rates, and
    CPU per callback of every process of the bench (its webhook's delivery and receipt
    included), and how busy the machine's cores were during the rounds."""
    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpu_ms: dict[str, list[float]] = {"without": [], "with": []}
    busy_share: dict[str, list[float]] = {"without": [], "with": []}
    await unsubscribe(database, endpoint_id)
    for _ in range(3):
        for case in ("without", "with"):
            if case == "with":
                await resubscribe(database, endpoint_id)
            busy, total = machine_cpu()
            spent = our_cpu()
            result = await loadgen.run(base, requests_for(ids, offset, count), CONCURRENCY)
            offset += count
            rates[case].append(result.rate)
            round_busy, round_total = machine_cpu()
            busy_share[case].append((round_busy - busy) / (round_total - total))
            if case == "with":
                # The next round starts once this one's webhooks are out.
                await _drained(database, within=120)
                await unsubscribe(database, endpoint_id)
            cpu_ms[case].append((our_cpu() - spent) * 1000 / count)
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    return {
        "without_per_second": round(without, 1),
        "with_per_second": round(with_, 1),
        "ratio": round(with_ / without, 3),
        "count": count,
        "cpu_ms_per_callback": {k: round(statistics.median(v), 3) for k, v in cpu_ms.items()},
        "busy_share": {k: round(statistics.median(v), 3) for k, v in busy_share.items()},
    }


async def _drained(database: db.Database, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with database.read() as session:
            pending = await session.scalar(
                sa.select(sa.func.count()).where(models.WebhookDelivery.status == "pending")
            )
        if not pending:
            return True
        await asyncio.sleep(0.2)
    return False


async def drain(
    database: db.Database, receiver: str, arrivals: Arrivals, count: int
) -> dict[str, Any]:
    """``count`` deliveries over DRAIN_ENDPOINTS endpoints come due at once."""
    endpoints = [
        await subscribe(database, f"{receiver}/drain/{n}", "bench-drain")
        for n in range(DRAIN_ENDPOINTS)
    ]
    later = clock.utcnow() + dt.timedelta(hours=1)
    names = [f"msg_drain{n}" for n in range(count)]
    rows = [
        {
            "endpoint_id": endpoints[n % DRAIN_ENDPOINTS],
            "event_id": names[n],
            "event_type": "webhook.test",
            "data": SAMPLE_DATA,
            "occurred_at": later,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": later,
            "created_at": later,
        }
        for n in range(count)
    ]
    async with database.write() as session:
        await session.execute(sa.insert(models.WebhookDelivery), rows)
    async with database.write() as session:  # all due now; the deliverer's poll finds them
        await session.execute(
            sa.update(models.WebhookDelivery)
            .where(models.WebhookDelivery.event_type == "webhook.test")
            .values(next_attempt_at=clock.utcnow())
        )
    await _drained(database, within=300)
    arrivals.poll()
    times = sorted(arrivals.seen[name] for name in names if name in arrivals.seen)
    elapsed = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "count": count,
        "arrived": len(times),
        "seconds": round(elapsed, 3),
        "per_second": round((len(times) - 1) / elapsed, 1) if elapsed else float("nan"),
    }


async def measure(backend: str, postgres_url: str, quick: bool) -> dict[str, Any]:
    samples, round_n, drain_n = (30, 500, 1000) if quick else (200, 2000, 5000)
    separate = backend == "postgresql"  # SQLite has no NOTIFY to wake another process
    async with scratch_database(backend, postgres_url) as url:
        ids = await seed_pending(url, 10 + samples + 6 * round_n * (2 if separate else 1))
        database = db.Database(url)
        port = free_port()
        env = {
            "TRACKER_DATABASE_URL": plain_url(url),
            "TRACKER_CALLBACK_SECRETS": SECRET,
            "TRACKER_DATA_DIR": tempfile.mkdtemp(prefix="tracker-bench-"),
            "TRACKER_WEBHOOK_ALLOWED_NETWORKS": hooks.ALLOWED,
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
        command = [sys.executable, "-m", "tracker", "serve", "--no-dispatcher", "--port", str(port)]
        worker_cost = None
        try:
            with receiver_process() as (receiver, log):
                with server(command, env, port) as base:
                    arrivals = Arrivals(log)
                    endpoint_id = await subscribe(database, f"{receiver}/hook")
                    await latency(base, receiver, arrivals, ids, offset=0, count=10)  # warm-up
                    idle = await latency(base, receiver, arrivals, ids, offset=10, count=samples)
                    offset = 10 + samples
                    cost = await ingest(
                        base, database, endpoint_id, ids, offset=offset, count=round_n
                    )
                    rate = await drain(database, receiver, arrivals, drain_n)
                if separate:
                    with server([*command, "--no-webhooks"], env, port) as base, worker(env):
                        worker_cost = await ingest(
                            base, database, endpoint_id, ids,
                            offset=offset + 6 * round_n, count=round_n,
                        )  # fmt: skip
        finally:
            await database.dispose()
    return {
        "backend": backend,
        "latency": idle,
        "ingest": cost,
        "ingest_worker": worker_cost,
        "drain": rate,
        "met": idle["p50_ms"] < TARGET_P50_MS
        and cost["ratio"] >= TARGET_INGEST_RATIO
        and rate["per_second"] >= TARGET_DRAIN_PER_SECOND,
    }


@contextmanager
def worker(env: dict[str, str]) -> Iterator[None]:
    """A ``tracker worker`` delivering the webhooks (its dispatcher finds nothing queued)."""
    credentials = {
        "TRACKER_KIMISMS_BASE_URL": "http://127.0.0.1:9",  # never called: no message queued
        "TRACKER_KIMISMS_CLIENT_ID": "bench",
        "TRACKER_KIMISMS_CLIENT_SECRET": "bench-secret",
    }
    command = [sys.executable, "-m", "tracker", "worker"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env, **credentials}, stdout=log, stderr=log,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        try:
            time.sleep(3)  # started and listening for NOTIFY before the first round
            yield
        finally:
            process.terminate()
            process.wait(15)


def report(r: dict[str, Any]) -> str:
    lat, cost, rate, apart = r["latency"], r["ingest"], r["drain"], r["ingest_worker"]
    cpu, busy = cost["cpu_ms_per_callback"], cost["busy_share"]
    base = lat["baseline"]
    return (
        f"webhooks ({r['backend']}): callback -> signed POST p50 {lat['p50_ms']} ms, "
        f"p99 {lat['p99_ms']} ms ({lat['samples']} samples; raw POST p50 {base['p50_ms']} ms, "
        f"p99 {base['p99_ms']} ms); callback ingest with an endpoint / without "
        f"{cost['ratio']:.3f} ({cost['with_per_second']:.0f}/s vs "
        f"{cost['without_per_second']:.0f}/s); drain {rate['per_second']} deliveries/s "
        f"({rate['arrived']}/{rate['count']} in {rate['seconds']} s) -> "
        f"{'OK' if r['met'] else 'MISSED'}\n"
        f"  CPU per callback, every process of the bench: {cpu['without']} ms without, "
        f"{cpu['with']} ms with; cores busy {busy['without']:.0%} / {busy['with']:.0%}"
        + (
            f"\n  deliveries in a separate `tracker worker`: ingest with / without "
            f"{apart['ratio']:.3f} ({apart['with_per_second']:.0f}/s vs "
            f"{apart['without_per_second']:.0f}/s), CPU per callback "
            f"{apart['cpu_ms_per_callback']['without']} / {apart['cpu_ms_per_callback']['with']} ms"
            if apart
            else ""
        )
    )


def main() -> None:
    if sys.argv[1:2] == ["--receive"]:
        asyncio.run(receive(int(sys.argv[2]), Path(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("json", "WARNING")
    results = [
        asyncio.run(measure(b, args.postgres_url, args.quick))
        for b in args.backend or ["sqlite", "postgresql"]
    ]
    for r in results:
        print(report(r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2))
    sys.exit(0 if all(r["met"] for r in results) else 1)


if __name__ == "__main__":
    main()
