"""Unit tests of the pure message domain: statuses, recipients, parts, reports."""

from __future__ import annotations

import re

import pytest

from tracker.domain import recipients, segments, status
from tracker.errors import InvalidRecipient, MessageTooLong

S = status.Status

# --- statuses ---------------------------------------------------------------


def test_every_status_has_a_rank() -> None:
    """The SQL guard can rank any status a row may hold."""
    assert set(status.RANK) == set(S)


def test_statuses_are_stored_as_their_lower_case_names() -> None:
    """A status read back from the database is the same enum member."""
    assert S("pending") is S.PENDING
    assert str(S.CANCELLED) == "cancelled"


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.QUEUED, S.SENDING),
        (S.SENDING, S.PENDING),
        (S.PENDING, S.DELIVERED),
        (S.PENDING, S.FAILED),
        (S.SENDING, S.FAILED),
        (S.SENDING, S.REJECTED),
        (S.QUEUED, S.EXPIRED),
        (S.QUEUED, S.CANCELLED),
        (S.QUEUED, S.DELIVERED),
    ],
)
def test_it_moves_forward(current: status.Status, new: status.Status) -> None:
    """Each step of the normal life of a message is allowed, also skipped steps."""
    assert status.can_move(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.SENDING, S.QUEUED),
        (S.PENDING, S.SENDING),
        (S.PENDING, S.QUEUED),
        (S.DELIVERED, S.PENDING),
        (S.FAILED, S.PENDING),
        (S.FAILED, S.SENDING),
    ],
)
def test_it_cannot_move_backwards(current: status.Status, new: status.Status) -> None:
    """A late send-sms answer or an old report never regresses a status."""
    assert not status.can_move(current, new)


@pytest.mark.parametrize("value", list(S))
def test_it_cannot_move_to_the_same_status(value: status.Status) -> None:
    """A duplicate report changes nothing."""
    assert not status.can_move(value, value)


def test_a_late_delivery_beats_failed() -> None:
    """A Delivered report after a failure wins: late delivery is real."""
    assert status.can_move(S.FAILED, S.DELIVERED)


def test_failed_does_not_beat_delivered() -> None:
    """A Failed report after Delivered is out of order and ignored."""
    assert not status.can_move(S.DELIVERED, S.FAILED)


@pytest.mark.parametrize("settled", [S.REJECTED, S.EXPIRED, S.CANCELLED])
@pytest.mark.parametrize("new", list(S))
def test_nothing_beats_rejected_expired_or_cancelled(
    settled: status.Status, new: status.Status
) -> None:
    """A refusal, an expiry or a cancellation is never overridden by a report."""
    assert not status.can_move(settled, new)


@pytest.mark.parametrize("value", list(S))
def test_it_knows_which_statuses_are_final(value: status.Status) -> None:
    """Only delivered, failed, rejected, expired and cancelled are final."""
    expected = value not in {S.QUEUED, S.SENDING, S.PENDING}
    assert status.is_final(value) is expected


def test_high_priority_is_dispatched_first() -> None:
    """Priorities sort high, normal, low, and every priority has an order."""
    order = status.PRIORITY_ORDER
    assert set(order) == set(status.Priority)
    assert sorted(order, key=order.__getitem__) == ["high", "normal", "low"]


# --- recipients -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "712345678",
        "+254712345678",
        "254712345678",
        "0712 345 678",
        "0712-345-678",
        "0712.345.678",
        "(0712) 345678",
        "+254 (712) 345-678",
        "254 712 345 678",
        "  0712345678\t",
        "+254 0712 345 678",
    ],
)
def test_every_common_form_normalises_to_the_same_msisdn(raw: str) -> None:
    """National, international, with or without 0 or + and separators: one MSISDN."""
    assert recipients.normalise_recipient(raw).msisdn == "254712345678"


@pytest.mark.parametrize("raw", ["0112345678", "112345678", "+254112345678", "254112345678"])
def test_it_accepts_the_newer_safaricom_011_numbers(raw: str) -> None:
    """The 01xx ranges work in every form, including without the leading zero."""
    recipient = recipients.normalise_recipient(raw)
    assert recipient == recipients.Recipient(msisdn="254112345678", network="Safaricom")


def test_it_accepts_a_number_without_the_leading_zero() -> None:
    """A bare nine-digit national number is read as if it had its 0."""
    assert recipients.normalise_recipient("733123456").msisdn == "254733123456"


@pytest.mark.parametrize(
    ("raw", "msisdn", "network"),
    [
        ("0712345678", "254712345678", "Safaricom"),
        ("0722000111", "254722000111", "Safaricom"),
        ("0733123456", "254733123456", "Airtel"),
        ("0100123456", "254100123456", "Airtel"),
        ("0750123456", "254750123456", "Airtel"),
        ("0770123456", "254770123456", "Telkom"),
    ],
)
def test_it_records_the_network(raw: str, msisdn: str, network: str) -> None:
    """Safaricom, Airtel (07x and 010x) and Telkom numbers carry their network."""
    assert recipients.normalise_recipient(raw) == recipients.Recipient(
        msisdn=msisdn, network=network
    )


@pytest.mark.parametrize("raw", ["0700000500", "254700000000", "+254700000999", "0711000001"])
def test_the_sandbox_magic_numbers_are_valid_kenyan_mobiles(raw: str) -> None:
    """254700000xxx and 254711000xxx pass validation, so the sandbox can use them."""
    recipient = recipients.normalise_recipient(raw)
    assert recipient.msisdn.startswith(("254700000", "254711000"))
    assert recipient.network == "Safaricom"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0201234567", "'0201234567' is not a Kenyan mobile number"),
        ("+254 20 1234567", "is not a Kenyan mobile number"),
        ("0412345678", "is not a Kenyan mobile number"),
        ("+12025550123", "'+12025550123' is not a Kenyan number"),
        ("+255712345678", "is not a Kenyan number"),
        ("071234567", "is not a valid Kenyan mobile number"),
        ("07123", "is not a valid Kenyan mobile number"),
        ("07123456789", "is not a valid Kenyan mobile number"),
        ("+2547123456789", "is not a valid Kenyan mobile number"),
        ("0800123456", "is not a valid Kenyan mobile number"),
        ("0" * 30, "is not a valid Kenyan mobile number"),
        ("abc", "'abc' is not a phone number"),
        ("0712ABCDEF", "is not a phone number"),
        ("0712345678x", "is not a phone number"),
        ("07+12345678", "is not a phone number"),
        ("", "'' is not a phone number"),
        ("   ", "is not a phone number"),
        ("+", "is not a phone number"),
    ],
)
def test_it_refuses_what_is_not_a_kenyan_mobile_number(raw: str, reason: str) -> None:
    """Landlines, foreign, short, long, lettered and empty numbers get a clear message."""
    with pytest.raises(InvalidRecipient, match=re.escape(reason)):
        recipients.normalise_recipient(raw)


def test_it_shortens_a_huge_input_in_its_error() -> None:
    """An error quotes the caller's input, but never all of a huge one."""
    with pytest.raises(InvalidRecipient) as caught:
        recipients.normalise_recipient("x" * 10_000)
    assert len(str(caught.value)) < 100


def test_an_invalid_recipient_is_a_value_error() -> None:
    """Callers that only know ValueError still catch a bad number."""
    with pytest.raises(ValueError, match="phone number"):
        recipients.normalise_recipient("abc")


# --- segments ---------------------------------------------------------------

G = segments.Encoding.GSM7
U = segments.Encoding.UCS2


@pytest.mark.parametrize(
    ("length", "parts"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_it_counts_gsm7_parts_at_their_boundaries(length: int, parts: int) -> None:
    """160 septets fit in one part; split parts hold 153 each."""
    result = segments.segment("a" * length)
    assert result == segments.Segmentation(encoding=G, segments=parts, units=length)


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_an_extension_character_counts_as_two_septets(char: str) -> None:
    """Escaped characters take two septets, so 159 letters and one of them need two parts."""
    assert segments.segment("a" * 158 + char) == segments.Segmentation(G, 1, 160)
    assert segments.segment("a" * 159 + char) == segments.Segmentation(G, 2, 161)


def test_it_never_splits_an_extension_character_across_parts() -> None:
    """An escape pair that would straddle a boundary moves whole to the next part."""
    text = "a" * 152 + "€" + "a" * 152  # 306 septets, yet the euro cannot end part one
    assert segments.segment(text) == segments.Segmentation(G, 3, 306)
    fits = "a" * 151 + "€" + "a" * 153  # the same length with the euro inside part one
    assert segments.segment(fits) == segments.Segmentation(G, 2, 306)


def test_the_whole_gsm7_alphabet_is_sent_as_gsm7() -> None:
    """Accented letters and Greek capitals of the default alphabet stay in GSM-7."""
    text = "".join(sorted(segments.GSM7_BASIC)) + "".join(sorted(segments.GSM7_EXTENSION))
    assert segments.segment(text).encoding == G


@pytest.mark.parametrize(
    "text", ["It\u2019s ready", "Habari — karibu", "ç", "Привет", "你好", "ok 👍"]
)
def test_one_character_outside_gsm7_makes_the_message_ucs2(text: str) -> None:
    """A curly quote, a dash, Cyrillic, Chinese or an emoji switches to UCS-2."""
    assert segments.segment(text).encoding == U


@pytest.mark.parametrize(
    ("length", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_it_counts_ucs2_parts_at_their_boundaries(length: int, parts: int) -> None:
    """70 code units fit in one part; split parts hold 67 each."""
    result = segments.segment("ж" * length)
    assert result == segments.Segmentation(encoding=U, segments=parts, units=length)


def test_an_emoji_counts_as_two_code_units() -> None:
    """Characters outside the BMP are surrogate pairs: 35 emoji fill one part."""
    assert segments.segment("😀" * 35) == segments.Segmentation(U, 1, 70)
    assert segments.segment("😀" * 36) == segments.Segmentation(U, 2, 72)


def test_it_never_splits_an_emoji_across_parts() -> None:
    """A surrogate pair that would straddle a boundary moves whole to the next part."""
    text = "ж" * 66 + "😀" + "ж" * 66  # 134 units, yet the emoji cannot end part one
    assert segments.segment(text) == segments.Segmentation(U, 3, 134)
    fits = "ж" * 65 + "😀" + "ж" * 67  # the same length with the emoji inside part one
    assert segments.segment(fits) == segments.Segmentation(U, 2, 134)


def test_an_empty_message_is_refused() -> None:
    """There is nothing to send, so there is no part count to report."""
    with pytest.raises(ValueError, match="empty"):
        segments.segment("")


def test_check_length_returns_the_segmentation_when_within_the_limit() -> None:
    """A message at exactly the maximum number of parts is accepted."""
    assert segments.check_length("a" * 306, max_segments=2) == segments.Segmentation(G, 2, 306)


def test_check_length_refuses_a_message_over_the_limit() -> None:
    """One part too many is refused with the count and the maximum."""
    with pytest.raises(MessageTooLong, match=r"^message needs 3 parts; the maximum is 2$"):
        segments.check_length("a" * 307, max_segments=2)


def test_check_length_refuses_a_limit_below_one() -> None:
    """A maximum of zero parts is a programming error, not a long message."""
    with pytest.raises(ValueError, match="at least 1"):
        segments.check_length("a", max_segments=0)


# --- provider delivery reports ----------------------------------------------

K = status.ReportKind


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("Delivered", K.DELIVERED),
        ("  delivered\n", K.DELIVERED),
        ("DELIVERED", K.DELIVERED),
        ("DeliveredToTerminal", K.DELIVERED),
        ("Success", K.DELIVERED),
        ("Failed", K.FAILED),
        ("Rejected", K.FAILED),
        ("Undelivered", K.FAILED),
        ("Undeliverable", K.FAILED),
        ("Expired", K.FAILED),
        ("Blacklisted", K.FAILED),
        ("Error", K.FAILED),
        ("DeliveryFailed", K.FAILED),
        ("Delivery Failed", K.FAILED),
        ("delivery_failed", K.FAILED),
        ("Cancelled", K.FAILED),
        ("Pending", K.INTERIM),
        ("Sent", K.INTERIM),
        ("Submitted", K.INTERIM),
        ("Buffered", K.INTERIM),
        ("Queued", K.INTERIM),
        ("Accepted", K.INTERIM),
        ("Initiated", K.INTERIM),
        ("Enroute", K.INTERIM),
        ("EnRoute", K.INTERIM),
        ("Processing", K.INTERIM),
        ("", K.UNKNOWN),
        ("Delivered?", K.UNKNOWN),
        ("Teleported", K.UNKNOWN),
    ],
)
def test_it_classifies_provider_statuses(raw: str, kind: status.ReportKind) -> None:
    """Known words are read regardless of case and spacing; others are UNKNOWN."""
    assert status.classify_report(raw) is kind


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (K.DELIVERED, S.DELIVERED),
        (K.FAILED, S.FAILED),
        (K.INTERIM, None),
        (K.UNKNOWN, None),
    ],
)
def test_only_final_reports_move_a_message(
    kind: status.ReportKind, expected: status.Status | None
) -> None:
    """Interim and unknown words are recorded but never change the status."""
    assert status.status_for_report(kind) is expected
