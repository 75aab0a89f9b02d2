"""The fast paths of domain.recipients and segments agree with the slow, obviously-right way."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import carrier

from tracker.domain import recipients, segments
from tracker.errors import InvalidRecipient

MOBILE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def reference_recipient(raw: str) -> recipients.Recipient | str:
    """The library's generic path, step by step; an error is returned as its reason."""
    compact = "".join(ch for ch in raw if ch not in " -.()\t")
    try:
        number = phonenumbers.parse(recipients._dialling_form(compact), "KE")
    except phonenumbers.NumberParseException:
        return "is not a valid Kenyan mobile number"
    if phonenumbers.region_code_for_number(number) != "KE":
        return "is not a Kenyan number"
    if not phonenumbers.is_valid_number(number):
        return "is not a valid Kenyan mobile number"
    if phonenumbers.number_type(number) not in MOBILE:
        return "is not a Kenyan mobile number"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return recipients.Recipient(e164[1:], carrier.name_for_number(number, "en") or None)


def actual_recipient(raw: str) -> recipients.Recipient | str:
    try:
        return recipients.normalise_recipient(raw)
    except InvalidRecipient as exc:
        return str(exc).split("' ", 1)[1]


def every_prefix_in_every_form() -> list[str]:
    numbers = [f"{p}{s}" for p in range(100, 200) for s in ("000000", "123456", "999999")]
    numbers += [f"{p}{s}" for p in range(700, 800) for s in ("000000", "505050", "999999")]
    forms = ("0{}", "{}", "+254{}", "254{}", "0{} ", "+254 {}")
    return [form.format(number) for number in numbers for form in forms]


def test_the_usual_forms_normalise_exactly_as_the_generic_parser_would() -> None:
    """Every 1xx and 7xx prefix, in every usual form: same number, network and verdict."""
    differences = [
        raw
        for raw in every_prefix_in_every_form()
        if actual_recipient(raw) != reference_recipient(raw)
    ]
    assert differences == []


@pytest.mark.parametrize(
    "raw", ["+2540712345678", "2540712345678", "00254712345678", "0712345", "1234567890"]
)
def test_unusual_forms_still_take_the_generic_parser(raw: str) -> None:
    """Forms outside the fast path get the same verdict as before."""
    assert actual_recipient(raw) == reference_recipient(raw)


def reference_parts(text: str) -> tuple[segments.Encoding, int, int]:
    """Character by character, as the GSM and UCS-2 rules are written."""
    gsm = set(segments.GSM7_BASIC) | set(segments.GSM7_EXTENSION)
    if all(ch in gsm for ch in text):
        costs = [2 if ch in segments.GSM7_EXTENSION else 1 for ch in text]
        encoding, single, multi = segments.Encoding.GSM7, 160, 153
    else:
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        encoding, single, multi = segments.Encoding.UCS2, 70, 67
    parts, used = 1, 0
    if sum(costs) > single:
        for cost in costs:
            if used + cost > multi:
                parts, used = parts + 1, 0
            used += cost
    return encoding, parts, sum(costs)


ALPHABETS = {
    "gsm": "abcXYZ 0123456789@£$_!?.,\n",
    "gsm+extension": "abc 123€[]{}^~|\\",
    "ucs2": "abcжщ日本 ",
    "ucs2+astral": "ab😊🇰🇪ж ",
}


@pytest.mark.parametrize("alphabet", list(ALPHABETS))
def test_segment_counts_like_the_character_by_character_rule(alphabet: str) -> None:
    """Random bodies of every length up to 6 parts: same encoding, parts and units."""
    chooser = random.Random(alphabet)
    characters = ALPHABETS[alphabet]
    for length in range(1, 480):
        text = "".join(chooser.choice(characters) for _ in range(length))
        found = segments.segment(text)
        assert (found.encoding, found.segments, found.units) == reference_parts(text), text
