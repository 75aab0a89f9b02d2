"""The doorbell that wakes an idle dispatcher (issue 14), without a database."""

from __future__ import annotations

import asyncio
import datetime as dt

from tracker import wakeup

LONG = 60.0  # a wait that only a ring or a stop can end within the test's time


async def test_a_ring_before_the_wait_is_kept_for_it() -> None:
    """Rung while the dispatcher looked for work: its next wait returns at once."""
    doorbell = wakeup.Doorbell()
    doorbell.ring()
    await asyncio.wait_for(doorbell.wait(LONG, asyncio.Event()), 5)
    assert doorbell.rung


async def test_a_clear_forgets_earlier_rings() -> None:
    """Cleared before looking: a ring from before the look does not wake the next wait."""
    doorbell = wakeup.Doorbell()
    doorbell.ring()
    doorbell.clear()
    await doorbell.wait(0.01, asyncio.Event())
    assert not doorbell.rung


async def test_ring_in_wakes_a_waiter_when_a_retry_comes_due() -> None:
    """A retry scheduled a moment ahead rings the doorbell then, long before the slow poll."""
    doorbell = wakeup.Doorbell()
    doorbell.ring_in(0.01)
    await asyncio.wait_for(doorbell.wait(LONG, asyncio.Event()), 10)
    assert doorbell.rung


async def test_stopping_ends_the_wait_without_a_ring() -> None:
    """stop() ends an idle wait at once."""
    doorbell = wakeup.Doorbell()
    stopping = asyncio.Event()
    stopping.set()
    await asyncio.wait_for(doorbell.wait(LONG, stopping), 5)
    assert not doorbell.rung


def test_only_rows_without_send_at_are_due_now() -> None:
    """A batch wakes the dispatcher if any message is due now; a batch all for later does not."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert wakeup.due_now([{"send_at": later}, {"send_at": None}])
    assert not wakeup.due_now([{"send_at": later}])
