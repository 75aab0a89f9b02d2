"""Webhook event types, the status each comes from, an endpoint's subscription, the body.

The body follows Standard Webhooks: ``{"type": ..., "timestamp": ..., "data": ...}``,
compact JSON in that key order, serialised as the API serialises its answers
(``pydantic_core``: ISO 8601 times with ``Z``, UUIDs as text, UTF-8), so ``data``
reads exactly as ``GET /v1/messages/{id}`` shows the message. ``timestamp`` is when
the event happened; the time of each attempt rides in ``webhook-timestamp``.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pydantic_core

from tracker import clock
from tracker.domain import status

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping


class EventType(enum.StrEnum):
    """What a webhook delivery tells; ``message.*`` follow a message's status."""

    MESSAGE_PENDING = "message.pending"  # accepted by KIMISMS
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_REJECTED = "message.rejected"
    MESSAGE_EXPIRED = "message.expired"
    MESSAGE_CANCELLED = "message.cancelled"
    WEBHOOK_TEST = "webhook.test"  # sent on request (`tracker webhooks test`), to any endpoint


# `queued` and `sending` have no event: a caller already knows the first from its 202,
# and the second is our own business (it may even step back to `queued`).
FOR_STATUS: Mapping[status.Status, EventType] = MappingProxyType(
    {
        status.Status.PENDING: EventType.MESSAGE_PENDING,
        status.Status.DELIVERED: EventType.MESSAGE_DELIVERED,
        status.Status.FAILED: EventType.MESSAGE_FAILED,
        status.Status.REJECTED: EventType.MESSAGE_REJECTED,
        status.Status.EXPIRED: EventType.MESSAGE_EXPIRED,
        status.Status.CANCELLED: EventType.MESSAGE_CANCELLED,
    }
)

# The ones an endpoint may subscribe to, in their declared order; the default is all.
MESSAGE_EVENTS: tuple[EventType, ...] = tuple(FOR_STATUS.values())


def for_status(new_status: status.Status) -> EventType | None:
    """The event a move to ``new_status`` causes, or None when it causes none."""
    return FOR_STATUS.get(new_status)


def parse_subscription(names: Iterable[str] | str | None) -> tuple[EventType, ...]:
    """An endpoint's ``events``: None means all message events; ValueError names a bad one.

    A string is read as comma-separated names (the CLI's ``--events``). The answer
    holds each event once, in declared order, so equal subscriptions compare equal.
    """
    if names is None:
        return MESSAGE_EVENTS
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    chosen: set[EventType] = set()
    for name in names:
        chosen.add(_subscribable(name))
    if not chosen:
        raise ValueError("subscribe to at least one event, or leave events out for all of them")
    return tuple(event for event in MESSAGE_EVENTS if event in chosen)


def _subscribable(name: str) -> EventType:
    if name == EventType.WEBHOOK_TEST:
        raise ValueError(f"{name!r} is sent on request to any endpoint: it is not subscribed to")
    if name not in set(MESSAGE_EVENTS):
        known = ", ".join(MESSAGE_EVENTS)
        raise ValueError(f"unknown event {name!r}: the events are {known}")
    return EventType(name)


def body(event_type: EventType, timestamp: dt.datetime, data: Mapping[str, Any]) -> bytes:
    """The signed body: compact JSON ``{"type", "timestamp", "data"}`` in that order."""
    document = {
        "type": event_type.value,
        "timestamp": clock.require_aware(timestamp),
        "data": dict(data),
    }
    return pydantic_core.to_json(document)
