"""Kenyan recipients: any common way of writing a mobile number, to its MSISDN.

Pure code with no I/O: a number that is not a valid Kenyan mobile is refused
here, before it costs a send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import carrier

from tracker import errors

KENYA_REGION = "KE"
KENYA_COUNTRY_CODE = "254"

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
        raise errors.InvalidRecipient(f"{errors.echo(raw)} is not a phone number")
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
        raise errors.InvalidRecipient(f"{errors.echo(raw)} is not a valid Kenyan mobile number")
    if kind not in _MOBILE_TYPES:
        raise errors.InvalidRecipient(f"{errors.echo(raw)} is not a Kenyan mobile number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    network = carrier.name_for_valid_number(number, "en") or None
    return Recipient(msisdn=e164.removeprefix("+"), network=network)


def _parse_kenyan(compact: str, raw: str) -> phonenumbers.PhoneNumber:
    """Any other diallable form, through the library's parser; only Kenya's numbers pass."""
    try:
        number = phonenumbers.parse(_dialling_form(compact), KENYA_REGION)
    except phonenumbers.NumberParseException as exc:
        raise errors.InvalidRecipient(
            f"{errors.echo(raw)} is not a valid Kenyan mobile number"
        ) from exc
    if phonenumbers.region_code_for_number(number) != KENYA_REGION:
        raise errors.InvalidRecipient(f"{errors.echo(raw)} is not a Kenyan number")
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


PSEUDONYM_SHOWN = 10  # hex characters of a pseudonym shown: enough to tell two apart


def shown(number: str | None, pseudonym: str | None) -> str:
    """How a message's recipient is shown: the number, or once pseudonymised ``#`` and
    the start of its keyed hash (the CLI's tables and the dashboard)."""
    if number:
        return number
    return f"#{pseudonym[:PSEUDONYM_SHOWN]}" if pseudonym else ""
