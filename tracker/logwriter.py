"""Log lines leave the event loop through a queue; one thread writes them to stdout.

Writing a line is a system call, and it blocks while the pipe to a slow log
collector is full. On the callback route that was a third of a request's time,
and a stalled pipe would have stalled every callback. So the loop only queues
rendered lines (the pattern of the standard library's QueueHandler), and a
daemon thread writes whatever has queued up in one call, then flushes: lines
still appear within milliseconds, in order.

Errors are waited for (briefly), so the line that explains a crash is out
before it; everything else is drained at exit. What a hard kill (SIGKILL, OOM)
can lose is the last few milliseconds of lines.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading

MAX_LINES_PER_WRITE = 1000
MAX_QUEUED_LINES = 100_000  # about 30 MB; past it, lines are dropped (and counted)
FLUSH_TIMEOUT_SECONDS = 1.0


class LineWriter:
    """A queue of rendered lines and the thread that writes them to ``sys.stdout``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stalled = False  # a flush timed out: stdout is not draining
        self.dropped = 0

    def put(self, line: str, *, urgent: bool = False) -> None:
        """Queue a line; ``urgent`` (errors) also waits until it is written."""
        if self._thread is None:
            self._start()
        if self._queue.qsize() >= MAX_QUEUED_LINES:  # stdout stalled for long: memory first
            self.dropped += 1
            return
        self._queue.put(line)
        if urgent:
            self.flush()

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait (up to ``timeout``) until every line queued so far is written.

        While stdout is stalled (an earlier flush timed out), returns at once:
        a storm of error lines must not freeze the caller a second at a time.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stalled:
            return
        written = threading.Event()
        self._queue.put(written)
        if not written.wait(timeout):
            self._stalled = True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._write_forever, name="log-writer", daemon=True
                )
                thread.start()
                self._thread = thread

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_LINES_PER_WRITE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [item for item in batch if isinstance(item, str)]
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                lines.append(
                    f'{{"event": "log_lines_dropped", "level": "warning", "count": {dropped}}}'
                )
            if lines:
                _write(lines)
                self._stalled = False
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _after_fork(self) -> None:
        """A forked child has the queue but not the thread: start afresh."""
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()


def _write(lines: list[str]) -> None:
    stream = sys.stdout  # looked up each time: tests and daemons swap it
    if stream is None:
        return
    try:
        stream.write("\n".join(lines) + "\n")
        stream.flush()
    except (OSError, ValueError):  # stdout closed or gone: nowhere left to log to
        pass


WRITER = LineWriter()
atexit.register(WRITER.flush)
os.register_at_fork(after_in_child=WRITER._after_fork)  # noqa: SLF001 - its own module
