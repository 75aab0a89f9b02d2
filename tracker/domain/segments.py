"""SMS parts: how many billed parts a body takes, as GSM-7 or UCS-2.

Pure code with no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tracker import errors


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
        raise errors.MessageTooLong(
            f"message needs {result.segments} parts; the maximum is {max_segments}"
        )
    return result
