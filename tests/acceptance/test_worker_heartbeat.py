"""`tracker worker` keeps a heartbeat file fresh while its loop turns; the probe reads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.processes import run_tracker, started
from tracker import heartbeat

STALE_SECONDS = 60.0


def probe(path: Path) -> subprocess.CompletedProcess[str]:
    """The Kubernetes liveness command, as the dispatcher manifest runs it."""
    command = [sys.executable, "-m", "tracker.heartbeat", str(path), str(STALE_SECONDS)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_a_hung_worker_stops_its_heartbeat_and_the_probe_fails(tmp_path: Path) -> None:
    """Running: the probe passes; stopped (SIGSTOP, a hung loop): no new beat, the probe fails."""
    data = tmp_path / "data"
    env = {
        "TRACKER_DATA_DIR": str(data),
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_KIMISMS_BASE_URL": "http://127.0.0.1:9",  # nothing is queued: never called
        "TRACKER_KIMISMS_CLIENT_ID": "id",
        "TRACKER_KIMISMS_CLIENT_SECRET": "secret",
    }
    beats = heartbeat.path_in(data)
    assert probe(beats).returncode == 1  # no worker yet, no heartbeat
    assert run_tracker("db", "upgrade", env=env).returncode == 0
    with started("worker", env=env) as worker:
        wait_for(beats.exists)
        assert probe(beats).returncode == 0
        os.kill(worker.process.pid, signal.SIGSTOP)
        try:
            old = time.time() - 2 * STALE_SECONDS
            os.utime(beats, (old, old))  # as if the last beat were long ago
            time.sleep(2 * heartbeat.BEAT_SECONDS)  # a turning loop would have beaten twice
            stale = probe(beats)
            assert stale.returncode == 1
            assert "last heartbeat" in stale.stderr
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        wait_for(lambda: probe(beats).returncode == 0)  # it beats again once it runs
