"""Durations as operators write them: ``90s``, ``15m``, ``24h``, ``7d`` or plain seconds.

One syntax for the window of ``/v1/stats`` and the retention periods. Pure.
"""

from __future__ import annotations

import datetime as dt
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
KEEP = "keep"  # a retention period that never ends
_DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
SYNTAX = "a number of seconds or like 15m, 24h, 7d"


def parse(text: str) -> dt.timedelta:
    """The duration ``text`` names; ValueError (saying the syntax) for anything else."""
    found = _DURATION.fullmatch(text.lower())  # no signs, spaces or separators
    if found is None:
        raise ValueError(f"must be {SYNTAX}")
    return dt.timedelta(seconds=int(found[1]) * UNITS[found[2] or "s"])


def parse_period(text: str) -> dt.timedelta | None:
    """A retention period: a positive duration, or None for ``keep``."""
    if text.strip().lower() == KEEP:
        return None
    period = parse(text)
    if period <= dt.timedelta(0):
        raise ValueError(f"must be {SYNTAX}, above zero, or {KEEP!r}")
    return period


def format_period(period: dt.timedelta | None) -> str:
    """The shortest text ``parse_period`` reads back as ``period``."""
    if period is None:
        return KEEP
    seconds = int(period.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
