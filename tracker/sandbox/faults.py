"""Which faults a send suffers: the magic-number table and the random draws.

Tests need faults on demand and deterministically, and the tracker validates
recipients before it sends, so every magic number is a *valid* Kenyan mobile
number (``phonenumbers``, region KE, type MOBILE) in the obviously fake block
``2547000005NN``. A magic number overrides the random rates in the config: its
faults and its final report are always the same. Any other contact draws its
faults from the config's rates. ``docs/sandbox.md`` shows the same table.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from tracker.sandbox.config import SandboxConfig


class Fault(enum.StrEnum):
    """One way the provider can misbehave on a single send."""

    SLOW_RESPONSE = "slow_response"  # the answer waits slow_response_seconds more
    ERROR_500_ONCE = "error_500_once"  # 500 on the first attempt per Idempotency-Key
    ERROR_500 = "error_500"  # 500 on every attempt; nothing is sent
    ACCEPT_THEN_HANG = "accept_then_hang"  # sent and recorded, answer delayed hang_seconds
    BURST_429 = "burst_429"  # first attempt per key starts a 429 burst
    DUPLICATE_CALLBACK = "duplicate_callback"  # the final report is posted twice
    STALE_CALLBACK = "stale_callback"  # a non-final report follows the final one
    EARLY_CALLBACK = "early_callback"  # the report is posted before the answer
    DROPPED_CALLBACK = "dropped_callback"  # no report is ever posted
    LATE_CALLBACK = "late_callback"  # the report waits late_callback_seconds
    FAILED_THEN_DELIVERED = "failed_then_delivered"  # "Failed", later "Delivered"


@dataclass(frozen=True)
class Report:
    """A delivery status as the provider words it in a callback."""

    status: str
    description: str


PENDING = Report("Pending", "Initiated")
DELIVERED = Report("Delivered", "Message delivered successfully")
FAILED = Report("Failed", "Message delivery failed")
REJECTED = Report("Rejected", "Message rejected by the network")
UNDELIVERED = Report("Undelivered", "Message could not be delivered to the handset")
EXPIRED = Report("Expired", "Message validity period expired")
FAILURES = (FAILED, REJECTED, UNDELIVERED, EXPIRED)


@dataclass(frozen=True)
class MagicNumber:
    """A recipient that always triggers the same behaviour."""

    contact: str
    summary: str
    faults: frozenset[Fault] = frozenset()
    final: Report = DELIVERED


def _magic(suffix: str, summary: str, *faults: Fault, final: Report = DELIVERED) -> MagicNumber:
    return MagicNumber(f"2547000005{suffix}", summary, frozenset(faults), final)


MAGIC_NUMBERS: dict[str, MagicNumber] = {
    magic.contact: magic
    for magic in (
        _magic("00", "always Delivered, whatever failure_ratio says"),
        _magic("01", "slow answer: +slow_response_seconds", Fault.SLOW_RESPONSE),
        _magic("02", "500 on the first attempt per Idempotency-Key", Fault.ERROR_500_ONCE),
        _magic("03", "500 on every attempt (never sent)", Fault.ERROR_500),
        _magic("04", "accepted, answer delayed hang_seconds", Fault.ACCEPT_THEN_HANG),
        _magic("05", "429 burst from the first attempt per key", Fault.BURST_429),
        _magic("06", "final report posted twice", Fault.DUPLICATE_CALLBACK),
        _magic("07", "stale Pending report after the final", Fault.STALE_CALLBACK),
        _magic("08", "report posted before the send-sms answer", Fault.EARLY_CALLBACK),
        _magic("09", "report dropped (never posted)", Fault.DROPPED_CALLBACK),
        _magic("10", "final report Failed", final=FAILED),
        _magic("11", "final report Rejected", final=REJECTED),
        _magic("12", "final report Undelivered", final=UNDELIVERED),
        _magic("13", "final report Expired", final=EXPIRED),
        _magic("14", "report posted after late_callback_seconds", Fault.LATE_CALLBACK),
        _magic("15", "Failed, then Delivered later", Fault.FAILED_THEN_DELIVERED),
    )
}

# Faults that fire only once per Idempotency-Key, so a client's retry succeeds.
ONCE_PER_KEY = frozenset({Fault.ERROR_500_ONCE, Fault.BURST_429})


@dataclass(frozen=True)
class Plan:
    """What happens to one send: its faults and the final report it earns."""

    faults: frozenset[Fault]
    final: Report


@dataclass(frozen=True)
class Step:
    """One callback to post, ``wait_seconds`` after the previous one."""

    wait_seconds: float
    report: Report


def _chance(rng: random.Random, rate: float) -> bool:
    """Draw only when the rate is set, so unused faults do not shift the seed's stream."""
    return rate > 0 and rng.random() < rate


def plan_for(contact: str, config: SandboxConfig, rng: random.Random) -> Plan:
    """The magic number's fixed plan, or one drawn from the config's rates."""
    magic = MAGIC_NUMBERS.get(contact)
    if magic is not None:
        return Plan(magic.faults, magic.final)
    rates = {
        Fault.ERROR_500: config.error_500_rate,
        Fault.ACCEPT_THEN_HANG: config.accept_then_hang_rate,
        Fault.DUPLICATE_CALLBACK: config.duplicate_callback_rate,
        Fault.STALE_CALLBACK: config.stale_callback_rate,
        Fault.EARLY_CALLBACK: config.early_callback_rate,
        Fault.DROPPED_CALLBACK: config.dropped_callback_rate,
    }
    faults = frozenset(fault for fault, rate in rates.items() if _chance(rng, rate))
    final = rng.choice(FAILURES) if _chance(rng, config.failure_ratio) else DELIVERED
    return Plan(faults, final)


def callback_steps(plan: Plan, config: SandboxConfig) -> tuple[Step, ...]:
    """The callbacks a plan posts, in order; the first may be due at once (early)."""
    if Fault.DROPPED_CALLBACK in plan.faults:
        return ()
    first_wait = config.callback_delay_seconds
    if Fault.EARLY_CALLBACK in plan.faults:
        first_wait = 0.0
    elif Fault.LATE_CALLBACK in plan.faults:
        first_wait = config.late_callback_seconds
    if Fault.FAILED_THEN_DELIVERED in plan.faults:
        steps = [Step(first_wait, FAILED), Step(config.callback_delay_seconds, DELIVERED)]
    else:
        steps = [Step(first_wait, plan.final)]
    if Fault.DUPLICATE_CALLBACK in plan.faults:
        steps.append(Step(0.0, steps[-1].report))
    if Fault.STALE_CALLBACK in plan.faults:
        steps.append(Step(0.0, PENDING))
    return tuple(steps)
