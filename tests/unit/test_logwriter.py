"""The log writer thread: lines in order, never blocking the caller on stdout."""

from __future__ import annotations

import io
import threading
import time

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
    writer.flush()
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
