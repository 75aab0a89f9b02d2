"""The heartbeat file and its probe: fresh passes, stale or missing fails."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tracker import heartbeat


async def test_beat_touches_the_file_until_stopped(tmp_path: Path) -> None:
    """The first beat comes at once (the directory is made); stopping ends the task."""
    path = heartbeat.path_in(tmp_path / "data")
    stopping = asyncio.Event()
    task = asyncio.create_task(heartbeat.beat(path, stopping, every=0.01))
    await asyncio.sleep(0)  # one step of the task: its first beat
    assert path.exists()
    stopping.set()
    await asyncio.wait_for(task, 5)
    age = heartbeat.age_seconds(path)
    assert age is not None
    assert age < 60


def test_the_probe_passes_fresh_and_fails_stale_or_missing(tmp_path: Path) -> None:
    """Exit 0 under MAX_AGE, 1 past it or with no file, 2 for a wrong call."""
    path = tmp_path / "worker.heartbeat"
    assert heartbeat.main([str(path), "60"]) == 1
    assert heartbeat.age_seconds(path) is None
    path.touch()
    assert heartbeat.main([str(path), "60"]) == 0
    old = time.time() - 120
    os.utime(path, (old, old))
    assert heartbeat.main([str(path), "60"]) == 1
    assert heartbeat.main([str(path)]) == 2
