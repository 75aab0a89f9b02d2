"""The local spool: callbacks we answered 200 but could not write to the database.

Appends are fsynced before the callback is answered, so an acknowledged report
survives a crash. The replayer renames the spool before reading it (appends go
on into a fresh file), applies it idempotently (receipts are deduplicated), and
deletes it only after every receipt in it was committed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tracker import logs
from tracker.reports import Receipt

log = logs.get_logger(__name__)
CLAIMED_SUFFIX = ".replaying"


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # appends and claims come from worker threads

    def append(self, receipts: list[Receipt]) -> None:
        """Write and fsync (blocking: call it from a thread)."""
        data = "".join(json.dumps(r.to_json(), separators=(",", ":")) + "\n" for r in receipts)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def claim(self) -> list[Path]:
        """Files ready to replay: earlier claims first, then the current spool."""
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > 0:
                claimed = self.path.with_name(f"{self.path.name}.{time.time_ns()}{CLAIMED_SUFFIX}")
                self.path.rename(claimed)
        return sorted(self.path.parent.glob(f"{self.path.name}.*{CLAIMED_SUFFIX}"))

    @staticmethod
    def read(path: Path) -> list[Receipt]:
        """The receipts in a claimed file; a torn last line (crash mid-write) is skipped."""
        receipts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                receipts.append(Receipt.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                log.warning("spool_line_unreadable", file=path.name, line=number)
        return receipts

    def backlog(self) -> int:
        """How many receipts wait in the spool (for the metric and the stats)."""
        if not self.path.parent.exists():
            return 0
        files = [self.path, *self.path.parent.glob(f"{self.path.name}.*{CLAIMED_SUFFIX}")]
        total = 0
        for file in files:
            try:
                with file.open("rb") as handle:
                    total += sum(1 for _ in handle)
            except FileNotFoundError:
                continue
        return total
