"""The pacer keeps every 60 s window at or under the limit, evenly spaced."""

from __future__ import annotations

import itertools

import pytest

from tracker.dispatch.pacing import JITTER_MARGIN_SECONDS, WINDOW_SECONDS, Pacer


class FakeTime:
    """A clock that advances only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def _starts(pacer: Pacer, fake: FakeTime, calls: int) -> list[float]:
    starts = []
    for _ in range(calls):
        await pacer.acquire()
        starts.append(fake.now)
    return starts


async def test_calls_are_spaced_evenly_at_the_configured_rate() -> None:
    """60/min means one call a second, not a burst of 60 and a wait."""
    fake = FakeTime()
    pacer = Pacer(60, clock=fake.clock, sleep=fake.sleep)
    starts = await _starts(pacer, fake, 5)
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [1.0] * 4


@pytest.mark.parametrize("per_minute", [1, 7, 60, 600])
async def test_no_window_of_60_seconds_holds_more_than_the_limit(per_minute: int) -> None:
    """Sliding-window check over a long run, including the jitter margin."""
    fake = FakeTime()
    pacer = Pacer(per_minute, clock=fake.clock, sleep=fake.sleep)
    starts = await _starts(pacer, fake, per_minute * 3 + 5)
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s < start + WINDOW_SECONDS + JITTER_MARGIN_SECONDS]
        assert len(in_window) <= per_minute
    achieved = (len(starts) - 1) / (starts[-1] - starts[0]) * 60
    assert achieved >= per_minute * 0.98


async def test_a_pause_holds_every_caller() -> None:
    """After a 429 with Retry-After: 5, the next call waits five seconds."""
    fake = FakeTime()
    pacer = Pacer(60, clock=fake.clock, sleep=fake.sleep)
    await pacer.acquire()
    pacer.pause(5)
    assert pacer.paused_for == 5
    await pacer.acquire()
    assert fake.now == 1005.0


def test_a_limit_below_one_is_refused() -> None:
    """A zero rate would stall forever; it is a configuration error."""
    with pytest.raises(ValueError, match="at least 1"):
        Pacer(0)


async def test_a_slow_step_between_ready_and_acquire_never_shortens_an_interval() -> None:
    """wait_ready(ahead) lets a caller claim early; the turn is stamped when it is taken."""
    fake = FakeTime()
    pacer = Pacer(60, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for claim_seconds in [0.1, 2.0, 0.1, 0.1]:  # the second "claim" waits on a lock
        await pacer.wait_ready(ahead=0.25)
        fake.now += claim_seconds
        await pacer.acquire()
        starts.append(fake.now)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps == [2.75, 1.0, 1.0]  # stretched by the slow claim, never squeezed
