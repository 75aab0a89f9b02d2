"""Callback latency while slow clients hold connections (issue 12, item 8).

Starts ``tracker serve --no-dispatcher`` on a scratch SQLite database, sends
paced callbacks and prints their p50/p99 with no other load, then again while
a second process keeps ``--slow`` connections dribbling header bytes (one
line a second, reconnecting whenever the server cuts one off). Both rounds run
in the same invocation, so the ratio is fair on a noisy machine.

    .venv/bin/python -m bench.slow_clients [--slow 3000] [--callbacks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time

from bench import callback_ingest, loadgen
from bench.scratch import plain_url, scratch_database, seed_pending
from tracker import server

CALLBACK_RATE = 200.0  # per second, open loop
CALLBACK_CONCURRENCY = 8
DRIP_SECONDS = 1.0


async def _dribbler(port: int, cut: list[int]) -> None:
    """One slowloris client forever: a header line a second; reconnect when cut off.
    Starts are spread over the header deadline, so connections are cut (and come
    back) steadily, as a sustained attack's would, not all in one tick."""
    await asyncio.sleep(random.uniform(0, server.HEADER_TIMEOUT_SECONDS))
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: bench\r\n")
            while not reader.at_eof():
                await asyncio.sleep(DRIP_SECONDS)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        cut[0] += 1
        await asyncio.sleep(0.1)


async def dribble(port: int, count: int, seconds: float) -> None:
    """The ``--dribble-port`` mode: ``count`` slow connections for ``seconds``."""
    cut = [0]
    tasks = [asyncio.create_task(_dribbler(port, cut)) for _ in range(count)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    print(f"slow connections cut off by the server: {cut[0]}", flush=True)


async def measure(slow: int, callbacks: int) -> None:
    async with scratch_database("sqlite", "") as url:
        ids = await seed_pending(url, 2 * callbacks + 100)
        port = callback_ingest.free_port()
        env = {
            "TRACKER_DATABASE_URL": plain_url(url),
            "TRACKER_CALLBACK_SECRETS": callback_ingest.SECRET,
            "TRACKER_DATA_DIR": tempfile.mkdtemp(prefix="tracker-bench-"),
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "tracker", "serve", "--no-dispatcher", "--port", str(port)]
        with callback_ingest.server(command, env, port) as base:
            await loadgen.run(base, callback_ingest.requests_for(ids, 0, 100), 4)
            quiet = await loadgen.run(
                base,
                callback_ingest.requests_for(ids, 100, callbacks),
                CALLBACK_CONCURRENCY,
                CALLBACK_RATE,
            )
            seconds = callbacks / CALLBACK_RATE + 15
            dribblers = subprocess.Popen(  # noqa: ASYNC220 - a child for the whole round
                [
                    sys.executable,
                    "-m",
                    "bench.slow_clients",
                    "--dribble-port",
                    str(port),
                    "--slow",
                    str(slow),
                    "--seconds",
                    str(seconds),
                ],
                env=os.environ.copy(),
            )
            await asyncio.sleep(server.HEADER_TIMEOUT_SECONDS)  # every slow connection open
            loaded = await loadgen.run(
                base,
                callback_ingest.requests_for(ids, 100 + callbacks, callbacks),
                CALLBACK_CONCURRENCY,
                CALLBACK_RATE,
            )
            dribblers.wait(seconds + 10)
    for name, result in (("no slow clients", quiet), (f"{slow} slow clients", loaded)):
        print(
            f"{name:>18}: p50 {result.percentile(50) * 1000:6.1f} ms, "
            f"p99 {result.percentile(99) * 1000:6.1f} ms, statuses {result.statuses}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=3000, help="slow connections held open")
    parser.add_argument("--callbacks", type=int, default=1000, help="callbacks per round")
    parser.add_argument("--dribble-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    started = time.monotonic()
    if args.dribble_port:
        asyncio.run(dribble(args.dribble_port, args.slow, args.seconds))
        return
    asyncio.run(measure(args.slow, args.callbacks))
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
