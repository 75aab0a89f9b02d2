"""Webhook event types, the statuses they follow, subscriptions and the body, all pure."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.domain import status
from tracker.webhooks import events

AT = dt.datetime(2026, 12, 2, 1, 2, 3, 456_000, tzinfo=dt.UTC)
ALL_MESSAGE_EVENTS = (
    "message.pending",
    "message.delivered",
    "message.failed",
    "message.rejected",
    "message.expired",
    "message.cancelled",
)


def test_the_event_types_are_those_of_the_issue() -> None:
    """Six message events and webhook.test, spelled as receivers will match them."""
    assert [event.value for event in events.EventType] == [*ALL_MESSAGE_EVENTS, "webhook.test"]
    assert events.MESSAGE_EVENTS == ALL_MESSAGE_EVENTS


@pytest.mark.parametrize("final", sorted(status.FINAL))
def test_every_final_status_has_its_event(final: status.Status) -> None:
    """A message that ends, however it ends, tells its endpoints: message.<status>."""
    assert events.for_status(final) == f"message.{final.value}"


def test_acceptance_by_kimisms_is_message_pending() -> None:
    """pending (KIMISMS took it) is the one event before the end."""
    assert events.for_status(status.Status.PENDING) is events.EventType.MESSAGE_PENDING


@pytest.mark.parametrize("quiet", [status.Status.QUEUED, status.Status.SENDING])
def test_queued_and_sending_cause_no_event(quiet: status.Status) -> None:
    """Our own intermediate steps are not pushed to apps."""
    assert events.for_status(quiet) is None


def test_no_subscription_means_every_message_event() -> None:
    """An endpoint that names no events gets all six message events."""
    assert events.parse_subscription(None) == events.MESSAGE_EVENTS


def test_a_subscription_is_kept_once_each_in_declared_order() -> None:
    """Duplicates collapse and the order is canonical, so equal choices compare equal."""
    chosen = events.parse_subscription(["message.failed", "message.delivered", "message.failed"])
    assert chosen == (events.EventType.MESSAGE_DELIVERED, events.EventType.MESSAGE_FAILED)


def test_a_comma_separated_subscription_reads_like_a_list() -> None:
    """The CLI's --events a,b gives the same as the API's ["a", "b"]."""
    assert events.parse_subscription(" message.expired, message.pending ,") == (
        events.EventType.MESSAGE_PENDING,
        events.EventType.MESSAGE_EXPIRED,
    )


def test_an_unknown_event_is_refused_by_name() -> None:
    """A typo names itself and lists the events there are."""
    with pytest.raises(ValueError, match=r"unknown event 'message\.delivred': the events are"):
        events.parse_subscription(["message.pending", "message.delivred"])


def test_webhook_test_is_not_subscribed_to() -> None:
    """The test event goes to any endpoint on request, so naming it is refused, by name."""
    with pytest.raises(ValueError, match=r"'webhook\.test' is sent on request"):
        events.parse_subscription(["webhook.test"])


@pytest.mark.parametrize("empty", [[], "", " , "])
def test_an_empty_subscription_is_refused(empty: list[str] | str) -> None:
    """An endpoint that would receive nothing is a mistake; leaving events out means all."""
    with pytest.raises(ValueError, match="at least one event"):
        events.parse_subscription(empty)


def test_the_body_is_compact_json_in_the_specified_key_order() -> None:
    """type, timestamp, data: no spaces, ISO 8601 UTC with Z, the data as given."""
    data = {"id": uuid.UUID(int=1), "status": "delivered", "sequence": 3, "final_at": AT}
    assert events.body(events.EventType.MESSAGE_DELIVERED, AT, data) == (
        b'{"type":"message.delivered","timestamp":"2026-12-02T01:02:03.456000Z",'
        b'"data":{"id":"00000000-0000-0000-0000-000000000001","status":"delivered",'
        b'"sequence":3,"final_at":"2026-12-02T01:02:03.456000Z"}}'
    )


def test_the_body_is_utf_8_and_reads_back_as_the_data() -> None:
    """Non-ASCII text is sent as UTF-8, and a receiver's json.loads gets the same values."""
    data = {"message": "Habari, café ☕", "metadata": {"order": [1, 2]}}
    sent = events.body(events.EventType.WEBHOOK_TEST, AT, data)
    assert "café ☕".encode() in sent
    assert json.loads(sent)["data"] == data


def test_a_body_in_another_zone_is_sent_in_utc() -> None:
    """An aware time from anywhere is written as UTC."""
    nairobi = dt.timezone(dt.timedelta(hours=3))
    sent = events.body(events.EventType.MESSAGE_PENDING, AT.astimezone(nairobi), {})
    assert json.loads(sent)["timestamp"] == "2026-12-02T01:02:03.456000Z"


def test_a_naive_timestamp_is_refused() -> None:
    """A time without a zone would be ambiguous for every receiver."""
    with pytest.raises(ValueError, match="naive"):
        events.body(events.EventType.MESSAGE_PENDING, AT.replace(tzinfo=None), {})


@given(st.dictionaries(st.text(), st.integers() | st.text() | st.booleans() | st.none()))
def test_the_same_event_always_gives_the_same_bytes(data: dict[str, object]) -> None:
    """The body is a function of its inputs (stable across retries), and round-trips."""
    first = events.body(events.EventType.MESSAGE_FAILED, AT, data)
    assert first == events.body(events.EventType.MESSAGE_FAILED, AT, dict(data))
    assert list(json.loads(first)) == ["type", "timestamp", "data"]
    assert json.loads(first)["data"] == data
