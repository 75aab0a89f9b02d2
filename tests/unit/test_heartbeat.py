"""The heartbeat file and its probe: fresh passes, stale or missing fails."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import structlog.testing

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


async def test_an_unwritable_data_dir_stops_the_beats_not_the_worker(tmp_path: Path) -> None:
    """A file where the directory should be: one warning, and the task ends without raising."""
    (tmp_path / "data").write_text("not a directory", encoding="utf-8")
    with structlog.testing.capture_logs() as logged:
        await heartbeat.beat(heartbeat.path_in(tmp_path / "data"), asyncio.Event(), every=0.01)
    assert [entry["event"] for entry in logged] == ["heartbeat_unwritable"]
