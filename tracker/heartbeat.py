"""The worker's heartbeat: a file touched while its event loop turns, for a liveness probe.

``tracker worker`` serves no HTTP, so Kubernetes cannot ask it anything; instead the
worker touches ``$TRACKER_DATA_DIR/worker.heartbeat`` every few seconds from the same
event loop that dispatches, and the probe (``python -m tracker.heartbeat PATH MAX_AGE``)
fails once the file is older than MAX_AGE. A loop that hangs (blocked in a call, spinning)
stops the beats and the pod is restarted; the dispatcher's own waits are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from tracker import logs

log = logs.get_logger(__name__)
BEAT_SECONDS = 5.0
FILE_NAME = "worker.heartbeat"


def path_in(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


async def beat(path: Path, stopping: asyncio.Event, every: float = BEAT_SECONDS) -> None:
    """Touch ``path`` now and every ``every`` seconds until ``stopping``.

    An unwritable data dir stops the beats with a warning, not the worker: outside
    Kubernetes nothing may read them (and there the probe then restarts the pod).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while not stopping.is_set():
            path.touch()  # noqa: ASYNC240 - microseconds, and on the very loop it vouches for
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
    except OSError as exc:
        log.warning("heartbeat_unwritable", path=str(path), error=exc.strerror)


def age_seconds(path: Path) -> float | None:
    """Seconds since the last beat; None when there was none."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def main(argv: list[str]) -> int:
    """The probe: exit 0 while the heartbeat is younger than MAX_AGE seconds, else 1."""
    if len(argv) != 2:  # noqa: PLR2004 - PATH and MAX_AGE
        sys.stderr.write("usage: python -m tracker.heartbeat PATH MAX_AGE_SECONDS\n")
        return 2
    age, max_age = age_seconds(Path(argv[0])), float(argv[1])
    if age is None or age > max_age:
        shown = "no heartbeat" if age is None else f"last heartbeat {age:.0f} s ago"
        sys.stderr.write(f"{shown} in {argv[0]} (at most {max_age:g} s)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
