"""UUIDv7 ids: valid, increasing, and at the real time even in bursts."""

from __future__ import annotations

import time

from tracker import ids


def test_ids_are_version_7_rfc_variant() -> None:
    """The version and variant bits say what the id is."""
    value = ids.uuid7()
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"


def test_a_burst_of_ids_is_strictly_increasing() -> None:
    """Sorting by id is sorting by creation, within one process."""
    burst = [ids.uuid7() for _ in range(20_000)]
    assert burst == sorted(burst)
    assert len(set(burst)) == len(burst)


def test_a_burst_does_not_run_ahead_of_the_clock() -> None:
    """10,000 ids in a row carry (about) the time they were made, not seconds later."""
    burst = [ids.uuid7() for _ in range(10_000)]
    now_ms = time.time_ns() // 1_000_000
    assert ids.timestamp_ms(burst[-1]) <= now_ms + 5
