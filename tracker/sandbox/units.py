"""How many billed parts a message takes, by the industry rule the provider bills by.

The sandbox records this per send so tests can compare the tracker's own
segment count with what the "provider" would bill: GSM-7 text is 160 characters
in one part and 153 per part when split (extension characters count twice);
anything else is UCS-2, 70 in one part and 67 per part when split.
"""

from __future__ import annotations

import math

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


def gsm7_length(text: str) -> int | None:
    """Septets the text needs in GSM-7, or ``None`` if it needs UCS-2."""
    length = 0
    for char in text:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def parts(text: str) -> int:
    """Billed parts: 1 for an empty or short text, more when it must be split."""
    septets = gsm7_length(text)
    if septets is not None:
        length, single, multi = septets, GSM7_SINGLE, GSM7_MULTI
    else:
        # UCS-2 counts UTF-16 code units: characters outside the BMP take two.
        length = len(text.encode("utf-16-le")) // 2
        single, multi = UCS2_SINGLE, UCS2_MULTI
    if length <= single:
        return 1
    return math.ceil(length / multi)
