"""The message domain: statuses and their order, Kenyan recipients, SMS parts.

Pure code with no I/O, so the API, the dispatcher, the callback receiver and
the SQL layer all share one definition of what a valid message is and which
way its status may move.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import carrier

from tracker.errors import InvalidRecipient, MessageTooLong

if TYPE_CHECKING:
    from collections.abc import Mapping

# --- statuses ---------------------------------------------------------------


class Status(enum.StrEnum):
    """Where a message is in its life; stored as text in the database."""

    QUEUED = "queued"
    SENDING = "sending"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Status only moves forward, and SQL enforces it with
# `UPDATE ... WHERE rank < :new_rank`, so duplicate, older and out-of-order
# reports change nothing. A `Delivered` report that arrives after `failed`
# wins (late delivery is real), so delivered outranks failed; the reverse
# never happens. Rejected, expired and cancelled are decided by us or by the
# provider's refusal and are never overridden by a later report.
RANK: Mapping[Status, int] = MappingProxyType(
    {
        Status.QUEUED: 0,
        Status.SENDING: 1,
        Status.PENDING: 2,
        Status.FAILED: 3,
        Status.DELIVERED: 4,
        Status.REJECTED: 5,
        Status.EXPIRED: 5,
        Status.CANCELLED: 5,
    }
)

FINAL: frozenset[Status] = frozenset(
    {Status.DELIVERED, Status.FAILED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED}
)


class Outcome(enum.StrEnum):
    """What one dispatch attempt came to (stored on its event; ``/v1/stats`` counts it)."""

    ACCEPTED = "accepted"  # 200 with a provider message id
    REJECTED = "rejected"  # 400: the message itself is refused
    RATE_LIMITED = "rate_limited"  # 429: not taken
    ACCOUNT_UNAVAILABLE = "account_unavailable"  # credentials or URL refused: not taken
    PROVIDER_ERROR = "provider_error"  # a 5xx or another answer: it may have it
    NO_ANSWER = "no_answer"  # timeout, lost connection, a 200 without an id: it may have it


# Calls refused before the provider took the message: they do not count as attempts.
UNSENT_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.RATE_LIMITED, Outcome.ACCOUNT_UNAVAILABLE})
# Failed calls that are neither the message's fault nor a 429 (``/v1/stats`` errors).
ERROR_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.ACCOUNT_UNAVAILABLE, Outcome.PROVIDER_ERROR, Outcome.NO_ANSWER}
)


def can_move(current: Status, new: Status) -> bool:
    """Whether a message at ``current`` may take ``new``: only strictly forward."""
    return RANK[new] > RANK[current]


def is_final(status: Status) -> bool:
    """Whether no further sending happens (a late delivery may still upgrade failed)."""
    return status in FINAL


# --- priorities -------------------------------------------------------------


class Priority(enum.StrEnum):
    """How urgently a caller wants a message sent under the shared rate limit."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Lower is dispatched first; an integer sorts in SQL where the text would not.
PRIORITY_ORDER: Mapping[Priority, int] = MappingProxyType(
    {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
)


# --- recipients -------------------------------------------------------------

KENYA_REGION = "KE"
KENYA_COUNTRY_CODE = "254"
MAX_ECHOED_INPUT_CHARS = 32

_SEPARATORS = re.compile(r"[\s\-.()]")
_DIALLABLE = re.compile(r"\+?[0-9]+")
# 0712345678, 712345678, +254712345678, 254712345678 (and 01.. likewise): group 1
# is the national significant number.
_USUAL_FORM = re.compile(r"(?:\+?254|0)?([17][0-9]{8})")
_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


@dataclass(frozen=True)
class Recipient:
    """A Kenyan mobile number in the form KIMISMS expects, and its network."""

    msisdn: str  # E.164 without the plus: "254712345678"
    network: str | None  # e.g. "Safaricom"; None when the library does not know


def normalise_recipient(raw: str) -> Recipient:
    """Turn any common way of writing a Kenyan mobile number into its MSISDN.

    Callers write ``0712 345 678``, ``712345678``, ``+254-712-345-678`` or
    ``254712345678``; the provider wants ``254712345678``. Anything that is not
    a valid Kenyan mobile number is refused here, before it costs a send.
    """
    compact = _SEPARATORS.sub("", raw)
    # Checked before parsing: phonenumbers reads letters as a keypad (vanity
    # numbers), so "0712ABCDEF" would otherwise become a real number.
    if not _DIALLABLE.fullmatch(compact):
        raise InvalidRecipient(f"{_echo(raw)} is not a phone number")
    # The four usual forms name the national number outright; building it
    # directly skips the generic parser, which costs most of the time in a batch.
    usual = _USUAL_FORM.fullmatch(compact)
    if usual:
        number = phonenumbers.PhoneNumber(
            country_code=int(KENYA_COUNTRY_CODE), national_number=int(usual[1])
        )
    else:
        number = _parse_kenyan(compact, raw)
    # The type is UNKNOWN exactly when the number is invalid for its region.
    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        raise InvalidRecipient(f"{_echo(raw)} is not a valid Kenyan mobile number")
    if kind not in _MOBILE_TYPES:
        raise InvalidRecipient(f"{_echo(raw)} is not a Kenyan mobile number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    network = carrier.name_for_valid_number(number, "en") or None
    return Recipient(msisdn=e164.removeprefix("+"), network=network)


def _parse_kenyan(compact: str, raw: str) -> phonenumbers.PhoneNumber:
    """Any other diallable form, through the library's parser; only Kenya's numbers pass."""
    try:
        number = phonenumbers.parse(_dialling_form(compact), KENYA_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRecipient(f"{_echo(raw)} is not a valid Kenyan mobile number") from exc
    if phonenumbers.region_code_for_number(number) != KENYA_REGION:
        raise InvalidRecipient(f"{_echo(raw)} is not a Kenyan number")
    return number


def _dialling_form(compact: str) -> str:
    """Add what the parser cannot guess: the trunk 0 or the international plus.

    Without a plus, "254712345678" would be read as a (too long) national
    number; a bare nine-digit "712345678" is the national number without 0.
    """
    if compact.startswith("+"):
        return compact
    if len(compact) > len("0712345678") and compact.startswith(KENYA_COUNTRY_CODE):
        return "+" + compact
    if len(compact) == len("712345678") and compact[0] in "17":
        return "0" + compact
    return compact


def _echo(raw: str) -> str:
    """Quote the caller's input in an error, cut short so a huge body stays small."""
    if len(raw) > MAX_ECHOED_INPUT_CHARS:
        return repr(raw[:MAX_ECHOED_INPUT_CHARS] + "...")
    return repr(raw)


# --- segments ---------------------------------------------------------------


class Encoding(enum.StrEnum):
    """How the body travels over the air, which decides the size of a part."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True)
class Segmentation:
    """How many billed parts a body takes, and why."""

    encoding: Encoding
    segments: int
    units: int  # septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2


# GSM 03.38 default alphabet (3GPP TS 23.038), without the escape code 0x1B.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each character is sent as escape + code, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE_PART_SEPTETS = 160
GSM7_MULTI_PART_SEPTETS = 153  # 7 septets go to the concatenation header
UCS2_SINGLE_PART_UNITS = 70
UCS2_MULTI_PART_UNITS = 67  # 3 code units go to the concatenation header
BMP_MAX_CODE_POINT = 0xFFFF  # above it a character is a UTF-16 surrogate pair


def segment(text: str) -> Segmentation:
    """Count the parts a body is sent (and billed) as.

    GSM-7 when every character is in the default alphabet or its extension,
    otherwise UCS-2. A two-unit character (an escaped GSM character or a
    UTF-16 surrogate pair) is never split, so parts may hold one unit less.
    """
    if not text:
        raise ValueError("an empty message has no parts")
    # Set and str methods run in C: a batch of thousands of bodies is counted
    # without a Python step per character unless a body has two-unit characters.
    if _GSM7_ALL.issuperset(text):
        encoding, single, multi = Encoding.GSM7, GSM7_SINGLE_PART_SEPTETS, GSM7_MULTI_PART_SEPTETS
        doubles = 0 if GSM7_BASIC.issuperset(text) else _count_extension_characters(text)
    else:
        encoding, single, multi = Encoding.UCS2, UCS2_SINGLE_PART_UNITS, UCS2_MULTI_PART_UNITS
        # A lone surrogate is one code unit, as in the per-character count.
        doubles = len(text.encode("utf-16-le", "surrogatepass")) // 2 - len(text)
    units = len(text) + doubles
    if units <= single:
        parts = 1
    elif not doubles:
        parts = -(-units // multi)
    else:
        parts = _count_parts(_unit_costs(text, encoding), multi)
    return Segmentation(encoding=encoding, segments=parts, units=units)


def _count_extension_characters(text: str) -> int:
    return sum(text.count(char) for char in GSM7_EXTENSION)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.GSM7:
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > BMP_MAX_CODE_POINT else 1 for char in text]


def _count_parts(costs: list[int], capacity: int) -> int:
    """Fill parts character by character; a character that does not fit opens a new part."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts, used = parts + 1, 0
        used += cost
    return parts


def check_length(text: str, max_segments: int) -> Segmentation:
    """Segment ``text`` and refuse it when it needs more than ``max_segments`` parts."""
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, not {max_segments}")
    result = segment(text)
    if result.segments > max_segments:
        raise MessageTooLong(
            f"message needs {result.segments} parts; the maximum is {max_segments}"
        )
    return result


# --- provider delivery reports ----------------------------------------------


class ReportKind(enum.StrEnum):
    """What a provider status word means for us; the raw word is kept separately."""

    DELIVERED = "delivered"
    FAILED = "failed"
    INTERIM = "interim"  # a progress word: not final, changes nothing
    UNKNOWN = "unknown"  # a word we have never seen: record it, change nothing


# Keys are lower case with spaces, underscores and dashes removed. The provider
# documents only Pending and Delivered, so the rest is the industry's usual
# vocabulary; anything else is UNKNOWN rather than guessed.
_REPORT_WORDS: Mapping[str, ReportKind] = MappingProxyType(
    {
        **dict.fromkeys(("delivered", "deliveredtoterminal", "success"), ReportKind.DELIVERED),
        **dict.fromkeys(
            (
                "failed",
                "rejected",
                "undelivered",
                "undeliverable",
                "expired",
                "blacklisted",
                "error",
                "deliveryfailed",
                "cancelled",
            ),
            ReportKind.FAILED,
        ),
        **dict.fromkeys(
            (
                "pending",
                "sent",
                "submitted",
                "buffered",
                "queued",
                "accepted",
                "initiated",
                "enroute",
                "processing",
            ),
            ReportKind.INTERIM,
        ),
    }
)
_REPORT_NOISE = re.compile(r"[\s_\-]")


def classify_report(raw_status: str) -> ReportKind:
    """Read a provider status word regardless of case, spacing or separators."""
    key = _REPORT_NOISE.sub("", raw_status).casefold()
    return _REPORT_WORDS.get(key, ReportKind.UNKNOWN)


def status_for_report(kind: ReportKind) -> Status | None:
    """The status a report moves a message to; None when it must not move it."""
    if kind is ReportKind.DELIVERED:
        return Status.DELIVERED
    if kind is ReportKind.FAILED:
        return Status.FAILED
    return None
