"""The log writer thread: lines in order, never blocking the caller on stdout."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import pytest

from tracker import logwriter


class BlockingStream(io.StringIO):
    """A stdout whose writes wait until released (a full pipe to a log collector)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def write(self, text: str) -> int:
        self.released.wait(5)
        return super().write(text)


def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_lines_come_out_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many lines from two threads: each thread's lines in its order, none lost."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    writer = logwriter.LineWriter()

    def log(prefix: str) -> None:
        for n in range(2000):
            writer.put(f"{prefix}{n}")

    threads = [threading.Thread(target=log, args=(p,)) for p in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4000
    for prefix in "ab":
        expected = [f"{prefix}{n}" for n in range(2000)]
        assert [line for line in lines if line[0] == prefix] == expected


def test_a_stalled_stdout_does_not_stall_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """While stdout blocks, put() returns at once; the lines follow once it drains."""
    stream = BlockingStream()
    monkeypatch.setattr("sys.stdout", stream)
    writer = logwriter.LineWriter()
    started = time.monotonic()
    for n in range(100):
        writer.put(f"line {n}")
    assert time.monotonic() - started < 0.5
    writer.flush(timeout=0.2)  # gives up: the stream is still stalled
    assert stream.getvalue() == ""
    stream.released.set()
    eventually(lambda: len(stream.getvalue().splitlines()) == 100)
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(100)]


def test_a_closed_stdout_is_survived(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nowhere to write is not an error for the caller, and the thread keeps going."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stdout", closed)
    writer = logwriter.LineWriter()
    writer.put("lost")
    writer.flush()
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    writer.put("kept")
    writer.flush()
    assert out.getvalue() == "kept\n"


def test_a_long_stall_drops_lines_past_the_bound_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory stays bounded while stdout is stuck; the count of lost lines is logged."""
    monkeypatch.setattr(logwriter, "MAX_QUEUED_LINES", 10)
    stream = BlockingStream()
    monkeypatch.setattr("sys.stdout", stream)
    writer = logwriter.LineWriter()
    writer.put("first")  # taken by the thread, which then blocks in write()
    time.sleep(0.1)
    for n in range(50):
        writer.put(f"line {n}")
    started = time.monotonic()
    writer.flush(timeout=0.2)
    writer.flush(timeout=5)  # stalled: returns at once instead of waiting again
    assert time.monotonic() - started < 1.0
    stream.released.set()
    eventually(lambda: "log_lines_dropped" in stream.getvalue())
    lines = stream.getvalue().splitlines()
    assert lines[:11] == ["first", *(f"line {n}" for n in range(10))]
    assert '"event": "log_lines_dropped"' in lines[-1]
    assert '"count": 40' in lines[-1]
