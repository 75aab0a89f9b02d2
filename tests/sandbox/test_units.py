"""Billed parts per message, by the industry rule the provider bills by."""

from __future__ import annotations

import pytest

from tracker.sandbox.units import gsm7_length, parts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("ü" * 70, 1),  # in the GSM-7 basic set
        ("ł" * 70, 1),  # not GSM-7: UCS-2, 70 per single part
        ("ł" * 71, 2),
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_parts_follow_the_gsm7_and_ucs2_limits(text: str, expected: int) -> None:
    """160/153 GSM-7 septets and 70/67 UCS-2 units per part decide the count."""
    assert parts(text) == expected


def test_gsm7_length_is_none_for_unicode_text() -> None:
    """Any character outside GSM-7 switches the whole message to UCS-2."""
    assert gsm7_length("Habari {yako}") == 15
    assert gsm7_length("Habari ✓") is None
