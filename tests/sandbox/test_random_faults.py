"""Faults drawn from the config's rates, for ordinary numbers, and their reproducibility."""

from __future__ import annotations

import random
import time

from tests.sandbox.support import CONTACT, MakeInProcess, Receiver, fast_config
from tracker.sandbox.faults import (
    DELIVERED,
    FAILED,
    FAILURES,
    PENDING,
    Fault,
    Plan,
    Step,
    callback_steps,
    plan_for,
)

ALL_RATES = {
    "error_500_rate": 1.0,
    "accept_then_hang_rate": 1.0,
    "duplicate_callback_rate": 1.0,
    "stale_callback_rate": 1.0,
    "early_callback_rate": 1.0,
    "dropped_callback_rate": 1.0,
}


def test_zero_rates_draw_no_fault() -> None:
    """The default config (failure_ratio 0 here) behaves like the documented provider."""
    plan = plan_for(CONTACT, fast_config(), random.Random(1))

    assert plan == Plan(frozenset(), DELIVERED)


def test_rates_of_one_draw_every_fault() -> None:
    """Each rate maps to its fault; failure_ratio=1 picks one of the failure reports."""
    plan = plan_for(CONTACT, fast_config(failure_ratio=1.0, **ALL_RATES), random.Random(1))

    assert plan.faults == {
        Fault.ERROR_500,
        Fault.ACCEPT_THEN_HANG,
        Fault.DUPLICATE_CALLBACK,
        Fault.STALE_CALLBACK,
        Fault.EARLY_CALLBACK,
        Fault.DROPPED_CALLBACK,
    }
    assert plan.final in FAILURES


def test_a_partial_rate_hits_about_that_share() -> None:
    """failure_ratio=0.1 fails roughly one message in ten."""
    config = fast_config(failure_ratio=0.1)
    rng = random.Random(42)

    failures = sum(plan_for(CONTACT, config, rng).final != DELIVERED for _ in range(2000))

    assert 150 < failures < 250


def test_callback_steps_follow_the_faults() -> None:
    """Early is due at once, duplicates and stale reports follow, dropped posts nothing."""
    config = fast_config(callback_delay_seconds=1.0)

    def steps(*faults: Fault) -> tuple[Step, ...]:
        return callback_steps(Plan(frozenset(faults), DELIVERED), config)

    assert steps() == (Step(1.0, DELIVERED),)
    assert steps(Fault.EARLY_CALLBACK, Fault.DUPLICATE_CALLBACK) == (
        Step(0.0, DELIVERED),
        Step(0.0, DELIVERED),
    )
    assert steps(Fault.STALE_CALLBACK) == (Step(1.0, DELIVERED), Step(0.0, PENDING))
    assert steps(Fault.LATE_CALLBACK) == (Step(config.late_callback_seconds, DELIVERED),)
    assert steps(Fault.FAILED_THEN_DELIVERED) == (Step(1.0, FAILED), Step(1.0, DELIVERED))
    assert steps(Fault.DROPPED_CALLBACK, Fault.DUPLICATE_CALLBACK) == ()


async def test_a_seed_reproduces_message_ids_and_outcomes(make_in_process: MakeInProcess) -> None:
    """Two sandboxes with one seed give the same ids and final statuses; another seed differs."""

    async def run(seed: int) -> list[tuple[str, str]]:
        provider = await make_in_process(seed=seed, failure_ratio=0.5)
        for _ in range(5):
            await provider.send()
        return [(m["message_id"], m["final_status"]) for m in await provider.messages()]

    first, again, other = await run(11), await run(11), await run(12)

    assert first == again
    assert first != other


async def test_error_500_rate_refuses_without_sending(make_in_process: MakeInProcess) -> None:
    """error_500_rate=1 answers every ordinary send 500 and records no send."""
    provider = await make_in_process(error_500_rate=1.0)

    response = await provider.send(key="k")

    assert response.status_code == 500
    assert (await provider.stats())["accepted_sends"] == 0


async def test_latency_is_added_to_every_send_answer(make_in_process: MakeInProcess) -> None:
    """latency_seconds delays send-sms answers, accepted or not, but not token calls."""
    provider = await make_in_process(latency_seconds=0.3)
    started = time.monotonic()
    await provider.token()
    token_seconds = time.monotonic() - started

    started = time.monotonic()
    accepted = await provider.send()
    refused = await provider.client.post("/api/send-sms", json={})
    send_seconds = time.monotonic() - started

    assert (accepted.status_code, refused.status_code) == (200, 401)
    assert token_seconds < 0.3
    assert send_seconds >= 0.6


async def test_accept_then_hang_rate_sends_and_answers_late(
    make_in_process: MakeInProcess,
) -> None:
    """A hanging answer arrives hang_seconds late, and the send was recorded meanwhile."""
    provider = await make_in_process(accept_then_hang_rate=1.0, hang_seconds=0.3)
    await provider.token()
    started = time.monotonic()

    response = await provider.send()

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert (await provider.stats())["accepted_sends"] == 1


async def test_callback_rates_shape_the_reports(
    make_in_process: MakeInProcess, receiver: Receiver
) -> None:
    """Early, duplicate and stale rates of 1: reports before the answer, twice, then Pending."""
    provider = await make_in_process(
        early_callback_rate=1.0, duplicate_callback_rate=1.0, stale_callback_rate=1.0
    )

    await provider.send(callback_url=receiver.url())
    received_before_answer = len(receiver.received)
    await receiver.wait_for(3)
    await provider.settled()

    assert received_before_answer == 1
    assert receiver.statuses() == ["Delivered", "Delivered", "Pending"]


async def test_dropped_callback_rate_posts_nothing(
    make_in_process: MakeInProcess, receiver: Receiver
) -> None:
    """dropped_callback_rate=1 accepts the send but never posts its report."""
    provider = await make_in_process(dropped_callback_rate=1.0)

    await provider.send(callback_url=receiver.url())

    assert provider.sandbox.courier.pending == 0
    assert (await provider.stats())["callbacks_dropped"] == 1
    assert receiver.received == []
