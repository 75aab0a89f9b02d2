"""A small keep-alive HTTP/1.1 load generator (loopback only, bounded).

httpx costs more per request than the servers under test, so this speaks just
enough HTTP/1.1 over asyncio streams: POST with Content-Length, read the status
line, headers and a Content-Length body. The same generator drives every
target in a run, so ratios between targets are fair.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in {b"\r\n", b""}:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    url: str,
    requests: Sequence[Request],
    queue: asyncio.Queue[int],
    result: Result,
    pace: _Pace | None,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if pace is not None:
                await pace.wait(index)
            request = requests[index]
            head = (
                f"POST {request.path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(request.body)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + request.body)
            status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


class _Pace:
    """Open-loop schedule: request i may start at start + i / rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.perf_counter()

    async def wait(self, index: int) -> None:
        delay = self.start + index / self.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def run(
    url: str, requests: Sequence[Request], concurrency: int, rate: float | None = None
) -> Result:
    """Send every request once, ``concurrency`` connections at a time (optionally paced)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)
    result = Result()
    pace = _Pace(rate) if rate else None
    started = time.perf_counter()
    await asyncio.gather(*(_worker(url, requests, queue, result, pace) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result
