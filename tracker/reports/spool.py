"""The local spool: callbacks we answered 200 but could not write to the database.

Appends are fsynced before the callback is answered, so an acknowledged report
survives a crash. The replayer renames the spool before reading it (appends go
on into a fresh file), streams it in batches from a thread (never the whole
file, never on the event loop), applies it idempotently (receipts are
deduplicated), and deletes it only after every receipt in it was committed or
quarantined.

A receipt the database refuses on its own (while it accepts the others) would
block every replay after it, so it is set aside in ``<spool>.quarantine``
(fsynced, with the reason) instead of being dropped: an acknowledged report is
never lost. Its lines have the spool's format, so once the cause is fixed an
operator replays them by renaming the file to ``<spool>.<n>.replaying`` (a
replay retried after an outage may have set a receipt aside twice: harmless,
receipts are deduplicated).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Generator
from pathlib import Path

from tracker import clock, logs
from tracker.reports import reading

log = logs.get_logger(__name__)
CLAIMED_SUFFIX = ".replaying"
QUARANTINE_SUFFIX = ".quarantine"


def _set_aside_before(line: bytes, before: dt.datetime) -> bool:
    """Whether a quarantine line was set aside before ``before`` (False if unreadable)."""
    try:
        stamp = dt.datetime.fromisoformat(json.loads(line)["quarantined_at"])
        return clock.require_aware(stamp) < before
    except (ValueError, KeyError, TypeError):
        return False


def _open_locked(path: Path) -> int:
    """An append descriptor for ``path`` under an exclusive lock (across processes),
    reopened if the path was renamed while this one waited for the lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # read: the last byte
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == path.stat().st_ino:
                return fd
        except FileNotFoundError:
            pass  # renamed by a claim: open the new file
        os.close(fd)


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.quarantine_path = path.with_name(path.name + QUARANTINE_SUFFIX)
        self._lock = threading.Lock()  # appends and claims come from worker threads

    def append(self, receipts: list[reading.Receipt]) -> None:
        """Write and fsync (blocking: call it from a thread)."""
        self._append_lines(self.path, [r.to_json() for r in receipts])

    def quarantine(self, receipt: reading.Receipt, reason: str) -> None:
        """Set aside a receipt that cannot be applied (fsynced; blocking)."""
        line = {**receipt.to_json(), "quarantined_at": clock.utcnow().isoformat(), "reason": reason}
        self._append_lines(self.quarantine_path, [line])

    def _append_lines(self, path: Path, lines: list[dict[str, object]]) -> None:
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _open_locked(path)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # after a torn line, start a line of our own
                view = memoryview(data)
                while view:  # a short write is continued, never fsynced half-done
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # releases the lock

    def claim(self) -> list[Path]:
        """Files ready to replay: earlier claims first, then the current spool.

        Renamed under the same file lock as appends (another process, e.g. the
        server beside ``tracker callbacks replay``, may be appending): an append
        that waited for the lock finds the path renamed and writes a fresh file.
        """
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > 0:
                fd = _open_locked(self.path)
                try:
                    claimed = self.path.with_name(
                        f"{self.path.name}.{time.time_ns()}{CLAIMED_SUFFIX}"
                    )
                    self.path.rename(claimed)
                finally:
                    os.close(fd)
        return sorted(self.path.parent.glob(f"{self.path.name}.*{CLAIMED_SUFFIX}"))

    def batches(self, path: Path, size: int) -> Generator[list[reading.Receipt], None, None]:
        """The receipts in a claimed file, in lists of at most ``size``, streamed line
        by line: memory holds one batch, never the file (blocking: step it from a
        thread). A line that cannot be read (a crash mid-write, a hand edit) is
        quarantined as it is, never silently dropped."""
        batch: list[reading.Receipt] = []
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                receipt = self._parse_line(path, number, raw)
                if receipt is not None:
                    batch.append(receipt)
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def read(self, path: Path) -> list[reading.Receipt]:
        """Every receipt in a claimed file at once (for small files: replay streams)."""
        return [receipt for batch in self.batches(path, 1024) for receipt in batch]

    def _parse_line(self, path: Path, number: int, raw: bytes) -> reading.Receipt | None:
        if not raw.strip():
            return None
        try:
            return reading.Receipt.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError):  # UnicodeDecodeError is a ValueError
            log.warning("spool_line_unreadable", file=path.name, line=number)
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            unreadable = {"raw": line, "quarantined_at": clock.utcnow().isoformat()}
            self._append_lines(self.quarantine_path, [{**unreadable, "reason": "unreadable"}])
            return None

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

    def prune_quarantine(self, before: dt.datetime, *, dry_run: bool = False) -> int:
        """Drop the quarantined receipts set aside before ``before`` (retention: they hold
        numbers and KIMISMS's text); how many. A line whose time cannot be read is kept.
        Rewritten to a new file renamed over the old one, under the appends' lock
        (blocking: call it from a thread)."""
        with self._lock:
            if not self.quarantine_path.exists():
                return 0
            fd = _open_locked(self.quarantine_path)
            try:
                with open(fd, "rb", closefd=False) as handle:
                    lines = handle.readlines()
                kept = [line for line in lines if not _set_aside_before(line, before)]
                if dry_run or len(kept) == len(lines):
                    return len(lines) - len(kept)
                fresh = self.quarantine_path.with_name(self.quarantine_path.name + ".pruning")
                with fresh.open("wb") as out:
                    out.writelines(kept)
                    out.flush()
                    os.fsync(out.fileno())
                fresh.chmod(0o600)
                fresh.rename(self.quarantine_path)  # a waiting append reopens the new file
                return len(lines) - len(kept)
            finally:
                os.close(fd)

    def quarantined(self) -> int:
        """How many receipts were set aside (for operators and tests)."""
        try:
            with self.quarantine_path.open("rb") as handle:
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0
