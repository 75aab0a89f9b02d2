"""Start our own commands as subprocesses in tests: free ports, readiness, cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tracker_command(*args: str) -> list[str]:
    """The installed CLI, run by the test's interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "tracker", *args]


def run_tracker(
    *args: str, env: Mapping[str, str], timeout: float = 60, pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tracker_command(*args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        pass_fds=pass_fds,
    )


def wait_until_ready(url: str, running: Running, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            code = running.process.returncode
            raise RuntimeError(f"process exited with {code}: {running.output()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass
class Running:
    """A started subprocess; its combined output goes to a file (a pipe could fill up)."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def started(
    *args: str,
    env: Mapping[str, str],
    ready_url: str | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[Running]:
    """A tracker subprocess, always stopped (TERM, then KILL) on exit; ``pass_fds`` it inherits."""
    with tempfile.NamedTemporaryFile(prefix="tracker-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(
            tracker_command(*args),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    running = Running(process, Path(log.name))
    try:
        if ready_url:
            wait_until_ready(ready_url, running)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
